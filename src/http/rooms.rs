//! The rooms resource: POST /rooms, GET /rooms/{id}, GET /rooms/code/{code}.

use aggregates::{validate_room_fields, FieldViolation, RoomCode};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use projections::RoomView;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::body::{json_type, JsonObject};
use super::{request_id, ApiError, AppState};
use crate::auth::Caller;
use crate::commands::NewRoom;
use crate::read_model;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", post(create_room))
        .route("/rooms/{id}", get(get_room))
        .route("/rooms/code/{code}", get(get_room_by_code))
}

async fn create_room(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let room = parse_new_room(body)?;
    let room_id = state
        .commands
        .create_room(room, claims.host(), request_id(&headers))
        .await?;
    // Read-your-writes: the view was written in the command's transaction.
    let view = read_model::find_by_id(&state.pool, &room_id)
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

async fn get_room(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FullRoom>, ApiError> {
    let view = read_model::find_by_id(&state.pool, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no room has id {id}")))?;
    Ok(Json(FullRoom::try_from(view)?))
}

async fn get_room_by_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<PublicRoom>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no room has code {code}"));
    // A malformed code cannot name a room: answer without asking the database.
    RoomCode::parse(&code).map_err(|_| not_found())?;
    let view = read_model::find_by_code(&state.pool, &code)
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
        if value.is_null() {
            if !matches!(field.as_str(), "name" | "waitingRoom" | "maxParticipants") {
                violations.push(FieldViolation::new(field, "is not a known field"));
            }
            continue;
        }
        let wrong_type = |expected: &str| {
            FieldViolation::new(
                field.as_str(),
                format!("must be {expected}, not {}", json_type(&value)),
            )
        };
        match field.as_str() {
            "name" => match &value {
                Value::String(name) => room.name = Some(name.clone()),
                _ => violations.push(wrong_type("a string")),
            },
            "waitingRoom" => match value {
                Value::Bool(on) => room.waiting_room = Some(on),
                _ => violations.push(wrong_type("a boolean")),
            },
            "maxParticipants" => match &value {
                Value::Number(n) => match n.as_i64() {
                    Some(max) => room.max_participants = Some(max),
                    // Beyond i64 it is out of range all the same; fractions are not integers.
                    None if n.is_u64() => room.max_participants = Some(i64::MAX),
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FullRoom {
    id: String,
    code: String,
    name: String,
    host_id: String,
    is_active: bool,
    is_locked: bool,
    #[serde(serialize_with = "timestamp")]
    started_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    updated_at: DateTime<Utc>,
    #[serde(serialize_with = "optional_timestamp")]
    ended_at: Option<DateTime<Utc>>,
    host: HostInfo,
    settings: Settings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostInfo {
    id: String,
    display_name: String,
    avatar_url: Option<String>,
}

#[derive(Serialize)]
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
            host: HostInfo {
                id: view.host_id.clone(),
                display_name: view.host_display_name,
                avatar_url: view.host_avatar_url,
            },
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
#[derive(Serialize)]
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

#[derive(Serialize)]
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
            host: HostInfo {
                id: view.host_id,
                display_name: view.host_display_name,
                avatar_url: view.host_avatar_url,
            },
            id: view.id,
            code: view.code.into(),
            name: view.name,
            is_active: view.is_active,
            is_locked: view.is_locked,
        }
    }
}
