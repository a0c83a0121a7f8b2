//! Who is in a room: participants, their roles and where they stand.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Host,
    Member,
    Guest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Joined,
    Waiting,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeaveReason {
    /// They left.
    Left,
    /// The host removed them.
    Removed,
    /// The room ended.
    RoomEnded,
}

/// Who wants in: a signed-in user, or a guest with only a name and the network they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joiner {
    User(crate::Host),
    Guest {
        display_name: String,
        /// An opaque token of the guest's network, the same for one network in one room and
        /// different across rooms (the service derives it with a key of its own): what a block
        /// of a guest holds on to.
        origin: Option<String>,
    },
}

/// Who acts on a participant: a signed-in user, or a participant by their join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Participant(String),
}

/// What a room remembers of a participant to decide about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: Option<String>,
    pub role: Role,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}
