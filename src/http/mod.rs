//! The HTTP API: one router per resource, errors as problem+json.

mod body;
mod health;
mod problem;
mod rooms;

use axum::http::{HeaderMap, HeaderName, Request};
use axum::Router;
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use problem::ApiError;

use crate::auth::Tokens;
use crate::commands::RoomCommands;
use crate::relay::RelayStatus;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Tokens,
    pub commands: RoomCommands,
    pub relay: RelayStatus,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(rooms::router())
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                // Accept the caller's X-Request-Id or make one; log it on the request's span,
                // return it, and store it in event metadata.
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                        tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id = request_id(request.headers()),
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// The request's id, as set by the request-id layer (printable ASCII, at most 128 bytes kept).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect())
        .unwrap_or_default()
}
