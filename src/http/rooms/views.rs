//! What the rooms resource answers: the full room, and the public view of it.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::RoomView;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::http::ApiError;

/// UTC, milliseconds, `Z`: `2026-03-03T10:30:00.000Z`.
pub fn timestamp<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn optional_timestamp<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => timestamp(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "01a217d9-6167-7261-8d7a-f92b31d804e7", "code": "abc-def-ghi", "name": "Team Standup",
    "hostId": "user-1", "isActive": true, "isLocked": false,
    "startedAt": "2026-03-03T10:30:00.000Z", "createdAt": "2026-03-03T10:30:00.000Z",
    "updatedAt": "2026-03-03T10:30:00.000Z", "endedAt": null,
    "host": {"id": "user-1", "displayName": "John Doe", "avatarUrl": "https://example.com/avatar.jpg"},
    "settings": {"id": "01a217d9-6167-7261-8d7a-f92cff2317e3", "roomId": "01a217d9-6167-7261-8d7a-f92b31d804e7",
        "allowChat": true, "allowScreenShare": true, "allowGuestAccess": true, "waitingRoom": true,
        "muteParticipantsOnJoin": false, "maxParticipants": 10}
}))]
pub struct FullRoom {
    id: String,
    /// `xxx-xxx-xxx`, lowercase letters.
    #[schema(pattern = "^[a-z]{3}-[a-z]{3}-[a-z]{3}$")]
    code: String,
    name: String,
    host_id: String,
    is_active: bool,
    is_locked: bool,
    /// UTC, milliseconds: `2026-03-03T10:30:00.000Z`.
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    started_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
    /// Null while the room is active.
    #[serde(serialize_with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    ended_at: Option<DateTime<Utc>>,
    host: HostInfo,
    settings: Settings,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HostInfo {
    id: String,
    display_name: String,
    #[schema(required = true)]
    avatar_url: Option<String>,
}

impl HostInfo {
    fn of(view: &RoomView) -> Self {
        Self {
            id: view.host_id.clone(),
            display_name: view.host_display_name.clone(),
            avatar_url: view.host_avatar_url.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Settings {
    id: String,
    room_id: String,
    allow_chat: bool,
    allow_screen_share: bool,
    allow_guest_access: bool,
    waiting_room: bool,
    mute_participants_on_join: bool,
    max_participants: i64,
}

impl TryFrom<RoomView> for FullRoom {
    type Error = ApiError;

    fn try_from(view: RoomView) -> Result<Self, ApiError> {
        // Settings are configured in the same commit that creates a room.
        let host = HostInfo::of(&view);
        let settings = view.settings.ok_or_else(|| {
            ApiError::Internal(format!("room {} has no settings", view.id).into())
        })?;
        Ok(Self {
            settings: Settings {
                id: settings.id,
                room_id: view.id.clone(),
                allow_chat: settings.values.allow_chat,
                allow_screen_share: settings.values.allow_screen_share,
                allow_guest_access: settings.values.allow_guest_access,
                waiting_room: settings.values.waiting_room,
                mute_participants_on_join: settings.values.mute_participants_on_join,
                max_participants: settings.values.max_participants,
            },
            host,
            id: view.id,
            code: view.code.into(),
            name: view.name,
            host_id: view.host_id,
            is_active: view.is_active,
            is_locked: view.is_locked,
            started_at: view.started_at,
            created_at: view.created_at,
            updated_at: view.updated_at,
            ended_at: view.ended_at,
        })
    }
}

/// What anyone holding a room code may see.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicRoom {
    id: String,
    /// `xxx-xxx-xxx`, lowercase letters.
    #[schema(pattern = "^[a-z]{3}-[a-z]{3}-[a-z]{3}$")]
    code: String,
    name: String,
    is_active: bool,
    is_locked: bool,
    host: HostInfo,
    settings: PublicSettings,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PublicSettings {
    waiting_room: bool,
}

impl From<RoomView> for PublicRoom {
    fn from(view: RoomView) -> Self {
        Self {
            settings: PublicSettings {
                waiting_room: view
                    .settings
                    .as_ref()
                    .is_some_and(|s| s.values.waiting_room),
            },
            host: HostInfo::of(&view),
            id: view.id,
            code: view.code.into(),
            name: view.name,
            is_active: view.is_active,
            is_locked: view.is_locked,
        }
    }
}
