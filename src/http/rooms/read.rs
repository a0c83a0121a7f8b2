//! GET /rooms/{id} and GET /rooms/code/{code}.

use aggregates::RoomCode;
use axum::extract::{Path, State};
use axum::Json;

use super::full_room;
use super::views::{FullRoom, PublicRoom};
use crate::http::problem::Problem;
use crate::http::Caller;
use crate::http::{ApiError, AppState};
use crate::read_models::rooms;

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
        crate::http::problem::Unauthenticated,
        crate::http::problem::RoomNotFound,
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn get_room(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FullRoom>, ApiError> {
    Ok(Json(full_room(&state, &id).await?))
}

/// Find a room by code
///
/// Public: what anyone holding a room code may see before joining.
#[utoipa::path(
    get,
    path = "/rooms/code/{code}",
    tag = "rooms",
    security(()),
    params(("code" = String, Path, description = "Room code, `xxx-xxx-xxx`", example = "abc-def-ghi")),
    responses(
        (status = 200, description = "The room's public view.", body = PublicRoom),
        (status = 404, description = "No room has this code.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RateLimited,
        crate::http::problem::Unavailable,
    )
)]
pub(super) async fn get_room_by_code(
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
