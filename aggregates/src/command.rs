use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{RoomCode, SettingsChanges};

/// The acting user, as the authentication layer identified them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub id: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoomCommand {
    CreateRoom(CreateRoom),
    UpdateSettings(UpdateSettings),
    EndRoom(EndRoom),
}

impl RoomCommand {
    /// The command's name, as metrics and logs label it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateRoom(_) => "CreateRoom",
            Self::UpdateSettings(_) => "UpdateSettings",
            Self::EndRoom(_) => "EndRoom",
        }
    }

    /// The acting user's id.
    pub fn user_id(&self) -> &str {
        match self {
            Self::CreateRoom(create) => &create.host.id,
            Self::UpdateSettings(update) => &update.by,
            Self::EndRoom(end) => &end.by,
        }
    }
}

/// Change some settings of a room, and lock or unlock it; `by` is the acting user's id.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateSettings {
    pub by: String,
    pub at: DateTime<Utc>,
    pub changes: SettingsChanges,
    pub is_locked: Option<bool>,
}

/// End a room; `by` is the acting user's id.
#[derive(Debug, Clone, PartialEq)]
pub struct EndRoom {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Create a room. The optional fields are what the client sent (`None`: not sent, so the
/// default applies); the rest is supplied by the service: fresh ids, a freshly drawn code,
/// the host and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRoom {
    pub room_id: String,
    pub settings_id: String,
    pub code: RoomCode,
    pub host: Host,
    pub at: DateTime<Utc>,
    pub name: Option<String>,
    pub waiting_room: Option<bool>,
    pub max_participants: Option<i64>,
}
