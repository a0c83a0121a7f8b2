//! The HTTP API: one router per resource, errors as problem+json.

mod admission;
mod body;
mod caller;
mod client_address;
mod connections;
mod deadline;
mod docs;
mod fields;
mod health;
mod live;
mod participants;
mod problem;
mod query;
mod rate_limits;
mod rooms;
mod users;

use std::sync::Arc;

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use caller::{Caller, Credential, MaybeCaller, WithPass};
pub use client_address::{client_address, TrustedProxies};
pub use connections::serve;
pub use health::Checks;
pub use problem::ApiError;
pub use rate_limits::Rate;

use crate::auth::Tokens;
use crate::commands::RoomCommands;
use crate::relay::RelayStatus;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Tokens,
    pub commands: RoomCommands,
    pub relay: RelayStatus,
    /// The last check of the database and the relay's lag, for /readyz and /metrics.
    pub checks: Checks,
    /// Room events for this instance's live feeds.
    pub live: crate::live::Live,
    /// Whose `X-Forwarded-For`/`Forwarded` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// The OpenAPI document, serialized once.
    pub openapi: Arc<String>,
    pub metrics: PrometheusHandle,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NeuronMeet rooms API",
        description = "Meeting rooms of NeuronMeet. Errors are RFC 9457 problems (application/problem+json).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "This service")),
    modifiers(&BearerAuth),
    tags(
        (name = "rooms", description = "Create and look up meeting rooms"),
        (name = "participants", description = "Join rooms, the waiting room, and leave"),
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
                    .description(Some("A JWT with `sub` (the user id) and `exp`; optional `name`, `email`, `picture`. Signed with HS256 and JWT_SECRET, or by the identity provider of JWT_JWKS_URL when one is configured."))
                    .build(),
            ),
        );
    }
}

/// Every route, and the OpenAPI document describing exactly those routes: both come from the
/// same `routes!` registrations, so neither can drift from the other.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rooms::router())
        .merge(users::router())
        .merge(participants::router())
        .merge(live::router())
        .merge(health::router())
        .merge(docs::router())
        .split_for_parts();
    problem::ProblemExamples.modify(&mut openapi);
    fields::NamePatterns.modify(&mut openapi);
    (router, openapi)
}

/// Protection of the service as a whole.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's deadline: a command not yet written by then is not written, and the
    /// request gets a 503; one being written is answered with its outcome.
    pub request_timeout: Duration,
    /// A request head not received within this is dropped (also the keep-alive idle time).
    pub header_read_timeout: Duration,
    /// A request body not received within this gets a 408, before admission control.
    pub body_read_timeout: Duration,
    /// The most connections open at once; beyond, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, requests in flight get this long to finish; then connections are closed.
    pub shutdown_timeout: Duration,
    /// The longest a write waits for a lock another transaction holds (then 503, not written).
    pub write_lock_timeout: Duration,
    /// The most live feeds (SSE) open at once; beyond, 503 `overloaded`.
    pub live_max_streams: usize,
    /// The most live feeds one participant (or a room's host) holds open at once; beyond, 429.
    pub live_max_streams_each: usize,
    /// The most requests served at once; admission control (`admission`) adapts the limit
    /// between `min_concurrent_requests` and this. More are refused at once with a 503.
    pub max_concurrent_requests: usize,
    /// The least the adaptive limit goes down to: four per connection of the database pool
    /// (one running, three waiting), so that a burst of clients on a hot room is queued, not
    /// refused, while the service as a whole is not overloaded.
    pub min_concurrent_requests: usize,
    /// Mean latency above which the adaptive limit comes down.
    pub latency_target: Duration,
    /// Origins allowed by CORS; empty: CORS is off; one of them `*`: any origin.
    pub cors_origins: Vec<HeaderValue>,
    /// Commands on one room are decided in batches in this instance (off only to measure what
    /// that saves).
    pub room_batches: bool,
    /// Guest joins (without a token) per client address; `None`: no limit.
    pub guest_joins_per_address: Option<Rate>,
    /// Lookups by code (`GET /rooms/code/{code}`) per client address.
    pub code_lookups_per_address: Option<Rate>,
    /// Lookups and joins answered 404 (unknown codes) per client address; once used up, every
    /// lookup and join from the address is refused until it refills.
    pub failed_lookups_per_address: Option<Rate>,
    /// Guest joins (and knocks) per room, keyed on the code in the path.
    pub guest_joins_per_room: Option<Rate>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` name the client address.
    pub trusted_proxies: TrustedProxies,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(10),
            write_lock_timeout: crate::event_store::WRITE_LOCK_TIMEOUT,
            live_max_streams: 10_000,
            live_max_streams_each: 5,
            max_concurrent_requests: 512,
            min_concurrent_requests: 40,
            latency_target: Duration::from_millis(50),
            cors_origins: Vec::new(),
            room_batches: true,
            guest_joins_per_address: Some(rate_limits::GUEST_JOINS_PER_ADDRESS),
            code_lookups_per_address: Some(rate_limits::CODE_LOOKUPS_PER_ADDRESS),
            failed_lookups_per_address: Some(rate_limits::FAILED_LOOKUPS_PER_ADDRESS),
            guest_joins_per_room: Some(rate_limits::GUEST_JOINS_PER_ROOM),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The OpenAPI document of every route, as GET /openapi.json serves it.
pub fn openapi_json() -> String {
    routes()
        .1
        .to_json()
        .expect("the OpenAPI document serializes")
}

pub fn router(mut state: AppState, limits: &Limits) -> Router {
    let (routes, openapi) = routes();
    state.openapi = Arc::new(openapi.to_json().expect("the OpenAPI document serializes"));
    let admission = Arc::new(admission::Admission::new(admission::Bounds {
        min: limits.min_concurrent_requests,
        max: limits.max_concurrent_requests,
        target: limits.latency_target,
    }));
    let pool = state.pool.clone();
    let rate_limits = rate_limits::RateLimits::start(limits);
    let cors = (!limits.cors_origins.is_empty()).then(|| {
        // No credentials are ever allowed (the API takes bearer tokens, not cookies), so `*` is
        // valid CORS; tower-http's list would panic on it.
        let origins = if limits.cors_origins.iter().any(|origin| origin == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(limits.cors_origins.clone())
        };
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                REQUEST_ID,
                IDEMPOTENCY_KEY,
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                REQUEST_ID,
                IDEMPOTENT_REPLAYED,
            ])
    });
    routes
        .route_layer(axum::middleware::from_fn(crate::telemetry::track_requests))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                // Accept the caller's X-Request-Id or make one; log it on the request's span,
                // return it, and store it in event metadata.
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Outside admission control, so that a browser can read a refusal too.
                .option_layer(cors)
                // Rate limits on the anonymous paths, from the request head alone: a refused
                // client's body is never read, and it costs no admitted place and no query.
                .option_layer(rate_limits.map(|rate_limits| {
                    axum::middleware::from_fn_with_state(rate_limits, rate_limits::limit)
                }))
                // Bodies are read whole before a request takes a place in admission control:
                // a client that sends its body slowly holds a connection, not a place.
                .layer(axum::middleware::from_fn_with_state(
                    limits.body_read_timeout,
                    body::read_whole,
                ))
                // Before tracing, tokens and body parsing: refusing must cost next to nothing.
                .layer(axum::middleware::from_fn_with_state(
                    (admission, pool),
                    admission::admit,
                ))
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
                .layer(axum::middleware::from_fn_with_state(
                    limits.request_timeout,
                    deadline::limit,
                )),
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
