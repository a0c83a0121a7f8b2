//! Tokens of an identity provider: the real binary with JWT_JWKS_URL pointing at a JWKS this
//! test serves (and can rotate, or take down). Keys: tests/api/fixtures/jwks/.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{self, SECRET};

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "neuronmeet-api";

/// The JWKS the provider publishes, and how often it was fetched.
#[derive(Default)]
struct Provider {
    keys: Vec<Value>,
    fetches: usize,
    down: bool,
    /// Fetches hang until this is cleared: a provider that accepts and never answers.
    stalled: bool,
}

type Shared = Arc<Mutex<Provider>>;

async fn jwks(State(shared): State<Shared>) -> impl IntoResponse {
    shared.lock().unwrap().fetches += 1;
    while shared.lock().unwrap().stalled {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let provider = shared.lock().unwrap();
    if provider.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"keys": provider.keys})).into_response()
}

/// Serves the JWKS on a free port; returns its URL.
async fn publish(provider: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(jwks))
        .with_state(provider);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn public_key(kid: &str) -> Value {
    let keys: Value = serde_json::from_str(include_str!("fixtures/jwks/public.json")).unwrap();
    keys[kid].clone()
}

fn private_key(kid: &str) -> EncodingKey {
    match kid {
        "rsa-1" => EncodingKey::from_rsa_der(include_bytes!("fixtures/jwks/rsa-1.der")),
        "rsa-2" => EncodingKey::from_rsa_der(include_bytes!("fixtures/jwks/rsa-2.der")),
        "ec-1" => EncodingKey::from_ec_der(include_bytes!("fixtures/jwks/ec-1.der")),
        other => panic!("no key {other}"),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims as a provider issues them; `changes` overrides or adds some.
fn claims(changes: Value) -> Value {
    let mut claims = json!({"sub": "idp|alice", "name": "Alice", "iss": ISSUER,
        "aud": [AUDIENCE, "https://idp.example.test/userinfo"], "iat": now(), "exp": now() + 600});
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

/// A token signed by the provider's key `signer`, whose header names `alg` and `kid`.
fn token(alg: Algorithm, kid: Option<&str>, signer: &str, claims: &Value) -> String {
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &private_key(signer)).unwrap()
}

struct Service {
    process: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Service {
    async fn start(jwks_url: &str) -> Self {
        let (database_url, _) = common::fresh_database().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
            .arg("serve")
            .env("DATABASE_URL", &database_url)
            .env(
                "NATS_URL",
                format!("nats://127.0.0.1:{}", common::closed_port()),
            )
            .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
            .env("JWT_ISSUER", ISSUER)
            .env("JWT_AUDIENCE", AUDIENCE)
            .env("JWT_JWKS_URL", jwks_url)
            .env("JWT_JWKS_MAX_AGE", "2s")
            .env("JWT_JWKS_MIN_REFRESH", "1s")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if service
                .client
                .get(service.url("/healthz"))
                .send()
                .await
                .is_ok()
            {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not come up");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create_room(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/rooms"))
            .bearer_auth(token)
            .json(&json!({"name": "From the provider"}))
            .send()
            .await
            .unwrap()
    }

    /// The status of POST /rooms with this token, and for a 401 its `detail`.
    async fn refused(&self, token: &str) -> String {
        let response = self.create_room(token).await;
        assert_eq!(response.status(), 401, "{token}");
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
        let problem: Value = response.json().await.unwrap();
        problem["detail"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn tokens_of_an_identity_provider_work_and_hostile_ones_get_401() {
    let provider: Shared = Arc::default();
    provider.lock().unwrap().keys = vec![public_key("rsa-1"), public_key("ec-1")];
    let service = Service::start(&publish(provider.clone()).await).await;

    // RS256 and ES256 tokens of the provider, and HS256 ones minted with the secret.
    let response = service
        .create_room(&token(
            Algorithm::RS256,
            Some("rsa-1"),
            "rsa-1",
            &claims(json!({})),
        ))
        .await;
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["host"]["id"], "idp|alice");
    assert_eq!(room["host"]["displayName"], "Alice");
    let es256 = token(
        Algorithm::ES256,
        Some("ec-1"),
        "ec-1",
        &claims(json!({"sub": "idp|bob"})),
    );
    assert_eq!(service.create_room(&es256).await.status(), 201);
    // JWT_SECRET is shared with the signalling and media layers: with a provider, it mints no
    // users (it would otherwise mint any of the provider's).
    let local = neuronmeet::auth::Tokens::new(SECRET, Some(ISSUER.into()), Some(AUDIENCE.into()))
        .mint(common::claims("idp|alice"), Duration::from_secs(60))
        .unwrap();
    assert!(service.refused(&local).await.contains("identity provider"));

    // Hostile or broken tokens.
    let good = claims(json!({}));
    let unknown = service
        .refused(&token(Algorithm::RS256, Some("rsa-2"), "rsa-2", &good))
        .await;
    assert!(unknown.contains("rsa-2"), "{unknown}");
    let forged = service
        .refused(&token(Algorithm::RS256, Some("rsa-1"), "rsa-2", &good))
        .await;
    assert_eq!(forged, "the token's signature is invalid");
    // The provider's public key used as an HMAC secret: no HS256 user token is taken from
    // anyone while a provider is configured (and none would be checked with that key).
    let public_as_secret = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(public_key("rsa-1").to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        service.refused(&public_as_secret).await,
        "user tokens come from the identity provider; an HS256 token is not accepted"
    );
    // An EC signature presented as the RSA key's.
    let mismatch = service
        .refused(&token(Algorithm::ES256, Some("rsa-1"), "ec-1", &good))
        .await;
    assert_eq!(mismatch, "the token's algorithm does not match its key");
    let expired = claims(json!({"iat": now() - 7200, "exp": now() - 3600}));
    assert_eq!(
        service
            .refused(&token(Algorithm::RS256, Some("rsa-1"), "rsa-1", &expired))
            .await,
        "the token has expired"
    );
    let elsewhere = claims(json!({"aud": "another-app"}));
    assert_eq!(
        service
            .refused(&token(Algorithm::RS256, Some("rsa-1"), "rsa-1", &elsewhere))
            .await,
        "the token's audience is not accepted"
    );
    let other_issuer = claims(json!({"iss": "https://evil.example.test/"}));
    assert_eq!(
        service
            .refused(&token(
                Algorithm::RS256,
                Some("rsa-1"),
                "rsa-1",
                &other_issuer
            ))
            .await,
        "the token's issuer is not accepted"
    );
    assert_eq!(
        service
            .refused(&token(Algorithm::RS256, None, "rsa-1", &good))
            .await,
        "the token names no key (`kid`)"
    );
    let unsigned = format!(
        "{}.{}.",
        base64url(&json!({"alg": "none", "kid": "rsa-1"})),
        base64url(&good)
    );
    assert_eq!(service.refused(&unsigned).await, "the token is malformed");

    // Made-up key ids cannot make the service hammer the provider: at most one fetch per
    // JWT_JWKS_MIN_REFRESH (1 s here), however many arrive.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = provider.lock().unwrap().fetches;
    let made_up = (0..30).map(|i| {
        let token = token(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            "rsa-1",
            &good,
        );
        let service = &service;
        async move { service.create_room(&token).await.status() }
    });
    let statuses = futures_util::future::join_all(made_up).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let fetched = provider.lock().unwrap().fetches - before;
    assert!(fetched <= 1, "{fetched} fetches for 30 unknown key ids");

    // Rotation: a new key is picked up on first use (its unknown `kid` fetches the set), and
    // one the provider withdrew stops working with that.
    provider.lock().unwrap().keys = vec![public_key("rsa-2"), public_key("ec-1")];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = token(Algorithm::RS256, Some("rsa-2"), "rsa-2", &good);
    assert_eq!(service.create_room(&rotated).await.status(), 201);
    let withdrawn = service
        .refused(&token(Algorithm::RS256, Some("rsa-1"), "rsa-1", &good))
        .await;
    assert!(withdrawn.contains("rsa-1"), "{withdrawn}");

    // A provider that stalls: a cached key answers without waiting for it, although the set is
    // past JWT_JWKS_MAX_AGE (it is fetched again in the background); a `kid` never fetched waits
    // a bounded time, then 503. (The bound below only tells "answered" from "waited for the
    // provider", which cannot answer before it is released.)
    provider.lock().unwrap().stalled = true;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answered =
        tokio::time::timeout(Duration::from_secs(4), service.create_room(&rotated)).await;
    assert_eq!(
        answered
            .expect("a cached key waited for the provider")
            .status(),
        201
    );
    let unseen = token(Algorithm::RS256, Some("never-published"), "rsa-1", &good);
    assert_eq!(service.create_room(&unseen).await.status(), 503);
    provider.lock().unwrap().stalled = false;

    // The provider down: keys fetched before keep working; a key never seen is a 503 (the token
    // may be good), and the service recovers by itself when the provider is back.
    provider.lock().unwrap().down = true;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(service.create_room(&rotated).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new_key = token(Algorithm::RS256, Some("rsa-1"), "rsa-1", &good);
    let response = service.create_room(&new_key).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    provider.lock().unwrap().keys.push(public_key("rsa-1"));
    provider.lock().unwrap().down = false;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(service.create_room(&new_key).await.status(), 201);
}

/// The keys decide who every user is: a JWKS URL that redirects to plain http (where anyone on
/// the way could swap them) is not followed.
#[tokio::test]
async fn a_jwks_url_redirecting_to_http_is_not_followed() {
    let provider: Shared = Arc::default();
    provider.lock().unwrap().keys = vec![public_key("rsa-1")];
    let target = publish(provider.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let moved = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || async move { axum::response::Redirect::temporary(&target) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let service = Service::start(&moved).await;

    let signed = token(Algorithm::RS256, Some("rsa-1"), "rsa-1", &claims(json!({})));
    assert_eq!(service.create_room(&signed).await.status(), 503);
    assert_eq!(provider.lock().unwrap().fetches, 0);
}

fn base64url(value: &Value) -> String {
    use std::fmt::Write;
    // RFC 4648 base64url without padding, written out to need no base64 crate here.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = serde_json::to_vec(value).unwrap();
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let _ = write!(
                text,
                "{}",
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            );
        }
    }
    text
}

#[test]
fn a_provider_without_issuer_and_audience_or_with_an_unusable_jwks_file_is_refused_at_start() {
    let run = |extra: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
            .arg("serve")
            .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(&[("JWT_JWKS_URL", "http://127.0.0.1:1/jwks.json")]);
    assert!(
        stderr.contains("need JWT_ISSUER and JWT_AUDIENCE"),
        "{stderr}"
    );
    let hmac_only = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &hmac_only,
        r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
    )
    .unwrap();
    let stderr = run(&[
        ("JWT_JWKS_FILE", hmac_only.to_str().unwrap()),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
    ]);
    let _ = std::fs::remove_file(&hmac_only);
    assert!(stderr.contains("no signing key"), "{stderr}");
}
