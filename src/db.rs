//! The PostgreSQL pool, migrations, and what a database error means to a client.

use std::time::Duration;

use futures_util::FutureExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Row};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a request waits for a pooled connection before the database counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pool that never hands out a connection left inside a transaction.
///
/// sqlx 0.8 `Pool::begin` is not cancel-safe on PostgreSQL (sqlx issues #4385, #4393): a
/// future dropped while BEGIN is in flight returns the connection to the pool inside an open
/// transaction that sqlx does not track. Commands never get cancelled here (each runs in its own
/// task), and this check is the second line: inside a transaction block `now()` is the
/// transaction's start, so it differs from the statement's start; such a connection is closed,
/// which makes the server roll the transaction back. It costs one round trip per release.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_release(|conn, _meta| {
            async move {
                // The simple query protocol: an implicit transaction then starts with the
                // statement, at exactly its timestamp (with the extended protocol the two can
                // differ by the time between Bind and Execute).
                // (A query without arguments goes by the simple protocol.)
                let in_transaction: bool = conn
                    .fetch_one("SELECT now() <> statement_timestamp()")
                    .await?
                    .try_get(0)?;
                if in_transaction {
                    tracing::warn!(
                        "closing a pooled connection that was returned inside a transaction"
                    );
                }
                Ok(!in_transaction)
            }
            .boxed()
        })
}

/// Connects lazily: the service starts, and answers 503, while the database is down.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(pool_options(max_connections).connect_lazy_with(options.application_name("neuronmeet")))
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// True when the error says the database cannot be reached or is going away, as opposed to
/// rejecting what we asked: the client should retry later (503), not report a bug (500).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exceptions; 57P01-57P03: shutdown and startup;
            // 53300: too many connections.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Name of the constraint a unique violation broke, if the error is one.
pub fn violated_unique_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}
