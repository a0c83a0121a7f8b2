//! Credentials by status: a waiting participant holds a waiting pass, not a join token, and
//! the pass opens nothing but their own participant resource and the way out.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{with_token, TestApp};

/// The claims of a token signed with the tests' secret, whatever its audience.
fn claims_of(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(crate::common::SECRET),
        &validation,
    )
    .unwrap()
    .claims
}

/// A room with a waiting room, and a guest knocking on it: (room, the guest's join answer).
async fn knock(app: &TestApp) -> (Value, Value) {
    let room: Value = app
        .create_room(json!({"waitingRoom": true}))
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url(&format!(
            "/rooms/code/{}/join",
            room["code"].as_str().unwrap()
        )))
        .json(&json!({"displayName": "Grace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    (room, response.json().await.unwrap())
}

#[tokio::test]
async fn a_knock_gets_a_waiting_pass_and_the_join_token_comes_once_admitted() {
    let app = TestApp::spawn().await;
    let (room, knocked) = knock(&app).await;
    assert!(knocked.get("joinToken").is_none(), "{knocked}");
    let pass = knocked["waitingPass"].as_str().unwrap();
    let pid = knocked["participant"]["id"].as_str().unwrap();
    let claims = claims_of(pass);
    assert_eq!(claims["aud"], "neuronmeet:waiting");
    assert_eq!(claims["sub"], pid);
    assert_eq!(claims["room"], room["id"]);

    let me = format!("/rooms/{}/participants/{pid}", room["id"].as_str().unwrap());
    let waiting: Value = with_token(&app, Method::GET, &me, pass)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(waiting["participant"]["status"], "waiting");
    assert!(waiting.get("joinToken").is_none(), "{waiting}");
    assert!(waiting["waitingPass"].is_string());

    let admit = format!("{me}/admit");
    assert_eq!(
        app.call(Method::POST, &admit, "user-1", None)
            .await
            .status(),
        200
    );
    let admitted: Value = with_token(&app, Method::GET, &me, pass)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admitted["participant"]["status"], "joined");
    assert!(admitted.get("waitingPass").is_none(), "{admitted}");
    let token = admitted["joinToken"].as_str().unwrap();
    assert_eq!(claims_of(token)["aud"], "neuronmeet:room");
    assert_eq!(claims_of(token)["sub"], pid);
    // The join token opens what a joined participant may see.
    let list = format!("/rooms/{}/participants", room["id"].as_str().unwrap());
    assert_eq!(
        with_token(&app, Method::GET, &list, token).await.status(),
        200
    );
    // Others see the participant, without anyone's credential.
    let by_host: Value = app
        .call(Method::GET, &me, "user-1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_host["participant"]["id"], pid);
    assert!(by_host.get("joinToken").is_none() && by_host.get("expiresAt").is_none());
    let stranger = app.call(Method::GET, &me, "stranger", None).await;
    assert_eq!(stranger.status(), 403);
}

/// Every operation that takes a credential, per the OpenAPI document, refuses the pass, but
/// the participant's own resource, their waiting feed and leaving.
#[tokio::test]
async fn a_waiting_pass_is_refused_everywhere_else() {
    let app = TestApp::spawn().await;
    let (room, knocked) = knock(&app).await;
    let pass = knocked["waitingPass"].as_str().unwrap();
    let (id, code) = (room["id"].as_str().unwrap(), room["code"].as_str().unwrap());
    let pid = knocked["participant"]["id"].as_str().unwrap();
    let document: Value = serde_json::from_str(&neuronmeet::http::openapi_json()).unwrap();
    let own = [
        ("get", "/rooms/{id}/participants/{pid}"),
        ("get", "/rooms/{id}/participants/{pid}/live"),
        ("delete", "/rooms/{id}/participants/{pid}"),
    ];
    let mut tried = 0;
    for (template, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !secured || own.contains(&(method.as_str(), template.as_str())) {
                continue;
            }
            let path = template
                .replace("{id}", id)
                .replace("{pid}", pid)
                .replace("{code}", code);
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = with_token(&app, method.clone(), &path, pass).await.status();
            assert!(
                status == 401 || status == 403,
                "{method} {path} answered {status} to a waiting pass"
            );
            tried += 1;
        }
    }
    assert!(tried >= 10, "only {tried} operations tried");
    // Still waiting: nothing the pass was refused did anything.
    let me = format!("/rooms/{id}/participants/{pid}");
    let mine: Value = with_token(&app, Method::GET, &me, pass)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["participant"]["status"], "waiting");
    // Another participant's resource is not theirs to see.
    let host: Value = app
        .call(
            Method::POST,
            &format!("/rooms/code/{code}/join"),
            "user-1",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let other = format!(
        "/rooms/{id}/participants/{}",
        host["participant"]["id"].as_str().unwrap()
    );
    assert_eq!(
        with_token(&app, Method::GET, &other, pass).await.status(),
        403
    );
    assert_eq!(
        with_token(&app, Method::DELETE, &other, pass)
            .await
            .status(),
        403
    );
    // And the way out.
    assert_eq!(
        with_token(&app, Method::DELETE, &me, pass).await.status(),
        204
    );
    assert_eq!(
        app.count("SELECT count(*) FROM participants WHERE status = 'waiting'")
            .await,
        0
    );
}
