//! The event store's connections for writes whose statements are all known before they start:
//! BEGIN, the events and every read model's statements go out at once, as one pipeline, and
//! COMMIT follows once all of them succeeded. Two round trips whatever the number of
//! statements (one more the first time a connection meets a statement, to prepare it); sqlx
//! 0.8 waits for each statement's answer before it sends the next (a warm create took seven
//! round trips). tokio-postgres pipelines the requests issued on one client before their
//! answers are awaited.
//!
//! COMMIT is never sent with the statements. The server would then commit a write whose
//! client had given up on a stalled database, and a 503 for a timeout would no longer mean
//! "not written" (`deadline`; docs/benchmarks.md, "Hot rooms", measures what it would save).
//!
//! Statements are prepared once per connection, with the parameter types their arguments
//! carry (as sqlx prepares them), and their plans reused. Errors are turned into sqlx's, so
//! that one classification (`db`, `event_store::persistence_error`) serves both drivers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::{join, try_join_all};
use sqlx::ConnectOptions;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::sql::Statement;

pub struct WriteConnections {
    config: tokio_postgres::Config,
    idle: std::sync::Mutex<Vec<Connection>>,
    /// At most as many as the pool has: only writes measured without room batches run many
    /// at once (group commit has two writers).
    permits: Semaphore,
    /// The pool's own: a connection idle longer, or older, is closed rather than reused (after
    /// a failover, say, connections to the old server do not live on).
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
}

struct Connection {
    client: tokio_postgres::Client,
    /// The task that runs the socket: aborted when the connection is dropped, which closes the
    /// socket at once (the server then rolls back what was not committed). tokio-postgres alone
    /// would keep it open until every answer still due had come, holding the transaction's
    /// locks meanwhile.
    socket: tokio::task::AbortHandle,
    prepared: HashMap<String, tokio_postgres::Statement>,
    opened: Instant,
    last_used: Instant,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.socket.abort();
    }
}

impl WriteConnections {
    /// Connects (lazily) where `pool` connects, with its session settings.
    pub fn like(pool: &sqlx::PgPool) -> Self {
        let options = pool.connect_options();
        let mut config = tokio_postgres::Config::new();
        config
            .user(options.get_username())
            .port(options.get_port())
            .connect_timeout(crate::db::ACQUIRE_TIMEOUT);
        match options.get_socket() {
            Some(socket) => config.host_path(socket),
            // A URL's IPv6 address keeps its brackets here; sqlx strips them when it connects.
            None => config.host(
                options
                    .get_host()
                    .trim_start_matches('[')
                    .trim_end_matches(']'),
            ),
        };
        if let Some(database) = options.get_database() {
            config.dbname(database);
        }
        if let Some(password) = password(&options) {
            config.password(password);
        }
        if let Some(name) = options.get_application_name() {
            config.application_name(name);
        }
        if let Some(settings) = options.get_options() {
            config.options(settings);
        }
        Self {
            config,
            idle: Default::default(),
            permits: Semaphore::new(pool.options().get_max_connections() as usize),
            idle_timeout: pool.options().get_idle_timeout(),
            max_lifetime: pool.options().get_max_lifetime(),
        }
    }

    /// Runs `statements` in a new transaction, whose lock waits end after `lock_timeout`, and
    /// returns it uncommitted. On an error the transaction is rolled back (the connection is
    /// closed if it cannot be); dropped unfinished, its connection is closed.
    pub async fn begin(
        &self,
        lock_timeout: Duration,
        statements: &[&Statement],
    ) -> Result<Open<'_>, sqlx::Error> {
        // Waited for as long as for a pooled connection, and answered the same way.
        let permit = tokio::time::timeout(crate::db::ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .expect("never closed");
        let mut connection = self.connection().await?;
        connection.prepare(statements).await.map_err(to_sqlx)?;
        let begin = crate::db::begin(lock_timeout);
        let ran = {
            let params: Vec<Vec<&(dyn tokio_postgres::types::ToSql + Sync)>> =
                statements.iter().map(|s| s.params()).collect();
            let client = &connection.client;
            let executions = statements.iter().zip(&params).map(|(statement, params)| {
                client.execute(&connection.prepared[statement.sql()], params)
            });
            // Sent in this order on first poll: BEGIN, then each statement.
            let (began, executed) =
                join(client.batch_execute(&begin), try_join_all(executions)).await;
            began.and(executed.map(drop))
        };
        let open = Open {
            connection,
            connections: self,
            _permit: permit,
        };
        match ran {
            Ok(()) => Ok(open),
            Err(error) => {
                // Refused by the database: the connection is sound, kept if ROLLBACK goes
                // through promptly. Anything else: closed.
                if error.as_db_error().is_some() {
                    let rollback = open.end("ROLLBACK");
                    let _ = tokio::time::timeout(Duration::from_secs(1), rollback).await;
                }
                Err(to_sqlx(error))
            }
        }
    }

    async fn connection(&self) -> Result<Connection, sqlx::Error> {
        let stale = |connection: &Connection| {
            connection.client.is_closed()
                || self
                    .idle_timeout
                    .is_some_and(|timeout| connection.last_used.elapsed() > timeout)
                || self
                    .max_lifetime
                    .is_some_and(|lifetime| connection.opened.elapsed() > lifetime)
        };
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(connection) if stale(&connection) => continue,
                Some(connection) => return Ok(connection),
                None => break,
            }
        }
        let (client, socket) = self
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(to_sqlx)?;
        metrics::counter!("db_connections_opened_total").increment(1);
        let socket = tokio::spawn(async move {
            if let Err(error) = socket.await {
                tracing::debug!(%error, "a write connection ended");
            }
        });
        Ok(Connection {
            client,
            socket: socket.abort_handle(),
            prepared: HashMap::new(),
            opened: Instant::now(),
            last_used: Instant::now(),
        })
    }
}

impl Connection {
    /// Prepares, all at once, the statements this connection has not prepared yet.
    async fn prepare(&mut self, statements: &[&Statement]) -> Result<(), tokio_postgres::Error> {
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<&Statement> = statements
            .iter()
            .copied()
            .filter(|s| !self.prepared.contains_key(s.sql()) && seen.insert(s.sql()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let types: Vec<_> = missing.iter().map(|s| s.types()).collect();
        let client = &self.client;
        let prepared = try_join_all(
            missing
                .iter()
                .zip(&types)
                .map(|(statement, types)| client.prepare_typed(statement.sql(), types)),
        )
        .await?;
        for (statement, prepared) in missing.into_iter().zip(prepared) {
            self.prepared.insert(statement.sql().to_owned(), prepared);
        }
        Ok(())
    }
}

/// A transaction whose statements all ran, not yet committed. Dropped (a timeout, a panic), it
/// closes its connection, which rolls back what it did not commit.
pub struct Open<'a> {
    connection: Connection,
    connections: &'a WriteConnections,
    _permit: SemaphorePermit<'a>,
}

impl Open<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await.map_err(to_sqlx)
    }

    /// Ends the transaction with `statement`; the connection goes back to the idle list only
    /// once that has succeeded.
    async fn end(self, statement: &str) -> Result<(), tokio_postgres::Error> {
        let Self {
            mut connection,
            connections,
            _permit,
        } = self;
        connection.client.batch_execute(statement).await?;
        connection.last_used = Instant::now();
        connections
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        Ok(())
    }
}

/// The password `options` connect with (from the URL, `PGPASSWORD` or the password file):
/// sqlx exposes it only through a URL, built here from a copy with a plain host and user so
/// that building it cannot fail.
fn password(options: &sqlx::postgres::PgConnectOptions) -> Option<Vec<u8>> {
    let url = options
        .clone()
        .host("localhost")
        .username("user")
        .to_url_lossy();
    let password = url.password()?;
    Some(percent_encoding::percent_decode_str(password).collect())
}

/// tokio-postgres's error as sqlx reports the same one: the database's own error with its code
/// and constraint; a connection lost, refused or closed as an I/O error (unavailable).
fn to_sqlx(error: tokio_postgres::Error) -> sqlx::Error {
    if error.as_db_error().is_some() {
        let db = error
            .into_source()
            .and_then(|source| source.downcast::<tokio_postgres::error::DbError>().ok())
            .expect("a database error's source is the DbError");
        return sqlx::Error::Database(Box::new(DbError(*db)));
    }
    let io = error.is_closed()
        || std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
    match io {
        true => sqlx::Error::Io(std::io::Error::other(error)),
        false => sqlx::Error::Protocol(error.to_string()),
    }
}

#[derive(Debug)]
struct DbError(tokio_postgres::error::DbError);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {}

impl sqlx::error::DatabaseError for DbError {
    fn message(&self) -> &str {
        self.0.message()
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.0.code().code()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn constraint(&self) -> Option<&str> {
        self.0.constraint()
    }

    fn table(&self) -> Option<&str> {
        self.0.table()
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.0.code().code() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
