//! Who calls: the bearer token of a request, verified.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::auth::Claims;

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header =
            parts
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .ok_or(ApiError::Unauthorized(
                    "missing Authorization header with a Bearer token".into(),
                ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            ))?;
        state
            .tokens
            .verify(token)
            .map(Caller)
            .map_err(|error| ApiError::Unauthorized(error.detail()))
    }
}
