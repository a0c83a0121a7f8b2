//! Bearer tokens: HS256 JWTs signed with the configured secret, and, when an identity
//! provider's keys are configured (`jwks`), user tokens signed by that provider.

use std::sync::Arc;
use std::time::Duration;

use aggregates::{text, Host, MAX_DISPLAY_NAME_CHARS};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::jwks::{Jwks, KeyError};

// Bounds on the text claims, in characters (not bytes): they are copied into every event and
// row. `sub` must also not be empty or only whitespace.
/// The most characters a token's `sub` may have.
pub const MAX_SUB_CHARS: usize = 255;
/// The most characters a token's `name` may have.
pub const MAX_NAME_CHARS: usize = 100;
/// The most characters a token's `email` may have (the longest address RFC 5321 allows).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The most characters a token's `picture` may have.
pub const MAX_PICTURE_CHARS: usize = 2048;

/// Why a token is refused, or cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Decoding, signature or `Validation` (algorithm, `exp`, `nbf`, `iss`, `aud`) failed.
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("the token's `sub` claim is empty or blank")]
    EmptySubject,
    #[error("the token's `{claim}` claim is longer than {max} characters")]
    TooLong { claim: &'static str, max: usize },
    /// PostgreSQL text cannot hold NUL: such a claim could never become a host.
    #[error("the token's `{0}` claim contains a NUL character")]
    Nul(&'static str),
    #[error("the token's `nbf` claim is not a number")]
    NotBeforeNotANumber,
    #[error("a join token is accepted only by the participant endpoints")]
    JoinTokenNotAccepted,
    #[error("the token names no key (`kid`)")]
    NoKeyId,
    #[error("user tokens come from the identity provider; an HS256 token is not accepted")]
    LocalUserToken,
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl TokenError {
    /// The `detail` of the 401 answering a token refused for this reason.
    pub fn detail(&self) -> std::borrow::Cow<'static, str> {
        use jsonwebtoken::errors::ErrorKind;
        let Self::Jwt(error) = self else {
            return self.to_string().into();
        };
        match error.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
            ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the token lacks the required claim `{claim}`").into()
            }
            ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
            ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
            _ => "the token is malformed".into(),
        }
    }
}

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

    /// Refuses an empty `sub`, a text claim longer than its bound, or one holding NUL.
    fn check_texts(&self) -> Result<(), TokenError> {
        if self.sub.trim().is_empty() {
            return Err(TokenError::EmptySubject);
        }
        let texts = [
            ("sub", Some(&self.sub), MAX_SUB_CHARS),
            ("name", self.name.as_ref(), MAX_NAME_CHARS),
            ("email", self.email.as_ref(), MAX_EMAIL_CHARS),
            ("picture", self.picture.as_ref(), MAX_PICTURE_CHARS),
        ];
        for (claim, text, max) in texts {
            let Some(text) = text else { continue };
            // Counting stops one past the bound: a huge claim costs no more than a long one.
            if text.chars().take(max + 1).count() > max {
                return Err(TokenError::TooLong { claim, max });
            }
            if text.contains('\0') {
                return Err(TokenError::Nul(claim));
            }
        }
        Ok(())
    }

    /// The user as rooms show them. The display name is `name`, else `email` when
    /// `show_email` (DISPLAY_EMAIL), cleaned of what a shown name may not contain
    /// (aggregates::text); else empty, and the room shows "Host" or "Participant N": never
    /// the `sub`, which is the identity provider's id. The avatar is `picture` when it is an
    /// https URL; any other is dropped (it is the provider's, not the caller's, to refuse).
    pub fn host(&self, show_email: bool) -> Host {
        // Cleaned, cut to a display name's length, cleaned again (a cut can leave a joiner at
        // the end), and without a host marker: the room marks its host by role.
        let shown = |claim: &Option<String>| {
            let name = text::sanitized(claim.as_deref()?)?;
            let cut: String = name.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
            text::sanitized(&text::without_host_marker(&text::sanitized(&cut)?))
        };
        let display_name = shown(&self.name)
            .or_else(|| show_email.then(|| shown(&self.email)).flatten())
            .unwrap_or_default();
        Host {
            id: self.sub.clone(),
            display_name,
            avatar_url: self.picture.as_deref().and_then(avatar_url),
        }
    }
}

/// `picture` when it is an https URL (no scheme a browser would run or fetch in plain text)
/// with nothing that cannot be seen in it.
fn avatar_url(picture: &str) -> Option<String> {
    let https = picture
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let clean = !picture.chars().any(|c| c.is_whitespace() || c.is_control());
    (https && clean && picture.len() > 8 && picture.chars().count() <= MAX_PICTURE_CHARS)
        .then(|| picture.to_owned())
}

/// Verifies and mints tokens. The secret has no default anywhere: see `cli`.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// An identity provider's keys, for user tokens not signed with HS256.
    provider: Option<Arc<Jwks>>,
    join_validation: Validation,
    pass_validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    /// DISPLAY_EMAIL: a user token's `email` may be shown as their name when it has no `name`.
    show_email: bool,
    /// Derives guests' origins from their networks (keyed by JWT_SECRET, so that nobody
    /// without it can tell which network an origin stands for).
    origins: ring::hmac::Key,
}

impl Tokens {
    pub fn new(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        // Only HS256: a token naming another algorithm (or "none") is rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        // Only checked when the token has an `nbf`, which it need not.
        validation.validate_nbf = true;
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
        let mut join_validation = Validation::new(Algorithm::HS256);
        join_validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        join_validation.set_audience(&[JOIN_AUDIENCE]);
        join_validation.leeway = 30;
        let mut pass_validation = join_validation.clone();
        pass_validation.set_audience(&[WAITING_AUDIENCE]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            provider: None,
            join_validation,
            pass_validation,
            issuer,
            audience,
            show_email: false,
            origins: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// A guest's origin in a room: an opaque token of the network `address` belongs to (the
    /// address itself for IPv4, its /64 for IPv6, which one host usually holds whole), the same
    /// within one room and unrelated across rooms.
    pub fn origin(&self, room_id: &str, address: std::net::IpAddr) -> String {
        let network = match address {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.octets().to_vec(),
                None => v6.octets()[..8].to_vec(),
            },
        };
        let mut message = format!("origin\0{room_id}\0").into_bytes();
        message.extend(network);
        let tag = ring::hmac::sign(&self.origins, &message);
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Shows a user's `email` as their name when their token has no `name` (off by default:
    /// everyone in a room, guests included, would see it).
    pub fn showing_email(mut self, show: bool) -> Self {
        self.show_email = show;
        self
    }

    pub fn shows_email(&self) -> bool {
        self.show_email
    }

    /// User tokens are then those signed by the identity provider owning these keys, and no
    /// longer HS256 ones (join tokens stay HS256).
    pub fn with_provider(mut self, keys: Jwks) -> Self {
        self.provider = Some(Arc::new(keys));
        self
    }

    /// A user token's claims. The header's `alg` picks the key: HS256 the secret, any other
    /// algorithm a key of the provider with that `kid`, whose type must fit the algorithm (an
    /// RS256 key used as an HMAC secret never checks a token).
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let payload = match (&self.provider, header.alg) {
            // JWT_SECRET is shared with the signalling and media layers (join tokens): with an
            // identity provider, it must not also mint users (its `sub`s are the provider's).
            (Some(_), Algorithm::HS256) => return Err(TokenError::LocalUserToken),
            (None, _) => jsonwebtoken::decode::<Payload>(token, &self.decoding, &self.validation)?,
            (Some(provider), alg) => {
                let kid = header.kid.as_deref().ok_or(TokenError::NoKeyId)?;
                let key = provider.key(kid, alg).await?;
                let mut validation = self.validation.clone();
                validation.algorithms = vec![alg];
                jsonwebtoken::decode::<Payload>(token, &key, &validation)?
            }
        }
        .claims;
        let audiences = match &payload.claims.aud {
            Some(serde_json::Value::String(aud)) => vec![aud.as_str()],
            Some(serde_json::Value::Array(auds)) => {
                auds.iter().filter_map(|a| a.as_str()).collect()
            }
            _ => Vec::new(),
        };
        if audiences.contains(&JOIN_AUDIENCE) || audiences.contains(&WAITING_AUDIENCE) {
            return Err(TokenError::JoinTokenNotAccepted);
        }
        check_not_before(payload.nbf.as_ref())?;
        payload.claims.check_texts()?;
        Ok(payload.claims)
    }

    /// A token for `claims.sub`, valid for `ttl` from now, carrying the configured issuer and
    /// audience. Claims that `verify` would refuse (an empty `sub`, a text claim over its bound)
    /// are refused here too.
    pub fn mint(&self, mut claims: Claims, ttl: Duration) -> Result<String, TokenError> {
        claims.check_texts()?;
        let now = jsonwebtoken::get_current_timestamp();
        claims.iat = Some(now);
        claims.exp = now.saturating_add(ttl.as_secs());
        claims.iss = claims.iss.or_else(|| self.issuer.clone());
        claims.aud = claims
            .aud
            .or_else(|| self.audience.clone().map(serde_json::Value::String));
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }
}

/// The audience of join tokens: the signalling and media layers accept them; the API accepts
/// them on the participant endpoints only.
pub const JOIN_AUDIENCE: &str = "neuronmeet:room";
/// The audience of waiting passes: a participant in the waiting room holds one instead of a
/// join token. It is good for their own participant resource, their waiting feed and leaving
/// the waiting room, and nothing else: the signalling and media layers, which check
/// `aud: neuronmeet:room`, refuse it, and so does every other endpoint.
pub const WAITING_AUDIENCE: &str = "neuronmeet:waiting";
/// How long a join token (or a waiting pass) is valid.
pub const JOIN_TOKEN_TTL: Duration = Duration::from_secs(4 * 3600);

/// A join token's (or a waiting pass's) claims: `sub` is the participant, `room` the room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinClaims {
    /// Unique per token: each join gets a fresh one.
    pub jti: String,
    pub sub: String,
    pub room: String,
    pub role: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl Tokens {
    /// A join token (`aud` [`JOIN_AUDIENCE`]) or a waiting pass (`aud` [`WAITING_AUDIENCE`])
    /// for a participant of a room, and when it expires (seconds since the epoch).
    pub fn mint_join(
        &self,
        audience: &'static str,
        participant_id: &str,
        room_id: &str,
        role: &str,
    ) -> Result<(String, u64), TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = JoinClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            sub: participant_id.to_owned(),
            room: room_id.to_owned(),
            role: role.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + JOIN_TOKEN_TTL.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }

    pub fn verify_join(&self, token: &str) -> Result<JoinClaims, TokenError> {
        Ok(
            jsonwebtoken::decode::<JoinClaims>(token, &self.decoding, &self.join_validation)?
                .claims,
        )
    }

    pub fn verify_pass(&self, token: &str) -> Result<JoinClaims, TokenError> {
        Ok(
            jsonwebtoken::decode::<JoinClaims>(token, &self.decoding, &self.pass_validation)?
                .claims,
        )
    }
}

/// What `verify` decodes: the claims, and `nbf` as it was written.
#[derive(Deserialize)]
struct Payload {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
}

/// `Validation` checks an `nbf` only when it can read it as a u64, and treats any other (a
/// string, `1e300`) as absent: a token with `"nbf": "4102444800"` would be valid at once. A
/// NumericDate is a number; one too large for a u64 is not valid yet. A negative one is in the
/// past.
fn check_not_before(nbf: Option<&serde_json::Value>) -> Result<(), TokenError> {
    match nbf {
        None => Ok(()),
        Some(serde_json::Value::Number(n)) if n.as_f64().is_some_and(|t| t < u64::MAX as f64) => {
            Ok(()) // checked by `Validation`
        }
        Some(serde_json::Value::Number(_)) => Err(TokenError::Jwt(
            jsonwebtoken::errors::ErrorKind::ImmatureSignature.into(),
        )),
        Some(_) => Err(TokenError::NotBeforeNotANumber),
    }
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
    fn display_name_is_the_name_then_the_email_only_if_shown_never_the_sub() {
        assert_eq!(
            claims(Some("Ada"), Some("a@x")).host(false).display_name,
            "Ada"
        );
        assert_eq!(claims(None, Some("a@x")).host(false).display_name, "");
        assert_eq!(claims(None, Some("a@x")).host(true).display_name, "a@x");
        assert_eq!(claims(Some(" "), None).host(true).display_name, "");
        assert_eq!(
            claims(Some("Ada\u{202E} Lovelace"), None)
                .host(false)
                .display_name,
            "Ada Lovelace"
        );
    }

    #[test]
    fn only_https_avatars_are_kept() {
        let avatar = |picture: &str| {
            Claims {
                picture: Some(picture.into()),
                ..Claims::for_subject("u1")
            }
            .host(false)
            .avatar_url
        };
        assert_eq!(
            avatar("https://cdn.example/a.png").as_deref(),
            Some("https://cdn.example/a.png")
        );
        assert!(avatar("HTTPS://cdn.example/a.png").is_some());
        for refused in [
            "http://cdn.example/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://",
            "https://cdn.example/a b.png",
            "//cdn.example/a.png",
        ] {
            assert_eq!(avatar(refused), None, "{refused}");
        }
    }

    #[tokio::test]
    async fn mints_tokens_that_verify_and_honours_issuer_and_audience() {
        let secret = [7u8; 32];
        let tokens = Tokens::new(&secret, Some("me".into()), Some("rooms".into()));
        let token = tokens
            .mint(claims(Some("Ada"), None), Duration::from_secs(60))
            .unwrap();
        assert_eq!(tokens.verify(&token).await.unwrap().sub, "u1");
        let other_audience = Tokens::new(&secret, Some("me".into()), Some("chat".into()));
        assert!(other_audience.verify(&token).await.is_err());
        let plain = Tokens::new(&secret, None, None)
            .mint(claims(None, None), Duration::from_secs(60))
            .unwrap();
        assert!(
            tokens.verify(&plain).await.is_err(),
            "issuer and audience are required when configured"
        );
    }

    #[tokio::test]
    async fn mint_refuses_claims_that_verify_would_refuse() {
        let tokens = Tokens::new(&[7u8; 32], None, None);
        let ttl = Duration::from_secs(60);
        let long_name = Claims {
            name: Some("é".repeat(MAX_NAME_CHARS + 1)),
            ..Claims::for_subject("u1")
        };
        assert!(matches!(
            tokens.mint(long_name, ttl),
            Err(TokenError::TooLong {
                claim: "name",
                max: MAX_NAME_CHARS
            })
        ));
        assert!(matches!(
            tokens.mint(Claims::for_subject(" "), ttl),
            Err(TokenError::EmptySubject)
        ));
        let at_the_bounds = Claims {
            name: Some("é".repeat(MAX_NAME_CHARS)),
            email: Some("e".repeat(MAX_EMAIL_CHARS)),
            picture: Some("p".repeat(MAX_PICTURE_CHARS)),
            ..Claims::for_subject("é".repeat(MAX_SUB_CHARS))
        };
        let token = tokens.mint(at_the_bounds, ttl).unwrap();
        assert!(tokens.verify(&token).await.is_ok());
    }

    #[test]
    fn an_nbf_validation_cannot_read_is_refused_unless_it_is_in_the_past() {
        use serde_json::json;
        assert!(check_not_before(None).is_ok());
        assert!(check_not_before(Some(&json!(-5))).is_ok());
        assert!(check_not_before(Some(&json!(1.5))).is_ok());
        assert!(matches!(
            check_not_before(Some(&json!(1e300))),
            Err(TokenError::Jwt(_))
        ));
        for not_a_number in [json!("4102444800"), json!(true), json!([1]), json!({})] {
            assert!(matches!(
                check_not_before(Some(&not_a_number)),
                Err(TokenError::NotBeforeNotANumber)
            ));
        }
    }
}
