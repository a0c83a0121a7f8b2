//! Bearer tokens: HS256 JWTs signed with the configured secret.

use std::time::Duration;

use aggregates::Host;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, AppState};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or an array of strings (RFC 7519); checked by `Validation`, carried as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

impl Claims {
    /// Claims naming only the subject; `mint` fills in the times, issuer and audience.
    pub fn for_subject(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            exp: 0,
            iat: None,
            name: None,
            email: None,
            picture: None,
            iss: None,
            aud: None,
        }
    }

    /// The host as rooms show them: display name from `name`, else `email`, else `sub`.
    pub fn host(&self) -> Host {
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        };
        Host {
            id: self.sub.clone(),
            display_name: non_empty(&self.name)
                .or_else(|| non_empty(&self.email))
                .unwrap_or_else(|| self.sub.clone()),
            avatar_url: non_empty(&self.picture),
        }
    }
}

/// Verifies and mints tokens. The secret has no default anywhere: see `cli`.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Tokens {
    pub fn new(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        // Only HS256: a token naming another algorithm (or "none") is rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
            audience,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims;
        if claims.sub.trim().is_empty() {
            return Err(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim("sub".into()).into());
        }
        // PostgreSQL text cannot hold NUL: such a claim could never become a host.
        let texts = [
            Some(&claims.sub),
            claims.name.as_ref(),
            claims.email.as_ref(),
            claims.picture.as_ref(),
        ];
        if texts.into_iter().flatten().any(|text| text.contains('\0')) {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
        }
        Ok(claims)
    }

    /// A token for `claims.sub`, valid for `ttl` from now, carrying the configured issuer and
    /// audience.
    pub fn mint(
        &self,
        mut claims: Claims,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        claims.iat = Some(now);
        claims.exp = now.saturating_add(ttl.as_secs());
        claims.iss = claims.iss.or_else(|| self.issuer.clone());
        claims.aud = claims
            .aud
            .or_else(|| self.audience.clone().map(serde_json::Value::String));
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

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
        state.tokens.verify(token).map(Caller).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            ApiError::Unauthorized(match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".into(),
                ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256".into(),
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token lacks the required claim `{claim}`").into()
                }
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
                ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
                ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
                _ => "the token is malformed".into(),
            })
        })
    }
}

/// Parses a time-to-live such as `90s`, `15m`, `1h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 1h"))?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h or d"
            ))
        }
    };
    number
        .checked_mul(seconds)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(name: Option<&str>, email: Option<&str>) -> Claims {
        Claims {
            name: name.map(Into::into),
            email: email.map(Into::into),
            ..Claims::for_subject("u1")
        }
    }

    #[test]
    fn display_name_falls_back_from_name_to_email_to_sub() {
        assert_eq!(claims(Some("Ada"), Some("a@x")).host().display_name, "Ada");
        assert_eq!(claims(None, Some("a@x")).host().display_name, "a@x");
        assert_eq!(claims(Some(" "), None).host().display_name, "u1");
    }

    #[test]
    fn mints_tokens_that_verify_and_honours_issuer_and_audience() {
        let secret = [7u8; 32];
        let tokens = Tokens::new(&secret, Some("me".into()), Some("rooms".into()));
        let token = tokens
            .mint(claims(Some("Ada"), None), Duration::from_secs(60))
            .unwrap();
        assert_eq!(tokens.verify(&token).unwrap().sub, "u1");
        let other_audience = Tokens::new(&secret, Some("me".into()), Some("chat".into()));
        assert!(other_audience.verify(&token).is_err());
        let plain = Tokens::new(&secret, None, None)
            .mint(claims(None, None), Duration::from_secs(60))
            .unwrap();
        assert!(
            tokens.verify(&plain).is_err(),
            "issuer and audience are required when configured"
        );
    }

    #[test]
    fn parses_ttls() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604800)));
        assert!(parse_ttl("0m").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
