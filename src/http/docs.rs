//! The OpenAPI document, and Swagger UI rendering it (shipped inside the binary, so the page
//! works offline), with "Try it out" against this service.

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::Config;

use super::{ApiError, AppState};

/// Where the page's files live; the page loads them relative to its own address.
const PAGE: &str = "/docs/index.html";

static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            .try_it_out_enabled(true)
            .display_request_duration(true)
            // Swagger UI's badge would send the document's address to validator.swagger.io.
            .validator_url("none")
            // A token stays in this tab only; nothing is written to the browser's storage.
            .persist_authorization(false),
    )
});

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_file))
}

/// The OpenAPI 3.1 document of this API
#[utoipa::path(get, path = "/openapi.json", tag = "documentation", security(()),
    responses((status = 200, description = "This document.", content_type = "application/json",
        body = std::collections::HashMap<String, serde_json::Value>)))]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

/// API documentation page
#[utoipa::path(get, path = "/docs", tag = "documentation", security(()),
    responses((status = 308, description = "The page, Swagger UI rendering /openapi.json.",
        headers(("Location" = String, description = "/docs/index.html")))))]
async fn docs_page() -> Redirect {
    Redirect::permanent(PAGE)
}

/// A file of the documentation page
#[utoipa::path(get, path = "/docs/{file}", tag = "documentation", security(()),
    params(("file" = String, Path, description = "`index.html`, or a file it loads.")),
    responses(
        (status = 200, description = "The file (HTML, JavaScript, CSS or an image)."),
        (status = 404, description = "No such file.", content_type = "application/problem+json", body = super::problem::Problem),
    ))]
async fn docs_file(Path(file): Path<String>) -> Result<Response, ApiError> {
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.into_owned(),
        )
            .into_response()),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no file {file} on the docs page"
        ))),
        Err(error) => Err(ApiError::Internal(error.to_string().into())),
    }
}
