//! Who calls: the bearer token of a request, verified. User tokens everywhere; join tokens
//! (participants of a room) only where `Credential` is asked for.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::auth::{Claims, JoinClaims, TokenError};
use crate::jwks::KeyError;

/// The authenticated user, from `Authorization: Bearer <token>`.
pub struct Caller(pub Claims);

/// The authenticated user, or nobody when the request has no `Authorization` header. A header
/// with a bad token is still a 401.
pub struct MaybeCaller(pub Option<Claims>);

/// A user, or a participant of a room by their join token. A waiting pass is refused (403):
/// only [`WithPass`] takes one.
pub enum Credential {
    User(Claims),
    Participant(JoinClaims),
}

/// A [`Credential`], or a waiting pass: for the few endpoints a waiting participant may use
/// (their own participant resource, leaving the waiting room).
pub enum WithPass {
    Credential(Credential),
    Pass(JoinClaims),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        user(state, required_bearer(parts)?).await.map(Caller)
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts)? {
            Some(token) => user(state, token).await.map(|claims| Self(Some(claims))),
            None => Ok(Self(None)),
        }
    }
}

impl FromRequestParts<AppState> for Credential {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = required_bearer(parts)?;
        if let Ok(join) = state.tokens.verify_join(token) {
            return Ok(Self::Participant(join));
        }
        if state.tokens.verify_pass(token).is_ok() {
            return Err(ApiError::Forbidden(
                "a waiting pass is good only for its participant's own resource, waiting feed and leaving; the join token comes once admitted".into(),
            ));
        }
        user(state, token).await.map(Self::User)
    }
}

impl FromRequestParts<AppState> for WithPass {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Ok(pass) = state.tokens.verify_pass(required_bearer(parts)?) {
            return Ok(Self::Pass(pass));
        }
        Credential::from_request_parts(parts, state)
            .await
            .map(Self::Credential)
    }
}

async fn user(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    state
        .tokens
        .verify(token)
        .await
        .map_err(|error| match error {
            // The provider's keys cannot be fetched: the token may well be good.
            TokenError::Key(KeyError::Unavailable(_)) => ApiError::Unavailable(Box::new(error)),
            error => ApiError::BadCredentials {
                detail: error.detail(),
                code: "invalid_token",
            },
        })
}

fn required_bearer(parts: &Parts) -> Result<&str, ApiError> {
    bearer(parts)?.ok_or(ApiError::Unauthorized(
        "missing Authorization header with a Bearer token".into(),
    ))
}

/// The bearer token, if the request has an `Authorization` header.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    header
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Some(token.trim()))
        .ok_or(ApiError::BadCredentials {
            detail: "the Authorization header must be `Bearer <token>`".into(),
            code: "invalid_request",
        })
}
