//! The users resource: GET /users/me/rooms.

use axum::extract::State;
use axum::Json;
use chrono::DateTime;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::Problem;
use super::query::{next_page_after, Params, RawParams};
use super::rooms::FullRoom;
use super::{ApiError, AppState};
use crate::http::Caller;
use crate::read_models::rooms::{self, After, Status};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_rooms))
}

/// My rooms
///
/// The rooms the caller hosts, newest first, a page at a time. Paging is stable: rooms created
/// while a client pages appear before its first page, so it sees none twice and skips none.
#[utoipa::path(
    get,
    path = "/users/me/rooms",
    tag = "rooms",
    security(("bearer" = [])),
    params(
        ("status" = inline(Option<RoomStatus>), Query, description = "`active`, `ended` or `all` (default)."),
        ("limit" = Option<i64>, Query, description = "Rooms per page, 1 to 100 (default 20).", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of the caller's rooms.", body = RoomPage),
        (status = 400, description = "Invalid query parameter, each named in `errors`.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        crate::http::problem::Unavailable,
    )
)]
async fn my_rooms(
    State(state): State<AppState>,
    Caller(claims): Caller,
    query: RawParams,
) -> Result<Json<RoomPage>, ApiError> {
    let mut params = Params::new(query)?;
    let status = match params.one_of("status", &["active", "ended", "all"], "all") {
        "active" => Status::Active,
        "ended" => Status::Ended,
        _ => Status::All,
    };
    let limit = params.integer("limit", 1..=100, 20);
    let after = params.text("cursor").and_then(|cursor| {
        let after = decode_cursor(&cursor);
        if after.is_none() {
            params.invalid("cursor", "is not a cursor this service gave");
        }
        after
    });
    params.finish()?;
    // One more than asked: whether there is a next page.
    let mut views =
        rooms::hosted_by(&state.pool, &claims.sub, status, after.as_ref(), limit + 1).await?;
    let next_cursor = next_page_after(&mut views, limit).map(|last| {
        encode_cursor(&After {
            created_at: last.created_at,
            id: last.id.clone(),
        })
    });
    let items = views
        .into_iter()
        .map(FullRoom::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(RoomPage { items, next_cursor }))
}

// Documentation only: `Params` reads the query.
/// Which rooms to list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum RoomStatus {
    Active,
    Ended,
    All,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RoomPage {
    items: Vec<FullRoom>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// Opaque to clients: the last room's creation time (microseconds) and id, hex-encoded.
fn encode_cursor(after: &After) -> String {
    let text = format!("{}:{}", after.created_at.timestamp_micros(), after.id);
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<After> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 256 {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once(':')?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(After {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let after = After {
            created_at: DateTime::from_timestamp_micros(1_772_533_800_123_000).unwrap(),
            id: "01a217d9-6167-7261-8d7a-f92b31d804e7".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&after)), Some(after));
        for junk in ["", "zz", "abc", "3a", "31323a6e6f74", "é"] {
            assert_eq!(decode_cursor(junk), None, "{junk}");
        }
    }
}
