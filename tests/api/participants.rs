//! Participants: join (users, the host, guests), the waiting room, the limit (also in a storm
//! across two instances), the list, leaving, and ending a room with people in it.

use std::collections::HashSet;
use std::sync::Arc;

use crate::common::{self, with_token, NatsServer, Options, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn new_room(app: &TestApp, host: &str, settings: Value) -> Value {
    let response = app
        .call(Method::POST, "/rooms", host, Some(json!({})))
        .await;
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    if settings != json!({}) {
        let id = room["id"].as_str().unwrap();
        let response = app
            .call(
                Method::PATCH,
                &format!("/rooms/{id}/settings"),
                host,
                Some(settings),
            )
            .await;
        assert_eq!(response.status(), 200);
        return response.json().await.unwrap();
    }
    room
}

fn code(room: &Value) -> &str {
    room["code"].as_str().unwrap()
}

fn id(room: &Value) -> &str {
    room["id"].as_str().unwrap()
}

async fn join(app: &TestApp, room: &Value, sub: &str) -> reqwest::Response {
    app.call(
        Method::POST,
        &format!("/rooms/code/{}/join", code(room)),
        sub,
        None,
    )
    .await
}

async fn join_as_guest(app: &TestApp, room: &Value, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/rooms/code/{}/join", code(room))))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn events(app: &TestApp, room: &Value) -> Vec<(String, Value)> {
    sqlx::query_as::<_, (String, Value)>(
        "SELECT event_type, payload -> event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id(room))
    .fetch_all(&app.db)
    .await
    .unwrap()
}

fn claims_of(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["neuronmeet:room"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(common::SECRET),
        &validation,
    )
    .unwrap()
    .claims
}

async fn joined_list(app: &TestApp, room: &Value, sub: &str) -> Vec<String> {
    let list: Value = app
        .call(
            Method::GET,
            &format!("/rooms/{}/participants", id(room)),
            sub,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_member_joins_once_and_gets_a_join_token() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({})).await;
    let response = join(&app, &room, "ada").await;
    assert_eq!(response.status(), 201);
    let joined: Value = response.json().await.unwrap();
    let participant = &joined["participant"];
    assert_eq!(participant["roomId"], room["id"]);
    assert_eq!(participant["role"], "member");
    assert_eq!(participant["status"], "joined");
    assert_eq!(participant["muted"], false);
    // A token with no name: the room shows a number, never the user's id (`sub`).
    assert_eq!(participant["displayName"], "Participant 1");
    assert!(participant["joinedAt"].as_str().unwrap().ends_with('Z'));
    let claims = claims_of(joined["joinToken"].as_str().unwrap());
    assert_eq!(claims["sub"], participant["id"]);
    assert_eq!(claims["room"], room["id"]);
    assert_eq!(claims["role"], "member");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 4 * 3600, "{lifetime}");

    let again = join(&app, &room, "ada").await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["participant"], *participant);
    assert_ne!(again["joinToken"], joined["joinToken"]);
    let types: Vec<String> = events(&app, &room).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        types,
        ["RoomCreated", "SettingsConfigured", "ParticipantJoined"]
    );
    // The body is optional, and a JSON `null` counts as none (as the OpenAPI document says).
    let with_null = app
        .call(
            Method::POST,
            &format!("/rooms/code/{}/join", code(&room)),
            "grace",
            Some(Value::Null),
        )
        .await;
    assert_eq!(with_null.status(), 201);

    // The join token is for the participant endpoints, not for users' ones.
    let token = joined["joinToken"].as_str().unwrap();
    let create = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 401);
    let read = with_token(&app, Method::GET, &format!("/rooms/{}", id(&room)), token).await;
    assert_eq!(read.status(), 401);
    let list = with_token(
        &app,
        Method::GET,
        &format!("/rooms/{}/participants", id(&room)),
        token,
    )
    .await;
    assert_eq!(list.status(), 200);
}

#[tokio::test]
async fn the_host_joins_at_once_whatever_the_rules_and_others_are_refused() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({"isLocked": true, "waitingRoom": true})).await;
    let host = join(&app, &room, "host").await;
    assert_eq!(host.status(), 201);
    let host: Value = host.json().await.unwrap();
    assert_eq!(host["participant"]["role"], "host");
    assert_eq!(host["participant"]["status"], "joined");
    assert_eq!(join(&app, &room, "ada").await.status(), 403, "locked");
    let guest = join_as_guest(&app, &room, json!({"displayName": "Grace"})).await;
    assert_eq!(guest.status(), 403);

    let missing = app
        .call(Method::POST, "/rooms/code/zzz-zzz-zzz/join", "ada", None)
        .await;
    assert_eq!(missing.status(), 404);
    let malformed = app
        .call(Method::POST, "/rooms/code/nope/join", "ada", None)
        .await;
    assert_eq!(malformed.status(), 404);
    app.call(
        Method::DELETE,
        &format!("/rooms/{}", id(&room)),
        "host",
        None,
    )
    .await;
    assert_eq!(join(&app, &room, "ada").await.status(), 410);
    assert_eq!(join(&app, &room, "host").await.status(), 410);
}

#[tokio::test]
async fn guests_join_under_a_name_unless_the_room_admits_none() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({"muteParticipantsOnJoin": true})).await;
    for body in [
        json!({}),
        json!({"displayName": ""}),
        json!({"displayName": "x".repeat(51)}),
        json!({"displayName": null}),
        json!({"displayName": "G", "role": "host"}),
    ] {
        let response = join_as_guest(&app, &room, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let guest = join_as_guest(&app, &room, json!({"displayName": "Grace"})).await;
    assert_eq!(guest.status(), 201);
    let guest: Value = guest.json().await.unwrap();
    assert_eq!(guest["participant"]["role"], "guest");
    assert_eq!(guest["participant"]["displayName"], "Grace");
    assert_eq!(
        guest["participant"]["muted"], true,
        "muteParticipantsOnJoin"
    );
    let host: Value = join(&app, &room, "host").await.json().await.unwrap();
    assert_eq!(
        host["participant"]["muted"], false,
        "the host is never muted on join"
    );

    let closed = room_with(&app, json!({"allowGuestAccess": false})).await;
    let refused = join_as_guest(&app, &closed, json!({"displayName": "Grace"})).await;
    assert_eq!(refused.status(), 403);
}

async fn room_with(app: &TestApp, settings: Value) -> Value {
    new_room(app, "host", settings).await
}

#[tokio::test]
async fn a_full_room_refuses_and_the_limit_cannot_drop_below_the_joined() {
    let app = TestApp::spawn().await;
    let room = room_with(&app, json!({"maxParticipants": 2})).await;
    assert_eq!(join(&app, &room, "ada").await.status(), 201);
    assert_eq!(join(&app, &room, "bob").await.status(), 201);
    let full = join(&app, &room, "cy").await;
    assert_eq!(full.status(), 409);
    let lower = app
        .call(
            Method::PATCH,
            &format!("/rooms/{}/settings", id(&room)),
            "host",
            Some(json!({"maxParticipants": 3})),
        )
        .await;
    assert_eq!(lower.status(), 200);
    assert_eq!(join(&app, &room, "cy").await.status(), 201);
    let below = app
        .call(
            Method::PATCH,
            &format!("/rooms/{}/settings", id(&room)),
            "host",
            Some(json!({"maxParticipants": 2})),
        )
        .await;
    assert_eq!(below.status(), 409);
}

#[tokio::test]
async fn the_waiting_room_admits_and_denies() {
    let app = TestApp::spawn().await;
    let room = room_with(&app, json!({"waitingRoom": true, "maxParticipants": 2})).await;
    let mut waiting = Vec::new();
    for user in ["ada", "bob", "cy"] {
        let response = join(&app, &room, user).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["participant"]["status"], "waiting");
        waiting.push(body["participant"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        join(&app, &room, "ada").await.status(),
        200,
        "already waiting"
    );
    let path = |pid: &str, what: &str| format!("/rooms/{}/participants/{pid}/{what}", id(&room));
    let list = |sub: &'static str| {
        let app = &app;
        let room = &room;
        async move {
            app.call(
                Method::GET,
                &format!("/rooms/{}/participants?status=waiting", id(room)),
                sub,
                None,
            )
            .await
        }
    };
    let waiting_list: Value = list("host").await.json().await.unwrap();
    assert_eq!(waiting_list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list("ada").await.status(), 403);

    assert_eq!(
        app.call(Method::POST, &path(&waiting[0], "admit"), "ada", None)
            .await
            .status(),
        403
    );
    let admitted = app
        .call(Method::POST, &path(&waiting[0], "admit"), "host", None)
        .await;
    assert_eq!(admitted.status(), 200);
    assert_eq!(admitted.json::<Value>().await.unwrap()["status"], "joined");
    let denied = app
        .call(Method::POST, &path(&waiting[1], "deny"), "host", None)
        .await;
    assert_eq!(denied.status(), 200);
    assert_eq!(denied.json::<Value>().await.unwrap()["status"], "denied");
    let again = app
        .call(Method::POST, &path(&waiting[1], "admit"), "host", None)
        .await;
    assert_eq!(again.status(), 404, "a denied participant is gone");
    assert_eq!(join(&app, &room, "host").await.status(), 201);
    let full = app
        .call(Method::POST, &path(&waiting[2], "admit"), "host", None)
        .await;
    assert_eq!(full.status(), 409, "full on admit");
    let unknown = app
        .call(Method::POST, &path("nobody", "admit"), "host", None)
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(joined_list(&app, &room, "host").await.len(), 2);
}

/// Admits racing for one waiting participant: one admits them, the others find them joined
/// already, and every answer says so (an answer built from what was read before the decision
/// said `waiting`).
#[tokio::test]
async fn concurrent_admits_all_answer_joined() {
    let app = TestApp::spawn().await;
    let room = room_with(&app, json!({"waitingRoom": true})).await;
    let waiting: Value = join(&app, &room, "ada").await.json().await.unwrap();
    let pid = waiting["participant"]["id"].as_str().unwrap();
    let path = format!("/rooms/{}/participants/{pid}/admit", id(&room));
    let admits = (0..8).map(|_| async {
        let response = app.call(Method::POST, &path, "host", None).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    });
    let answers = futures_util::future::join_all(admits).await;
    let list: Value = app
        .call(
            Method::GET,
            &format!("/rooms/{}/participants", id(&room)),
            "host",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let joined = &list["items"][0];
    assert_eq!(joined["id"], pid);
    for answer in answers {
        assert_eq!(&answer, joined);
    }
    let admitted = events(&app, &room)
        .await
        .iter()
        .filter(|(kind, _)| kind == "ParticipantAdmitted")
        .count();
    assert_eq!(admitted, 1);
}

#[tokio::test]
async fn the_list_is_for_the_host_and_joined_participants() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({})).await;
    let other = new_room(&app, "host", json!({})).await;
    let ada: Value = join(&app, &room, "ada").await.json().await.unwrap();
    let bob: Value = join(&app, &room, "bob").await.json().await.unwrap();
    let stranger: Value = join(&app, &other, "eve").await.json().await.unwrap();
    let ids = [
        ada["participant"]["id"].as_str().unwrap().to_owned(),
        bob["participant"]["id"].as_str().unwrap().to_owned(),
    ];
    assert_eq!(
        joined_list(&app, &room, "host").await,
        ids,
        "in joining order"
    );
    assert_eq!(joined_list(&app, &room, "ada").await, ids);
    let path = format!("/rooms/{}/participants", id(&room));
    let by_token = with_token(&app, Method::GET, &path, ada["joinToken"].as_str().unwrap()).await;
    assert_eq!(by_token.status(), 200);
    let foreign = with_token(
        &app,
        Method::GET,
        &path,
        stranger["joinToken"].as_str().unwrap(),
    )
    .await;
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        app.call(Method::GET, &path, "eve", None).await.status(),
        403
    );
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = app
        .call(Method::GET, &format!("{path}?status=left"), "host", None)
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn participants_leave_or_are_removed() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({})).await;
    let mut joined = Vec::new();
    for user in ["ada", "bob", "cy"] {
        let body: Value = join(&app, &room, user).await.json().await.unwrap();
        joined.push(body);
    }
    let path = |who: &Value| {
        format!(
            "/rooms/{}/participants/{}",
            id(&room),
            who["participant"]["id"].as_str().unwrap()
        )
    };
    assert_eq!(
        app.call(Method::DELETE, &path(&joined[0]), "bob", None)
            .await
            .status(),
        403
    );
    let by_token = with_token(
        &app,
        Method::DELETE,
        &path(&joined[0]),
        joined[0]["joinToken"].as_str().unwrap(),
    )
    .await;
    assert_eq!(by_token.status(), 204);
    assert_eq!(
        app.call(Method::DELETE, &path(&joined[1]), "bob", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.call(Method::DELETE, &path(&joined[2]), "host", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.call(Method::DELETE, &path(&joined[2]), "host", None)
            .await
            .status(),
        404
    );
    let reasons: Vec<Value> = events(&app, &room)
        .await
        .into_iter()
        .filter(|e| e.0 == "ParticipantLeft")
        .map(|e| e.1["reason"].clone())
        .collect();
    assert_eq!(reasons, ["left", "left", "removed"]);
    assert!(joined_list(&app, &room, "host").await.is_empty());
    // Gone, they can join again, as new participants.
    let back = join(&app, &room, "ada").await;
    assert_eq!(back.status(), 201);
}

#[tokio::test]
async fn ending_a_room_sends_everyone_away_and_replay_agrees() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(Options {
        relay: Some(nats.relay_config()),
        ..Options::default()
    })
    .await;
    let room = room_with(&app, json!({"waitingRoom": true})).await;
    join(&app, &room, "host").await;
    join(&app, &room, "ada").await;
    let guest = join_as_guest(&app, &room, json!({"displayName": "Grace"})).await;
    assert_eq!(guest.status(), 202);
    let ada_id = {
        let list: Value = app
            .call(
                Method::GET,
                &format!("/rooms/{}/participants?status=waiting", id(&room)),
                "host",
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        list["items"][0]["id"].as_str().unwrap().to_owned()
    };
    app.call(
        Method::POST,
        &format!("/rooms/{}/participants/{ada_id}/admit", id(&room)),
        "host",
        None,
    )
    .await;
    let rows = || async {
        sqlx::query_scalar::<_, Value>(
            "SELECT json_agg(t ORDER BY t) FROM (SELECT row_to_json(p)::text AS t FROM participants p \
             UNION ALL SELECT row_to_json(s)::text FROM room_states s) AS x",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    let before = rows().await;
    for projection in ["participants", "room_states"] {
        neuronmeet::replay::run(&app.db, projection, &Default::default(), |_| {})
            .await
            .unwrap();
    }
    assert_eq!(rows().await, before, "replay rebuilds the same rows");

    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/rooms/{}", id(&room)),
            "host",
            None
        )
        .await
        .status(),
        200
    );
    let tail: Vec<(String, Value)> = events(&app, &room)
        .await
        .into_iter()
        .rev()
        .take(4)
        .collect();
    let mut types: Vec<&str> = tail.iter().map(|e| e.0.as_str()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "ParticipantDenied",
            "ParticipantLeft",
            "ParticipantLeft",
            "RoomEnded"
        ]
    );
    assert!(tail
        .iter()
        .filter(|e| e.0 == "ParticipantLeft")
        .all(|e| e.1["reason"] == "roomEnded"));
    assert!(joined_list(&app, &room, "host").await.is_empty());
    let total = events(&app, &room).await.len();
    let messages = nats.wait_for(total).await;
    let subjects: HashSet<String> = messages
        .iter()
        .map(|m| m.subject.split('.').nth(2).unwrap().to_owned())
        .collect();
    for kind in [
        "ParticipantJoined",
        "ParticipantWaiting",
        "ParticipantAdmitted",
        "ParticipantDenied",
        "ParticipantLeft",
    ] {
        assert!(subjects.contains(kind), "{kind} on NATS: {subjects:?}");
    }
}

/// 1,000 users join one room of 100 places through 64 connections split across two instances
/// on one database: exactly 100 get in, the rest are told it is full, none gets a 5xx, and the
/// list and the NATS stream agree.
#[tokio::test]
async fn the_limit_holds_in_a_join_storm_across_two_instances() {
    let nats = NatsServer::start().await;
    let first = Arc::new(
        TestApp::spawn_with(Options {
            relay: Some(nats.relay_config()),
            max_connections: 16,
            ..Options::default()
        })
        .await,
    );
    let second = Arc::new(
        TestApp::spawn_with(Options {
            database: Some((first.database_url.clone(), first.database_name.clone())),
            max_connections: 16,
            ..Options::default()
        })
        .await,
    );
    let room = Arc::new(new_room(&first, "host", json!({"maxParticipants": 100})).await);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..64).map(|worker| {
        let app = if worker % 2 == 0 {
            Arc::clone(&first)
        } else {
            Arc::clone(&second)
        };
        let (room, next) = (Arc::clone(&room), Arc::clone(&next));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let user = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if user >= 1000 {
                    return statuses;
                }
                let response = join(&app, &room, &format!("user-{user}")).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                let kind = body["type"].as_str().unwrap_or_default().to_owned();
                statuses.push((status, kind));
            }
        })
    });
    let mut answers = Vec::new();
    for worker in futures_util::future::join_all(workers).await {
        answers.extend(worker.unwrap());
    }
    let count = |status: u16| answers.iter().filter(|(s, _)| *s == status).count();
    assert_eq!(answers.len(), 1000);
    assert_eq!(
        (count(201), count(409)),
        (100, 900),
        "other answers: {:?}",
        answers
            .iter()
            .filter(|(s, _)| *s != 201 && *s != 409)
            .collect::<Vec<_>>()
    );
    // Every refusal says the room is full, not that the command lost a race.
    assert!(answers
        .iter()
        .filter(|(s, _)| *s == 409)
        .all(|(_, kind)| kind.ends_with("/room-full")));
    let listed: HashSet<String> = joined_list(&first, &room, "host")
        .await
        .into_iter()
        .collect();
    assert_eq!(listed.len(), 100);
    let logged = first.count("SELECT count(*) FROM events").await as usize;
    let on_nats: HashSet<String> = nats
        .wait_for(logged)
        .await
        .iter()
        .filter(|m| m.subject.ends_with(".ParticipantJoined"))
        .map(|m| {
            let envelope: Value = serde_json::from_slice(&m.payload).unwrap();
            envelope["data"]["participantId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(on_nats, listed, "the list and the stream agree");
}

/// A room with 10,000 events of join/leave churn: commands load its state row, not its
/// history, and replay rebuilds that row (the churn is written straight into the log here, as
/// an import would, then rebuilt). How fast such a room joins is measured in bench/.
#[tokio::test]
async fn a_room_with_ten_thousand_events_still_decides_from_its_state_row() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({"maxParticipants": 2})).await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'Room', $1, 3 + n, t, '1.0.0', \
                CASE WHEN t = 'ParticipantJoined' THEN jsonb_build_object(t, jsonb_build_object( \
                       'roomId', $1, 'participantId', 'p-' || (n + 1) / 2, 'userId', 'u-' || (n + 1) / 2, \
                       'displayName', 'U', 'avatarUrl', NULL, 'role', 'member', 'muted', false, \
                       'at', '2026-03-03T10:30:00.000Z')) \
                     ELSE jsonb_build_object(t, jsonb_build_object( \
                       'roomId', $1, 'participantId', 'p-' || n / 2, 'reason', 'left', \
                       'at', '2026-03-03T10:30:00.000Z')) END, \
                '{}' \
           FROM generate_series(1, 10000) AS n, \
                LATERAL (SELECT CASE WHEN n % 2 = 1 THEN 'ParticipantJoined' ELSE 'ParticipantLeft' END AS t) AS k",
    )
    .bind(id(&room))
    .execute(&app.db)
    .await
    .unwrap();
    for projection in ["room_states", "participants"] {
        neuronmeet::replay::run(&app.db, projection, &Default::default(), |_| {})
            .await
            .unwrap();
    }
    let sequence = app
        .count(&format!(
            "SELECT sequence FROM room_states WHERE room_id = '{}'",
            id(&room)
        ))
        .await;
    assert_eq!(sequence, 10_003);

    // Decisions follow the state row, not the history: a row that says one place is left is
    // believed.
    let limit = |max: i64| {
        sqlx::query(
            "UPDATE room_states SET state = jsonb_set(state, '{settings,maxParticipants}', $1)",
        )
        .bind(serde_json::json!(max))
        .execute(&app.db)
    };
    limit(1).await.unwrap();
    assert_eq!(join(&app, &room, "ada").await.status(), 201);
    assert_eq!(join(&app, &room, "bob").await.status(), 409);
    limit(2).await.unwrap();
    // Everyone else left: a second place is free, and the third joiner is refused.
    assert_eq!(join(&app, &room, "bob").await.status(), 201);
    assert_eq!(join(&app, &room, "cy").await.status(), 409);
    let sequence = app
        .count(&format!(
            "SELECT sequence FROM room_states WHERE room_id = '{}'",
            id(&room)
        ))
        .await;
    assert_eq!(sequence, 10_005, "the state row moves with each command");
    assert_eq!(joined_list(&app, &room, "host").await.len(), 2);

    // Loading reads the row and the events after it, never the room's whole history: also in
    // the generic plan PostgreSQL switches a prepared statement to after five executions.
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "PREPARE load(text, text) AS {}",
        neuronmeet::read_models::room_states::load_statement()
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE load('Room', '{}')",
        id(&room)
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    // The bound on the events' sequence is an index condition, not a filter after the join.
    assert!(!plan.contains("Join Filter"), "{plan}");
    sqlx::raw_sql("DEALLOCATE load; RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// A state row that lags the log (lost, or written by an older version) never blocks its room:
/// the events after it are applied on top.
#[tokio::test]
async fn a_missing_state_row_is_made_good_from_the_log() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({"maxParticipants": 2})).await;
    assert_eq!(join(&app, &room, "ada").await.status(), 201);
    sqlx::query("DELETE FROM room_states")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(join(&app, &room, "bob").await.status(), 201);
    assert_eq!(
        join(&app, &room, "cy").await.status(),
        409,
        "ada and bob are counted"
    );
    let sequence = app
        .count(&format!(
            "SELECT sequence FROM room_states WHERE room_id = '{}'",
            id(&room)
        ))
        .await;
    assert_eq!(sequence, 5);
}

/// The host, with the join token of their own participant, acts as the host.
#[tokio::test]
async fn the_hosts_join_token_acts_as_the_host() {
    let app = TestApp::spawn().await;
    let room = new_room(&app, "host", json!({"waitingRoom": true})).await;
    let host: Value = join(&app, &room, "host").await.json().await.unwrap();
    let token = host["joinToken"].as_str().unwrap();
    let waiting: Value = join(&app, &room, "ada").await.json().await.unwrap();
    let pid = waiting["participant"]["id"].as_str().unwrap();
    let path = format!("/rooms/{}/participants", id(&room));
    let list = with_token(&app, Method::GET, &format!("{path}?status=waiting"), token).await;
    assert_eq!(list.status(), 200);
    let admit = with_token(&app, Method::POST, &format!("{path}/{pid}/admit"), token).await;
    assert_eq!(admit.status(), 200);
    let remove = with_token(&app, Method::DELETE, &format!("{path}/{pid}"), token).await;
    assert_eq!(remove.status(), 204);
    // A member's join token does not (Bob's, which his waiting pass fetches once admitted).
    let bob: Value = join(&app, &room, "bob").await.json().await.unwrap();
    let bob_path = format!("{path}/{}", bob["participant"]["id"].as_str().unwrap());
    let admit = with_token(&app, Method::POST, &format!("{bob_path}/admit"), token).await;
    assert_eq!(admit.status(), 200);
    let pass = bob["waitingPass"].as_str().unwrap();
    let bob: Value = with_token(&app, Method::GET, &bob_path, pass)
        .await
        .json()
        .await
        .unwrap();
    let bob_token = bob["joinToken"].as_str().unwrap();
    let listing = with_token(
        &app,
        Method::GET,
        &format!("{path}?status=waiting"),
        bob_token,
    )
    .await;
    assert_eq!(listing.status(), 403);
}
