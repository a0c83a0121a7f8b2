//! DELETE /rooms/{id}: ending a room.

use aggregates::{EndRoom, RoomCommand};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;

use super::views::FullRoom;
use super::{full_room, known_id};
use crate::commands;
use crate::http::problem::Problem;
use crate::http::Caller;
use crate::http::{request_id, ApiError, AppState};

/// End a room
///
/// The host ends the room: it stays readable, with `isActive: false` and `endedAt` set. Ending
/// an ended room answers it as it is.
#[utoipa::path(
    delete,
    path = "/rooms/{id}",
    tag = "rooms",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The ended room, as GET /rooms/{id} returns it.", body = FullRoom),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "The caller is not the room's host.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        (status = 409, description = "The room changed too often concurrently; retry.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn end_room(
    State(state): State<AppState>,
    Caller(claims): Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<FullRoom>, ApiError> {
    known_id(&id)?;
    let command = RoomCommand::EndRoom(EndRoom {
        by: claims.sub,
        at: commands::now(),
    });
    state
        .commands
        .execute(&id, command, request_id(&headers))
        .await?;
    Ok(Json(full_room(&state, &id).await?))
}
