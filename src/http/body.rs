//! Request bodies: JSON objects only, read and checked here so that every failure is a precise
//! problem, never axum's plain-text 415/422.

use std::time::Duration;

use aggregates::FieldViolation;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::ApiError;

/// Largest accepted request body. A create-room body is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A request body that is a JSON object, sent as `application/json`.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        match read_json(request).await? {
            Value::Object(object) => Ok(Self(object)),
            other => Err(not_an_object(&other)),
        }
    }
}

fn not_an_object(value: &Value) -> ApiError {
    body_error(&format!("must be a JSON object, not {}", json_type(value)))
}

/// Middleware: reads a request's body whole (at most [`MAX_BODY_BYTES`]) within `deadline`,
/// so that handlers, and the places admission control counts, never wait on a slow client.
/// A body that does not arrive in time gets a 408, logged as the client's doing, not ours.
pub async fn read_whole(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return ApiError::PayloadTooLarge(MAX_BODY_BYTES).into_response();
    }
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(deadline, read_limited(body)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(problem)) => problem.into_response(),
        Err(_) => {
            metrics::counter!("http_requests_shed_total", "reason" => "slow_body").increment(1);
            tracing::info!(path = %parts.uri.path(), "request body not received in time; answered 408");
            ApiError::BodyTimeout(deadline).into_response()
        }
    }
}

/// The body as JSON, if it is sent as JSON, within the size limit, and parses.
async fn read_json(request: Request) -> Result<Value, ApiError> {
    if !is_json(request.headers().get(header::CONTENT_TYPE)) {
        return Err(body_error(
            "must be sent with Content-Type: application/json",
        ));
    }
    let bytes = read_limited(request.into_body()).await?;
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|error| body_error(&format!("is not valid JSON: {error}")))
}

/// A request body that is a JSON object, or no body at all, or `null` (an empty object).
pub struct MaybeJsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for MaybeJsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length == "0")
            || (request.headers().get(header::CONTENT_TYPE).is_none()
                && request.headers().get(header::TRANSFER_ENCODING).is_none()
                && request.headers().get(header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(Self(Map::new()));
        }
        match read_json(request).await? {
            Value::Object(object) => Ok(Self(object)),
            Value::Null => Ok(Self(Map::new())),
            other => Err(not_an_object(&other)),
        }
    }
}

async fn read_limited(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {error}"))
            }
        })
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(essence) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A problem with the body as a whole, named as the field `body`: the detail reads
/// "body is not valid JSON: ...".
fn body_error(message: &str) -> ApiError {
    ApiError::Validation(vec![FieldViolation::new("body", message)])
}

pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
