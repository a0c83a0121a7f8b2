//! Write statements as data: a projection returns the statements that apply events to its
//! table, and whoever holds the transaction runs them, each prepared once per connection and
//! bound to its parameters: through sqlx one by one (a replay, a write that reads first), or
//! through tokio-postgres as one pipeline (`write_connections`, a write that reads nothing).
//!
//! Not written out as literals into one message of several statements (tried at commit
//! e21eb41, to save round trips): PostgreSQL then parses and plans every statement of every
//! write afresh, which cost more than the round trips it saved (docs/benchmarks.md, "Hot
//! rooms").

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::BoxError;

/// A parameter: an array, one element per row (statements use `UNNEST`).
#[derive(Debug)]
pub enum Arg {
    Texts(Vec<Option<String>>),
    Bools(Vec<Option<bool>>),
    Int4s(Vec<Option<i32>>),
    Int8s(Vec<Option<i64>>),
    Times(Vec<Option<DateTime<Utc>>>),
    /// JSON documents as text (serialized once, straight from their types), for a `jsonb[]`
    /// parameter.
    JsonTexts(Vec<String>),
}

impl Arg {
    fn array_type(&self) -> Type {
        match self {
            Arg::Texts(_) => Type::TEXT_ARRAY,
            Arg::Bools(_) => Type::BOOL_ARRAY,
            Arg::Int4s(_) => Type::INT4_ARRAY,
            Arg::Int8s(_) => Type::INT8_ARRAY,
            Arg::Times(_) => Type::TIMESTAMPTZ_ARRAY,
            Arg::JsonTexts(_) => Type::JSONB_ARRAY,
        }
    }
}

/// An argument as the array its statement was prepared with ([`Statement::types`]).
impl ToSql for Arg {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Arg::Texts(values) => values.to_sql(ty, out),
            Arg::Bools(values) => values.to_sql(ty, out),
            Arg::Int4s(values) => values.to_sql(ty, out),
            Arg::Int8s(values) => values.to_sql(ty, out),
            Arg::Times(values) => values.to_sql(ty, out),
            Arg::JsonTexts(values) => values
                .iter()
                .map(|text| JsonText(text))
                .collect::<Vec<_>>()
                .to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty != self.array_type() {
            return Err(format!("a {:?} argument for a {ty} parameter", self.array_type()).into());
        }
        self.to_sql(ty, out)
    }
}

/// A JSON document's text as a `jsonb` value: its binary format is a version byte (1), then the
/// text.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A statement and its parameters (`$1`, `$2`, ... in its text).
#[derive(Debug)]
pub struct Statement {
    sql: String,
    args: Vec<Arg>,
}

impl Statement {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// The next parameter.
    pub fn arg(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Its parameters' types, to prepare the statement with (sqlx declares the same ones, but
    /// `text[]` for JSON texts, which the statements cast).
    pub fn types(&self) -> Vec<Type> {
        self.args.iter().map(Arg::array_type).collect()
    }

    /// Its parameters, for tokio-postgres.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|arg| arg as &(dyn ToSql + Sync))
            .collect()
    }

    /// Runs the statement with its parameters bound (one round trip).
    pub async fn execute(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut query = sqlx::query(&self.sql);
        for arg in &self.args {
            query = match arg {
                Arg::Texts(values) => query.bind(values),
                Arg::Bools(values) => query.bind(values),
                Arg::Int4s(values) => query.bind(values),
                Arg::Int8s(values) => query.bind(values),
                Arg::Times(values) => query.bind(values),
                Arg::JsonTexts(values) => query.bind(values),
            };
        }
        query.execute(conn).await.map(drop)
    }
}

/// Runs `statements` with their parameters bound, one after another.
pub async fn execute_all(
    conn: &mut PgConnection,
    statements: &[Statement],
) -> Result<(), sqlx::Error> {
    for statement in statements {
        statement.execute(conn).await?;
    }
    Ok(())
}

macro_rules! arg_from {
    ($variant:ident, $t:ty) => {
        impl From<Vec<$t>> for Arg {
            fn from(values: Vec<$t>) -> Self {
                Arg::$variant(values.into_iter().map(Some).collect())
            }
        }
        impl From<Vec<Option<$t>>> for Arg {
            fn from(values: Vec<Option<$t>>) -> Self {
                Arg::$variant(values)
            }
        }
    };
}

arg_from!(Texts, String);
arg_from!(Bools, bool);
arg_from!(Int4s, i32);
arg_from!(Int8s, i64);
arg_from!(Times, DateTime<Utc>);

impl From<Vec<&str>> for Arg {
    fn from(values: Vec<&str>) -> Self {
        Arg::Texts(values.into_iter().map(|v| Some(v.to_owned())).collect())
    }
}
