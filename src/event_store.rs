//! The event store: postgres-es for reading, our own transaction for writing.
//!
//! cqrs-es runs queries after the commit and swallows their errors, so a crash between the
//! two loses read-model updates. Here `persist` inserts the events and applies the inline
//! projections in ONE transaction: the read model can never miss a committed event, and the
//! unique room code is enforced by a constraint inside that same transaction.

use std::sync::Arc;
use std::time::Duration;

use aggregates::Room;
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use crate::db::{self, Tx};
use crate::deadline::{self, Deadline};
use crate::group_commit::{GroupCommit, Write};
use crate::idempotency::{self, KeyBusy, KeyUsed};
use crate::read_models::{self, StoredEvent};
use crate::read_models::{Known, Rows};
use crate::sql;
use crate::write_connections::{self, WriteConnections};

pub struct EventRepository {
    writer: Writer,
    reads: PostgresEventRepository,
    batches: GroupCommit,
}

/// The longest a write waits for a lock held by another transaction (`WRITE_LOCK_TIMEOUT`).
pub const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

impl EventRepository {
    /// Starts its writers on the current tokio runtime; their lock waits end after
    /// `lock_timeout`.
    pub fn new(pool: PgPool, lock_timeout: Duration) -> Self {
        let writer = Writer {
            connections: Arc::new(WriteConnections::like(&pool)),
            pool,
            lock_timeout,
        };
        Self {
            reads: PostgresEventRepository::new(writer.pool.clone()),
            batches: GroupCommit::start(writer.clone()),
            writer,
        }
    }

    /// The repository as a cqrs-es event store (reads through postgres-es, no snapshots: the
    /// 0.5 snapshot store double-applies events). Commands append with [`Self::append`].
    pub fn into_store(self) -> PersistedEventStore<Self, Room> {
        PersistedEventStore::new_event_store(self)
    }

    /// Appends events and applies the inline projections to them, in one transaction (cqrs-es's
    /// `PersistedEventStore` would run projections after the commit). A command with an
    /// idempotency key is written alone (its key is claimed first, in the same transaction);
    /// others go through group commit.
    ///
    /// `known`: the states of the rooms the events continue, as the commands decided against
    /// them (the write then need not read them). `deadlines`: those of the requests whose
    /// commands made the events; a writer takes the events only before every one of them (and
    /// claims them all for the write), else they are refused unwritten.
    pub async fn append(
        &self,
        events: &[SerializedEvent],
        known: Known,
        deadlines: Vec<Deadline>,
    ) -> Result<(), PersistenceError> {
        match idempotency::CURRENT.try_with(Clone::clone) {
            Ok(key) => claimed(&deadlines, self.insert_keyed(events, &key)).await,
            Err(_) => self.batches.write(events.to_vec(), known, deadlines).await,
        }
    }

    /// Appends in a transaction of its own, never batched with other commands: what a plain
    /// cqrs-es composition does. Only to measure what batching saves (`ROOM_BATCHES=false`).
    pub async fn append_alone(
        &self,
        events: &[SerializedEvent],
        known: Known,
        deadlines: Vec<Deadline>,
    ) -> Result<(), PersistenceError> {
        let events: Vec<&SerializedEvent> = events.iter().collect();
        claimed(&deadlines, self.writer.write(&events, &known)).await
    }

    async fn insert_keyed(
        &self,
        events: &[SerializedEvent],
        key: &idempotency::Idempotency,
    ) -> Result<(), PersistenceError> {
        let events: Vec<&SerializedEvent> = events.iter().collect();
        write(&self.writer, &events, &Known::default(), Some(key)).await
    }
}

/// `write` with `deadlines` claimed (all or none) until its outcome is known.
async fn claimed(
    deadlines: &[Deadline],
    write: impl std::future::Future<Output = Result<(), PersistenceError>>,
) -> Result<(), PersistenceError> {
    deadline::begin_writes(deadlines)
        .map_err(|expired| PersistenceError::UnknownError(Box::new(expired)))?;
    let written = write.await;
    deadline::end_writes(deadlines, crate::group_commit::rolled_back(&written));
    written
}

/// Writes batches of commands (group commit): each batch in one transaction of its own.
#[derive(Clone)]
struct Writer {
    pool: PgPool,
    /// For the writes that read nothing: one pipeline, then COMMIT.
    connections: Arc<WriteConnections>,
    lock_timeout: Duration,
}

impl Write for Writer {
    async fn write(
        &self,
        events: &[&SerializedEvent],
        known: &Known,
    ) -> Result<(), PersistenceError> {
        write(self, events, known, None).await
    }

    /// Any error the database raised before COMMIT may concern one command of the batch only
    /// (a code taken, a conflict, a room whose rows another transaction holds, a row that does
    /// not decode): the batch was rolled back, and its commands are written one by one. Not
    /// the database going away or stalling: that is every command's answer.
    fn worth_splitting(&self, error: &PersistenceError) -> bool {
        match error {
            PersistenceError::ConnectionError(error) => error
                .downcast_ref::<sqlx::Error>()
                .is_some_and(db::is_lock_timeout),
            _ => true,
        }
    }

    fn waited_too_long(&self) -> PersistenceError {
        PersistenceError::ConnectionError(Box::new(sqlx::Error::PoolTimedOut))
    }
}

/// The events, the inline projections of them and the idempotency record (with `key`, claimed
/// first), in one transaction, committed.
///
/// The events are inserted first (the room's sequence is taken before anything else is
/// written, as the relay's order needs: docs/architecture.md). The rows the projections
/// continue are handed over by the commands where they can (a room batch's state, decided
/// against; a create continues nothing: `event_store_writes_total{rows="known"}`), and read
/// and locked in the transaction otherwise (a room's view, which commands do not hold:
/// `rows="read"`). A write that reads nothing and claims no key sends all its statements at
/// once ([`WriteConnections`]); the others wait for each answer before the next statement.
///
/// A database that stops answering (a network stall, a frozen host) must not hold a write, and
/// the requests waiting for its outcome, for as long as TCP takes to notice: past its lock
/// waits and [`WRITE_TIMEOUT`] more the connection is closed, which rolls the transaction back
/// unless its COMMIT was already sent (then, as after any connection lost during COMMIT, the
/// outcome is unknown).
async fn write(
    writer: &Writer,
    events: &[&SerializedEvent],
    known: &Known,
    key: Option<&idempotency::Idempotency>,
) -> Result<(), PersistenceError> {
    let bound = writer.lock_timeout + WRITE_TIMEOUT;
    let stored = events
        .iter()
        .map(|e| StoredEvent {
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence as i64,
            payload: &e.payload,
        })
        .collect::<Vec<_>>();
    let statements = async {
        let insert = insert_events(events);
        let handed_over = read_models::apply_all(Rows::Known(known), &stored).await?;
        let rows = if handed_over.is_some() {
            "known"
        } else {
            "read"
        };
        metrics::counter!("event_store_writes_total", "rows" => rows).increment(1);
        if let (Some(projections), None) = (&handed_over, key) {
            let statements: Vec<&sql::Statement> =
                std::iter::once(&insert).chain(projections).collect();
            let open = writer
                .connections
                .begin(writer.lock_timeout, &statements)
                .await?;
            return Ok(Open::Pipelined(Box::new(open)));
        }
        let mut tx = Tx::begin(&writer.pool, writer.lock_timeout).await?;
        if let Some(key) = key {
            if !idempotency::claim(tx.conn(), key).await? {
                tx.rollback().await;
                return Err(WriteError::KeyBusy);
            }
        }
        let written = async {
            insert.execute(tx.conn()).await?;
            let projections = match handed_over {
                Some(projections) => projections,
                None => read_models::apply_all(Rows::Read(tx.conn()), &stored)
                    .await?
                    .expect("rows read are known"),
            };
            sql::execute_all(tx.conn(), &projections).await?;
            if let Some(key) = key {
                idempotency::record(tx.conn(), key, &stored).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        match written.await {
            Ok(()) => Ok(Open::Tx(tx)),
            Err(error) => {
                if !db::is_unavailable(&error) {
                    tx.rollback().await;
                }
                Err(error.into())
            }
        }
    };
    let open = match tokio::time::timeout(bound, statements).await {
        Ok(Ok(open)) => open,
        Ok(Err(WriteError::KeyBusy)) => {
            return Err(PersistenceError::UnknownError(Box::new(KeyBusy)))
        }
        Ok(Err(WriteError::Database(error))) => return Err(persistence_error(error)),
        Err(_) => return Err(persistence_error(stalled("writing", bound))),
    };
    // Whatever goes wrong from here may have happened after the server committed: never a
    // reason to write the batch's commands again one by one (an unavailability, not split).
    let commit = async {
        match open {
            Open::Tx(tx) => tx.commit().await,
            Open::Pipelined(open) => open.commit().await,
        }
    };
    let committed = match tokio::time::timeout(WRITE_TIMEOUT, commit).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if db::is_unavailable(&error) => Err(error),
        Ok(Err(error)) => Err(sqlx::Error::Io(std::io::Error::other(format!(
            "COMMIT failed, the outcome is unknown: {error}"
        )))),
        Err(_) => Err(stalled("committing", WRITE_TIMEOUT)),
    };
    committed.map_err(persistence_error)
}

/// A write's transaction, its statements run, not yet committed.
enum Open<'a> {
    Tx(Tx),
    Pipelined(Box<write_connections::Open<'a>>),
}

/// Why a write's statements did not all run.
enum WriteError {
    Database(sqlx::Error),
    /// The idempotency key is held by a request still running.
    KeyBusy,
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// The longest a write's statements, and then its COMMIT, may take. Lock waits end sooner
/// ([`WRITE_LOCK_TIMEOUT`]); this bounds a database that stopped answering.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

fn stalled(doing: &str, after: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the database did not answer within {after:?} while {doing}"),
    ))
}

/// One statement for all events of the commands, each room's in sequence order.
fn insert_events(events: &[&SerializedEvent]) -> sql::Statement {
    let column = |value: fn(&SerializedEvent) -> String| -> Vec<String> {
        events.iter().map(|event| value(event)).collect()
    };
    sql::Statement::new(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])",
    )
    .arg(column(|e| e.aggregate_type.clone()))
    .arg(column(|e| e.aggregate_id.clone()))
    .arg(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
    .arg(column(|e| e.event_type.clone()))
    .arg(column(|e| e.event_version.clone()))
    .arg(sql::Arg::JsonTexts(column(|e| e.payload.to_string())))
    .arg(sql::Arg::JsonTexts(column(|e| e.metadata.to_string())))
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match db::violated_unique_constraint(&error) {
        Some("events_pkey") => PersistenceError::OptimisticLockError,
        Some(idempotency::KEY_CONSTRAINT) => PersistenceError::UnknownError(Box::new(KeyUsed)),
        Some(constraint) => match read_models::violation(constraint) {
            Some(meaning) => PersistenceError::UnknownError(meaning),
            None => PersistenceError::UnknownError(Box::new(error)),
        },
        // A lock held past the lock timeout: not written, and worth retrying soon (503).
        _ if db::is_unavailable(&error) || db::is_lock_timeout(&error) => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.append(
            events,
            Known::default(),
            Deadline::current().into_iter().collect(),
        )
        .await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}
