//! The relay under the faults a code review found: holes and purges in the stream, streams set
//! up by operators, a dead leader's wake-up flag, checkpoints of other streams and other
//! clusters, bad configuration, and transactions that hold the log back.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{NatsServer, Options, TestApp};
use async_nats::jetstream::stream;
use neuronmeet::relay::RelayConfig;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

fn with_relay(config: RelayConfig) -> Options {
    Options {
        relay: Some(config),
        ..Options::default()
    }
}

/// Another instance (with its own relay) on `app`'s database.
async fn instance_on(app: &TestApp, config: RelayConfig) -> TestApp {
    TestApp::spawn_with(Options {
        database: Some((app.database_url.clone(), app.database_name.clone())),
        ..with_relay(config)
    })
    .await
}

fn ids(messages: &[async_nats::jetstream::message::StreamMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned())
        .collect()
}

/// Ids of the events in the log, in commit order.
async fn logged_ids(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT aggregate_id || ':' || sequence FROM events ORDER BY events.transaction_id, events.global_position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Waits (up to 20 s) until `check` holds for the relay's state; whether it did.
async fn relay_becomes(
    app: &TestApp,
    check: impl Fn(&neuronmeet::relay::RelayState) -> bool,
) -> bool {
    for _ in 0..200 {
        if check(&app.relay_status.get()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// An instance whose relay published `rooms` rooms, then died.
async fn published_then_stopped(nats: &NatsServer, rooms: usize) -> TestApp {
    let mut app = TestApp::spawn_with(with_relay(nats.relay_config())).await;
    for _ in 0..rooms {
        app.create_room(json!({})).await;
    }
    assert_eq!(nats.wait_for(2 * rooms).await.len(), 2 * rooms);
    stop_relay(&mut app).await;
    app
}

async fn stop_relay(app: &mut TestApp) {
    app.relay.take().unwrap().abort();
    // The leader's session closes with the task; give the server a moment to see it.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Events lost on the way and later ones stored leave a hole; the relay's takeover must publish
/// the events in the hole rather than jump past them to the stream's last message.
#[tokio::test]
async fn a_hole_in_the_stream_is_published_not_skipped() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.create_room(json!({})).await;
    }
    let events: Vec<(String, i64, String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, transaction_id::text, global_position FROM events \
          ORDER BY events.transaction_id, events.global_position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(events.len(), 6);

    // A relay published events 1 and 2, lost 3 and 4, and stored 5 and 6.
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "ROOMS".into(),
        subjects: vec!["rooms.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    for index in [0, 1, 4, 5] {
        let (room, sequence, kind, _, position) = &events[index];
        let id = format!("{room}:{sequence}");
        let body = json!({"id": id, "type": kind, "subject": room,
            "sequence": neuronmeet::relay::sequence_attribute(*sequence), "globalposition": position.to_string()});
        let message = async_nats::jetstream::message::PublishMessage::build()
            .message_id(&id)
            .payload(serde_json::to_vec(&body).unwrap().into());
        js.send_publish(format!("rooms.{room}.{kind}"), message)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Its checkpoint is at event 2, which it stored as the stream's message 2.
    sqlx::query(
        "INSERT INTO checkpoints (name, transaction_id, global_position, stream_sequence, cluster_id) \
         VALUES ('nats:ROOMS', $1::text::xid8, $2, 2, (SELECT system_identifier FROM pg_control_system()))",
    )
    .bind(&events[1].3)
    .bind(events[1].4)
    .execute(&app.db)
    .await
    .unwrap();

    let relay = instance_on(&app, nats.relay_config()).await;
    let all = logged_ids(&relay).await;
    let mut published = HashSet::new();
    for _ in 0..100 {
        published = ids(&nats.messages().await).into_iter().collect();
        if published.len() == all.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, all.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(relay.relay_status.get().status, "publishing");
}

/// A stream purged, or whose last message was deleted, by an operator: the next leader cannot
/// read the last message, and must publish on regardless.
#[tokio::test]
async fn a_purged_stream_or_a_deleted_last_message_does_not_stop_the_relay() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 1).await;
    let js = nats.jetstream().await;
    js.get_stream("ROOMS").await.unwrap().purge().await.unwrap();

    let mut second = instance_on(&app, nats.relay_config()).await;
    second.create_room(json!({})).await;
    assert_eq!(nats.wait_for(2).await.len(), 2, "published after the purge");
    stop_relay(&mut second).await;

    let mut stream = js.get_stream("ROOMS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    stream.delete_message(last).await.unwrap();
    let third = instance_on(&app, nats.relay_config()).await;
    third.create_room(json!({})).await;
    assert_eq!(
        nats.wait_for(3).await.len(),
        3,
        "published after the deletion"
    );
    assert_eq!(third.relay_status.get().status, "publishing");
}

#[tokio::test]
async fn an_existing_stream_keeps_the_settings_its_operator_gave_it() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "ROOMS".into(),
        subjects: vec!["rooms.>".into()],
        description: Some("set by operations".into()),
        max_messages: 1_000_000,
        max_age: Duration::from_secs(30 * 86400),
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = TestApp::spawn_with(with_relay(nats.relay_config())).await;
    app.create_room(json!({})).await;
    assert_eq!(nats.wait_for(2).await.len(), 2);
    let mut stream = js.get_stream("ROOMS").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.description.as_deref(), Some("set by operations"));
    assert_eq!(config.max_messages, 1_000_000);
    assert_eq!(config.max_age, Duration::from_secs(30 * 86400));
    assert_eq!(config.duplicate_window, Duration::from_secs(600));
}

#[tokio::test]
async fn a_stream_that_does_not_capture_room_subjects_is_reported_not_changed() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(stream::Config {
        name: "ROOMS".into(),
        subjects: vec!["meetings.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let app = TestApp::spawn_with(with_relay(nats.relay_config())).await;
    assert!(
        relay_becomes(&app, |s| s.reason == Some("stream_misconfigured")).await,
        "{:?}",
        app.relay_status.get()
    );
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["relay"]["status"], "degraded", "{ready}");
    assert_eq!(ready["relay"]["reason"], "stream_misconfigured", "{ready}");
    let mut stream = js.get_stream("ROOMS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.subjects, ["meetings.>"]);
}

#[tokio::test]
async fn a_wakeup_flag_left_armed_by_a_dead_leader_is_reset_by_the_next() {
    let app = TestApp::spawn().await;
    sqlx::query("UPDATE relay_wakeup SET armed = true")
        .execute(&app.db)
        .await
        .unwrap();
    // A leader that cannot reach NATS: it takes the lead, then keeps failing.
    let unreachable = format!("nats://127.0.0.1:{}", common::closed_port());
    let _relay = instance_on(&app, RelayConfig::new(unreachable)).await;
    let reset = common::eventually(|| async {
        !sqlx::query_scalar::<_, bool>("SELECT armed FROM relay_wakeup")
            .fetch_one(&app.db)
            .await
            .unwrap()
    })
    .await;
    assert!(reset, "the wake-up flag stayed armed");
}

#[tokio::test]
async fn each_stream_has_its_own_checkpoint() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 2).await;

    // The operator points the service at a new stream (on another server): it gets every event.
    let other = NatsServer::start().await;
    let config = RelayConfig {
        stream: "OTHER".into(),
        ..other.relay_config()
    };
    let _moved = instance_on(&app, config).await;
    let mut published = Vec::new();
    for _ in 0..100 {
        published = ids(&other.messages_in("OTHER").await);
        if published.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, logged_ids(&app).await);
}

/// pg_upgrade (or a physical copy) gives the database a new cluster identity but keeps its
/// transaction ids: the relay notes it and goes on.
#[tokio::test]
async fn a_checkpoint_from_another_cluster_with_consistent_ids_goes_on() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 1).await;

    sqlx::query("UPDATE checkpoints SET cluster_id = cluster_id + 1")
        .execute(&app.db)
        .await
        .unwrap();
    let upgraded = instance_on(&app, nats.relay_config()).await;
    upgraded.create_room(json!({})).await;
    assert_eq!(nats.wait_for(4).await.len(), 4);
    let stamped = app
        .count(
            "SELECT count(*) FROM checkpoints \
              WHERE cluster_id = (SELECT system_identifier FROM pg_control_system())",
        )
        .await;
    assert_eq!(stamped, 1, "the checkpoint now names this cluster");
}

/// A dump restored into a younger cluster: the log holds transaction ids this cluster has not
/// reached, so events committed now would sort before them and never be read. The relay must
/// stop and say so, not publish nothing while reporting no lag.
#[tokio::test]
async fn a_log_restored_into_a_younger_cluster_stops_publishing_loudly() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 1).await;

    // What pg_restore writes: an event with the transaction id it had in the old cluster.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, transaction_id) \
         VALUES ('Room', 'restored-room', 1, 'RoomCreated', '1.0.0', '{}', '{}', \
                 (pg_snapshot_xmax(pg_current_snapshot())::text::int8 + 1000000000)::text::xid8)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let restored = instance_on(&app, nats.relay_config()).await;
    restored.create_room(json!({})).await;
    assert!(
        relay_becomes(&restored, |s| s.reason == Some("cluster_changed")).await,
        "{:?}",
        restored.relay_status.get()
    );
    let ready = restored.get_json("/readyz").await;
    assert_eq!(ready["relay"]["reason"], "cluster_changed", "{ready}");
    assert_eq!(
        nats.messages().await.len(),
        2,
        "nothing published meanwhile"
    );
}

/// The checkpoint of the previous version (`nats`, behind the stream, without a stream
/// sequence) is adopted; re-publishing what the stream already holds must neither stall the
/// relay nor store anything twice.
#[tokio::test]
async fn the_previous_versions_checkpoint_is_adopted_without_duplicates() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 3).await;
    // As the previous version left it: named `nats`, two events behind the stream.
    sqlx::raw_sql(
        "DELETE FROM checkpoints; \
         INSERT INTO checkpoints (name, transaction_id, global_position) \
         SELECT 'nats', transaction_id, global_position FROM events \
          ORDER BY events.transaction_id, events.global_position OFFSET 3 LIMIT 1",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let upgraded = instance_on(&app, nats.relay_config()).await;
    upgraded.create_room(json!({})).await;
    let messages = nats.wait_for(8).await;
    assert_eq!(
        ids(&messages),
        logged_ids(&app).await,
        "each event once, in order"
    );
    assert_eq!(upgraded.relay_status.get().status, "publishing");
}

#[tokio::test]
async fn a_checkpoint_ahead_of_the_clusters_transaction_ids_stops_publishing_loudly() {
    let nats = NatsServer::start().await;
    let app = published_then_stopped(&nats, 1).await;

    // What a restore into a younger cluster looks like: the checkpoint's transaction id is in
    // the future of this cluster.
    sqlx::query(
        "UPDATE checkpoints SET transaction_id = (pg_snapshot_xmax(pg_current_snapshot())::text::int8 + 1000000000)::text::xid8",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let restored = instance_on(&app, nats.relay_config()).await;
    restored.create_room(json!({})).await;
    assert!(
        relay_becomes(&restored, |s| s.reason == Some("cluster_changed")).await,
        "{:?}",
        restored.relay_status.get()
    );
}

#[tokio::test]
async fn serve_refuses_a_malformed_nats_url() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
        .arg("serve")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("JWT_SECRET", std::str::from_utf8(common::SECRET).unwrap())
        .env("NATS_URL", "not-a-url")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("NATS_URL") && stderr.contains("not a NATS URL"),
        "{stderr}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
        .arg("relay")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .env("NATS_STREAM", "rooms.events")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("NATS_STREAM"), "{stderr}");
}

/// NATS unreachable: the relay keeps trying, and /readyz says why without showing the error
/// text (hosts, ports) to the public.
#[tokio::test]
async fn an_unreachable_nats_is_reported_by_a_reason_code() {
    let port = common::closed_port();
    let app = TestApp::spawn_with(with_relay(RelayConfig::new(format!(
        "nats://127.0.0.1:{port}"
    ))))
    .await;
    assert!(
        relay_becomes(&app, |s| s.reason == Some("nats_unavailable")).await,
        "{:?}",
        app.relay_status.get()
    );
    let response = app.get("/readyz").await;
    assert_eq!(
        response.status(),
        200,
        "NATS down does not make the API unready"
    );
    let body = response.text().await.unwrap();
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["relay"]["status"], "degraded", "{body}");
    assert_eq!(ready["relay"]["reason"], "nats_unavailable", "{body}");
    assert!(
        !body.contains(&port.to_string()) && !body.contains("127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn the_leaders_session_is_probed_with_tcp_keepalives() {
    let app = TestApp::spawn().await;
    let options = neuronmeet::relay::leader_connect_options(&app.db);
    let mut session = PgConnection::connect_with(&options).await.unwrap();
    let settings: (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), \
                current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')",
    )
    .fetch_one(&mut session)
    .await
    .unwrap();
    assert_eq!(
        settings,
        ("10".into(), "5".into(), "3".into(), "30000".into())
    );
}

/// Events committed while an older transaction (anywhere in the cluster) still runs are not
/// settled when the commit wakes the relay. With polling effectively off, the relay must look
/// again on its own once they are.
#[tokio::test]
async fn an_idle_relay_publishes_events_held_back_by_an_older_transaction() {
    let nats = NatsServer::start().await;
    let app = Arc::new(
        TestApp::spawn_with(with_relay(RelayConfig {
            poll_interval: Duration::from_secs(600),
            ..nats.relay_config()
        }))
        .await,
    );
    app.create_room(json!({})).await;
    assert_eq!(nats.wait_for(2).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await; // idle: armed and asleep

    let mut older = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT pg_current_xact_id()")
        .execute(&mut older)
        .await
        .unwrap();
    app.create_room(json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("COMMIT").execute(&mut older).await.unwrap();

    // wait_for gives up after 30 s; without looking again on its own the relay would wait
    // 600 s for its poll.
    assert_eq!(nats.wait_for(4).await.len(), 4);
}
