//! Errors as RFC 9457 problem details. Causes are logged, never shown to clients.

use aggregates::{FieldViolation, RoomError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::commands::{CommandError, CODES_EXHAUSTED};
use crate::db;

/// Seconds a client should wait before retrying while a dependency is down.
const RETRY_AFTER_SECONDS: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is invalid")]
    Validation(Vec<FieldViolation>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", CODES_EXHAUSTED)]
    CodesExhausted,
    /// No credentials (RFC 6750: the challenge carries no error code).
    #[error("{0}")]
    Unauthorized(std::borrow::Cow<'static, str>),
    /// Credentials that are not a usable token (RFC 6750 `invalid_token`), or an Authorization
    /// header that is not `Bearer <token>` (`invalid_request`).
    #[error("{detail}")]
    BadCredentials {
        detail: std::borrow::Cow<'static, str>,
        code: &'static str,
    },
    #[error("{0}")]
    Forbidden(String),
    /// The host blocked the caller from this room.
    #[error("{0}")]
    Blocked(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// The room (or its waiting room) has no place left.
    #[error("{0}")]
    RoomFull(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The client did not send its body in time (`BODY_READ_TIMEOUT`).
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// Beyond a rate limit of the client's address, or of the room (`Retry-After` seconds).
    #[error("{detail}")]
    RateLimited {
        detail: &'static str,
        retry_after: u64,
    },
    /// The request's deadline (`REQUEST_TIMEOUT`) passed before its command was written.
    #[error("the request did not complete within its deadline; nothing was written")]
    TimedOut,
    /// This instance is at one of its limits; another (or this one, soon) can serve.
    #[error("{0}")]
    Overloaded(String),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://neuronmeet.com/problems/validation", "title": "Validation failed", "status": 400,
    "detail": "name must not be blank", "errors": [{"field": "name", "message": "must not be blank"}]
}))]
pub struct Problem<'a> {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(format = "uri-reference")]
    kind: String,
    #[schema(value_type = String)]
    title: &'a str,
    status: u16,
    detail: String,
    /// For validation failures: each failing field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldViolation]>,
}

// The responses many operations share, declared once (documentation only).
/// Refused at once under overload (`overloaded`, `Retry-After: 1`), the request's deadline passed before anything was written (`timed-out`, `Retry-After: 1`), or the database is unavailable (`unavailable`, `Retry-After: 5`); retry after Retry-After.
#[derive(utoipa::IntoResponses)]
#[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = String)))]
#[allow(dead_code)]
pub struct Unavailable(Problem<'static>);

/// No room has this id.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct RoomNotFound(Problem<'static>);

/// No such room, or no such participant in it.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct ParticipantNotFound(Problem<'static>);

/// The request body did not arrive within BODY_READ_TIMEOUT (the connection is closed).
#[derive(utoipa::IntoResponses)]
#[response(status = 408, content_type = "application/problem+json")]
#[allow(dead_code)]
pub struct SlowBody(Problem<'static>);

/// Too many requests from the client's address, or too many guests joining the room (`rate-limited`); retry after the delay in Retry-After.
#[derive(utoipa::IntoResponses)]
#[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = String)))]
#[allow(dead_code)]
pub struct RateLimited(Problem<'static>);

/// Missing or invalid token.
#[derive(utoipa::IntoResponses)]
#[response(status = 401, content_type = "application/problem+json", headers(("WWW-Authenticate" = String)))]
#[allow(dead_code)]
pub struct Unauthenticated(Problem<'static>);

/// One failing field of a request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the schema of aggregates::FieldViolation
struct FieldError {
    field: String,
    message: String,
}

impl ApiError {
    /// The RFC 9457 body: what clients see (never the causes, which go to the log).
    fn problem(&self) -> Problem<'_> {
        let (status, slug, title) = self.parts();
        let detail = match self {
            Self::Validation(violations) if violations.len() == 1 => {
                format!("{} {}", violations[0].field, violations[0].message)
            }
            Self::Validation(violations) => format!("{} fields are invalid", violations.len()),
            Self::Unavailable(_) => {
                "a dependency of the service is unavailable; retry later".to_owned()
            }
            Self::Internal(_) => "the server failed to handle the request".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("https://neuronmeet.com/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors: match self {
                Self::Validation(violations) => Some(violations),
                _ => None,
            },
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation", "Validation failed"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::CodesExhausted => (
                StatusCode::BAD_REQUEST,
                "room-code-exhausted",
                "Failed to generate unique room code",
            ),
            Self::Unauthorized(_) | Self::BadCredentials { .. } => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            }
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::Blocked(_) => (StatusCode::FORBIDDEN, "blocked", "Blocked"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::RoomFull(_) => (StatusCode::CONFLICT, "room-full", "Room full"),
            Self::Gone(_) => (StatusCode::GONE, "gone", "Gone"),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Unprocessable request",
            ),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Self::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service overloaded",
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Self::TimedOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timed-out",
                "Request timed out",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

/// Marks a response whose request waited the pool's whole acquire timeout for a connection;
/// admission control tells a busy pool (this instance full) from a database outage.
#[derive(Clone, Copy)]
pub struct PoolTimedOut;

/// Marks a response that says how long something took without saying how loaded the service
/// is (a deadline passed, a body came slowly): admission control leaves it out of its samples.
#[derive(Clone, Copy)]
pub struct NoLatencySample;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(error = %chain(cause.as_ref()), "dependency unavailable")
            }
            Self::Internal(cause) => {
                tracing::error!(error = %chain(cause.as_ref()), "request failed")
            }
            _ => {}
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).expect("problems serialize");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"neuronmeet\""),
                );
            }
            Self::BadCredentials { detail, code } => {
                // RFC 6750 section 3: the error code, and a description for developers (quotes
                // and backslashes cannot appear inside it).
                let description: String = detail
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
                    .collect();
                let challenge = format!(
                    "Bearer realm=\"neuronmeet\", error=\"{code}\", error_description=\"{description}\""
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::Unavailable(cause) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                if db::is_pool_timeout(cause.as_ref()) {
                    response.extensions_mut().insert(PoolTimedOut);
                }
            }
            Self::Overloaded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::TimedOut => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response.extensions_mut().insert(NoLatencySample);
            }
            Self::BodyTimeout(_) => {
                // The rest of the body may still arrive: it must not be read as a request.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Gives each problem response of the OpenAPI document an example of its own status (the
/// `Problem` schema's example is the 400 one), so that a 401 is not shown as a validation error.
pub struct ProblemExamples;

impl utoipa::Modify for ProblemExamples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let example = |status: &str| -> Option<ApiError> {
            Some(match status {
                "401" => ApiError::Unauthorized(
                    "missing Authorization header with a Bearer token".into(),
                ),
                "403" => ApiError::Forbidden("only the host may do this".into()),
                "404" => ApiError::NotFound("no such room".into()),
                "409" => {
                    ApiError::Conflict("the request conflicts with the room's current state".into())
                }
                "410" => ApiError::Gone("the room has ended".into()),
                "408" => ApiError::BodyTimeout(std::time::Duration::from_secs(5)),
                "413" => ApiError::PayloadTooLarge(crate::http::body::MAX_BODY_BYTES),
                "422" => ApiError::Unprocessable(
                    "this Idempotency-Key was used with another request body".into(),
                ),
                "429" => ApiError::RateLimited {
                    detail: "too many guest joins from this address; retry after the delay in Retry-After",
                    retry_after: 1,
                },
                "503" => ApiError::Unavailable("example".into()),
                _ => return None,
            })
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let (RefOr::T(response), Some(error)) = (response, example(status)) else {
                        continue;
                    };
                    if let Some(RefOr::T(content)) =
                        response.content.get_mut("application/problem+json")
                    {
                        if content.example.is_none() {
                            content.example = serde_json::to_value(error.problem()).ok();
                        }
                    }
                }
            }
        }
    }
}

/// An error and its causes on one line, for logs.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if db::is_unavailable(&error) {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Internal(Box::new(error))
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(RoomError::Invalid(violations)) => Self::Validation(violations),
            CommandError::Rejected(rejected) => {
                let detail = rejected.to_string();
                match rejected {
                    RoomError::NotFound | RoomError::NoSuchParticipant => Self::NotFound(detail),
                    RoomError::Blocked => Self::Blocked(detail),
                    RoomError::NotHost
                    | RoomError::CannotBlock
                    | RoomError::NotSelfOrHost
                    | RoomError::Locked
                    | RoomError::GuestsNotAllowed => Self::Forbidden(detail),
                    RoomError::Full | RoomError::WaitingRoomFull => Self::RoomFull(detail),
                    RoomError::AlreadyExists(_)
                    | RoomError::Ended
                    | RoomError::MoreJoinedThan(_)
                    | RoomError::NotWaiting
                    | RoomError::Invalid(_) => Self::Conflict(detail),
                }
            }
            CommandError::CodesExhausted => Self::CodesExhausted,
            CommandError::Conflict | CommandError::KeyUsed | CommandError::KeyBusy => {
                Self::Conflict(error.to_string())
            }
            CommandError::Expired(_) => Self::TimedOut,
            CommandError::Unavailable(source) => Self::Unavailable(source),
            CommandError::Failed(source) => Self::Internal(source),
        }
    }
}
