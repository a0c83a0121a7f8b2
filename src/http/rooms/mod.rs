//! The rooms resource: one file per operation, and what they answer (`views`).

mod create;
mod history;
mod lifecycle;
mod read;
mod settings;
mod views;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState};
use crate::read_models::rooms;
pub use views::{optional_timestamp, timestamp, FullRoom};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create::create_room))
        .routes(routes!(read::get_room, lifecycle::end_room))
        .routes(routes!(settings::update_settings))
        .routes(routes!(history::room_events))
        .routes(routes!(read::get_room_by_code))
}

fn no_such_room(id: &str) -> ApiError {
    ApiError::NotFound(format!("no room has id {id}"))
}

/// Room ids are UUIDs: anything else names no room (and need not reach the database).
fn known_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| no_such_room(id))
}

/// The room's view, or 404 (without asking the database when `id` is no UUID).
pub async fn find_room(state: &AppState, id: &str) -> Result<projections::RoomView, ApiError> {
    known_id(id)?;
    rooms::find_by_id(&state.pool, id)
        .await?
        .ok_or_else(|| no_such_room(id))
}

/// The room as GET /rooms/{id} answers it: read-your-writes, since a command writes the view in
/// its own transaction.
async fn full_room(state: &AppState, id: &str) -> Result<FullRoom, ApiError> {
    FullRoom::try_from(find_room(state, id).await?)
}
