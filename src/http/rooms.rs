//! The rooms resource: POST /rooms, GET /rooms/{id}, GET /rooms/code/{code}.

use aggregates::{validate_room_fields, FieldViolation, RoomCode};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use projections::RoomView;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{json_type, JsonObject};
use super::problem::Problem;
use super::{request_id, ApiError, AppState};
use crate::auth::Caller;
use crate::commands::{self, NewRoom};
use crate::read_models::rooms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_room))
        .routes(routes!(get_room))
        .routes(routes!(get_room_by_code))
}

/// Create a room
///
/// Creates a meeting room with a unique room code. The caller becomes its host.
#[utoipa::path(
    post,
    path = "/rooms",
    tag = "rooms",
    security(("bearer" = [])),
    params(("X-Request-Id" = Option<String>, Header, description = "Correlation id; generated when absent, returned, and stored in the events' metadata.")),
    request_body(content = CreateRoomRequest, content_type = "application/json",
        example = json!({"name": "Team Standup", "waitingRoom": true, "maxParticipants": 10})),
    responses(
        (status = 201, description = "The room, as GET /rooms/{id} returns it.", body = FullRoom,
            headers(("Location" = String, description = "/rooms/{id}"))),
        (status = 400, description = "Invalid body (each failing field is named in `errors`), or no unique room code after 10 attempts.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, malformed, expired or wrongly signed token.", body = Problem,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 413, description = "Body larger than 16 KiB.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry later.", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = String))),
    )
)]
async fn create_room(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let room = parse_new_room(body)
        .inspect_err(|_| commands::record_rejection("CreateRoom", "validation"))?;
    let room_id = state
        .commands
        .create_room(room, claims.host(), request_id(&headers))
        .await?;
    // Read-your-writes: the view was written in the command's transaction.
    let view = rooms::find_by_id(&state.pool, &room_id)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!("room {room_id} was created but has no view").into())
        })?;
    let location = format!("/rooms/{room_id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(FullRoom::try_from(view)?),
    )
        .into_response())
}

/// Get a room
///
/// The full room, byte for byte what POST /rooms returned for it.
#[utoipa::path(
    get,
    path = "/rooms/{id}",
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room.", body = FullRoom),
        (status = 401, description = "Missing or invalid token.", body = Problem,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 404, description = "No room has this id.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry later.", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = String))),
    )
)]
async fn get_room(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FullRoom>, ApiError> {
    // Room ids are UUIDs: anything else names no room (and need not reach the database).
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::NotFound(format!("no room has id {id}")));
    }
    let view = rooms::find_by_id(&state.pool, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no room has id {id}")))?;
    Ok(Json(FullRoom::try_from(view)?))
}

/// Find a room by code
///
/// Public: what anyone holding a room code may see before joining.
#[utoipa::path(
    get,
    path = "/rooms/code/{code}",
    tag = "rooms",
    params(("code" = String, Path, description = "Room code, `xxx-xxx-xxx`", example = "abc-def-ghi")),
    responses(
        (status = 200, description = "The room's public view.", body = PublicRoom),
        (status = 404, description = "No room has this code.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry later.", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = String))),
    )
)]
async fn get_room_by_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<PublicRoom>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no room has code {code}"));
    // A malformed code cannot name a room: answer without asking the database.
    RoomCode::parse(&code).map_err(|_| not_found())?;
    let view = rooms::find_by_code(&state.pool, &code)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(PublicRoom::from(view)))
}

/// Reads the create-room fields, naming every problem at once: unknown fields, wrong JSON
/// types, and the domain rules on the fields whose types are right. `null` counts as absent.
fn parse_new_room(body: Map<String, Value>) -> Result<NewRoom, ApiError> {
    let mut room = NewRoom::default();
    let mut violations = Vec::new();
    for (field, value) in body {
        let wrong_type = |expected: &str| {
            FieldViolation::new(
                field.as_str(),
                format!("must be {expected}, not {}", json_type(&value)),
            )
        };
        match field.as_str() {
            "name" => match &value {
                Value::Null => {}
                Value::String(name) => room.name = Some(name.clone()),
                _ => violations.push(wrong_type("a string")),
            },
            "waitingRoom" => match value {
                Value::Null => {}
                Value::Bool(on) => room.waiting_room = Some(on),
                _ => violations.push(wrong_type("a boolean")),
            },
            "maxParticipants" => match &value {
                Value::Null => {}
                Value::Number(n) => match integer(n) {
                    Some(max) => room.max_participants = Some(max),
                    None => violations.push(FieldViolation::new(
                        field.as_str(),
                        format!("must be an integer, not {n}"),
                    )),
                },
                _ => violations.push(wrong_type("an integer")),
            },
            _ => violations.push(FieldViolation::new(field, "is not a known field")),
        }
    }
    violations.extend(validate_room_fields(
        room.name.as_deref(),
        room.max_participants,
    ));
    if violations.is_empty() {
        Ok(room)
    } else {
        Err(ApiError::Validation(violations))
    }
}

/// The integer a JSON number stands for, as JSON Schema counts them: `22.0` is 22. Integers
/// beyond i64 saturate (they are out of any range all the same); fractions are `None`.
fn integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0).then_some(f as i64)
}

/// UTC, milliseconds, `Z`: `2026-03-03T10:30:00.000Z`.
fn timestamp<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn optional_timestamp<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => timestamp(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// The body of POST /rooms. Every field is optional; `null` counts as absent. Unknown fields are
/// rejected. (Documentation only: `parse_new_room` reads the body, to name every failing field.)
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct CreateRoomRequest {
    /// Defaults to "Meeting Room".
    #[schema(min_length = 1, max_length = 100, nullable = true)]
    name: Option<String>,
    /// Participants wait for the host's approval before joining.
    #[schema(default = false, nullable = true)]
    waiting_room: Option<bool>,
    #[schema(minimum = 2, maximum = 100, default = 50, nullable = true)]
    max_participants: Option<i64>,
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
    #[schema(value_type = Option<String>, format = DateTime)]
    ended_at: Option<DateTime<Utc>>,
    host: HostInfo,
    settings: Settings,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HostInfo {
    id: String,
    display_name: String,
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
                allow_chat: settings.allow_chat,
                allow_screen_share: settings.allow_screen_share,
                allow_guest_access: settings.allow_guest_access,
                waiting_room: settings.waiting_room,
                mute_participants_on_join: settings.mute_participants_on_join,
                max_participants: settings.max_participants,
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
                waiting_room: view.settings.as_ref().is_some_and(|s| s.waiting_room),
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
