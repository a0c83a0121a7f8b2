//! Rebuilding a projection from the log while the service serves.
//!
//! A rebuild of one projection:
//! 1. takes that projection's advisory lock on a session of its own, so there is one rebuild of
//!    it at a time; a second one is told who runs the first, and changes nothing;
//! 2. drops the copy a killed run may have left, and creates a fresh copy of the live table's
//!    definition: columns, defaults, checks, every other constraint and index (under temporary
//!    names until the swap), comments, storage options, owner and grants;
//! 3. fills the copy from the log in commit order, in batches, reporting progress;
//! 4. swaps it in, in one transaction: the live table's lock is requested with a short
//!    `lock_timeout`, the last events are applied, the copy takes the live table's name and its
//!    constraints and indexes take their names. While something holds the live table (a long
//!    reader, pg_dump), an attempt gives up within `lock_timeout`, so requests queued behind it
//!    wait no longer than that; the rebuild reports who blocks it, catches up, and tries again.
//!
//! Killed at any point, it leaves the live table as it was: the swap is one transaction, and
//! the next run drops the leftover copy.
//!
//! Only the live table is locked for the swap, not the log: a command that appended its events
//! but had not yet written the table waits for the swap, then writes the new table itself.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

use crate::event_log::{self, LoggedEvent, Position, Settled};
use crate::read_models::{self, Projection, Rows, StoredEvent};

/// First key of the rebuild advisory locks (the second is the table's hash): "NMRB".
const REBUILD_LOCK: i32 = 0x4e4d_5242;
/// Most events a swap applies while it holds the table (about 10 ms of work); with more
/// waiting behind an older transaction, it waits for that transaction instead.
const SWAP_BACKLOG: i64 = 1000;
/// Longest table name a rebuild takes: its copy is `<table>_rebuild`, within PostgreSQL's 63.
const MAX_TABLE_NAME: usize = 55;
const BLOCKER_COLUMNS: &str = "a.pid, coalesce(a.application_name, '') AS application_name, \
    coalesce(a.state, '') AS state, \
    coalesce(EXTRACT(EPOCH FROM now() - a.xact_start)::float8, 0) AS transaction_age, \
    left(coalesce(a.query, ''), 200) AS query";

#[derive(Debug, Clone)]
pub struct Options {
    /// Events read and applied per batch.
    pub batch_size: i64,
    /// Longest a swap attempt waits for the live table; requests queue behind it that long.
    pub lock_timeout: Duration,
    /// Pause between swap attempts (with jitter), during which the API runs unhindered.
    pub retry_interval: Duration,
    /// Stop trying to swap after this long blocked; the live table is left as it is.
    pub give_up_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            lock_timeout: Duration::from_millis(200),
            retry_interval: Duration::from_secs(1),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// What a rebuild tells its operator as it goes.
#[derive(Debug)]
pub enum Report<'a> {
    /// A copy left by an interrupted rebuild was dropped.
    CleanedUp { table: &'a str },
    /// About once a second while the log is read, and once at the end.
    Progress(&'a Progress),
    /// A swap attempt timed out; these sessions hold the live table.
    Waiting(&'a [Blocker]),
}

/// A session holding a lock on the live table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    /// Seconds since its transaction began.
    pub transaction_age: f64,
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}, {}, transaction open {:.1}s): {}",
            self.pid,
            or_unknown(&self.application_name),
            self.state,
            self.transaction_age,
            self.query
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("unknown projection {name:?}; known: {known}")]
    UnknownProjection { name: String, known: String },
    #[error(
        "a rebuild of {projection} is already running (pid {pid}, {application}, from {client}, \
         started {started}); wait for it to finish, or stop it"
    )]
    AlreadyRunning {
        projection: String,
        pid: i32,
        application: String,
        client: String,
        started: String,
    },
    #[error("{table} has {what}, which a rebuild cannot carry over to the new table")]
    Unsupported { table: String, what: String },
    #[error(
        "gave up swapping in the rebuilt {table} after {waited:.0}s of lock waits; the live \
         table is unchanged. Last blocked by: {blockers}"
    )]
    GaveUp {
        table: String,
        waited: f64,
        blockers: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub projection: &'static str,
    pub events: u64,
    pub rows: i64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub position: Position,
    pub events: u64,
    /// Events in the log when the rebuild started (more may arrive).
    pub total: u64,
    started: Instant,
}

impl Progress {
    fn advance(&mut self, batch: &[LoggedEvent]) {
        self.events += batch.len() as u64;
        if let Some(last) = batch.last() {
            self.position = last.position.clone();
        }
    }

    pub fn rate(&self) -> f64 {
        self.events as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn eta(&self) -> Duration {
        let left = self.total.saturating_sub(self.events) as f64;
        Duration::from_secs_f64(left / self.rate().max(1.0))
    }
}

/// Rebuilds the projection called `name` from the whole log.
pub async fn run(
    pool: &PgPool,
    name: &str,
    options: &Options,
    mut report: impl FnMut(Report<'_>),
) -> Result<Summary, ReplayError> {
    let projection = read_models::find(name).ok_or_else(|| ReplayError::UnknownProjection {
        name: name.to_owned(),
        known: read_models::names().join(", "),
    })?;
    // A session of its own: the advisory lock lives exactly as long as this rebuild.
    let connect = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name("neuronmeet-replay");
    let mut rebuild = Rebuild {
        projection,
        fresh: format!("{}_rebuild", projection.table()),
        options: options.clone(),
        session: PgConnection::connect_with(&connect).await?,
    };
    let result = rebuild.run(&mut report).await;
    // Closing the session releases the lock; a failed run's copy is dropped by the next run.
    let _ = rebuild.session.close().await;
    result
}

struct Rebuild {
    projection: &'static dyn Projection,
    fresh: String,
    options: Options,
    session: PgConnection,
}

impl Rebuild {
    async fn run(&mut self, report: &mut impl FnMut(Report<'_>)) -> Result<Summary, ReplayError> {
        let started = Instant::now();
        self.lock().await?;
        self.refuse_unsupported().await?;
        if self.drop_fresh().await? {
            report(Report::CleanedUp { table: &self.fresh });
        }
        let renames = self.create_fresh().await?;

        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut self.session)
            .await?;
        let mut progress = Progress {
            position: Position::start(),
            events: 0,
            total: total as u64,
            started,
        };
        self.catch_up(&mut progress, report).await?;
        self.swap(&renames, &mut progress, report).await?;
        report(Report::Progress(&progress));

        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}",
            ident(self.projection.table())
        ))
        .fetch_one(&mut self.session)
        .await?;
        Ok(Summary {
            projection: self.projection.name(),
            events: progress.events,
            rows,
            elapsed: started.elapsed(),
        })
    }

    /// One rebuild of a projection at a time.
    async fn lock(&mut self) -> Result<(), ReplayError> {
        let table = self.projection.table();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(REBUILD_LOCK)
            .bind(table)
            .fetch_one(&mut self.session)
            .await?;
        if locked {
            return Ok(());
        }
        let holder: Option<(i32, String, String, String)> = sqlx::query_as(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'a local socket'), \
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                AND l.classid = $1::oid AND l.objid = hashtext($2)::oid \
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(i64::from(REBUILD_LOCK))
        .bind(table)
        .fetch_optional(&mut self.session)
        .await?;
        let (pid, application, client, started) =
            holder.unwrap_or((0, String::new(), "?".into(), "?".into()));
        Err(ReplayError::AlreadyRunning {
            projection: self.projection.name().into(),
            pid,
            application: or_unknown(&application).into(),
            client,
            started,
        })
    }

    /// What the copy could not carry over, or the swap could not drop, is refused up front.
    async fn refuse_unsupported(&mut self) -> Result<(), ReplayError> {
        let table = self.projection.table();
        if table.len() > MAX_TABLE_NAME {
            return Err(ReplayError::Unsupported {
                table: table.into(),
                what: format!("a name longer than {MAX_TABLE_NAME} bytes"),
            });
        }
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT what FROM (VALUES \
               ('triggers', EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal)), \
               ('row-level security', (SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass)), \
               ('policies', EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = $1::regclass)), \
               ('identity columns', EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attidentity <> '')), \
               ('publication membership', EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = $1::regclass)), \
               ('inheritance or partitions', EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = $1::regclass OR inhparent = $1::regclass)), \
               ('foreign keys from other tables', EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = $1::regclass AND conrelid <> $1::regclass)), \
               ('views that depend on it', EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
                                                   WHERE d.refobjid = $1::regclass AND r.ev_class <> $1::regclass)), \
               ('functions that depend on it', EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = $1::regclass \
                                                       AND d.classid = 'pg_proc'::regclass)), \
               ('sequences it owns (serial columns)', EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class c ON c.oid = d.objid \
                                                              WHERE d.refobjid = $1::regclass AND d.classid = 'pg_class'::regclass \
                                                                AND c.relkind = 'S')) \
             ) AS t(what, present) WHERE present",
        )
        .bind(table)
        .fetch_all(&mut self.session)
        .await?;
        if found.is_empty() {
            return Ok(());
        }
        Err(ReplayError::Unsupported {
            table: table.into(),
            what: found.join(", "),
        })
    }

    /// Drops a copy left by an interrupted run; whether there was one. Only a holder of the
    /// projection's rebuild lock creates the copy, so one found now belongs to a dead run.
    async fn drop_fresh(&mut self) -> Result<bool, sqlx::Error> {
        let existed: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.fresh)
            .fetch_one(&mut self.session)
            .await?;
        if existed {
            run_sql(
                &mut self.session,
                &format!("DROP TABLE {}", ident(&self.fresh)),
            )
            .await?;
        }
        Ok(existed)
    }

    /// Creates the copy with everything the live table has; returns the renames that give its
    /// constraints and indexes the live names once the live table is gone.
    async fn create_fresh(&mut self) -> Result<Vec<Rename>, sqlx::Error> {
        let table = self.projection.table();
        let fresh = ident(&self.fresh);
        let mut ddl = vec![format!(
            "CREATE TABLE {fresh} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS \
             INCLUDING STATISTICS)",
            ident(table)
        )];
        let mut renames = Vec::new();

        // Constraints that LIKE does not copy (checks it does, with their names and comments).
        let constraints: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint') \
               FROM pg_constraint WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f') \
              ORDER BY conname",
        )
        .bind(table)
        .fetch_all(&mut self.session)
        .await?;
        for (name, definition, comment) in constraints {
            let temporary = self.temporary_name(renames.len());
            ddl.push(format!(
                "ALTER TABLE {fresh} ADD CONSTRAINT {} {definition}",
                ident(&temporary)
            ));
            if let Some(comment) = comment {
                ddl.push(format!(
                    "COMMENT ON CONSTRAINT {} ON {fresh} IS {}",
                    ident(&temporary),
                    literal(&comment)
                ));
            }
            renames.push(Rename::Constraint {
                temporary,
                name: name.clone(),
            });
        }

        // Indexes of their own (those behind constraints came with them).
        let indexes: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class') \
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
              WHERE i.indrelid = $1::regclass \
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) \
              ORDER BY c.relname",
        )
        .bind(table)
        .fetch_all(&mut self.session)
        .await?;
        for (name, definition, comment) in indexes {
            let temporary = self.temporary_name(renames.len());
            // "CREATE [UNIQUE] INDEX name ON table USING method (...) [INCLUDE ...] [WITH ...]
            // [WHERE ...]": keep everything from USING on.
            let unique = if definition.starts_with("CREATE UNIQUE") {
                "UNIQUE "
            } else {
                ""
            };
            let using = definition
                .find(" USING ")
                .map_or(definition.as_str(), |at| &definition[at + 1..]);
            ddl.push(format!(
                "CREATE {unique}INDEX {} ON {fresh} {using}",
                ident(&temporary)
            ));
            if let Some(comment) = comment {
                ddl.push(format!(
                    "COMMENT ON INDEX {} IS {}",
                    ident(&temporary),
                    literal(&comment)
                ));
            }
            renames.push(Rename::Index { temporary, name });
        }

        // The table's comment, storage parameters, grants and owner, in that order (grants are
        // made by us, then handed over with the table).
        let (comment, options, owner, is_owner): (Option<String>, Option<String>, String, bool) =
            sqlx::query_as(
                "SELECT obj_description(oid, 'pg_class'), array_to_string(reloptions, ', '), \
                        pg_get_userbyid(relowner)::text, relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                   FROM pg_class WHERE oid = $1::regclass",
            )
            .bind(table)
            .fetch_one(&mut self.session)
            .await?;
        if let Some(comment) = comment {
            ddl.push(format!("COMMENT ON TABLE {fresh} IS {}", literal(&comment)));
        }
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            ddl.push(format!("ALTER TABLE {fresh} SET ({options})"));
        }
        let grants: Vec<(Option<String>, String, String, bool)> = sqlx::query_as(
            "SELECT NULL::text, CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END, \
                    g.privilege_type, g.is_grantable \
               FROM pg_class c, aclexplode(c.relacl) g WHERE c.oid = $1::regclass \
             UNION ALL \
             SELECT a.attname::text, CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END, \
                    g.privilege_type, g.is_grantable \
               FROM pg_attribute a, aclexplode(a.attacl) g \
              WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(table)
        .fetch_all(&mut self.session)
        .await?;
        for (column, grantee, privilege, grantable) in grants {
            let column = column
                .map(|c| format!(" ({})", ident(&c)))
                .unwrap_or_default();
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            ddl.push(format!(
                "GRANT {privilege}{column} ON {fresh} TO {grantee}{option}"
            ));
        }
        if !is_owner {
            ddl.push(format!("ALTER TABLE {fresh} OWNER TO {}", ident(&owner)));
        }

        let mut tx = self.session.begin().await?;
        for statement in ddl {
            run_sql(&mut tx, &statement).await?;
        }
        tx.commit().await?;
        Ok(renames)
    }

    /// A name for the copy's n-th constraint or index until the swap: short, and distinct from
    /// any other table's.
    fn temporary_name(&self, n: usize) -> String {
        // FNV-1a: stable across runs and builds, unlike the standard library's hasher.
        let hash = self
            .projection
            .table()
            .bytes()
            .fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        format!("nmrb_{hash:08x}_{n}")
    }

    /// Applies settled events to the copy until it is within a batch of the log's end.
    async fn catch_up(
        &mut self,
        progress: &mut Progress,
        report: &mut impl FnMut(Report<'_>),
    ) -> Result<(), sqlx::Error> {
        let mut last_report = Instant::now();
        loop {
            let batch = event_log::read_after(
                &mut self.session,
                &progress.position,
                self.options.batch_size,
                Settled::Only,
            )
            .await?;
            self.apply(&batch).await?;
            progress.advance(&batch);
            if last_report.elapsed() >= Duration::from_secs(1) {
                report(Report::Progress(progress));
                last_report = Instant::now();
            }
            if (batch.len() as i64) < self.options.batch_size {
                return Ok(());
            }
        }
    }

    /// Swaps the copy in, retrying while the tables are held by others, or while more events
    /// than [`SWAP_BACKLOG`] wait for older transactions to end (they would all be applied
    /// under the lock).
    async fn swap(
        &mut self,
        renames: &[Rename],
        progress: &mut Progress,
        report: &mut impl FnMut(Report<'_>),
    ) -> Result<(), ReplayError> {
        let mut blocked_since: Option<Instant> = None;
        loop {
            let blockers = match self.held_back_by(progress).await? {
                Some(holders) => holders,
                None => match self.try_swap(renames, progress).await {
                    Ok(swapped) => {
                        *progress = swapped;
                        return Ok(());
                    }
                    Err(error) => {
                        // Nothing of the attempt remains: the copy and the progress are as
                        // they were before it.
                        let _ = run_sql(&mut self.session, "ROLLBACK").await;
                        if !crate::db::is_lock_timeout(&error) {
                            return Err(error.into());
                        }
                        self.blockers().await?
                    }
                },
            };
            report(Report::Waiting(&blockers));
            let since = *blocked_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.options.give_up_after {
                return Err(ReplayError::GaveUp {
                    table: self.projection.table().into(),
                    waited: since.elapsed().as_secs_f64(),
                    blockers: blockers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            let jitter = 0.5 + rand::random::<f64>();
            tokio::time::sleep(self.options.retry_interval.mul_f64(jitter)).await;
            self.catch_up(progress, report).await?;
        }
    }

    /// One attempt, in one transaction; returns the progress it made, which counts only once
    /// the transaction has committed.
    async fn try_swap(
        &mut self,
        renames: &[Rename],
        progress: &Progress,
    ) -> Result<Progress, sqlx::Error> {
        let mut progress = progress.clone();
        let table = ident(self.projection.table());
        let fresh = ident(&self.fresh);
        let lock_timeout = self.options.lock_timeout.as_millis().max(1);
        run_sql(
            &mut self.session,
            &format!(
                "BEGIN; SET LOCAL lock_timeout = {lock_timeout}; \
                 LOCK TABLE {fresh}, {table} IN ACCESS EXCLUSIVE MODE"
            ),
        )
        .await?;
        // Every command that wrote the live table has committed; any still to write it waits
        // for this transaction. What they committed is visible now, settled or not.
        loop {
            let batch = event_log::read_after(
                &mut self.session,
                &progress.position,
                self.options.batch_size,
                Settled::Any,
            )
            .await?;
            if batch.is_empty() {
                break;
            }
            self.apply(&batch).await?;
            progress.advance(&batch);
        }
        let mut ddl = format!("DROP TABLE {table}; ALTER TABLE {fresh} RENAME TO {table};");
        for rename in renames {
            ddl.push_str(&rename.sql(&table));
        }
        ddl.push_str("COMMIT");
        run_sql(&mut self.session, &ddl).await?;
        Ok(progress)
    }

    /// The oldest transactions (of any database) that hold back more than [`SWAP_BACKLOG`]
    /// committed events, or `None` when the rest of the log is short enough to apply under the
    /// swap's lock.
    async fn held_back_by(
        &mut self,
        progress: &Progress,
    ) -> Result<Option<Vec<Blocker>>, sqlx::Error> {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM events \
              WHERE (transaction_id, global_position) > ($1::text::xid8, $2) LIMIT $3) AS t",
        )
        .bind(&progress.position.transaction_id)
        .bind(progress.position.global_position)
        .bind(SWAP_BACKLOG + 1)
        .fetch_one(&mut self.session)
        .await?;
        if pending <= SWAP_BACKLOG {
            return Ok(None);
        }
        sqlx::query_as(&format!(
            "SELECT {BLOCKER_COLUMNS} FROM pg_stat_activity a \
              WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid() \
              ORDER BY a.xact_start LIMIT 5"
        ))
        .fetch_all(&mut self.session)
        .await
        .map(Some)
    }

    /// The sessions holding a lock on the live table or the copy, oldest transaction first.
    async fn blockers(&mut self) -> Result<Vec<Blocker>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {BLOCKER_COLUMNS} FROM pg_stat_activity a \
              WHERE a.pid IN (SELECT l.pid FROM pg_locks l \
                               WHERE l.relation IN ($1::regclass, $2::regclass) AND l.granted \
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
                AND a.pid <> pg_backend_pid() \
              ORDER BY a.xact_start"
        ))
        .bind(self.projection.table())
        .bind(&self.fresh)
        .fetch_all(&mut self.session)
        .await
    }

    async fn apply(&mut self, batch: &[LoggedEvent]) -> Result<(), sqlx::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let stored: Vec<StoredEvent<'_>> = batch
            .iter()
            .map(|e| StoredEvent {
                aggregate_type: &e.aggregate_type,
                aggregate_id: &e.aggregate_id,
                sequence: e.sequence,
                payload: &e.payload,
            })
            .collect();
        let statements = self
            .projection
            .apply(Rows::Read(&mut self.session), &self.fresh, &stored)
            .await?
            .expect("rows read are known");
        crate::sql::execute_all(&mut self.session, &statements).await
    }
}

/// A temporary name in the copy that becomes the live name at the swap.
enum Rename {
    Constraint { temporary: String, name: String },
    Index { temporary: String, name: String },
}

impl Rename {
    fn sql(&self, table: &str) -> String {
        match self {
            Self::Constraint { temporary, name } => format!(
                "ALTER TABLE {table} RENAME CONSTRAINT {} TO {};",
                ident(temporary),
                ident(name)
            ),
            Self::Index { temporary, name } => {
                format!(
                    "ALTER INDEX {} RENAME TO {};",
                    ident(temporary),
                    ident(name)
                )
            }
        }
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn or_unknown(name: &str) -> &str {
    if name.is_empty() {
        "unnamed client"
    } else {
        name
    }
}

/// Runs one or more statements (the simple query protocol: nothing is prepared).
async fn run_sql(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await.map(|_| ())
}
