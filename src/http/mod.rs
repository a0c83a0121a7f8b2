//! The HTTP API: one router per resource, errors as problem+json.

mod body;
mod docs;
mod health;
mod problem;
mod rooms;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, Request};
use axum::Router;
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

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
    /// The OpenAPI document, serialized once.
    pub openapi: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NeuronMeet rooms API",
        description = "Meeting rooms of NeuronMeet. Errors are RFC 9457 problems (application/problem+json).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "rooms", description = "Create and look up meeting rooms"),
        (name = "operations", description = "Health of the service"),
        (name = "documentation", description = "This document and its page"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.components.get_or_insert_with(Default::default).add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256 JWT with `sub` (the user id) and `exp`; optional `name`, `email`, `picture`."))
                    .build(),
            ),
        );
    }
}

/// Every route, and the OpenAPI document describing exactly those routes: both come from the
/// same `routes!` registrations, so neither can drift from the other.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rooms::router())
        .merge(health::router())
        .merge(docs::router())
        .split_for_parts()
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(mut state: AppState) -> Router {
    let (routes, openapi) = routes();
    state.openapi = Arc::new(openapi.to_json().expect("the OpenAPI document serializes"));
    routes
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
