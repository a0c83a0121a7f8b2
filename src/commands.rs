//! Executing room commands: fresh ids, code draws with retry, and no cancellation.

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::{CreateRoom, Host, Room, RoomCommand, RoomError};
use chrono::{DurationRound, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{Aggregate, AggregateError, EventStore};

use crate::codes::CodeGenerator;
use crate::event_store::{CodeTaken, RoomStore};

/// Draws per create before giving up, as the API specification says.
pub const MAX_CODE_ATTEMPTS: u32 = 10;
pub const CODES_EXHAUSTED: &str = "failed to generate unique room code after 10 attempts";

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
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the command failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Clone)]
pub struct RoomCommands {
    store: Arc<RoomStore>,
    codes: Arc<dyn CodeGenerator>,
}

impl RoomCommands {
    pub fn new(store: RoomStore, codes: Arc<dyn CodeGenerator>) -> Self {
        Self {
            store: Arc::new(store),
            codes,
        }
    }

    /// Creates a room and returns its id.
    ///
    /// The work runs in its own task, so a client that disconnects (axum then drops this
    /// future) or a timeout can never leave it half done: it completes or fails on its own.
    pub async fn create_room(
        &self,
        room: NewRoom,
        host: Host,
        request_id: String,
    ) -> Result<String, CommandError> {
        let commands = self.clone();
        let outcome = tokio::spawn(async move {
            commands
                .create_room_to_completion(room, host, request_id)
                .await
        })
        .await
        .map_err(|join| CommandError::Failed(Box::new(join)))
        .flatten();
        record("CreateRoom", outcome.as_ref().err());
        outcome
    }

    async fn create_room_to_completion(
        &self,
        room: NewRoom,
        host: Host,
        request_id: String,
    ) -> Result<String, CommandError> {
        let room_id = uuid::Uuid::now_v7().to_string();
        let metadata = HashMap::from([
            ("requestId".to_owned(), request_id),
            ("userId".to_owned(), host.id.clone()),
        ]);
        // Milliseconds: the precision of the API's timestamps, so views rebuilt from the log
        // are identical to the ones written at creation.
        let at = Utc::now()
            .duration_trunc(TimeDelta::milliseconds(1))
            .expect("now fits");
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
                Ok(()) => return Ok(room_id),
                Err(AggregateError::UnexpectedError(error)) if error.is::<CodeTaken>() => {
                    metrics::counter!("room_code_collisions_total").increment(1);
                    tracing::info!(attempt, code = %command.code, "room code taken, drawing another");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::CodesExhausted)
    }

    /// `CqrsFramework::execute` for an aggregate that cannot have history yet (its id was just
    /// generated): the framework would first SELECT the empty event stream; this starts from
    /// the empty context instead, and commits through the same event store.
    async fn execute_on_new(
        &self,
        aggregate_id: &str,
        command: RoomCommand,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<RoomError>> {
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
        self.store
            .commit(sink.collect().await, context, metadata)
            .await?;
        Ok(())
    }
}

/// Counts a command's outcome: `commands_total{command,outcome}`, and the reason of each
/// rejection and conflict.
fn record(command: &'static str, error: Option<&CommandError>) {
    let (outcome, reason) = match error {
        None => ("accepted", None),
        Some(CommandError::Rejected(RoomError::Invalid(_))) => ("rejected", Some("validation")),
        Some(CommandError::Rejected(RoomError::AlreadyExists(_))) => {
            ("rejected", Some("already_exists"))
        }
        Some(CommandError::CodesExhausted) => ("rejected", Some("codes_exhausted")),
        Some(CommandError::Conflict) => ("conflict", None),
        Some(CommandError::Unavailable(_)) => ("unavailable", None),
        Some(CommandError::Failed(_)) => ("failed", None),
    };
    metrics::counter!("commands_total", "command" => command, "outcome" => outcome).increment(1);
    if let Some(reason) = reason {
        record_rejection(command, reason);
    }
    if outcome == "conflict" {
        metrics::counter!("aggregate_conflicts_total", "aggregate" => "Room").increment(1);
    }
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
            AggregateError::UnexpectedError(source)
            | AggregateError::DeserializationError(source) => Self::Failed(source),
        }
    }
}
