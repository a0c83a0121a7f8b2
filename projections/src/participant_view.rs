use aggregates::{ParticipantEntered, Role, Status};
use chrono::{DateTime, Utc};

/// One row of the `participants` read model: a joined or waiting participant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantView {
    pub id: String,
    pub room_id: String,
    pub user_id: Option<String>,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub status: Status,
    pub muted: bool,
    /// When they joined (or were admitted); for the waiting room, when they arrived.
    pub joined_at: DateTime<Utc>,
}

impl ParticipantView {
    /// The row of a participant who just joined, or entered the waiting room.
    pub fn entered(entered: &ParticipantEntered, status: Status) -> Self {
        Self {
            id: entered.participant_id.clone(),
            room_id: entered.room_id.clone(),
            user_id: entered.user_id.clone(),
            display_name: entered.display_name.clone(),
            avatar_url: entered.avatar_url.clone(),
            role: entered.role,
            status,
            muted: entered.muted,
            joined_at: entered.at,
        }
    }

    /// Admitted from the waiting room at `at`.
    pub fn admitted(mut self, at: DateTime<Utc>) -> Self {
        self.status = Status::Joined;
        self.joined_at = at;
        self
    }
}
