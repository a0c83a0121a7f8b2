use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Actor, Joiner, RoomCode, SettingsChanges};

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
    JoinRoom(JoinRoom),
    AdmitParticipant(Decide),
    DenyParticipant(Decide),
    RemoveParticipant(RemoveParticipant),
    DenyWaiting(DenyWaiting),
}

impl RoomCommand {
    /// The command's name, as metrics and logs label it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateRoom(_) => "CreateRoom",
            Self::UpdateSettings(_) => "UpdateSettings",
            Self::EndRoom(_) => "EndRoom",
            Self::JoinRoom(_) => "JoinRoom",
            Self::AdmitParticipant(_) => "AdmitParticipant",
            Self::DenyParticipant(_) => "DenyParticipant",
            Self::RemoveParticipant(_) => "RemoveParticipant",
            Self::DenyWaiting(_) => "DenyWaiting",
        }
    }

    /// Sets the time the command is decided at. A command decided again after a conflict takes
    /// the time of its new attempt, so a room's events never go back in time.
    pub fn stamp(&mut self, at: DateTime<Utc>) {
        match self {
            Self::CreateRoom(c) => c.at = at,
            Self::UpdateSettings(c) => c.at = at,
            Self::EndRoom(c) => c.at = at,
            Self::JoinRoom(c) => c.at = at,
            Self::AdmitParticipant(c) | Self::DenyParticipant(c) => c.at = at,
            Self::RemoveParticipant(c) => c.at = at,
            Self::DenyWaiting(c) => c.at = at,
        }
    }

    /// The acting user's id.
    pub fn user_id(&self) -> &str {
        match self {
            Self::CreateRoom(create) => &create.host.id,
            Self::UpdateSettings(update) => &update.by,
            Self::EndRoom(end) => &end.by,
            Self::JoinRoom(join) => match &join.joiner {
                Joiner::User(user) => &user.id,
                Joiner::Guest { .. } => &join.participant_id,
            },
            Self::AdmitParticipant(decide) | Self::DenyParticipant(decide) => &decide.by,
            Self::RemoveParticipant(remove) => match &remove.by {
                Actor::User(id) | Actor::Participant(id) => id,
            },
            Self::DenyWaiting(deny) => &deny.by,
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

/// Join a room. `participant_id` is fresh: the id the participant gets if they are new.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinRoom {
    pub participant_id: String,
    pub joiner: Joiner,
    pub at: DateTime<Utc>,
}

/// The host admits or denies a participant of the waiting room.
#[derive(Debug, Clone, PartialEq)]
pub struct Decide {
    pub by: String,
    pub participant_id: String,
    pub at: DateTime<Utc>,
}

/// A participant leaves, or the host removes them, and with `block` keeps them out: a user
/// by their id, a guest by their network.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveParticipant {
    pub by: Actor,
    pub participant_id: String,
    pub block: bool,
    pub at: DateTime<Utc>,
}

/// The host denies everyone in the waiting room at once.
#[derive(Debug, Clone, PartialEq)]
pub struct DenyWaiting {
    pub by: String,
    pub at: DateTime<Utc>,
}
