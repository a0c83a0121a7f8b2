//! Executing room commands: fresh ids and code draws for new rooms, load-decide-append with
//! conflict retries for existing ones, and no cancellation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aggregates::{CreateRoom, Host, Room, RoomCommand, RoomError, RoomEvent};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use projections::RoomView;

use crate::codes::CodeGenerator;
use crate::db;
use crate::deadline::{self, Deadline, Expired};
use crate::event_store::{EventRepository, RoomStore};
use crate::idempotency::{self, Idempotency, KeyBusy, KeyUsed};
use crate::read_models::room_states;
use crate::read_models::rooms::CodeTaken;
use sqlx::PgPool;

/// Draws per create before giving up, as the API specification says.
pub const MAX_CODE_ATTEMPTS: u32 = 10;
pub const CODES_EXHAUSTED: &str = "failed to generate unique room code after 10 attempts";
/// How long a command on an existing room is decided again while other commands (of other
/// instances: in one instance a room's commands take turns) keep appending first.
pub const CONFLICT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// What the client sent; `None` means the field was absent (the default applies).
#[derive(Debug, Clone, Default)]
pub struct NewRoom {
    pub name: Option<String>,
    pub waiting_room: Option<bool>,
    pub max_participants: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] RoomError),
    #[error("{}", CODES_EXHAUSTED)]
    CodesExhausted,
    #[error("another command changed the room concurrently")]
    Conflict,
    #[error("the idempotency key was used by an earlier request")]
    KeyUsed,
    #[error("a request with this idempotency key is still being processed; retry shortly")]
    KeyBusy,
    /// The request's deadline passed before the command was written: it was not.
    #[error(transparent)]
    Expired(#[from] Expired),
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the command failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Clone)]
pub struct RoomCommands {
    pool: PgPool,
    store: Arc<RoomStore>,
    codes: Arc<dyn CodeGenerator>,
    /// None: commands on one room do not take turns (only to measure what the turns save).
    queues: Option<Arc<RoomQueues>>,
}

impl RoomCommands {
    /// `lock_timeout`: the longest a write waits for a lock another transaction holds.
    pub fn new(
        pool: PgPool,
        codes: Arc<dyn CodeGenerator>,
        lock_timeout: std::time::Duration,
    ) -> Self {
        Self {
            store: Arc::new(EventRepository::new(pool.clone(), lock_timeout).into_store()),
            pool,
            codes,
            queues: Some(Arc::default()),
        }
    }

    /// Without turns per room: concurrent commands on one room conflict and are decided again
    /// (blind retries). For measuring what the turns save, never for serving.
    pub fn without_room_turns(mut self) -> Self {
        self.queues = None;
        self
    }

    /// Creates a room and returns its view.
    ///
    /// The work runs in its own task, so a client that disconnects (axum then drops this
    /// future) or a timeout can never leave it half done: it completes or fails on its own.
    /// With `idempotency`, the key is recorded in the command's transaction: a key used
    /// before fails the command with [`CommandError::KeyUsed`], and nothing is created.
    pub async fn create_room(
        &self,
        room: NewRoom,
        host: Host,
        request_id: String,
        idempotency: Option<Idempotency>,
    ) -> Result<RoomView, CommandError> {
        let commands = self.clone();
        let deadline = Deadline::current();
        let outcome = tokio::spawn(within(deadline, async move {
            let create = commands.create_room_to_completion(room, host, request_id);
            match idempotency {
                Some(key) => idempotency::CURRENT.scope(key, create).await,
                None => create.await,
            }
        }))
        .await
        .map_err(|join| CommandError::Failed(Box::new(join)))
        .flatten();
        self.record("CreateRoom", outcome.as_ref().err()).await;
        outcome
    }

    /// Runs `command` on the existing room `room_id`: load, decide, append with the expected
    /// sequence, the inline projections in the same transaction; returns the events it
    /// appended (none when nothing changed). When another command appended first, it is
    /// decided again against the new state, after a jittered pause, for up to
    /// [`CONFLICT_DEADLINE`]. Like creates, it runs in a task of its own, so it completes even
    /// if the client leaves.
    pub async fn execute(
        &self,
        room_id: &str,
        command: RoomCommand,
        request_id: String,
    ) -> Result<Vec<RoomEvent>, CommandError> {
        let name = command.name();
        let commands = self.clone();
        let room_id = room_id.to_owned();
        let deadline = Deadline::current();
        let outcome = tokio::spawn(within(deadline, async move {
            commands
                .execute_to_completion(&room_id, command, request_id)
                .await
        }))
        .await
        .map_err(|join| CommandError::Failed(Box::new(join)))
        .flatten();
        self.record(name, outcome.as_ref().err()).await;
        outcome
    }

    async fn execute_to_completion(
        &self,
        room_id: &str,
        mut command: RoomCommand,
        request_id: String,
    ) -> Result<Vec<RoomEvent>, CommandError> {
        let metadata = HashMap::from([
            ("requestId".to_owned(), request_id),
            ("userId".to_owned(), command.user_id().to_owned()),
        ]);
        // Commands on one room are decided one after another in this instance: a crowd joining
        // one room would otherwise conflict, reload and conflict again. Across instances the
        // events' primary key still decides, and the loser is decided again.
        // The wait for a turn ends at the request's deadline: a command is not started past it.
        let request_deadline = Deadline::current();
        let _turn = match &self.queues {
            Some(queues) => Some(match &request_deadline {
                Some(at) => tokio::time::timeout_at(at.at(), queues.turn(room_id))
                    .await
                    .map_err(|_| Expired)?,
                None => queues.turn(room_id).await,
            }),
            None => None,
        };
        let deadline = tokio::time::Instant::now() + CONFLICT_DEADLINE;
        for attempt in 1u64.. {
            if request_deadline.as_ref().is_some_and(Deadline::passed) {
                return Err(Expired.into());
            }
            let mut context = self.load(room_id).await?;
            command.stamp(now());
            let sink = EventSink::default();
            context
                .aggregate
                .handle(command.clone(), &(), &sink)
                .await
                .map_err(CommandError::Rejected)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(events);
            }
            match self
                .store
                .commit(events.clone(), context, metadata.clone())
                .await
            {
                Ok(_) => return Ok(events),
                Err(AggregateError::AggregateConflict)
                    if tokio::time::Instant::now() < deadline =>
                {
                    metrics::counter!("aggregate_conflicts_total", "aggregate" => "Room")
                        .increment(1);
                    // Spread the retries of commands that collided, so they do not collide again.
                    let pause = rand::random_range(1..=(5 * attempt).min(50));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        unreachable!("the loop returns")
    }

    /// Counts a command's outcome: `commands_total{command,outcome}`, and the reason of each
    /// rejection and conflict.
    async fn record(&self, command: &'static str, error: Option<&CommandError>) {
        let busy = match error {
            Some(CommandError::Unavailable(cause)) => {
                db::is_pool_timeout(cause.as_ref()) && db::saturated(&self.pool).await
            }
            _ => false,
        };
        let (outcome, reason) = match error {
            None => ("accepted", None),
            Some(CommandError::Rejected(rejected)) => ("rejected", Some(rejected.reason())),
            Some(CommandError::CodesExhausted) => ("rejected", Some("codes_exhausted")),
            Some(CommandError::Conflict) => ("conflict", None),
            Some(CommandError::KeyUsed) => ("rejected", Some("idempotency_key_used")),
            Some(CommandError::KeyBusy) => ("rejected", Some("idempotency_key_busy")),
            Some(CommandError::Expired(_)) => ("expired", None),
            // Waiting out a pool that stays taken while the database answers is not an outage.
            Some(CommandError::Unavailable(_)) if busy => ("pool_timeout", None),
            Some(CommandError::Unavailable(_)) => ("unavailable", None),
            Some(CommandError::Failed(_)) => ("failed", None),
        };
        metrics::counter!("commands_total", "command" => command, "outcome" => outcome)
            .increment(1);
        if let Some(reason) = reason {
            record_rejection(command, reason);
        }
        if outcome == "conflict" {
            metrics::counter!("aggregate_conflicts_total", "aggregate" => "Room").increment(1);
        }
    }

    async fn create_room_to_completion(
        &self,
        room: NewRoom,
        host: Host,
        request_id: String,
    ) -> Result<RoomView, CommandError> {
        let room_id = uuid::Uuid::now_v7().to_string();
        let metadata = HashMap::from([
            ("requestId".to_owned(), request_id),
            ("userId".to_owned(), host.id.clone()),
        ]);
        let at = now();
        let mut command = CreateRoom {
            room_id: room_id.clone(),
            settings_id: uuid::Uuid::now_v7().to_string(),
            code: self.codes.draw(),
            host,
            at,
            name: room.name,
            waiting_room: room.waiting_room,
            max_participants: room.max_participants,
        };
        for attempt in 1..=MAX_CODE_ATTEMPTS {
            if attempt > 1 {
                command.code = self.codes.draw();
            }
            let result = self
                .execute_on_new(
                    &room_id,
                    RoomCommand::CreateRoom(command.clone()),
                    metadata.clone(),
                )
                .await;
            match result {
                // The room as the projection wrote it, from the same events by the same code:
                // the response needs no read back.
                Ok(events) => return room_view(&events),
                Err(AggregateError::UnexpectedError(error)) if error.is::<KeyUsed>() => {
                    return Err(CommandError::KeyUsed)
                }
                Err(AggregateError::UnexpectedError(error)) if error.is::<KeyBusy>() => {
                    return Err(CommandError::KeyBusy)
                }
                Err(AggregateError::UnexpectedError(error)) if error.is::<CodeTaken>() => {
                    metrics::counter!("room_code_collisions_total").increment(1);
                    tracing::info!(attempt, code = %command.code, "room code taken, drawing another");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::CodesExhausted)
    }

    /// The room as its last command left it: its state row (one read, however long its
    /// history), with any events the row lacks.
    async fn load(&self, room_id: &str) -> Result<EventStoreAggregateContext<Room>, CommandError> {
        let unavailable_or_failed = |error: sqlx::Error| match db::is_unavailable(&error) {
            true => CommandError::Unavailable(Box::new(error)),
            false => CommandError::Failed(Box::new(error)),
        };
        let mut conn = self.pool.acquire().await.map_err(unavailable_or_failed)?;
        let (sequence, room) = room_states::load(&mut conn, room_id)
            .await
            .map_err(unavailable_or_failed)?
            .unwrap_or_default();
        Ok(EventStoreAggregateContext {
            aggregate_id: room_id.to_owned(),
            aggregate: room,
            current_sequence: sequence as usize,
            current_snapshot: None,
        })
    }

    /// `CqrsFramework::execute` for an aggregate that cannot have history yet (its id was just
    /// generated): the framework would first SELECT the empty event stream; this starts from
    /// the empty context instead, and commits through the same event store.
    async fn execute_on_new(
        &self,
        aggregate_id: &str,
        command: RoomCommand,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<RoomEvent>, AggregateError<RoomError>> {
        let mut context = EventStoreAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: Room::default(),
            current_sequence: 0,
            current_snapshot: None,
        };
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        self.store.commit(events.clone(), context, metadata).await?;
        Ok(events)
    }
}

/// The view of a room its first events make, as the `rooms` projection makes it.
fn room_view(events: &[RoomEvent]) -> Result<RoomView, CommandError> {
    let mut view = None;
    for (index, event) in events.iter().enumerate() {
        view = Some(
            RoomView::apply(view, index as i64 + 1, event)
                .map_err(|error| CommandError::Failed(Box::new(error)))?,
        );
    }
    view.ok_or_else(|| CommandError::Failed("a create made no events".into()))
}

/// Runs `command` with the request's deadline, if it has one, visible to the event store.
async fn within<T>(deadline: Option<Deadline>, command: impl Future<Output = T>) -> T {
    match deadline {
        Some(deadline) => deadline::CURRENT.scope(deadline, command).await,
        None => command.await,
    }
}

/// One queue per room with commands in flight in this instance.
#[derive(Default)]
struct RoomQueues(std::sync::Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>);

impl RoomQueues {
    /// Waits for the room's turn; the turn ends when the guard is dropped.
    async fn turn(&self, room_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let queue = {
            let mut queues = self.0.lock().expect("room queues lock");
            match queues.get(room_id).and_then(std::sync::Weak::upgrade) {
                Some(queue) => queue,
                None => {
                    // Forget rooms nobody waits for any more, so the map stays small.
                    queues.retain(|_, queue| queue.strong_count() > 0);
                    let queue = Arc::new(tokio::sync::Mutex::new(()));
                    queues.insert(room_id.to_owned(), Arc::downgrade(&queue));
                    queue
                }
            }
        };
        queue.lock_owned().await
    }
}

/// The time of a command, in milliseconds: the precision of the API's timestamps, so views
/// rebuilt from the log are identical to the ones written by the command.
pub fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .expect("now fits")
}

/// `commands_rejected_total{command,reason}`; also for requests refused before the command ran.
pub fn record_rejection(command: &'static str, reason: &'static str) {
    metrics::counter!("commands_rejected_total", "command" => command, "reason" => reason)
        .increment(1);
}

impl From<AggregateError<RoomError>> for CommandError {
    fn from(error: AggregateError<RoomError>) -> Self {
        match error {
            AggregateError::UserError(rejected) => Self::Rejected(rejected),
            AggregateError::AggregateConflict => Self::Conflict,
            AggregateError::DatabaseConnectionError(source) => Self::Unavailable(source),
            AggregateError::UnexpectedError(source) => match source.downcast::<Expired>() {
                Ok(expired) => Self::Expired(*expired),
                Err(source) => Self::Failed(source),
            },
            AggregateError::DeserializationError(source) => Self::Failed(source),
        }
    }
}
