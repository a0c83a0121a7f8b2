//! The OpenAPI document and a page that renders it, with no assets from elsewhere.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_script))
        .routes(routes!(docs_style))
}

/// The OpenAPI 3.1 document of this API
#[utoipa::path(get, path = "/openapi.json", tag = "documentation", security(()),
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

/// API documentation page
#[utoipa::path(get, path = "/docs", tag = "documentation", security(()),
    responses((status = 200, description = "An HTML page rendering /openapi.json.", content_type = "text/html", body = String)))]
async fn docs_page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("docs_page/index.html"),
    )
}

/// Script of the documentation page
#[utoipa::path(get, path = "/docs/docs.js", tag = "documentation", security(()),
    responses((status = 200, description = "JavaScript.", content_type = "text/javascript", body = String)))]
async fn docs_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("docs_page/docs.js"),
    )
}

/// Style sheet of the documentation page
#[utoipa::path(get, path = "/docs/docs.css", tag = "documentation", security(()),
    responses((status = 200, description = "CSS.", content_type = "text/css", body = String)))]
async fn docs_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("docs_page/docs.css"),
    )
}
