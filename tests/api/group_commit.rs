//! Group commit, seen through the API: commands queued while writes are in flight go into one
//! transaction, and each keeps its own outcome. To make a batch at will, the test holds a lock
//! that makes inserting events wait: both writers block on a command each, the commands sent
//! next queue up behind them, and releasing the lock writes those as one batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::RoomCode;
use neuronmeet::codes::{CodeGenerator, SecureCodes};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::common::{eventually, hold, release, NatsServer, Options, Proxy, TestApp};

/// The code this generator's first and fifth draws give. The test's draws: room X (the
/// first), room Y, the two creates that block the writers, then the queued creates: the first
/// of those to draw collides with room X, inside the batch.
const TAKEN: &str = "abc-def-ghi";

#[derive(Default)]
struct FifthDrawCollides(AtomicUsize);

impl CodeGenerator for FifthDrawCollides {
    fn draw(&self) -> RoomCode {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 | 4 => RoomCode::parse(TAKEN).unwrap(),
            _ => SecureCodes.draw(),
        }
    }
}

/// Options whose writers wait for the test's lock as long as it is held (the service's own
/// lock timeout would end the wait after a second).
pub fn patient() -> Options {
    Options {
        limits: neuronmeet::http::Limits {
            write_lock_timeout: Duration::from_secs(60),
            ..Default::default()
        },
        ..Options::default()
    }
}

/// Holds `LOCK TABLE events` in an open transaction: every insert of events waits.
pub async fn hold_inserts(app: &TestApp) -> PoolConnection<Postgres> {
    hold(app, "LOCK TABLE events IN EXCLUSIVE MODE").await
}

/// The value of one series (a metric's name, with its labels if it has any), 0 when absent.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Commands handed to the writers and not yet taken by one.
async fn queued(app: &TestApp) -> f64 {
    metric(app, "event_store_waiting_commands").await
}

/// Two creates, one after the other, each blocking a writer on the lock.
async fn block_both_writers(app: &Arc<TestApp>) -> Vec<tokio::task::JoinHandle<u16>> {
    let mut blockers = Vec::new();
    for writers in 1..=2 {
        let client = Arc::clone(app);
        blockers.push(tokio::spawn(async move {
            client.create_room(json!({})).await.status().as_u16()
        }));
        assert!(
            eventually(|| async { app.waiting_on_locks().await >= writers }).await,
            "writer {writers} did not block on the lock"
        );
    }
    blockers
}

/// PATCH /rooms/{room}/settings as `sub`, in a task of its own; its status.
fn patch(
    app: &Arc<TestApp>,
    room: &str,
    sub: &'static str,
    body: Value,
) -> tokio::task::JoinHandle<u16> {
    let (app, path) = (Arc::clone(app), format!("/rooms/{room}/settings"));
    tokio::spawn(async move {
        app.call(Method::PATCH, &path, sub, Some(body))
            .await
            .status()
            .as_u16()
    })
}

async fn wait_until_queued(app: &TestApp, commands: f64) {
    assert!(
        eventually(|| async { queued(app).await >= commands }).await,
        "{} commands queued, not {commands}",
        queued(app).await
    );
}

/// The transaction that wrote each room's creation.
async fn creating_transactions(app: &TestApp, rooms: &[String]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT transaction_id::text FROM events WHERE event_type = 'RoomCreated' \
         AND aggregate_id = ANY($1) ORDER BY aggregate_id",
    )
    .bind(rooms)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_collision_a_conflict_and_a_refusal_in_a_batch_fail_none_of_their_neighbours() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            codes: Arc::new(FifthDrawCollides::default()),
            ..patient()
        })
        .await,
    );
    // Room X, and a SettingsUpdated of room Y to copy as "another instance's" event on X.
    let room = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let x = room(
        app.call(Method::POST, "/rooms", "host", Some(json!({})))
            .await,
    )
    .await;
    let y = room(
        app.call(Method::POST, "/rooms", "host", Some(json!({})))
            .await,
    )
    .await;
    let renamed = app
        .call(
            Method::PATCH,
            &format!("/rooms/{y}/settings"),
            "host",
            Some(json!({"allowChat": false})),
        )
        .await;
    assert_eq!(renamed.status(), 200);

    let mut lock = hold_inserts(&app).await;
    let blockers = block_both_writers(&app).await;
    let creates: Vec<_> = (0..6)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let response = app.create_room(json!({})).await;
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            })
        })
        .collect();
    let patch_by_host = patch(&app, &x, "host", json!({"muteParticipantsOnJoin": true}));
    wait_until_queued(&app, 7.0).await;
    let patch_by_guest = patch(&app, &y, "not-the-host", json!({"allowChat": true}));
    // Another writer appends to room X first (its event 3), inside the lock's transaction.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, $1, 3, event_type, event_version, payload, metadata FROM events \
         WHERE aggregate_id = $2 AND event_type = 'SettingsUpdated'",
    )
    .bind(&x)
    .bind(&y)
    .execute(&mut *lock)
    .await
    .unwrap();
    release(lock).await;

    for blocker in blockers {
        assert_eq!(blocker.await.unwrap(), 201);
    }
    let mut ids = Vec::new();
    let mut codes = std::collections::HashSet::new();
    for create in creates {
        let (status, body) = create.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
        codes.insert(body["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes.len(), 6);
    assert!(
        !codes.contains(TAKEN),
        "the colliding create kept a taken code"
    );
    // Decided again on top of the other writer's event, not refused, not lost.
    assert_eq!(patch_by_host.await.unwrap(), 200);
    assert_eq!(patch_by_guest.await.unwrap(), 403);
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&x)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(sequences, [1, 2, 3, 4]);
    let muted: bool =
        sqlx::query_scalar("SELECT mute_participants_on_join FROM rooms WHERE id = $1")
            .bind(&x)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(muted, "the host's change was lost");

    // The batch went to the database as one transaction, was refused whole (the collision and
    // the conflict), and was written again command by command: the colliding create drew
    // another code then.
    assert!(metric(&app, "event_store_batches_split_total").await >= 1.0);
    assert_eq!(metric(&app, "room_code_collisions_total").await, 1.0);
    let taken: Vec<String> = sqlx::query_scalar("SELECT id FROM rooms WHERE code = $1")
        .bind(TAKEN)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(taken, std::slice::from_ref(&x));
}

#[tokio::test]
async fn commands_queued_together_are_committed_in_one_transaction_even_if_their_clients_leave() {
    let app = Arc::new(TestApp::spawn_with(patient()).await);
    let lock = hold_inserts(&app).await;
    let blockers = block_both_writers(&app).await;
    let token = app.token("user-1");
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let request = app
                .client
                .post(app.url("/rooms"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("Left behind {i}")}));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    wait_until_queued(&app, 10.0).await;
    // The clients hang up: their requests are dropped, the connections closed.
    for request in requests {
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
    }
    release(lock).await;
    for blocker in blockers {
        assert_eq!(blocker.await.unwrap(), 201);
    }
    let left: i64 = crate::common::count_when(
        &app.db,
        "SELECT count(*) FROM rooms WHERE name LIKE 'Left behind %'",
        10,
    )
    .await;
    assert_eq!(left, 10, "every command completed although its client left");
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM rooms WHERE name LIKE 'Left behind %'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let mut transactions = creating_transactions(&app, &ids).await;
    transactions.dedup();
    assert_eq!(
        transactions.len(),
        1,
        "the ten were not written as one batch"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM room_states").await,
        app.count("SELECT count(*) FROM rooms").await
    );
}

#[tokio::test]
async fn a_batch_cut_by_the_database_going_away_leaves_no_trace_and_says_so() {
    let proxy = Arc::new(Proxy::default());
    let app = Arc::new(
        TestApp::spawn_with(Options {
            proxy: Some(Arc::clone(&proxy)),
            ..patient()
        })
        .await,
    );
    let lock = hold_inserts(&app).await;
    let blockers = block_both_writers(&app).await;
    let creates: Vec<_> = (0..8)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.create_room(json!({})).await.status().as_u16() })
        })
        .collect();
    wait_until_queued(&app, 8.0).await;
    proxy.cut();
    // The writers' connections are gone: their transactions roll back on the server. The
    // queued batch is written on no connection either, since none can be made.
    let answers: Vec<u16> = futures_util::future::join_all(blockers.into_iter().chain(creates))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    release(lock).await;
    assert_eq!(answers, [503; 10]);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM room_states").await, 0);
    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app.create_room(json!({})).await.status() == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the service did not recover by itself");
}

/// A batch of commands on several rooms: each room's events reach NATS in order, and replaying
/// the log rebuilds the rows the batch wrote.
#[tokio::test]
async fn a_batch_keeps_each_rooms_order_on_nats_and_replay_rebuilds_its_rows() {
    let nats = NatsServer::start().await;
    let app = Arc::new(
        TestApp::spawn_with(Options {
            relay: Some(nats.relay_config()),
            ..patient()
        })
        .await,
    );
    let mut rooms = Vec::new();
    for _ in 0..4 {
        let response = app
            .call(Method::POST, "/rooms", "host", Some(json!({})))
            .await;
        rooms.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let lock = hold_inserts(&app).await;
    let blockers = block_both_writers(&app).await;
    let patches: Vec<_> = rooms
        .iter()
        .map(|room| {
            patch(
                &app,
                room,
                "host",
                json!({"isLocked": true, "allowChat": false}),
            )
        })
        .collect();
    let creates: Vec<_> = (0..4)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.create_room(json!({})).await.status().as_u16() })
        })
        .collect();
    wait_until_queued(&app, 8.0).await;
    release(lock).await;
    for blocker in blockers.into_iter().chain(creates) {
        assert_eq!(blocker.await.unwrap(), 201);
    }
    for patch in patches {
        assert_eq!(patch.await.unwrap(), 200);
    }
    // The four rooms' changes went in one transaction.
    let transactions = app
        .count(&format!(
            "SELECT count(DISTINCT transaction_id::text) FROM events WHERE event_type = 'RoomLocked' \
             AND aggregate_id IN ('{}')",
            rooms.join("', '")
        ))
        .await;
    assert_eq!(transactions, 1);

    let logged = app.count("SELECT count(*) FROM events").await as usize;
    let messages = nats.wait_for(logged).await;
    assert_eq!(messages.len(), logged);
    crate::common::assert_each_rooms_order(&messages);

    crate::common::assert_replay_rebuilds_the_same_rows(&app.db).await;
}
