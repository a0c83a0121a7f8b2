//! Names that cannot deceive: room names and display names are NFC, trimmed, visible, and only
//! the host's may say "Host".

use serde_json::{json, Value};

use crate::common::TestApp;

/// Names a deceiver would send, each with the rule it breaks. The last is 101 characters only
/// once normalised ("e" + a combining accent is one "é" in NFC).
fn bad_names(max: usize) -> Vec<(String, &'static str)> {
    vec![
        ("   ".into(), "blank"),
        ("Ada\u{202E}ecalevoL".into(), "bidirectional"),
        ("A\u{200B}da".into(), "invisible"),
        ("A\u{0}da".into(), "control"),
        ("Ada\r\nLovelace".into(), "control"),
        ("e\u{301}".repeat(max + 1), "at most"),
    ]
}

#[tokio::test]
async fn room_names_that_deceive_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    for (name, rule) in bad_names(100) {
        let response = app.create_room(json!({ "name": name })).await;
        assert_eq!(response.status(), 400, "{name:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "name", "{name:?}: {problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{name:?}: {message}");
    }
    // 100 characters once normalised, and spaces around: accepted, stored NFC and trimmed.
    let name = format!("  {}  ", "e\u{301}".repeat(100));
    let response = app.create_room(json!({ "name": name })).await;
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["name"], "é".repeat(100));
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, 1);
}

#[tokio::test]
async fn display_names_that_deceive_are_refused_and_only_the_host_may_say_host() {
    let app = TestApp::spawn().await;
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let join = |body: Value, sub: Option<&str>| {
        let mut request = app
            .client
            .post(app.url(&format!(
                "/rooms/code/{}/join",
                room["code"].as_str().unwrap()
            )))
            .json(&body);
        if let Some(sub) = sub {
            request = request.bearer_auth(app.token(sub));
        }
        request.send()
    };
    for (name, rule) in bad_names(50) {
        let response = join(json!({ "displayName": name }), None).await.unwrap();
        assert_eq!(response.status(), 400, "{name:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "displayName", "{problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{name:?}: {message}");
    }
    for (name, sub) in [
        ("Ada Lovelace (Host)", None),
        ("Ada [host]", Some("member-1")),
    ] {
        let response = join(json!({ "displayName": name }), sub).await.unwrap();
        assert_eq!(response.status(), 400, "{name:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], "displayName", "{problem}");
    }
    assert_eq!(app.count("SELECT count(*) FROM participants").await, 0);
    // The host may, and names are stored as they are shown.
    let response = join(json!({ "displayName": "Ada (Host)" }), Some("user-1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = join(json!({ "displayName": " Zoe\u{301} 👩\u{200D}💻 " }), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let joined: Value = response.json().await.unwrap();
    assert_eq!(joined["participant"]["displayName"], "Zoé 👩\u{200D}💻");
}
