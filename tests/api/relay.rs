//! The relay against a real nats-server: every committed event in the ROOMS stream exactly
//! once, in per-room order, through slow transactions, NATS outages, crashes and two instances.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{envelope_position, envelope_sequence, NatsServer, Options, TestApp};
use async_nats::jetstream::message::StreamMessage;
use serde_json::{json, Value};

fn with_relay(nats: &NatsServer) -> Options {
    Options {
        relay: Some(nats.relay_config()),
        ..Options::default()
    }
}

async fn create_rooms(app: &Arc<TestApp>, count: usize) -> Vec<String> {
    let creates = (0..count).map(|_| {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            let response = app.create_room(json!({})).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Checks each message's subject, id header and envelope; asserts no event appears twice and
/// each room's events are in sequence order. Returns the ids in stream order.
fn check_messages(messages: &[StreamMessage]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next_sequence: HashMap<String, i64> = HashMap::new();
    for message in messages {
        let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
        let room = envelope["subject"].as_str().unwrap().to_owned();
        let sequence = envelope_sequence(&envelope);
        let kind = envelope["type"].as_str().unwrap();
        let id = format!("{room}:{sequence}");
        assert_eq!(message.subject.as_str(), format!("rooms.{room}.{kind}"));
        assert_eq!(message.headers.get("Nats-Msg-Id").unwrap().as_str(), id);
        // Each message was published to follow the one before it, so none follows a hole.
        assert_eq!(
            message
                .headers
                .get("Nats-Expected-Last-Sequence")
                .map(|v| v.as_str().to_owned()),
            Some((message.sequence - 1).to_string()),
            "{id}"
        );
        assert_eq!(envelope["id"], id);
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["datacontenttype"], "application/json");
        assert!(envelope_position(&envelope) > 0);
        assert!(envelope["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        match kind {
            "RoomCreated" => assert_eq!(envelope["data"]["roomId"], room.as_str()),
            "SettingsConfigured" => assert_eq!(envelope["data"]["maxParticipants"], 50),
            other => panic!("unexpected event type {other}"),
        }
        let expected = next_sequence.entry(room).or_insert(1);
        assert_eq!(sequence, *expected, "{id} out of order");
        *expected += 1;
        ids.push(id);
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an event was published twice");
    ids
}

#[tokio::test]
async fn every_event_of_concurrent_creates_arrives_once() {
    let nats = NatsServer::start().await;
    let app = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    let rooms = create_rooms(&app, 40).await;
    let ids = check_messages(&nats.wait_for(80).await);
    assert_eq!(ids.len(), 80);
    for room in rooms {
        assert!(ids.contains(&format!("{room}:1")) && ids.contains(&format!("{room}:2")));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nats.messages().await.len(),
        80,
        "nothing more arrives later"
    );
}

#[tokio::test]
async fn a_slow_transaction_that_commits_last_is_still_published() {
    let nats = NatsServer::start().await;
    let app = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    create_rooms(&app, 2).await;
    nats.wait_for(4).await;

    // A transaction takes its global position now and commits after later ones.
    let mut slow = neuronmeet::db::Tx::begin(&app.db, Duration::from_secs(60))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Room', 'slow-room', 1, 'RoomCreated', '1.0.0', '{\"RoomCreated\": {\"roomId\": \"slow-room\"}}', '{}')",
    )
    .execute(slow.conn())
    .await
    .unwrap();
    let rooms = create_rooms(&app, 5).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    slow.commit().await.unwrap();

    let messages = nats.wait_for(4 + 1 + 10).await;
    let ids = check_messages_allowing_slow_room(&messages);
    assert_eq!(ids.len(), 15);
    assert!(
        ids.contains(&"slow-room:1".to_owned()),
        "the slow transaction's event was skipped"
    );
    for room in rooms {
        assert!(ids.contains(&format!("{room}:2")), "{room} was skipped");
    }
}

/// The slow room's hand-written payload has no settings: check the envelope basics only.
fn check_messages_allowing_slow_room(messages: &[StreamMessage]) -> Vec<String> {
    let (slow, rest): (Vec<_>, Vec<_>) = messages
        .iter()
        .cloned()
        .partition(|m| m.subject.as_str().starts_with("rooms.slow-room."));
    assert_eq!(slow.len(), 1);
    let mut ids = check_messages(&rest);
    ids.push(
        slow[0]
            .headers
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_owned(),
    );
    ids
}

#[tokio::test]
async fn a_nats_outage_delays_events_but_loses_none() {
    let mut nats = NatsServer::start().await;
    let app = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    create_rooms(&app, 3).await;
    nats.wait_for(6).await;

    nats.stop();
    create_rooms(&app, 10).await; // 201s: the log is the outbox
                                  // /readyz answers from a check made once a second.
    let lagging = common::eventually(|| async {
        let ready = app.get_json("/readyz").await;
        ready["status"] == "ready" && ready["relay"]["lag"]["events"].as_i64() > Some(0)
    })
    .await;
    assert!(lagging, "{}", app.get_json("/readyz").await);
    let degraded =
        common::eventually(|| async { app.relay_status.get().status == "degraded" }).await;
    assert!(degraded, "the relay never reported NATS being down");

    nats.restart().await;
    let ids = check_messages(&nats.wait_for(26).await);
    assert_eq!(ids.len(), 26);
    let caught_up = common::eventually(|| async {
        app.get_json("/readyz").await["relay"]["lag"]["events"] == 0
    })
    .await;
    assert!(caught_up, "{}", app.get_json("/readyz").await);
}

#[tokio::test]
async fn a_relay_killed_before_its_checkpoint_publishes_nothing_twice() {
    let nats = NatsServer::start().await;
    // A duplicate window so short that only reconciliation can prevent duplicates.
    let config = || neuronmeet::relay::RelayConfig {
        duplicate_window: Duration::from_secs(1),
        ..nats.relay_config()
    };
    let mut app = TestApp::spawn_with(Options {
        relay: Some(config()),
        ..Options::default()
    })
    .await;
    for _ in 0..5 {
        app.create_room(json!({})).await;
    }
    nats.wait_for(10).await;
    // Killed after publishing, before writing its checkpoint: the checkpoint is back at 0.
    app.relay.take().unwrap().abort();
    sqlx::query(
        "UPDATE checkpoints SET transaction_id = '0', global_position = 0, stream_sequence = 0",
    )
    .execute(&app.db)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the duplicate window

    let restarted = TestApp::spawn_with(Options {
        relay: Some(config()),
        database: Some((app.database_url.clone(), app.database_name.clone())),
        ..Options::default()
    })
    .await;
    restarted.create_room(json!({})).await;
    let ids = check_messages(&nats.wait_for(12).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ids.len(), 12);
    assert_eq!(nats.messages().await.len(), 12);
}

#[tokio::test]
async fn two_instances_on_one_database_publish_each_event_once() {
    let nats = NatsServer::start().await;
    let first = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    let second = Arc::new(
        TestApp::spawn_with(Options {
            database: Some((first.database_url.clone(), first.database_name.clone())),
            ..with_relay(&nats)
        })
        .await,
    );
    let (a, b) = tokio::join!(create_rooms(&first, 15), create_rooms(&second, 15));
    assert_eq!(a.len() + b.len(), 30);
    let ids = check_messages(&nats.wait_for(60).await);
    assert_eq!(ids.len(), 60);
    let statuses = [
        first.relay_status.get().status,
        second.relay_status.get().status,
    ];
    assert!(
        statuses.contains(&"publishing") && statuses.contains(&"standby"),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(nats.messages().await.len(), 60);
}

#[tokio::test]
async fn a_standby_takes_over_when_the_publisher_dies() {
    let nats = NatsServer::start().await;
    let mut first = TestApp::spawn_with(with_relay(&nats)).await;
    first.create_room(json!({})).await;
    nats.wait_for(2).await;
    let second = TestApp::spawn_with(Options {
        database: Some((first.database_url.clone(), first.database_name.clone())),
        ..with_relay(&nats)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.relay_status.get().status, "standby");
    first.relay.take().unwrap().abort();
    second.create_room(json!({})).await;
    let ids = check_messages(&nats.wait_for(4).await);
    assert_eq!(ids.len(), 4);
    assert_eq!(second.relay_status.get().status, "publishing");
}

/// The `required` list of a schema in asyncapi.yaml (written as `required: [a, b]`).
fn documented_fields(schema: &str) -> HashSet<String> {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.yaml")).unwrap();
    let after = spec
        .split(&format!("\n    {schema}:\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("asyncapi.yaml has no schema {schema}"));
    let list = after
        .split("required: [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    list.split(',').map(|f| f.trim().to_owned()).collect()
}

fn keys(value: &Value) -> HashSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn what_subscribers_receive_is_what_asyncapi_yaml_documents() {
    let nats = NatsServer::start().await;
    let app = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    let id = create_rooms(&app, 1).await.remove(0);
    // Every event type: settings changed, locked, unlocked; a participant joins, another
    // waits and is admitted, a third waits and is denied, one leaves; the room ends.
    use reqwest::Method;
    let call = |method: Method, path: String, sub: &'static str, body: Option<Value>| {
        let app = Arc::clone(&app);
        async move { app.call(method, &path, sub, body).await }
    };
    let settings = format!("/rooms/{id}/settings");
    for body in [
        json!({"allowChat": false, "isLocked": true}),
        json!({"isLocked": false}),
    ] {
        let response = call(Method::PATCH, settings.clone(), "user-1", Some(body)).await;
        assert_eq!(response.status(), 200);
    }
    let room = call(Method::GET, format!("/rooms/{id}"), "user-1", None).await;
    let code = room.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = format!("/rooms/code/{code}/join");
    let participant = |response: reqwest::Response| async move {
        response.json::<Value>().await.unwrap()["participant"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let leaver = participant(call(Method::POST, join.clone(), "user-2", None).await).await;
    let waiting_room = json!({"waitingRoom": true});
    call(
        Method::PATCH,
        settings.clone(),
        "user-1",
        Some(waiting_room),
    )
    .await;
    let admitted = participant(call(Method::POST, join.clone(), "user-3", None).await).await;
    let denied = participant(call(Method::POST, join.clone(), "user-4", None).await).await;
    let participants = format!("/rooms/{id}/participants");
    for (pid, what) in [(admitted, "admit"), (denied, "deny")] {
        let response = call(
            Method::POST,
            format!("{participants}/{pid}/{what}"),
            "user-1",
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let left = call(
        Method::DELETE,
        format!("{participants}/{leaver}"),
        "user-2",
        None,
    )
    .await;
    assert_eq!(left.status(), 204);
    let ended = call(Method::DELETE, format!("/rooms/{id}"), "user-1", None).await;
    assert_eq!(ended.status(), 200);
    let logged = app.count("SELECT count(*) FROM events").await as usize;
    let messages = nats.wait_for(logged).await;
    let types: HashSet<String> = messages
        .iter()
        .map(|m| m.subject.split('.').nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(types.len(), 11, "{types:?}");
    for message in messages {
        let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(keys(&envelope), documented_fields("Envelope"));
        let data_schema = format!("{}Data", envelope["type"].as_str().unwrap());
        assert_eq!(
            keys(&envelope["data"]),
            documented_fields(&data_schema),
            "{data_schema}"
        );
    }
}

/// With polling effectively off, only the wake-up (NOTIFY when idle) can deliver events.
#[tokio::test]
async fn an_idle_relay_is_woken_by_commits() {
    let nats = NatsServer::start().await;
    let app = Arc::new(
        TestApp::spawn_with(Options {
            relay: Some(neuronmeet::relay::RelayConfig {
                poll_interval: Duration::from_secs(600),
                ..nats.relay_config()
            }),
            ..Options::default()
        })
        .await,
    );
    for round in 1..=5 {
        // Idle first, so that the relay has armed the wake-up and gone to sleep.
        tokio::time::sleep(Duration::from_millis(300)).await;
        create_rooms(&app, round).await;
        let expected = round * (round + 1); // 2 events per room, 1 + 2 + ... + round rooms
        let started = std::time::Instant::now();
        let ids = check_messages(&nats.wait_for(expected).await);
        assert_eq!(ids.len(), expected, "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "round {round} was not woken"
        );
    }
}

/// Commands on existing rooms (settings, joins, leaves) and keyed creates, concurrently: each
/// room's events reach NATS in sequence order, none missing, from two instances (design note
/// 10: the events insert is each transaction's first write).
#[tokio::test]
async fn concurrent_commands_on_rooms_arrive_in_per_room_order() {
    use reqwest::Method;
    let nats = NatsServer::start().await;
    let app = Arc::new(TestApp::spawn_with(with_relay(&nats)).await);
    // Two instances: within one, a room's commands take turns; across them, they race.
    let other = Arc::new(
        TestApp::spawn_with(Options {
            database: Some((app.database_url.clone(), app.database_name.clone())),
            ..Options::default()
        })
        .await,
    );
    let rooms = (0..5).map(|i| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = app
                .client
                .post(app.url("/rooms"))
                .bearer_auth(app.token("user-1"))
                .header("Idempotency-Key", format!("room-{i}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()
        })
    });
    let rooms: Vec<Value> = futures_util::future::join_all(rooms)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let work = rooms.iter().flat_map(|room| {
        let id = room["id"].as_str().unwrap().to_owned();
        let code = room["code"].as_str().unwrap().to_owned();
        (0..6).map(move |n| (id.clone(), code.clone(), n))
    });
    let tasks = work.map(|(id, code, n)| {
        let app = Arc::clone(if n % 3 == 0 { &other } else { &app });
        tokio::spawn(async move {
            if n % 2 == 0 {
                let body = json!({"maxParticipants": 10 + n});
                let path = format!("/rooms/{id}/settings");
                app.call(Method::PATCH, &path, "user-1", Some(body))
                    .await
                    .status()
            } else {
                let path = format!("/rooms/code/{code}/join");
                app.call(Method::POST, &path, &format!("user-{n}"), None)
                    .await
                    .status()
            }
        })
    });
    for status in futures_util::future::join_all(tasks).await {
        assert!(status.unwrap().is_success());
    }
    let logged = app.count("SELECT count(*) FROM events").await as usize;
    let messages = nats.wait_for(logged).await;
    assert_eq!(messages.len(), logged);
    common::assert_each_rooms_order(&messages);
}
