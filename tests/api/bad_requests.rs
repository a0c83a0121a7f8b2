//! Every way a request can be wrong gets a precise problem+json, never a panic or axum's text.

use crate::common::{claims, TestApp, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
    for member in ["type", "title", "detail"] {
        assert!(problem[member].is_string(), "{member} missing in {problem}");
    }
    problem
}

fn failing_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .expect("validation problems list their errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn invalid_fields_are_400_naming_each_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": ""}), vec!["name"]),
        (json!({"name": "a".repeat(101)}), vec!["name"]),
        (json!({"name": "é".repeat(101)}), vec!["name"]),
        (json!({"name": 42}), vec!["name"]),
        (json!({"name": ["x"]}), vec!["name"]),
        (json!({"name": "a\u{0}b"}), vec!["name"]),
        (json!({"maxParticipants": 1}), vec!["maxParticipants"]),
        (json!({"maxParticipants": 101}), vec!["maxParticipants"]),
        (json!({"maxParticipants": -3}), vec!["maxParticipants"]),
        (json!({"maxParticipants": 10.5}), vec!["maxParticipants"]),
        (json!({"maxParticipants": "10"}), vec!["maxParticipants"]),
        (json!({"maxParticipants": 1e300}), vec!["maxParticipants"]),
        (
            json!({"maxParticipants": u64::MAX}),
            vec!["maxParticipants"],
        ),
        (json!({"waitingRoom": "yes"}), vec!["waitingRoom"]),
        (json!({"waitingRoom": 1}), vec!["waitingRoom"]),
        (json!({"hostId": "me"}), vec!["hostId"]),
        (
            json!({"name": "", "maxParticipants": 0, "waitingRoom": "no", "extra": true}),
            vec!["extra", "maxParticipants", "name", "waitingRoom"],
        ),
    ];
    for (body, fields) in cases {
        let response = app.create_room(body.clone()).await;
        let problem = problem(response, 400).await;
        assert_eq!(failing_fields(&problem), fields, "{body}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        0,
        "nothing invalid was stored"
    );
}

#[tokio::test]
async fn the_bounds_are_accepted() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"name": "x", "maxParticipants": 2}),
        json!({"name": "é".repeat(100), "maxParticipants": 100}),
        json!({"name": null, "waitingRoom": null, "maxParticipants": null}),
        json!({"maxParticipants": 22.0}),
    ] {
        assert_eq!(app.create_room(body.clone()).await.status(), 201, "{body}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400() {
    let app = TestApp::spawn().await;
    let token = app.token("user-1");
    let cases: [(Option<&str>, &str); 8] = [
        (Some("application/json"), "{\"name\": "),
        (Some("application/json"), ""),
        (Some("application/json"), "[1, 2]"),
        (Some("application/json"), "\"a room\""),
        (Some("application/json"), "null"),
        (Some("text/plain"), "{}"),
        (Some("application/x-www-form-urlencoded"), "name=x"),
        (None, "{}"),
    ];
    for (content_type, body) in cases {
        let mut request = app
            .client
            .post(app.url("/rooms"))
            .bearer_auth(&token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let problem = problem(request.send().await.unwrap(), 400).await;
        assert_eq!(
            failing_fields(&problem),
            ["body"],
            "{content_type:?} {body}"
        );
    }
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(&token)
        .header("content-type", "application/json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "a charset parameter is fine");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn().await;
    let huge = json!({"name": "x".repeat(64 * 1024)});
    problem(app.create_room(huge).await, 413).await;

    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b' '; 1024])).collect();
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(app.token("user-1"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |claims: Value, secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let b64 = |v: Value| {
        use base64_url_no_pad as b;
        b::encode(v.to_string().as_bytes())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "u1", "exp": now + 3600}))
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &json!({"sub": "u1", "exp": now + 3600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let cases = [
        ("missing", None),
        ("not bearer", Some(format!("Basic {}", "dXNlcjpwYXNz"))),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("malformed", Some("Bearer not.a.jwt".to_owned())),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "u1", "exp": now - 3600}), SECRET)
            )),
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"sub": "u1", "exp": now + 3600}),
                    b"another-secret-another-secret-xx"
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(json!({"exp": now + 3600}), SECRET)
            )),
        ),
        (
            "empty sub",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "", "exp": now + 3600}), SECRET)
            )),
        ),
        (
            "no exp",
            Some(format!("Bearer {}", sign(json!({"sub": "u1"}), SECRET))),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "NUL in a claim",
            Some(format!(
                "Bearer {}",
                sign(json!({"sub": "u\u{0}", "exp": now + 3600}), SECRET)
            )),
        ),
        ("HS512", Some(format!("Bearer {hs512}"))),
    ];
    for (case, authorization) in cases {
        let mut request = app.client.post(app.url("/rooms")).json(&json!({}));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{case}"
        );
        problem(response, 401).await;
    }
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

    let ok = app
        .client
        .post(app.url("/rooms"))
        .header(
            "authorization",
            format!("bearer {}", app.token_with(claims("u1"))),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201, "the scheme is case-insensitive");

    let audiences = sign(
        json!({"sub": "u1", "exp": now + 3600, "aud": ["rooms", "chat"]}),
        SECRET,
    );
    let ok = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(audiences)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201, "an array `aud` is a valid claim");
}

/// URL-safe base64 without padding, for hand-built tokens.
mod base64_url_no_pad {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}

/// RFC 6750: no credentials, a challenge alone; a bad token, `invalid_token`; an Authorization
/// header that is not a bearer token, `invalid_request`.
#[tokio::test]
async fn the_401_challenge_says_what_was_wrong() {
    let app = TestApp::spawn().await;
    let challenge = |authorization: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.client.post(app.url("/rooms")).json(&json!({}));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(challenge(None).await, "Bearer realm=\"neuronmeet\"");
    let bad_token = challenge(Some("Bearer not.a.token")).await;
    assert!(
        bad_token.starts_with(
            "Bearer realm=\"neuronmeet\", error=\"invalid_token\", error_description=\""
        ),
        "{bad_token}"
    );
    let not_bearer = challenge(Some("Basic dXNlcjpwYXNz")).await;
    assert!(
        not_bearer.contains("error=\"invalid_request\""),
        "{not_bearer}"
    );
}

#[tokio::test]
async fn body_problems_name_the_body_once() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(app.token("u1"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.starts_with("body is not valid JSON"), "{detail}");
    assert_eq!(detail.matches("body").count(), 1, "{detail}");
}

/// A query string is checked in one pass, and one with more parameters than any endpoint takes
/// is refused whole: naming each of thousands of made-up names cost time quadratic in their
/// number, and answered a problem as long as the URL.
#[tokio::test]
async fn too_many_query_parameters_are_one_400() {
    let app = &TestApp::spawn().await;
    let query = |count: usize| {
        (0..count)
            .map(|i| format!("{i:x}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let rooms = |query: String| {
        let path = format!("/users/me/rooms?{query}");
        async move { app.call(reqwest::Method::GET, &path, "ada", None).await }
    };
    let refused = problem(rooms(query(10_000)).await, 400).await;
    assert_eq!(
        refused["type"],
        "https://neuronmeet.com/problems/bad-request"
    );
    assert_eq!(
        refused["detail"],
        "the query string has 10000 parameters; at most 32 are accepted"
    );
    assert!(refused.get("errors").is_none(), "{refused}");

    // Up to the limit, each unknown name is still named, once.
    let named = problem(rooms(format!("{}&0", query(32 - 1))).await, 400).await;
    assert_eq!(failing_fields(&named).len(), 31);
}
