//! Host controls that stick: a blocked user or guest stays out (on every instance, and after
//! a rebuild of the read models), and the whole waiting room is denied in one transaction.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Options, TestApp};

async fn room(app: &TestApp, settings: Value) -> (String, String) {
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let id = room["id"].as_str().unwrap().to_owned();
    if settings != json!({}) {
        let path = format!("/rooms/{id}/settings");
        let response = app
            .call(Method::PATCH, &path, "user-1", Some(settings))
            .await;
        assert_eq!(response.status(), 200);
    }
    (id, room["code"].as_str().unwrap().to_owned())
}

/// A join as `sub`, or as a guest named `Grace` without one; its status and body.
async fn join(app: &TestApp, code: &str, sub: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/rooms/code/{code}/join")))
        .json(&json!({"displayName": "Grace"}));
    if let Some(sub) = sub {
        request = request.bearer_auth(app.token(sub));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn block(app: &TestApp, room: &str, participant: &Value) -> u16 {
    let pid = participant["participant"]["id"].as_str().unwrap();
    let path = format!("/rooms/{room}/participants/{pid}?block=true");
    app.call(Method::DELETE, &path, "user-1", None)
        .await
        .status()
        .as_u16()
}

fn assert_blocked((status, problem): (u16, Value)) {
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["type"], "https://neuronmeet.com/problems/blocked");
}

#[tokio::test]
async fn blocked_users_and_guests_stay_out_everywhere_and_after_a_rebuild() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn_with(Options {
        database: Some((app.database_url.clone(), app.database_name.clone())),
        ..Options::default()
    })
    .await;
    let (id, code) = room(&app, json!({})).await;
    let (status, ada) = join(&app, &code, Some("ada")).await;
    assert_eq!(status, 201);
    let (status, guest) = join(&app, &code, None).await;
    assert_eq!(status, 201);

    // Only the host blocks.
    let pid = ada["participant"]["id"].as_str().unwrap();
    let by_ada = app
        .call(
            Method::DELETE,
            &format!("/rooms/{id}/participants/{pid}?block=true"),
            "ada",
            None,
        )
        .await;
    assert_eq!(by_ada.status(), 403);
    assert_eq!(block(&app, &id, &ada).await, 204);
    assert_eq!(block(&app, &id, &guest).await, 204);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ParticipantBlocked'")
            .await,
        2
    );

    for instance in [&app, &other] {
        assert_blocked(join(instance, &code, Some("ada")).await);
        // The guest comes back under a new name, from the same network.
        assert_blocked(join(instance, &code, None).await);
    }
    for projection in neuronmeet::read_models::names() {
        neuronmeet::replay::run(&app.db, projection, &Default::default(), |_| {})
            .await
            .unwrap();
    }
    assert_blocked(join(&other, &code, Some("ada")).await);
    assert_blocked(join(&other, &code, None).await);
    // Others are welcome, and a removal without `block` is no ban.
    let (status, bob) = join(&app, &code, Some("bob")).await;
    assert_eq!(status, 201);
    let pid = bob["participant"]["id"].as_str().unwrap();
    let removed = app
        .call(
            Method::DELETE,
            &format!("/rooms/{id}/participants/{pid}"),
            "user-1",
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    assert_eq!(join(&other, &code, Some("bob")).await.0, 201);
    let bad = app
        .call(
            Method::DELETE,
            &format!("/rooms/{id}/participants/{pid}?block=yes"),
            "user-1",
            None,
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn deny_all_denies_300_knocks_in_one_transaction() {
    let app = TestApp::spawn().await;
    let (id, code) = room(&app, json!({"waitingRoom": true})).await;
    for i in 0..300 {
        let (status, _) = join(&app, &code, Some(&format!("member-{i}"))).await;
        assert_eq!(status, 202);
    }
    let path = format!("/rooms/{id}/waiting/deny-all");
    let not_host = app.call(Method::POST, &path, "member-1", None).await;
    assert_eq!(not_host.status(), 403);
    let response = app.call(Method::POST, &path, "user-1", None).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"denied": 300}));
    assert_eq!(
        app.count(
            "SELECT count(DISTINCT transaction_id::text) FROM events \
             WHERE event_type = 'ParticipantDenied'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ParticipantDenied'")
            .await,
        300
    );
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 0);
    let again: Value = app
        .call(Method::POST, &path, "user-1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, json!({"denied": 0}));
}
