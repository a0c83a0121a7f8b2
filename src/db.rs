//! The PostgreSQL pool, migrations, and what a database error means to a client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a request waits for a pooled connection before the database counts as down.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// When a pooled connection last came back (milliseconds since the Unix epoch): the pool was
/// making progress then.
static LAST_RELEASE_MS: AtomicU64 = AtomicU64::new(0);

pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // Each is a server process forked: a count that climbs with the traffic means
        // connections are being thrown away instead of reused.
        .after_connect(|_, _| {
            Box::pin(async {
                metrics::counter!("db_connections_opened_total").increment(1);
                Ok(())
            })
        })
        .after_release(|_, _| {
            LAST_RELEASE_MS.store(unix_ms(), Ordering::Relaxed);
            Box::pin(async { Ok(true) })
        })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long ago a pooled connection last came back.
pub fn since_last_release() -> Duration {
    Duration::from_millis(unix_ms().saturating_sub(LAST_RELEASE_MS.load(Ordering::Relaxed)))
}

/// The last verdict of [`saturated`]'s probe, and when it was reached (one per process: the
/// service has one pool).
static PROBED: std::sync::Mutex<Option<(std::time::Instant, bool)>> = std::sync::Mutex::new(None);
/// A probe is under way: others take the last verdict rather than connect too.
static PROBING: AtomicBool = AtomicBool::new(false);
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// True when waiting for a connection means "busy", not "down": every connection of the pool
/// is taken, and the database accepts a new connection (tried outside the pool, by one caller
/// at a time, at most once a second, within a second). When the database is down, pending
/// attempts to connect also count as taken connections, so the pool's numbers alone cannot
/// tell.
pub async fn saturated(pool: &PgPool) -> bool {
    let full = pool.size() >= pool.options().get_max_connections() && pool.num_idle() == 0;
    if !full {
        return false;
    }
    let last = *PROBED.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = last.is_some_and(|(at, _)| at.elapsed() < PROBE_EVERY);
    if fresh || PROBING.swap(true, Ordering::AcqRel) {
        return last.is_some_and(|(_, reachable)| reachable);
    }
    // Cleared however this ends, a caller that gives up included.
    struct Probing;
    impl Drop for Probing {
        fn drop(&mut self) {
            PROBING.store(false, Ordering::Release);
        }
    }
    let _probing = Probing;
    let options = pool.connect_options();
    let reachable =
        match tokio::time::timeout(PROBE_EVERY, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                true
            }
            _ => false,
        };
    *PROBED.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((std::time::Instant::now(), reachable));
    reachable
}

/// BEGIN of a write whose lock waits end after `lock_timeout`, as one simple-protocol query.
pub fn begin(lock_timeout: Duration) -> String {
    format!(
        "BEGIN; SET LOCAL lock_timeout = {}",
        lock_timeout.as_millis().max(1)
    )
}

/// A transaction that never returns its connection to the pool while still open.
///
/// sqlx 0.8 `Pool::begin` is not cancel-safe on PostgreSQL (sqlx issues #4385, #4393): a
/// future dropped while BEGIN is in flight returns the connection to the pool inside an open
/// transaction that sqlx does not track, and the next borrower's statements run inside it.
/// Here BEGIN and COMMIT are plain statements on a connection we hold, and until COMMIT has
/// completed, dropping the `Tx` (a cancelled future, an error, a panic) closes the connection
/// instead of pooling it, so the server rolls the transaction back. Commands also run in tasks
/// of their own, which nothing cancels: this is the second line, and it costs no round trip.
pub struct Tx {
    conn: Option<PoolConnection<Postgres>>,
}

impl Tx {
    /// Begins a write whose lock waits end after `lock_timeout` (`WRITE_LOCK_TIMEOUT`): a
    /// transaction that holds a room's rows and does not finish (an instance frozen mid-write)
    /// must not stall every write queued behind it.
    pub async fn begin(pool: &PgPool, lock_timeout: Duration) -> Result<Self, sqlx::Error> {
        let mut tx = Self {
            conn: Some(pool.acquire().await?),
        };
        // One round trip: the simple protocol takes both statements at once.
        tx.conn().execute(begin(lock_timeout).as_str()).await?;
        Ok(tx)
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a Tx holds its connection until commit")
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.conn().execute("COMMIT").await?;
        // Committed: the connection is clean and may go back to the pool.
        self.conn.take();
        Ok(())
    }

    /// Rolls back and returns the connection to the pool (a conflict or a refusal is common:
    /// closing would cost a new backend each time); closes it if ROLLBACK does not succeed
    /// promptly.
    pub async fn rollback(mut self) {
        let rollback = self.conn().execute("ROLLBACK");
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), rollback).await {
            self.conn.take();
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

/// Server-side probes of a session: TCP keepalives (10 s idle, every 5 s, 3 tries) and a
/// 30 s bound on unacknowledged data, so that a vanished or frozen client's session ends within
/// a minute, not after the kernel's two hours.
pub const SESSION_KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

/// Connects lazily: the service starts, and answers 503, while the database is down.
///
/// The server is told to end the sessions of an instance that vanished or froze, so that what
/// they hold (row locks of a transaction in flight, above all) is released within seconds, not
/// after the kernel's two hours: TCP keepalives, a timeout on unacknowledged data, and an end
/// to a transaction left idle.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .application_name("neuronmeet")
        .options(SESSION_KEEPALIVES)
        .options([("idle_in_transaction_session_timeout", "10000")]);
    Ok(pool_options(max_connections).connect_lazy_with(options))
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

/// True when a lock wait ended at `lock_timeout`.
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// True when `error` or one of its causes is the pool's acquire timeout.
pub fn is_pool_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if matches!(error.downcast_ref(), Some(sqlx::Error::PoolTimedOut)) {
            return true;
        }
        next = error.source();
    }
    false
}

/// Name of the constraint a unique violation broke, if the error is one.
pub fn violated_unique_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}
