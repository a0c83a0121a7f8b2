use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::RoomCode;

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
