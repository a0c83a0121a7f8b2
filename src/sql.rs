//! Write statements as data, so that a whole write can go to PostgreSQL in one round trip.
//!
//! sqlx 0.8 has no pipelining: each statement with bound parameters is a round trip of its own.
//! PostgreSQL's simple query protocol, though, takes any number of statements in one message
//! and runs them one after another, each parsed, bound to its tables and locked only when its
//! turn comes (as separate round trips would be: a replay's table swap in between is seen).
//! So a statement here carries its parameters as values, and is either executed with them
//! bound (reads, replays) or written out with its parameters as literals ([`Statement::inline`])
//! into one message with the rest of its transaction.
//!
//! Literals: strings as `E'...'` with every backslash and quote doubled, which reads the same
//! whatever `standard_conforming_strings` says; a NUL (which PostgreSQL's text cannot hold, and
//! which would end a protocol message) is refused. Arrays as `ARRAY[...]`, typed by the cast
//! that each statement puts on its parameter (`$1::text[]`).

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgConnection;

/// A parameter: an array, one element per row (statements use `UNNEST`).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Texts(Vec<Option<String>>),
    Bools(Vec<Option<bool>>),
    Int4s(Vec<Option<i32>>),
    Int8s(Vec<Option<i64>>),
    Times(Vec<Option<DateTime<Utc>>>),
    Jsons(Vec<serde_json::Value>),
}

/// A statement and its parameters (`$1`, `$2`, ... in its text, each with a cast).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sql: String,
    args: Vec<Arg>,
}

/// A value that cannot be written as a literal.
#[derive(Debug, thiserror::Error)]
#[error("a text holds a NUL character, which PostgreSQL cannot store")]
pub struct Unprintable;

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
                Arg::Jsons(values) => query.bind(values),
            };
        }
        query.execute(conn).await.map(drop)
    }

    /// The statement with its parameters written as literals, for a message of several.
    pub fn inline(&self) -> Result<String, Unprintable> {
        let mut out = String::with_capacity(self.sql.len() + 64 * self.args.len());
        let mut rest = self.sql.as_str();
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let number: usize = rest[at + 1..at + 1 + digits]
                .parse()
                .expect("a statement's `$` is a numbered parameter");
            literal(&mut out, &self.args[number - 1])?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_str(rest);
        Ok(out)
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

/// `statements` as one message: each inlined, separated by semicolons.
pub fn message<'a>(
    statements: impl IntoIterator<Item = &'a Statement>,
) -> Result<String, Unprintable> {
    let mut out = String::new();
    for statement in statements {
        out.push_str(&statement.inline()?);
        out.push_str(";\n");
    }
    Ok(out)
}

fn literal(out: &mut String, arg: &Arg) -> Result<(), Unprintable> {
    fn array<T>(
        out: &mut String,
        values: &[T],
        mut element: impl FnMut(&mut String, &T) -> Result<(), Unprintable>,
    ) -> Result<(), Unprintable> {
        if values.is_empty() {
            // ARRAY[] has no type to infer; the statement's cast gives this one its type.
            out.push_str("'{}'");
            return Ok(());
        }
        out.push_str("ARRAY[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            element(out, value)?;
        }
        out.push(']');
        Ok(())
    }
    fn nullable<T>(
        out: &mut String,
        value: &Option<T>,
        write: impl FnOnce(&mut String, &T) -> Result<(), Unprintable>,
    ) -> Result<(), Unprintable> {
        match value {
            Some(value) => write(out, value),
            None => {
                out.push_str("NULL");
                Ok(())
            }
        }
    }
    match arg {
        Arg::Texts(values) => array(out, values, |out, v| nullable(out, v, |o, s| text(o, s))),
        Arg::Bools(values) => array(out, values, |out, v| {
            nullable(out, v, |o, b| {
                o.push_str(if *b { "true" } else { "false" });
                Ok(())
            })
        }),
        Arg::Int4s(values) => array(out, values, |out, v| {
            nullable(out, v, |o, n| {
                let _ = write!(o, "{n}");
                Ok(())
            })
        }),
        Arg::Int8s(values) => array(out, values, |out, v| {
            nullable(out, v, |o, n| {
                let _ = write!(o, "{n}");
                Ok(())
            })
        }),
        Arg::Times(values) => array(out, values, |out, v| {
            nullable(out, v, |o, t| {
                text(o, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            })
        }),
        Arg::Jsons(values) => array(out, values, |out, v| text(out, &v.to_string())),
    }
}

/// A string literal that means `value` whatever `standard_conforming_strings` is.
fn text(out: &mut String, value: &str) -> Result<(), Unprintable> {
    if value.contains('\0') {
        return Err(Unprintable);
    }
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_typed_literals_in_place() {
        let statement = Statement::new("SELECT $1::text[], $2::int8[], $10::bool[]")
            .arg(vec!["it's", r"a\b"])
            .arg(vec![Some(1i64), None])
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(Vec::<String>::new())
            .arg(vec![true]);
        assert_eq!(
            statement.inline().unwrap(),
            r"SELECT ARRAY[E'it''s',E'a\\b']::text[], ARRAY[1,NULL]::int8[], ARRAY[true]::bool[]"
        );
    }

    #[test]
    fn empty_arrays_take_the_statements_cast() {
        let statement = Statement::new("SELECT $1::timestamptz[]").arg(Vec::<DateTime<Utc>>::new());
        assert_eq!(statement.inline().unwrap(), "SELECT '{}'::timestamptz[]");
    }

    #[test]
    fn a_nul_is_refused_not_cut() {
        let statement = Statement::new("SELECT $1::text[]").arg(vec!["a\0'; DROP TABLE events"]);
        assert!(statement.inline().is_err());
    }

    #[test]
    fn times_keep_their_fraction_and_zone() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T20:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let statement = Statement::new("$1::timestamptz[]").arg(vec![at]);
        assert_eq!(
            statement.inline().unwrap(),
            "ARRAY[E'2026-12-07T20:00:00.123Z']::timestamptz[]"
        );
    }
}
