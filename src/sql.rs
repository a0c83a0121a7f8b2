//! Write statements as data: a projection returns the statements that apply events to its
//! table, and whoever holds the transaction runs them (a command's write, a replay), each
//! prepared once per connection and bound to its parameters.
//!
//! Not written out as literals into one message of several statements (tried at commit
//! e21eb41, to save round trips; sqlx 0.8 has no pipelining): PostgreSQL then parses and plans
//! every statement of every write afresh, which cost more than the round trips it saved
//! (docs/benchmarks.md, "Hot rooms").

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

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
