//! Rooms that live: PATCH /rooms/{id}/settings, DELETE /rooms/{id}, GET /users/me/rooms,
//! GET /rooms/{id}/events and Idempotency-Key on POST /rooms, through real HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, envelope_sequence, NatsServer, Options, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn create(app: &TestApp, sub: &str, body: Value) -> Value {
    let response = app.call(Method::POST, "/rooms", sub, Some(body)).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn patch(app: &TestApp, id: &str, sub: &str, body: Value) -> reqwest::Response {
    app.call(
        Method::PATCH,
        &format!("/rooms/{id}/settings"),
        sub,
        Some(body),
    )
    .await
}

async fn end(app: &TestApp, id: &str, sub: &str) -> reqwest::Response {
    app.call(Method::DELETE, &format!("/rooms/{id}"), sub, None)
        .await
}

async fn get(app: &TestApp, path: &str, sub: &str) -> reqwest::Response {
    app.call(Method::GET, path, sub, None).await
}

/// The room's events as stored: (sequence, type, payload without its tag).
async fn logged(app: &TestApp, id: &str) -> Vec<(i64, String, Value)> {
    sqlx::query_as::<_, (i64, String, Value)>(
        "SELECT sequence, event_type, payload -> event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn expect_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

fn fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn patch_records_only_what_changes_and_answers_the_full_room() {
    let app = TestApp::spawn().await;
    let room = create(&app, "host", json!({})).await;
    let id = room["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;

    let response = patch(
        &app,
        id,
        "host",
        json!({"allowChat": false, "waitingRoom": false, "maxParticipants": 10, "isLocked": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["settings"]["allowChat"], false);
    assert_eq!(patched["settings"]["maxParticipants"], 10);
    assert_eq!(patched["isLocked"], true);
    assert!(patched["updatedAt"].as_str() > room["updatedAt"].as_str());
    assert_eq!(
        get(&app, &format!("/rooms/{id}"), "host")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        patched
    );

    let events = logged(&app, id).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[2].1, "SettingsUpdated");
    assert_eq!(
        events[2].2,
        json!({"roomId": id, "changes": {"allowChat": false, "maxParticipants": 10}, "updatedAt": patched["updatedAt"]})
    );
    assert_eq!(events[3].1, "RoomLocked");
    assert_eq!(
        events[3].2,
        json!({"roomId": id, "at": patched["updatedAt"]})
    );

    // Nothing new: no event, the room as it is.
    for body in [
        json!({}),
        json!({"allowChat": false, "isLocked": true, "maxParticipants": 10}),
    ] {
        let response = patch(&app, id, "host", body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), patched);
    }
    assert_eq!(logged(&app, id).await.len(), 4);

    let unlocked: Value = patch(&app, id, "host", json!({"isLocked": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unlocked["isLocked"], false);
    assert_eq!(logged(&app, id).await[4].1, "RoomUnlocked");
}

#[tokio::test]
async fn patch_names_each_invalid_field() {
    let app = TestApp::spawn().await;
    let id = create(&app, "host", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = patch(
        &app,
        &id,
        "host",
        json!({"allowChat": "no", "waitingRoom": null, "maxParticipants": 1, "isLocked": 1, "color": "red"}),
    )
    .await;
    let problem = expect_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        fields(&problem),
        [
            "allowChat",
            "color",
            "isLocked",
            "maxParticipants",
            "waitingRoom"
        ]
    );
    for (body, field) in [
        (json!({"maxParticipants": 101}), "maxParticipants"),
        (json!({"maxParticipants": 2.5}), "maxParticipants"),
        (
            json!({"muteParticipantsOnJoin": null}),
            "muteParticipantsOnJoin",
        ),
    ] {
        let problem = expect_problem(
            patch(&app, &id, "host", body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(fields(&problem), [field]);
    }
    let not_an_object = app
        .client
        .patch(app.url(&format!("/rooms/{id}/settings")))
        .bearer_auth(app.token("host"))
        .json(&json!([1]))
        .send()
        .await
        .unwrap();
    expect_problem(not_an_object, StatusCode::BAD_REQUEST).await;
    assert_eq!(logged(&app, &id).await.len(), 2);
}

#[tokio::test]
async fn patch_and_delete_answer_401_403_404_and_409() {
    let app = TestApp::spawn().await;
    let id = create(&app, "host", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let no_token = app
        .client
        .patch(app.url(&format!("/rooms/{id}/settings")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_problem(no_token, StatusCode::UNAUTHORIZED).await;
    let no_token = app
        .client
        .delete(app.url(&format!("/rooms/{id}")))
        .send()
        .await
        .unwrap();
    expect_problem(no_token, StatusCode::UNAUTHORIZED).await;

    expect_problem(
        patch(&app, &id, "guest", json!({"allowChat": false})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_problem(end(&app, &id, "guest").await, StatusCode::FORBIDDEN).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for missing in [unknown.as_str(), "not-a-uuid"] {
        expect_problem(
            patch(&app, missing, "host", json!({})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        expect_problem(end(&app, missing, "host").await, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(
        logged(&app, &id).await.len(),
        2,
        "refused commands record nothing"
    );

    assert_eq!(end(&app, &id, "host").await.status(), 200);
    expect_problem(
        patch(&app, &id, "host", json!({"allowChat": false})).await,
        StatusCode::CONFLICT,
    )
    .await;
    expect_problem(
        patch(&app, &id, "host", json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn delete_ends_the_room_once() {
    let app = TestApp::spawn().await;
    let room = create(&app, "host", json!({"name": "Standup"})).await;
    let id = room["id"].as_str().unwrap();
    let response = end(&app, id, "host").await;
    assert_eq!(response.status(), 200);
    let ended: Value = response.json().await.unwrap();
    assert_eq!(ended["isActive"], false);
    assert!(ended["endedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(ended["updatedAt"], ended["endedAt"]);
    let events = logged(&app, id).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].1, "RoomEnded");
    assert_eq!(
        events[2].2,
        json!({"roomId": id, "endedAt": ended["endedAt"], "endedBy": "host"})
    );

    let again = end(&app, id, "host").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap(), ended);
    assert_eq!(logged(&app, id).await.len(), 3, "no second RoomEnded");

    let public = app
        .get_json(&format!("/rooms/code/{}", room["code"].as_str().unwrap()))
        .await;
    assert_eq!(public["isActive"], false);
}

/// A PATCH and a DELETE racing on each of many rooms: every command is decided against the
/// latest state (no lost update, at most one RoomEnded), and the views equal a replay.
#[tokio::test]
async fn patch_and_delete_racing_lose_no_update() {
    let app = Arc::new(TestApp::spawn().await);
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            create(&app, "host", json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let races = ids.iter().map(|id| {
        let (app, id) = (Arc::clone(&app), id.clone());
        tokio::spawn(async move {
            let patching = async {
                let mut statuses = Vec::new();
                for max in 3..8 {
                    statuses.push(
                        patch(&app, &id, "host", json!({"maxParticipants": max}))
                            .await
                            .status(),
                    );
                }
                statuses
            };
            let (patched, ended) = tokio::join!(patching, end(&app, &id, "host"));
            (patched, ended.status())
        })
    });
    for race in futures_util::future::join_all(races).await {
        let (patched, ended) = race.unwrap();
        assert_eq!(ended, 200);
        assert!(
            patched.iter().all(|s| *s == 200 || *s == 409),
            "{patched:?}"
        );
    }
    for id in &ids {
        let events = logged(&app, id).await;
        let ended_at = events.iter().position(|e| e.1 == "RoomEnded");
        assert_eq!(events.iter().filter(|e| e.1 == "RoomEnded").count(), 1);
        assert_eq!(
            ended_at,
            Some(events.len() - 1),
            "nothing after the end: {events:?}"
        );
        let last_max = events
            .iter()
            .rev()
            .find_map(|e| e.2["changes"]["maxParticipants"].as_i64())
            .unwrap_or(50);
        let view: Value = get(&app, &format!("/rooms/{id}"), "host")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(view["settings"]["maxParticipants"], last_max, "{id}");
        assert_eq!(view["isActive"], false);
    }
    let rows = || async {
        sqlx::query_scalar::<_, Value>("SELECT row_to_json(r) FROM rooms r ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap()
    };
    let before = rows().await;
    neuronmeet::replay::run(&app.db, "rooms", &Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(rows().await, before);
}

#[tokio::test]
async fn my_rooms_lists_what_i_host_newest_first_and_pages() {
    let app = TestApp::spawn().await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(create(&app, "ada", json!({"name": format!("room {i}")})).await);
    }
    create(&app, "bob", json!({})).await;
    for room in &mine[..2] {
        end(&app, room["id"].as_str().unwrap(), "ada").await;
    }
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first: Vec<String> = mine
        .iter()
        .rev()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    let all: Value = get(&app, "/users/me/rooms", "ada")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["nextCursor"], Value::Null);
    assert_eq!(
        all["items"][0],
        get(&app, &format!("/rooms/{}", newest_first[0]), "ada")
            .await
            .json::<Value>()
            .await
            .unwrap()
    );
    let active: Value = get(&app, "/users/me/rooms?status=active", "ada")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&active), newest_first[..3]);
    let ended: Value = get(&app, "/users/me/rooms?status=ended", "ada")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&ended), newest_first[3..]);

    let mut paged = Vec::new();
    let mut path = "/users/me/rooms?limit=2".to_owned();
    loop {
        let page: Value = get(&app, &path, "ada").await.json().await.unwrap();
        paged.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/users/me/rooms?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    for query in [
        "status=open",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=zz",
        "page=2",
        "limit=1&limit=2",
    ] {
        let response = get(&app, &format!("/users/me/rooms?{query}"), "ada").await;
        expect_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let nobody: Value = get(&app, "/users/me/rooms", "nobody")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(nobody, json!({"items": [], "nextCursor": null}));
}

/// Rooms created while a client pages never make it see one twice or skip one that existed
/// when it began.
#[tokio::test]
async fn paging_while_rooms_are_created_is_stable() {
    let app = Arc::new(TestApp::spawn().await);
    let mut existing = HashSet::new();
    for _ in 0..25 {
        existing.insert(
            create(&app, "ada", json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let creator = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            for _ in 0..20 {
                create(&app, "ada", json!({})).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut path = "/users/me/rooms?limit=3".to_owned();
    loop {
        let page: Value = get(&app, &path, "ada").await.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/users/me/rooms?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    creator.await.unwrap();
    let distinct: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "a room was seen twice");
    assert!(
        existing.is_subset(&distinct),
        "a room that existed was skipped"
    );
}

#[tokio::test]
async fn the_host_reads_the_rooms_history_as_subscribers_receive_it() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(Options {
        relay: Some(nats.relay_config()),
        ..Options::default()
    })
    .await;
    let id = create(&app, "host", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    patch(
        &app,
        &id,
        "host",
        json!({"allowChat": false, "isLocked": true}),
    )
    .await;
    end(&app, &id, "host").await;

    let page: Value = get(&app, &format!("/rooms/{id}/events"), "host")
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    let types: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "RoomCreated",
            "SettingsConfigured",
            "SettingsUpdated",
            "RoomLocked",
            "RoomEnded"
        ]
    );
    assert_eq!(page["nextAfter"], Value::Null);
    let messages = nats.wait_for(5).await;
    assert_eq!(messages.len(), 5);
    for (item, message) in items.iter().zip(&messages) {
        let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("rooms.{id}.{}", item["type"].as_str().unwrap())
        );
        assert_eq!(item["data"], envelope["data"]);
        assert_eq!(item["sequence"], envelope_sequence(&envelope));
        assert_eq!(item["occurredAt"], envelope["time"]);
    }

    let first: Value = get(&app, &format!("/rooms/{id}/events?limit=2"), "host")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["nextAfter"], 2);
    let rest: Value = get(&app, &format!("/rooms/{id}/events?after=2&limit=3"), "host")
        .await
        .json()
        .await
        .unwrap();
    let sequences: Vec<i64> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [3, 4, 5]);
    assert_eq!(rest["nextAfter"], Value::Null);

    expect_problem(
        get(&app, &format!("/rooms/{id}/events"), "guest").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    expect_problem(
        get(&app, &format!("/rooms/{unknown}/events"), "host").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for query in ["limit=0", "limit=501", "after=-1", "after=x", "since=1"] {
        expect_problem(
            get(&app, &format!("/rooms/{id}/events?{query}"), "host").await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

async fn post_with_key(app: &TestApp, sub: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/rooms"))
        .bearer_auth(app.token(sub))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "Standup", "maxParticipants": 10});
    let first = post_with_key(&app, "ada", "key-1", body.clone()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_bytes = first.text().await.unwrap();
    let first: Value = serde_json::from_str(&first_bytes).unwrap();

    // The room changes meanwhile; the repeat still gets the first response.
    patch(
        &app,
        first["id"].as_str().unwrap(),
        "ada",
        json!({"allowChat": false}),
    )
    .await;
    let again = post_with_key(
        &app,
        "ada",
        "key-1",
        json!({"maxParticipants": 10, "name": "Standup"}),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.text().await.unwrap(), first_bytes, "byte for byte");
    assert_eq!(
        app.count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await,
        1
    );

    let other_body = post_with_key(&app, "ada", "key-1", json!({"name": "Other"})).await;
    expect_problem(other_body, StatusCode::UNPROCESSABLE_ENTITY).await;
    let other_caller = post_with_key(&app, "bob", "key-1", body.clone()).await;
    assert_eq!(other_caller.status(), 201);
    assert!(other_caller.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        app.count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await,
        2
    );

    for key in [String::new(), "k".repeat(256), "tab\tkey".into()] {
        let response = post_with_key(&app, "ada", &key, body.clone()).await;
        let problem = expect_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(fields(&problem), ["Idempotency-Key"]);
    }
    let longest = post_with_key(&app, "ada", &"k".repeat(255), body).await;
    assert_eq!(longest.status(), 201);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_create_one_room() {
    let app = Arc::new(TestApp::spawn().await);
    let requests = (0..20).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = post_with_key(&app, "ada", "storm", json!({"name": "Once"})).await;
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        })
    });
    let mut created = HashSet::new();
    for request in futures_util::future::join_all(requests).await {
        let (status, body) = request.unwrap();
        match status.as_u16() {
            201 => {
                created.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["status"], 409),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), 1, "every 201 is the same room");
    assert_eq!(
        app.count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, 1);
}

/// Two hosts' tabs changing one room at once: every change answered 200 is in the log, in an
/// order the final view agrees with.
#[tokio::test]
async fn two_patches_racing_lose_no_update() {
    let app = Arc::new(TestApp::spawn().await);
    // Two instances: within one, a room's commands take turns; across them, they conflict.
    let other = Arc::new(
        TestApp::spawn_with(Options {
            database: Some((app.database_url.clone(), app.database_name.clone())),
            ..Default::default()
        })
        .await,
    );
    let id = create(&app, "host", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let racer = |app: &Arc<TestApp>, values: std::ops::Range<i64>| {
        let (app, id) = (Arc::clone(app), id.clone());
        tokio::spawn(async move {
            for max in values {
                let response = patch(&app, &id, "host", json!({"maxParticipants": max})).await;
                assert_eq!(response.status(), 200);
            }
        })
    };
    let (a, b) = tokio::join!(racer(&app, 10..20), racer(&other, 30..40));
    a.unwrap();
    b.unwrap();
    let updates: Vec<i64> = logged(&app, &id)
        .await
        .iter()
        .filter_map(|e| e.2["changes"]["maxParticipants"].as_i64())
        .collect();
    assert_eq!(updates.len(), 20, "{updates:?}");
    let view: Value = get(&app, &format!("/rooms/{id}"), "host")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["settings"]["maxParticipants"],
        *updates.last().unwrap()
    );
    let times: Vec<String> = logged(&app, &id)
        .await
        .iter()
        .filter_map(|e| e.2["updatedAt"].as_str().map(str::to_owned))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "event times follow sequence order");
}

#[tokio::test]
async fn reads_need_a_token() {
    let app = TestApp::spawn().await;
    let id = create(&app, "host", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/users/me/rooms".to_owned(), format!("/rooms/{id}/events")] {
        let response = app.client.get(app.url(&path)).send().await.unwrap();
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn an_idempotency_key_is_forgotten_after_24_hours() {
    let app = TestApp::spawn().await;
    let first = post_with_key(&app, "ada", "daily", json!({})).await;
    assert_eq!(first.status(), 201);
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let next_day = post_with_key(&app, "ada", "daily", json!({})).await;
    assert_eq!(next_day.status(), 201);
    assert!(next_day.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        app.count("SELECT count(DISTINCT aggregate_id) FROM events")
            .await,
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 1);
}

/// While the first request with a key runs, a repeat is answered 409 at once, not made to wait.
#[tokio::test]
async fn a_repeat_while_the_first_runs_gets_409() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    // What the first request holds while it runs.
    let mut first = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended(length($1) || ':' || $1 || $2, 0))")
        .bind("ada")
        .bind("busy")
        .execute(&mut first)
        .await
        .unwrap();
    let repeat = post_with_key(&app, "ada", "busy", json!({})).await;
    expect_problem(repeat, StatusCode::CONFLICT).await;
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        0,
        "nothing created"
    );
    drop(first);
}

/// A client that hangs up while its keyed create commits still has its first response kept:
/// the repeat answers it byte for byte, not the room as it has become since.
#[tokio::test]
async fn a_key_whose_client_hung_up_replays_the_first_response() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    // Holds the create inside its transaction (at the key's record) until the client has left.
    let mut blocker = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE idempotency_keys IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let body = json!({"name": "Hung up"});
    let hung_up = tokio::spawn({
        let (client, url, token) = (app.client.clone(), app.url("/rooms"), app.token("ada"));
        let body = body.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "hang-up")
                .json(&body)
                .send()
                .await
        }
    });
    assert!(common::eventually(|| async { app.waiting_on_locks().await == 1 }).await);
    hung_up.abort();
    assert!(hung_up.await.unwrap_err().is_cancelled());
    // Long enough for the service to see the connection close and drop the request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    let kept = "SELECT count(*) FROM idempotency_keys";
    assert_eq!(common::count_when(&app.db, kept, 1).await, 1);

    // GET answers byte for byte what the POST did.
    let id: String = sqlx::query_scalar("SELECT room_id FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let first = get(&app, &format!("/rooms/{id}"), "ada")
        .await
        .text()
        .await
        .unwrap();
    let changed = patch(&app, &id, "ada", json!({"allowChat": false})).await;
    assert_eq!(changed.status(), 200);
    let repeat = post_with_key(&app, "ada", "hang-up", body).await;
    assert_eq!(repeat.status(), 201);
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    assert_eq!(repeat.text().await.unwrap(), first, "byte for byte");
}

/// A key recorded without its response (by an older version, which kept the response after the
/// commit, and died in between) is answered, when repeated, from the room it created, and the
/// answer is kept from then on.
#[tokio::test]
async fn a_key_without_a_kept_response_is_answered_from_its_room() {
    let app = TestApp::spawn().await;
    let first: Value = post_with_key(&app, "ada", "crash", json!({}))
        .await
        .json()
        .await
        .unwrap();
    sqlx::query("UPDATE idempotency_keys SET response = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    let repeat = post_with_key(&app, "ada", "crash", json!({})).await;
    assert_eq!(repeat.status(), 201);
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    let body = repeat.text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), first);
    let kept: String = sqlx::query_scalar("SELECT response FROM idempotency_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(kept, body, "kept byte for byte");
}
