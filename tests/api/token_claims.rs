//! The token's `nbf` is honoured, and its text claims (copied into every event and row) are
//! bounded: a token breaking either gets a 401 problem+json naming what is wrong.

use std::time::Duration;

use crate::common::{claims, TestApp, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use neuronmeet::auth::{
    TokenError, MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_PICTURE_CHARS, MAX_SUB_CHARS,
};
use serde_json::{json, Value};

/// An HS256 token signed with the service's secret, carrying exactly `claims`.
fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// The claims of a token valid for an hour, with `extra` added (or replacing).
fn valid_for_an_hour(extra: Value) -> Value {
    let mut claims = json!({"sub": "u1", "exp": jsonwebtoken::get_current_timestamp() + 3600});
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

async fn create_room(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/rooms"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("POST /rooms")
}

/// Asserts `response` is the service's 401 problem+json; returns its `detail`.
async fn unauthorized(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["title"], "Unauthorized");
    problem["detail"].as_str().expect("a detail").to_owned()
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_401() {
    let app = TestApp::spawn().await;
    let now = jsonwebtoken::get_current_timestamp();
    // An hour ahead is well beyond the 30 s leeway.
    let token = sign(valid_for_an_hour(json!({"nbf": now + 3600})));
    let detail = unauthorized(create_room(&app, &token).await).await;
    assert_eq!(detail, "the token is not valid yet");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn an_nbf_that_is_not_a_readable_number_is_401() {
    let app = TestApp::spawn().await;
    let far_future = jsonwebtoken::get_current_timestamp() + 10 * 365 * 86400;
    // jsonwebtoken skips an `nbf` it cannot read as a u64, as if there were none.
    let cases = [
        (
            json!(far_future.to_string()),
            "the token's `nbf` claim is not a number",
        ),
        (json!(1e300), "the token is not valid yet"),
    ];
    for (nbf, expected) in cases {
        let token = sign(valid_for_an_hour(json!({ "nbf": nbf })));
        let detail = unauthorized(create_room(&app, &token).await).await;
        assert_eq!(detail, expected, "nbf {nbf}");
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn a_token_whose_nbf_has_passed_is_accepted() {
    let app = TestApp::spawn().await;
    let now = jsonwebtoken::get_current_timestamp();
    // Past, just now, a float, and a few seconds ahead (within the leeway for clock skew).
    for nbf in [
        json!(now - 3600),
        json!(now),
        json!(now as f64 - 0.5),
        json!(now + 5),
    ] {
        let token = sign(valid_for_an_hour(json!({ "nbf": nbf })));
        let response = create_room(&app, &token).await;
        assert_eq!(response.status(), 201, "nbf {nbf}");
    }
}

#[tokio::test]
async fn each_over_long_claim_is_401_naming_it_and_its_limit() {
    let app = TestApp::spawn().await;
    let cases = [
        ("sub", MAX_SUB_CHARS, 255),
        ("name", MAX_NAME_CHARS, 100),
        ("email", MAX_EMAIL_CHARS, 254),
        ("picture", MAX_PICTURE_CHARS, 2048),
    ];
    for (claim, max, documented) in cases {
        assert_eq!(max, documented, "the bound on `{claim}`");
        // One character over, in characters of two bytes and of one.
        for text in ["é".repeat(max + 1), "x".repeat(max + 1)] {
            let token = sign(valid_for_an_hour(json!({ claim: text })));
            let detail = unauthorized(create_room(&app, &token).await).await;
            assert_eq!(
                detail,
                format!("the token's `{claim}` claim is longer than {max} characters")
            );
        }
    }
    // A huge claim is refused the same way.
    let token = sign(valid_for_an_hour(json!({"name": "x".repeat(200_000)})));
    let detail = unauthorized(create_room(&app, &token).await).await;
    assert_eq!(
        detail,
        "the token's `name` claim is longer than 100 characters"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn claims_exactly_at_their_limits_are_accepted() {
    let app = TestApp::spawn().await;
    // Characters are counted, not bytes: each `é` is two bytes.
    let sub = "é".repeat(MAX_SUB_CHARS);
    let name = "é".repeat(MAX_NAME_CHARS);
    let email = format!("{}@example.com", "é".repeat(MAX_EMAIL_CHARS - 12));
    let picture = format!("https://example.com/{}", "é".repeat(MAX_PICTURE_CHARS - 20));
    assert_eq!(email.chars().count(), MAX_EMAIL_CHARS);
    assert_eq!(picture.chars().count(), MAX_PICTURE_CHARS);
    let token = sign(valid_for_an_hour(json!({
        "sub": sub,
        "name": name,
        "email": email,
        "picture": picture,
    })));
    let response = create_room(&app, &token).await;
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["hostId"], sub.as_str());
    // Shown names are at most 50 characters: a longer claim is cut, not refused.
    assert_eq!(
        room["host"]["displayName"],
        "é".repeat(aggregates::MAX_DISPLAY_NAME_CHARS)
    );
    assert_eq!(room["host"]["avatarUrl"], picture.as_str());

    // Each claim at its limit on its own, too; `email` shows as the display name.
    for (claim, max) in [
        ("sub", MAX_SUB_CHARS),
        ("name", MAX_NAME_CHARS),
        ("email", MAX_EMAIL_CHARS),
        ("picture", MAX_PICTURE_CHARS),
    ] {
        let token = sign(valid_for_an_hour(json!({ claim: "é".repeat(max) })));
        let response = create_room(&app, &token).await;
        assert_eq!(response.status(), 201, "`{claim}` of {max} characters");
    }
}

#[tokio::test]
async fn an_empty_sub_is_401() {
    let app = TestApp::spawn().await;
    for sub in ["", " ", "\t\n"] {
        let token = sign(valid_for_an_hour(json!({ "sub": sub })));
        let detail = unauthorized(create_room(&app, &token).await).await;
        assert_eq!(
            detail, "the token's `sub` claim is empty or blank",
            "{sub:?}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
}

#[tokio::test]
async fn minting_refuses_what_verifying_would_refuse() {
    let app = TestApp::spawn().await;
    let hour = Duration::from_secs(3600);
    let mut long_name = claims("u1");
    long_name.name = Some("x".repeat(MAX_NAME_CHARS + 1));
    let error = app.tokens.mint(long_name, hour).unwrap_err();
    assert!(matches!(error, TokenError::TooLong { claim: "name", .. }));
    assert_eq!(
        error.to_string(),
        "the token's `name` claim is longer than 100 characters"
    );
    assert!(matches!(
        app.tokens.mint(claims(""), hour),
        Err(TokenError::EmptySubject)
    ));

    let mut at_the_limits = claims(&"u".repeat(MAX_SUB_CHARS));
    at_the_limits.name = Some("x".repeat(MAX_NAME_CHARS));
    let token = app.tokens.mint(at_the_limits, hour).unwrap();
    assert_eq!(create_room(&app, &token).await.status(), 201);
}
