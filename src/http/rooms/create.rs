//! POST /rooms.

use aggregates::{validate_room_fields, FieldViolation};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::views::FullRoom;
use crate::commands::{self, CommandError, NewRoom};
use crate::http::body::JsonObject;
use crate::http::fields::{Fields, Nulls};
use crate::http::problem::Problem;
use crate::http::Caller;
use crate::http::{request_id, ApiError, AppState, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::idempotency::{self, Idempotency};

/// Create a room
///
/// Creates a meeting room with a unique room code. The caller becomes its host.
#[utoipa::path(
    post,
    path = "/rooms",
    tag = "rooms",
    security(("bearer" = [])),
    params(
        ("X-Request-Id" = Option<String>, Header, nullable = false, description = "Correlation id; generated when absent, returned, and stored in the events' metadata."),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 255 printable ASCII characters. A repeat of the same request (same caller, key and body) within 24 hours gets the first response again, with `Idempotent-Replayed: true`, and creates nothing.",
            min_length = 1, max_length = 255, pattern = "^[\\x20-\\x7E]+$"),
    ),
    request_body(content = CreateRoomRequest, content_type = "application/json",
        example = json!({"name": "Team Standup", "waitingRoom": true, "maxParticipants": 10})),
    responses(
        (status = 201, description = "The room, as GET /rooms/{id} returns it.", body = FullRoom,
            headers(("Location" = String, description = "/rooms/{id}"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the first response to an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "Invalid body (each failing field is named in `errors`), or no unique room code after 10 attempts.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, malformed, expired or wrongly signed token.", body = Problem,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 409, description = "A request with the same Idempotency-Key is still being processed.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 16 KiB.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used with a different body.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::SlowBody,
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn create_room(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        caller: claims.sub.clone(),
        key,
        // serde_json's maps are ordered by key: this is the body's canonical form.
        request: Value::Object(body.clone()).to_string(),
        respond: |view| Ok(room_body(view)?),
    });
    let room = parse_new_room(body)
        .inspect_err(|_| commands::record_rejection("CreateRoom", "validation"))?;
    if let Some(key) = &idempotency {
        if let Some(first) = first_response(&state, key).await? {
            return Ok(first);
        }
    }
    let created = state
        .commands
        .create_room(
            room,
            claims.host(),
            request_id(&headers),
            idempotency.clone(),
        )
        .await;
    let view = match (created, &idempotency) {
        (Ok(view), _) => view,
        // Another request with this key committed first: answer as it was answered.
        (Err(CommandError::KeyUsed), Some(key)) => {
            return first_response(&state, key).await?.ok_or_else(|| {
                ApiError::Internal("an idempotency key was used but is not recorded".into())
            })
        }
        (Err(error), _) => return Err(error.into()),
    };
    let room_id = view.id.clone();
    Ok(created_response(&room_id, room_body(view)?, false))
}

/// The response body of a create: the room as GET /rooms/{id} answers it, built from the view
/// the command's events make (as the projection built the row; no read back). With a key, the
/// event store records the same body in the command's transaction, for repeats.
fn room_body(view: projections::RoomView) -> Result<String, ApiError> {
    Ok(serde_json::to_string(&FullRoom::try_from(view)?).expect("rooms serialize"))
}

fn created_response(room_id: &str, body: String, replayed: bool) -> Response {
    let location = format!("/rooms/{room_id}");
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        body,
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if idempotency::valid_key(key) => Ok(Some(key.to_owned())),
        _ => Err(ApiError::Validation(vec![FieldViolation::new(
            "Idempotency-Key",
            format!(
                "must be 1 to {} printable ASCII characters",
                idempotency::MAX_KEY_LENGTH
            ),
        )])),
    }
}

/// The response to the first request with this key, when there was one: the same status and
/// body, byte for byte, marked as replayed; 422 when that request had another body. A key
/// recorded without its response (by an older version, which kept it after the commit, and
/// died before) is answered from the room as it is now, and that answer is kept.
async fn first_response(state: &AppState, key: &Idempotency) -> Result<Option<Response>, ApiError> {
    let Some((request, room_id, response)) =
        idempotency::find(&state.pool, &key.caller, &key.key).await?
    else {
        return Ok(None);
    };
    if request != key.request {
        return Err(ApiError::Unprocessable(
            "this Idempotency-Key was used with a different request body".into(),
        ));
    }
    let body = match response {
        Some(body) => body,
        None => {
            let body = room_body(super::find_room(state, &room_id).await?)?;
            // In a task of its own, as all database work: a client that hangs up cannot cut it.
            let (pool, caller, key) = (state.pool.clone(), key.caller.clone(), key.key.clone());
            tokio::spawn(async move {
                idempotency::save_response(&pool, &caller, &key, &body).await?;
                idempotency::find(&pool, &caller, &key).await
            })
            .await
            .map_err(|join| ApiError::Internal(Box::new(join)))??
            .and_then(|(_, _, response)| response)
            .ok_or_else(|| ApiError::Internal("a kept response vanished".into()))?
        }
    };
    Ok(Some(created_response(&room_id, body, true)))
}

/// Reads the create-room fields, naming every problem at once. `null` counts as absent.
fn parse_new_room(body: Map<String, Value>) -> Result<NewRoom, ApiError> {
    let mut fields = Fields::new(body, Nulls::Absent);
    let room = NewRoom {
        name: fields.string("name"),
        waiting_room: fields.boolean("waitingRoom"),
        max_participants: fields.integer("maxParticipants"),
    };
    fields.extend(validate_room_fields(
        room.name.as_deref(),
        room.max_participants,
    ));
    fields.finish()?;
    Ok(room)
}

// Documentation only: `parse_new_room` reads the body, to name every failing field. No field
// carries a schema `default` (each says it in words): generators such as openapi-typescript
// make a field with a default required, and these are optional.
/// The body of POST /rooms. Every field is optional; `null` counts as absent. Unknown fields are
/// rejected.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct CreateRoomRequest {
    /// Defaults to "Meeting Room".
    #[schema(min_length = 1, max_length = 100, nullable = true)]
    name: Option<String>,
    /// Participants wait for the host's approval before joining. Defaults to false.
    #[schema(nullable = true)]
    waiting_room: Option<bool>,
    /// At most this many participants at once, the host included. Defaults to 50.
    #[schema(minimum = 2, maximum = 100, nullable = true)]
    max_participants: Option<i64>,
}
