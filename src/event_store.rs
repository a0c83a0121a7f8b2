//! The event store: postgres-es for reading, our own transaction for writing.
//!
//! cqrs-es runs queries after the commit and swallows their errors, so a crash between the
//! two loses read-model updates. Here `persist` inserts the events and applies the inline
//! projections in ONE transaction: the read model can never miss a committed event, and the
//! unique room code is enforced by a constraint inside that same transaction.

use aggregates::Room;
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::db::{self, Tx};
use crate::group_commit::{GroupCommit, Write};
use crate::idempotency::{self, KeyBusy, KeyUsed};
use crate::read_models::{self, StoredEvent};

pub type RoomStore = PersistedEventStore<EventRepository, Room>;

pub struct EventRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
    batches: GroupCommit,
}

impl EventRepository {
    /// Starts its writers on the current tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            batches: GroupCommit::start(Writer(pool.clone())),
            pool,
        }
    }

    /// An event store without snapshots (the 0.5 snapshot store double-applies events).
    /// Projections run inside `persist`, not as post-commit queries.
    pub fn into_store(self) -> RoomStore {
        PersistedEventStore::new_event_store(self)
    }

    /// A command with an idempotency key is written alone (its key is claimed first, in the
    /// same transaction); others go through group commit.
    async fn insert_with_projections(
        &self,
        events: &[SerializedEvent],
    ) -> Result<(), PersistenceError> {
        let Ok(key) = idempotency::CURRENT.try_with(Clone::clone) else {
            return self.batches.write(events.to_vec()).await;
        };
        let mut tx = Tx::begin(&self.pool).await.map_err(persistence_error)?;
        if !idempotency::claim(tx.conn(), &key)
            .await
            .map_err(persistence_error)?
        {
            return Err(PersistenceError::UnknownError(Box::new(KeyBusy)));
        }
        let events: Vec<&SerializedEvent> = events.iter().collect();
        write(tx, &events, Some(&key))
            .await
            .map_err(persistence_error)
    }
}

/// Writes batches of commands (group commit): each batch in one transaction of its own.
struct Writer(PgPool);

impl Write for Writer {
    async fn write(&self, events: &[&SerializedEvent]) -> Result<(), PersistenceError> {
        let tx = Tx::begin(&self.0).await.map_err(persistence_error)?;
        write(tx, events, None).await.map_err(persistence_error)
    }

    /// A constraint (a code taken, a conflict: class 23), a deadlock or a serialization failure
    /// (class 40) may concern one command of the batch only.
    fn worth_splitting(&self, error: &PersistenceError) -> bool {
        match error {
            PersistenceError::OptimisticLockError => true,
            PersistenceError::UnknownError(error) => match error.downcast_ref::<sqlx::Error>() {
                Some(sqlx::Error::Database(db)) => db
                    .code()
                    .is_some_and(|code| code.starts_with("23") || code.starts_with("40")),
                Some(_) => false,
                // What a constraint meant to the command (CodeTaken, KeyUsed, ...).
                None => true,
            },
            _ => false,
        }
    }

    fn waited_too_long(&self) -> PersistenceError {
        PersistenceError::ConnectionError(Box::new(sqlx::Error::PoolTimedOut))
    }
}

/// The events, the inline projections of them and the idempotency record, in `tx`, committed.
async fn write(
    mut tx: Tx,
    events: &[&SerializedEvent],
    key: Option<&idempotency::Idempotency>,
) -> Result<(), sqlx::Error> {
    insert_events(tx.conn(), events).await?;
    let stored = events
        .iter()
        .map(|e| StoredEvent {
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence as i64,
            payload: &e.payload,
        })
        .collect::<Vec<_>>();
    read_models::apply_all(tx.conn(), &stored).await?;
    if let (Some(key), Some(_)) = (key, events.first()) {
        idempotency::record(tx.conn(), key, &stored).await?;
    }
    tx.commit().await
}

/// One statement for all events of the commands, each room's in sequence order.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[&SerializedEvent],
) -> Result<(), sqlx::Error> {
    let mut types = Vec::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    let mut sequences = Vec::with_capacity(events.len());
    let mut event_types = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    for event in events {
        types.push(event.aggregate_type.as_str());
        ids.push(event.aggregate_id.as_str());
        sequences.push(event.sequence as i64);
        event_types.push(event.event_type.as_str());
        versions.push(event.event_version.as_str());
        payloads.push(&event.payload);
        metadata.push(&event.metadata);
    }
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])",
    )
    .bind(types)
    .bind(ids)
    .bind(sequences)
    .bind(event_types)
    .bind(versions)
    .bind(payloads)
    .bind(metadata)
    .execute(conn)
    .await
    .map(|_| ())
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match db::violated_unique_constraint(&error) {
        Some("events_pkey") => PersistenceError::OptimisticLockError,
        Some(idempotency::KEY_CONSTRAINT) => PersistenceError::UnknownError(Box::new(KeyUsed)),
        Some(constraint) => match read_models::violation(constraint) {
            Some(meaning) => PersistenceError::UnknownError(meaning),
            None => PersistenceError::UnknownError(Box::new(error)),
        },
        _ if db::is_unavailable(&error) => PersistenceError::ConnectionError(Box::new(error)),
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
        self.insert_with_projections(events).await
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
