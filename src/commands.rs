//! Executing room commands: fresh ids and code draws for new rooms, load-decide-append in
//! per-room batches with conflict retries for existing ones, and no cancellation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aggregates::{CreateRoom, Host, Room, RoomCommand, RoomError, RoomEvent};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope};
use futures_util::FutureExt;
use projections::RoomView;
use tokio::sync::oneshot;

use crate::codes::CodeGenerator;
use crate::db;
use crate::deadline::{self, Deadline, Expired};
use crate::event_store::EventRepository;
use crate::group_commit::SharedError;
use crate::idempotency::{self, Idempotency, KeyBusy, KeyUsed};
use crate::read_models::room_states;
use crate::read_models::rooms::CodeTaken;
use crate::read_models::Known;
use crate::room_batches::{Queued, RoomQueues, MAX_BATCH};
use sqlx::PgPool;

/// Draws per create before giving up, as the API specification says.
pub const MAX_CODE_ATTEMPTS: u32 = 10;
pub const CODES_EXHAUSTED: &str = "failed to generate unique room code after 10 attempts";
/// How long a command on an existing room is decided again while other commands (of other
/// instances: in one instance a room's commands are batched) keep appending first.
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
    repository: Arc<EventRepository>,
    codes: Arc<dyn CodeGenerator>,
    /// None: each command on a room is decided and appended alone, and a conflict is decided
    /// again at once (only to measure what the batches save: the naive composition).
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
            repository: Arc::new(EventRepository::new(pool.clone(), lock_timeout)),
            pool,
            codes,
            queues: Some(Arc::default()),
        }
    }

    /// Without batches per room: each command on a room is decided and appended alone, in a
    /// transaction of its own, and concurrent commands on one room conflict and are decided
    /// again at once, as a plain load-decide-append composition would. For measuring what the
    /// batches save, never for serving.
    pub fn without_room_batches(mut self) -> Self {
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

    /// Runs `command` on the existing room `room_id` and returns the events it appended (none
    /// when nothing changed).
    ///
    /// The command joins its room's next batch ([`crate::room_batches`]): the batch is decided
    /// against the room's state, each command against the events of those before it, and
    /// appended in one transaction with the inline projections, with the expected sequence of
    /// its first event. When another instance appended to the room first, the batch is
    /// decided again against the new state, for up to [`CONFLICT_DEADLINE`]. Batches run in a
    /// task of their own, so a command completes even if its client leaves.
    pub async fn execute(
        &self,
        room_id: &str,
        command: RoomCommand,
        request_id: String,
    ) -> Result<Vec<RoomEvent>, CommandError> {
        let name = command.name();
        let metadata = HashMap::from([
            ("requestId".to_owned(), request_id),
            ("userId".to_owned(), command.user_id().to_owned()),
        ]);
        let (done, answer) = oneshot::channel();
        let queued = Queued {
            command,
            metadata,
            deadline: Deadline::current(),
            done,
        };
        let room_id = room_id.to_owned();
        match &self.queues {
            Some(queues) => {
                if let Some(first) = queues.push(&room_id, queued) {
                    tokio::spawn(self.clone().run_batches(room_id, first));
                }
            }
            None => {
                let commands = self.clone();
                tokio::spawn(async move { commands.settle(&room_id, vec![queued]).await });
            }
        }
        let outcome = answer
            .await
            .map_err(|_| CommandError::Failed("the command's batch failed".into()))
            .flatten();
        self.record(name, outcome.as_ref().err()).await;
        outcome
    }

    /// Settles the room's batches, `first` and those queued behind it, until none is left.
    async fn run_batches(self, room_id: String, first: Queued) {
        let queues = Arc::clone(self.queues.as_ref().expect("batches run with queues"));
        let mut batch = vec![first];
        while !batch.is_empty() {
            metrics::histogram!("room_batch_commands").record(batch.len() as f64);
            // A bug that panics fails its batch (its commands are told so), never the room's
            // later batches.
            let settled = std::panic::AssertUnwindSafe(self.settle(&room_id, batch))
                .catch_unwind()
                .await;
            if settled.is_err() {
                metrics::counter!("room_batches_panicked_total").increment(1);
                tracing::error!(room_id, "settling a batch of room commands panicked");
            }
            batch = queues.next(&room_id, MAX_BATCH);
        }
    }

    /// Decides and appends `batch`, answering each command with its own outcome: a refused
    /// command does not affect the others. A conflict (another instance appended first)
    /// decides the whole batch again, with the commands queued meanwhile; a failure that may
    /// concern one command only settles each alone.
    async fn settle(&self, room_id: &str, mut batch: Vec<Queued>) {
        let give_up_at = tokio::time::Instant::now() + CONFLICT_DEADLINE;
        loop {
            answer_expired(&mut batch);
            if batch.is_empty() {
                return;
            }
            let (outcomes, events, known) = match self.decide(room_id, &mut batch).await {
                Ok(decided) => decided,
                Err(error) => return answer_each(batch, error),
            };
            // The writer claims the batch's deadlines (all, or none and it is decided again).
            let deadlines = (batch.iter())
                .filter_map(|queued| queued.deadline.clone())
                .collect();
            let written = match events.is_empty() {
                true => Ok(()),
                false => self.append(&events, known, deadlines).await,
            };
            match written {
                Ok(()) => {
                    for (queued, outcome) in batch.into_iter().zip(outcomes) {
                        queued.answer(outcome);
                    }
                    return;
                }
                // At once, with what queued meanwhile: the winner's next batch is being decided
                // too, and a loser that paused would lose again.
                Err(CommandError::Conflict) if tokio::time::Instant::now() < give_up_at => {
                    metrics::counter!("aggregate_conflicts_total", "aggregate" => "Room")
                        .increment(1);
                    if let Some(queues) = &self.queues {
                        let room = MAX_BATCH.saturating_sub(batch.len());
                        batch.extend(queues.more(room_id, room));
                    }
                }
                // No writer took the batch before a command's deadline: decided again without it.
                Err(CommandError::Expired(_)) => {}
                Err(CommandError::Failed(_)) if batch.len() > 1 => {
                    metrics::counter!("room_batches_split_total").increment(1);
                    for queued in batch {
                        Box::pin(self.settle(room_id, vec![queued])).await;
                    }
                    return;
                }
                Err(error) => return answer_each(batch, error),
            }
        }
    }

    /// Decides each command of `batch` against the room's state and the events of the
    /// commands before it: each command's outcome (once its events are written), all their
    /// events in sequence, and the state they were decided against (so that the write need not
    /// read it again).
    async fn decide(&self, room_id: &str, batch: &mut [Queued]) -> Result<Decided, CommandError> {
        let context = self.load(room_id).await?;
        let before = (context.current_sequence as i64, context.aggregate.clone());
        let mut room = context.aggregate;
        let mut sequence = context.current_sequence;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut serialized = Vec::new();
        for queued in batch.iter_mut() {
            queued.command.stamp(now());
            let sink = EventSink::default();
            // A refused decision leaves the state as it was (the room decides before it applies).
            if let Err(refused) = room.handle(queued.command.clone(), &(), &sink).await {
                outcomes.push(Err(CommandError::Rejected(refused)));
                continue;
            }
            let events = sink.collect().await;
            for event in &events {
                sequence += 1;
                serialized.push(serialize(room_id, sequence, event, &queued.metadata)?);
            }
            outcomes.push(Ok(events));
        }
        let known = Known {
            states: HashMap::from([(room_id.to_owned(), before)]),
        };
        Ok((outcomes, serialized, known))
    }

    /// Appends a room's batch (through group commit, with other rooms' commands), if a writer
    /// takes it before its commands' `deadlines`.
    async fn append(
        &self,
        events: &[SerializedEvent],
        known: Known,
        deadlines: Vec<Deadline>,
    ) -> Result<(), CommandError> {
        let appended = match &self.queues {
            Some(_) => self.repository.append(events, known, deadlines).await,
            // Without batches, as a plain composition: each command in a transaction of its own.
            None => self.repository.append_alone(events, known, deadlines).await,
        };
        appended.map_err(from_persistence)
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
                Err(CommandError::Failed(error)) if error.is::<KeyUsed>() => {
                    return Err(CommandError::KeyUsed)
                }
                Err(CommandError::Failed(error)) if error.is::<KeyBusy>() => {
                    return Err(CommandError::KeyBusy)
                }
                Err(CommandError::Failed(error)) if error.is::<CodeTaken>() => {
                    metrics::counter!("room_code_collisions_total").increment(1);
                    tracing::info!(attempt, code = %command.code, "room code taken, drawing another");
                }
                Err(error) => return Err(error),
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
    /// the empty state instead, and appends through the same event store.
    async fn execute_on_new(
        &self,
        aggregate_id: &str,
        command: RoomCommand,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<RoomEvent>, CommandError> {
        let sink = EventSink::default();
        Room::default()
            .handle(command, &(), &sink)
            .await
            .map_err(CommandError::Rejected)?;
        let events = sink.collect().await;
        let serialized = (1..)
            .zip(&events)
            .map(|(sequence, event)| serialize(aggregate_id, sequence, event, &metadata))
            .collect::<Result<Vec<_>, _>>()?;
        // A new room continues no row: its write reads nothing.
        self.repository
            .append(
                &serialized,
                Known::default(),
                Deadline::current().into_iter().collect(),
            )
            .await
            .map_err(from_persistence)?;
        Ok(events)
    }
}

/// An event as the event store writes it: what cqrs-es's own commit makes of it.
fn serialize(
    room_id: &str,
    sequence: usize,
    event: &RoomEvent,
    metadata: &HashMap<String, String>,
) -> Result<SerializedEvent, CommandError> {
    SerializedEvent::try_from(&EventEnvelope::<Room> {
        aggregate_id: room_id.to_owned(),
        sequence,
        payload: event.clone(),
        metadata: metadata.clone(),
    })
    .map_err(|error| CommandError::Failed(Box::new(error)))
}

/// Answers the commands of `batch` whose request's deadline has passed: unwritten, before any
/// work is done for them.
fn answer_expired(batch: &mut Vec<Queued>) {
    for queued in std::mem::take(batch) {
        match &queued.deadline {
            Some(deadline) if deadline.passed() && deadline.expire() => {
                queued.answer(Err(Expired.into()))
            }
            _ => batch.push(queued),
        }
    }
}

/// Answers every command of `batch` with `error`.
fn answer_each(batch: Vec<Queued>, error: CommandError) {
    let errors = told_to_each(error, batch.len());
    for (queued, error) in batch.into_iter().zip(errors) {
        queued.answer(Err(error));
    }
}

fn from_persistence(error: cqrs_es::persist::PersistenceError) -> CommandError {
    AggregateError::<RoomError>::from(error).into()
}

/// One error, as each of `count` commands of a batch is told it.
fn told_to_each(error: CommandError, count: usize) -> Vec<CommandError> {
    let each: Box<dyn Fn() -> CommandError> = match error {
        CommandError::Unavailable(source) => {
            let copy = SharedError::copies(source);
            Box::new(move || CommandError::Unavailable(copy()))
        }
        CommandError::Failed(source) => {
            let copy = SharedError::copies(source);
            Box::new(move || CommandError::Failed(copy()))
        }
        CommandError::Rejected(refused) => {
            Box::new(move || CommandError::Rejected(refused.clone()))
        }
        CommandError::CodesExhausted => Box::new(|| CommandError::CodesExhausted),
        CommandError::Conflict => Box::new(|| CommandError::Conflict),
        CommandError::KeyUsed => Box::new(|| CommandError::KeyUsed),
        CommandError::KeyBusy => Box::new(|| CommandError::KeyBusy),
        CommandError::Expired(_) => Box::new(|| CommandError::Expired(Expired)),
    };
    (0..count).map(|_| each()).collect()
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

/// What a batch's decisions came to: each command's outcome (once written), the events to
/// append, and the room's state they were decided against.
type Decided = (
    Vec<Result<Vec<RoomEvent>, CommandError>>,
    Vec<SerializedEvent>,
    Known,
);

/// Runs `command` with the request's deadline, if it has one, visible to the event store.
async fn within<T>(deadline: Option<Deadline>, command: impl Future<Output = T>) -> T {
    match deadline {
        Some(deadline) => deadline::CURRENT.scope(deadline, command).await,
        None => command.await,
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
