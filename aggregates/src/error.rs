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
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}
