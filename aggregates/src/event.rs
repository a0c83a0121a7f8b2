use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{Host, LeaveReason, Role, RoomCode, RoomSettings, SettingsChanges};

/// Semantic version of every event payload below; bump it when a payload changes shape.
pub const EVENT_VERSION: &str = "1.0.0";

/// Events of a room. Stored externally tagged (`{"RoomCreated": {...}}`) by the event store;
/// the payloads alone are complete enough to rebuild every field of the room view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomEvent {
    RoomCreated(RoomCreated),
    SettingsConfigured(SettingsConfigured),
    SettingsUpdated(SettingsUpdated),
    RoomLocked(RoomLocked),
    RoomUnlocked(RoomUnlocked),
    RoomEnded(RoomEnded),
    ParticipantJoined(ParticipantEntered),
    ParticipantWaiting(ParticipantEntered),
    ParticipantAdmitted(ParticipantDecided),
    ParticipantDenied(ParticipantDecided),
    ParticipantLeft(ParticipantLeft),
    ParticipantBlocked(ParticipantBlocked),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreated {
    pub room_id: String,
    pub code: RoomCode,
    pub name: String,
    pub host: Host,
    pub is_active: bool,
    pub is_locked: bool,
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsConfigured {
    pub settings_id: String,
    pub room_id: String,
    pub allow_chat: bool,
    pub allow_screen_share: bool,
    pub allow_guest_access: bool,
    pub waiting_room: bool,
    pub mute_participants_on_join: bool,
    pub max_participants: i64,
    #[serde(with = "crate::timestamp")]
    pub configured_at: DateTime<Utc>,
}

impl SettingsConfigured {
    pub fn settings(&self) -> RoomSettings {
        RoomSettings {
            allow_chat: self.allow_chat,
            allow_screen_share: self.allow_screen_share,
            allow_guest_access: self.allow_guest_access,
            waiting_room: self.waiting_room,
            mute_participants_on_join: self.mute_participants_on_join,
            max_participants: self.max_participants,
        }
    }
}

/// Settings the host changed: only those whose value changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsUpdated {
    pub room_id: String,
    pub changes: SettingsChanges,
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomLocked {
    pub room_id: String,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomUnlocked {
    pub room_id: String,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomEnded {
    pub room_id: String,
    #[serde(with = "crate::timestamp")]
    pub ended_at: DateTime<Utc>,
    /// The user who ended it.
    pub ended_by: String,
}

/// A participant joined, or entered the waiting room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantEntered {
    pub room_id: String,
    pub participant_id: String,
    /// The signed-in user; null for guests.
    pub user_id: Option<String>,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub muted: bool,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
    /// For guests: an opaque token of their network in this room (see `Joiner::Guest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The host admitted or denied a participant of the waiting room (or the room ended on them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantDecided {
    pub room_id: String,
    pub participant_id: String,
    /// The host, who decided.
    pub by: String,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantLeft {
    pub room_id: String,
    pub participant_id: String,
    pub reason: LeaveReason,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

/// The host removed a participant and keeps them out for the room's life: the user (`userId`),
/// or for a guest their network (`origin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantBlocked {
    pub room_id: String,
    pub participant_id: String,
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The host, who blocked.
    pub by: String,
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

impl RoomEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoomCreated(_) => "RoomCreated",
            Self::SettingsConfigured(_) => "SettingsConfigured",
            Self::SettingsUpdated(_) => "SettingsUpdated",
            Self::RoomLocked(_) => "RoomLocked",
            Self::RoomUnlocked(_) => "RoomUnlocked",
            Self::RoomEnded(_) => "RoomEnded",
            Self::ParticipantJoined(_) => "ParticipantJoined",
            Self::ParticipantWaiting(_) => "ParticipantWaiting",
            Self::ParticipantAdmitted(_) => "ParticipantAdmitted",
            Self::ParticipantDenied(_) => "ParticipantDenied",
            Self::ParticipantLeft(_) => "ParticipantLeft",
            Self::ParticipantBlocked(_) => "ParticipantBlocked",
        }
    }
}

impl DomainEvent for RoomEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
