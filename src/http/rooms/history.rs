//! GET /rooms/{id}/events: a room's history, from the log.

use aggregates::Room;
use axum::extract::{Path, State};
use axum::Json;
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::find_room;
use super::views::timestamp;
use crate::event_log;
use crate::http::problem::Problem;
use crate::http::query::{next_page_after, Params, RawParams};
use crate::http::Caller;
use crate::http::{ApiError, AppState};

/// A room's events
///
/// The host reads the room's history from the event log, in sequence order, a page at a time.
/// Each event's `data` is what subscribers receive on NATS for it.
#[utoipa::path(
    get,
    path = "/rooms/{id}/events",
    tag = "rooms",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Room id"),
        ("after" = Option<i64>, Query, description = "Only events after this sequence (default 0).", minimum = 0),
        ("limit" = Option<i64>, Query, description = "At most this many events (1 to 500, default 100).", minimum = 1, maximum = 500),
    ),
    responses(
        (status = 200, description = "A page of the room's events.", body = EventPage),
        (status = 400, description = "Invalid query parameter, each named in `errors`.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "The caller is not the room's host.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn room_events(
    State(state): State<AppState>,
    Caller(claims): Caller,
    Path(id): Path<String>,
    query: RawParams,
) -> Result<Json<EventPage>, ApiError> {
    let mut params = Params::new(query)?;
    let after = params.integer("after", 0..=i64::MAX, 0);
    let limit = params.integer("limit", 1..=500, 100);
    params.finish()?;
    let room = find_room(&state, &id).await?;
    if room.host_id != claims.sub {
        return Err(ApiError::Forbidden(
            "only the room's host may read its events".into(),
        ));
    }
    // One more than asked: whether there is a next page.
    let mut events = event_log::history(&state.pool, Room::TYPE, &id, after, limit + 1).await?;
    let next_after = next_page_after(&mut events, limit).map(|e| e.sequence);
    let items = events
        .into_iter()
        .map(|event| RoomEventItem {
            sequence: event.sequence,
            data: event_log::data(&event.event_type, &event.payload).clone(),
            kind: event.event_type,
            occurred_at: event.recorded_at,
        })
        .collect();
    Ok(Json(EventPage { items, next_after }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventPage {
    items: Vec<RoomEventItem>,
    /// The `after` of the next page; null on the last page.
    #[schema(required = true)]
    next_after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"sequence": 3, "type": "RoomLocked", "occurredAt": "2026-03-03T10:31:00.000Z",
    "data": {"roomId": "01a217d9-6167-7261-8d7a-f92b31d804e7", "at": "2026-03-03T10:31:00.000Z"}}))]
struct RoomEventItem {
    sequence: i64,
    /// The event type, as on NATS: `RoomCreated`, `SettingsConfigured`, `SettingsUpdated`,
    /// `RoomLocked`, `RoomUnlocked`, `RoomEnded`.
    #[serde(rename = "type")]
    kind: String,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    occurred_at: chrono::DateTime<chrono::Utc>,
    /// The event's payload, as subscribers receive it in the CloudEvents `data`.
    #[schema(value_type = std::collections::HashMap<String, Value>)]
    data: Value,
}
