//! POST /rooms, GET /rooms/{id} and GET /rooms/code/{code} through real HTTP and PostgreSQL.

use crate::common::{claims, TestApp};
use aggregates::RoomEvent;
use projections::RoomView;
use serde_json::{json, Value};

fn is_api_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    // 2026-03-03T10:30:00.000Z
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

#[tokio::test]
async fn creates_a_room_with_the_documented_defaults() {
    let app = TestApp::spawn().await;
    let response = app.create_room(json!({})).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["content-type"], "application/json");
    let room: Value = response.json().await.unwrap();

    let id = room["id"].as_str().unwrap();
    assert_eq!(location, format!("/rooms/{id}"));
    let code = room["code"].as_str().unwrap();
    assert!(aggregates::RoomCode::parse(code).is_ok(), "{code}");
    assert_eq!(room["name"], "Meeting Room");
    assert_eq!(room["hostId"], "user-1");
    assert_eq!(room["isActive"], true);
    assert_eq!(room["isLocked"], false);
    assert_eq!(room["endedAt"], Value::Null);
    for field in ["startedAt", "createdAt", "updatedAt"] {
        assert!(is_api_timestamp(&room[field]), "{field}: {}", room[field]);
    }
    assert_eq!(room["startedAt"], room["createdAt"]);
    assert_eq!(
        room["host"],
        json!({"id": "user-1", "displayName": "user-1", "avatarUrl": null})
    );
    let settings = &room["settings"];
    assert!(settings["id"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s != id));
    assert_eq!(settings["roomId"], room["id"]);
    assert_eq!(settings["allowChat"], true);
    assert_eq!(settings["allowScreenShare"], true);
    assert_eq!(settings["allowGuestAccess"], true);
    assert_eq!(settings["waitingRoom"], false);
    assert_eq!(settings["muteParticipantsOnJoin"], false);
    assert_eq!(settings["maxParticipants"], 50);
}

#[tokio::test]
async fn keeps_the_fields_sent_and_the_host_from_the_token() {
    let app = TestApp::spawn().await;
    let mut host = claims("clx0a1b2c3");
    host.name = Some("John Doe".into());
    host.email = Some("john@example.com".into());
    host.picture = Some("https://example.com/avatar.jpg".into());
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(app.token_with(host))
        .json(&json!({"name": "Team Standup", "waitingRoom": true, "maxParticipants": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["name"], "Team Standup");
    assert_eq!(room["hostId"], "clx0a1b2c3");
    assert_eq!(
        room["host"],
        json!({"id": "clx0a1b2c3", "displayName": "John Doe", "avatarUrl": "https://example.com/avatar.jpg"})
    );
    assert_eq!(room["settings"]["waitingRoom"], true);
    assert_eq!(room["settings"]["maxParticipants"], 10);

    let mut by_email = claims("u2");
    by_email.email = Some("ada@example.com".into());
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(app.token_with(by_email))
        .json(&json!({"name": "Ünïcødé ✓"}))
        .send()
        .await
        .unwrap();
    let room: Value = response.json().await.unwrap();
    assert_eq!(room["host"]["displayName"], "ada@example.com");
    assert_eq!(room["name"], "Ünïcødé ✓");
}

#[tokio::test]
async fn get_by_id_returns_exactly_what_the_post_returned() {
    let app = TestApp::spawn().await;
    let created = app
        .create_room(json!({"name": "Planning", "maxParticipants": 2}))
        .await;
    let posted = created.bytes().await.unwrap();
    let id = serde_json::from_slice::<Value>(&posted).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let fetched = app.get_room(&id, "someone-else").await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), posted);

    let unauthenticated = app
        .client
        .get(app.url(&format!("/rooms/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn get_by_code_is_public_and_limited() {
    let app = TestApp::spawn().await;
    let room: Value = app
        .create_room(json!({"waitingRoom": true}))
        .await
        .json()
        .await
        .unwrap();
    let code = room["code"].as_str().unwrap();
    let response = app
        .client
        .get(app.url(&format!("/rooms/code/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let public: Value = response.json().await.unwrap();
    assert_eq!(
        public,
        json!({
            "id": room["id"], "code": code, "name": "Meeting Room", "isActive": true, "isLocked": false,
            "host": {"id": "user-1", "displayName": "user-1", "avatarUrl": null},
            "settings": {"waitingRoom": true}
        })
    );
}

#[tokio::test]
async fn unknown_rooms_are_404_problems() {
    let app = TestApp::spawn().await;
    app.create_room(json!({})).await;
    for (path, auth) in [
        ("/rooms/does-not-exist", true),
        ("/rooms/%00", true),
        ("/rooms/01a217d9-6167-7261-8d7a-f92b31d804e7", true),
        ("/rooms/code/zzz-zzz-zzz", false),
        ("/rooms/code/not-a-code", false),
        ("/no/such/route", false),
    ] {
        let mut request = app.client.get(app.url(path));
        if auth {
            request = request.bearer_auth(app.token("user-1"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 404, "{path}");
    }
    let response = app.client.delete(app.url("/rooms")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn stores_two_events_and_the_view_in_one_commit() {
    let app = TestApp::spawn().await;
    let request_id = "req-abc-123";
    let response = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(app.token("user-7"))
        .header("x-request-id", request_id)
        .json(&json!({"name": "Retro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], request_id);
    let room: Value = response.json().await.unwrap();
    let rows: Vec<(String, i64, String, String, Value, i64, String)> = sqlx::query_as(
        "SELECT aggregate_type, sequence, event_type, event_version, metadata, global_position, \
                transaction_id::text FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(room["id"].as_str().unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].2.as_str()),
        ("Room", 1, "RoomCreated")
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1, rows[1].2.as_str()),
        ("Room", 2, "SettingsConfigured")
    );
    assert_eq!(rows[0].3, "1.0.0");
    assert!(rows[0].5 < rows[1].5, "global positions follow sequence");
    assert_eq!(
        rows[0].6, rows[1].6,
        "both events come from one transaction"
    );
    assert_eq!(
        rows[0].4,
        json!({"requestId": request_id, "userId": "user-7"})
    );

    let view_transaction: String = sqlx::query_scalar("SELECT xmin::text FROM rooms WHERE id = $1")
        .bind(room["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        view_transaction, rows[0].6,
        "the view row was written by the events' transaction"
    );
}

#[tokio::test]
async fn the_view_equals_what_a_replay_of_the_log_computes() {
    let app = TestApp::spawn().await;
    for body in [
        json!({}),
        json!({"name": "A", "waitingRoom": true, "maxParticipants": 100}),
    ] {
        assert_eq!(app.create_room(body).await.status(), 201);
    }
    let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM events")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let events: Vec<(i64, Value)> = sqlx::query_as(
            "SELECT sequence, payload FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(&id)
        .fetch_all(&app.db)
        .await
        .unwrap();
        let events: Vec<(i64, RoomEvent)> = events
            .into_iter()
            .map(|(sequence, payload)| (sequence, serde_json::from_value(payload).unwrap()))
            .collect();
        let replayed = RoomView::from_events(events.iter().map(|(s, e)| (*s, e))).unwrap();
        let stored = neuronmeet::read_models::rooms::find_by_id(&app.db, &id)
            .await
            .unwrap();
        assert_eq!(stored, replayed);
    }
}

#[tokio::test]
async fn the_event_log_rejects_update_delete_and_truncate() {
    let app = TestApp::spawn().await;
    app.create_room(json!({})).await;
    for statement in [
        "UPDATE events SET event_version = '9.9.9'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(statement).execute(&app.db).await.unwrap_err();
        assert!(
            error.to_string().contains("events are immutable"),
            "{statement}: {error}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_version = '1.0.0'")
            .await,
        2
    );
}

/// The event store reads back what the command wrote (postgres-es over our extended table):
/// the events, their metadata, and an aggregate that refuses to be created twice.
#[tokio::test]
async fn the_event_store_loads_the_room_back() {
    use cqrs_es::EventStore;
    use neuronmeet::event_store::EventRepository;

    let app = TestApp::spawn().await;
    let room: Value = app
        .create_room(json!({"name": "Reloaded"}))
        .await
        .json()
        .await
        .unwrap();
    let id = room["id"].as_str().unwrap();
    let store = EventRepository::new(app.db.clone(), neuronmeet::event_store::WRITE_LOCK_TIMEOUT)
        .into_store();
    let events = store.load_events(id).await.unwrap();
    let names: Vec<_> = events
        .iter()
        .map(|e| (e.sequence, e.payload.name()))
        .collect();
    assert_eq!(names, [(1, "RoomCreated"), (2, "SettingsConfigured")]);
    assert_eq!(events[0].metadata["userId"], "user-1");
    let RoomEvent::RoomCreated(created) = &events[0].payload else {
        unreachable!()
    };
    assert_eq!(created.name, "Reloaded");

    let context = store.load_aggregate(id).await.unwrap();
    assert_eq!(context.current_sequence, 2);
}
