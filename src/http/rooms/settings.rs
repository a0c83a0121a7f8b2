//! PATCH /rooms/{id}/settings.

use aggregates::{validate_room_fields, RoomCommand, SettingsChanges, UpdateSettings};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::views::FullRoom;
use super::{full_room, known_id};
use crate::commands;
use crate::http::body::JsonObject;
use crate::http::fields::{Fields, Nulls};
use crate::http::problem::Problem;
use crate::http::Caller;
use crate::http::{request_id, ApiError, AppState};

/// Change a room's settings
///
/// The host changes any of the settings, and locks or unlocks the room. Only what differs from
/// the current values is recorded; a body that changes nothing answers the room as it is.
#[utoipa::path(
    patch,
    path = "/rooms/{id}/settings",
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    request_body(content = UpdateSettingsRequest, content_type = "application/json",
        example = json!({"allowChat": false, "isLocked": true, "maxParticipants": 10})),
    responses(
        (status = 200, description = "The room, as GET /rooms/{id} returns it.", body = FullRoom),
        (status = 400, description = "Invalid body: each failing field is named in `errors`.",
            body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "The caller is not the room's host.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        (status = 409, description = "The room has ended, or changed too often concurrently.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 16 KiB.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::SlowBody,
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn update_settings(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<FullRoom>, ApiError> {
    let (changes, is_locked) = parse_settings(body)
        .inspect_err(|_| commands::record_rejection("UpdateSettings", "validation"))?;
    known_id(&id)?;
    let command = RoomCommand::UpdateSettings(UpdateSettings {
        by: claims.sub,
        at: commands::now(),
        changes,
        is_locked,
    });
    state
        .commands
        .execute(&id, command, request_id(&headers))
        .await?;
    Ok(Json(full_room(&state, &id).await?))
}

/// Reads the settings fields, naming every problem at once. `null` is not a value here.
fn parse_settings(body: Map<String, Value>) -> Result<(SettingsChanges, Option<bool>), ApiError> {
    let mut fields = Fields::new(body, Nulls::Rejected);
    let changes = SettingsChanges {
        allow_chat: fields.boolean("allowChat"),
        allow_screen_share: fields.boolean("allowScreenShare"),
        allow_guest_access: fields.boolean("allowGuestAccess"),
        waiting_room: fields.boolean("waitingRoom"),
        mute_participants_on_join: fields.boolean("muteParticipantsOnJoin"),
        max_participants: fields.integer("maxParticipants"),
    };
    let is_locked = fields.boolean("isLocked");
    fields.extend(validate_room_fields(None, changes.max_participants));
    fields.finish()?;
    Ok((changes, is_locked))
}

// Documentation only: `parse_settings` reads the body.
/// The body of PATCH /rooms/{id}/settings: any of these fields; absent ones keep their value.
/// Unknown fields and `null` are rejected.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct UpdateSettingsRequest {
    #[schema(nullable = false)]
    allow_chat: Option<bool>,
    #[schema(nullable = false)]
    allow_screen_share: Option<bool>,
    #[schema(nullable = false)]
    allow_guest_access: Option<bool>,
    /// Participants wait for the host's approval before joining.
    #[schema(nullable = false)]
    waiting_room: Option<bool>,
    #[schema(nullable = false)]
    mute_participants_on_join: Option<bool>,
    #[schema(nullable = false, minimum = 2, maximum = 100)]
    max_participants: Option<i64>,
    /// Locked rooms admit nobody new.
    #[schema(nullable = false)]
    is_locked: Option<bool>,
}
