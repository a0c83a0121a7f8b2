use serde::Serialize;

/// One rule a request broke, named by the field the client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    pub field: String,
    pub message: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room is invalid: {}", describe(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("room {0} already exists")]
    AlreadyExists(String),
    #[error("no such room")]
    NotFound,
    #[error("only the room's host may do this")]
    NotHost,
    #[error("the room has ended")]
    Ended,
    #[error("the room is locked")]
    Locked,
    #[error("the room does not admit guests")]
    GuestsNotAllowed,
    #[error("the room is full")]
    Full,
    #[error("the waiting room is full")]
    WaitingRoomFull,
    #[error("{0} participants have joined; maxParticipants cannot be lower")]
    MoreJoinedThan(usize),
    #[error("no such participant")]
    NoSuchParticipant,
    #[error("the participant is not waiting")]
    NotWaiting,
    #[error("only the participant themself or the room's host may do this")]
    NotSelfOrHost,
    #[error("the host has blocked you from this room")]
    Blocked,
    #[error("only the host may block, and not themself")]
    CannotBlock,
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl RoomError {
    /// A short code for the rule that refused the command (metrics label it so).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation",
            Self::AlreadyExists(_) => "already_exists",
            Self::NotFound => "not_found",
            Self::NotHost => "not_host",
            Self::Ended => "ended",
            Self::Locked => "locked",
            Self::GuestsNotAllowed => "guests_not_allowed",
            Self::Full => "full",
            Self::WaitingRoomFull => "waiting_room_full",
            Self::MoreJoinedThan(_) => "more_joined",
            Self::NoSuchParticipant => "no_such_participant",
            Self::NotWaiting => "not_waiting",
            Self::NotSelfOrHost => "not_self_or_host",
            Self::Blocked => "blocked",
            Self::CannotBlock => "cannot_block",
        }
    }
}
