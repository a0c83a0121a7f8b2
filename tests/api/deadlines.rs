//! Deadlines that tell the truth, and transactions that cannot stall the instance: a timeout
//! (503) means "not written"; a command being written is answered with its outcome; a room
//! whose rows another transaction holds fails only its own commands.

use std::sync::Arc;
use std::time::Duration;

use neuronmeet::http::Limits;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{eventually, hold, release, spawn_request, Options, Proxy, TestApp};

async fn room(app: &TestApp) -> String {
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    room["id"].as_str().unwrap().to_owned()
}

/// A join that waits for its room's turn past its deadline is answered 503 and never written,
/// though the turn comes later; the command that held the turn, being written at the deadline,
/// is answered with its outcome (before: 503 for both, and both written afterwards).
#[tokio::test]
async fn a_request_answered_503_at_its_deadline_is_never_written() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            limits: Limits {
                request_timeout: Duration::from_secs(1),
                write_lock_timeout: Duration::from_secs(60),
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let (id, code) = (room["id"].as_str().unwrap(), room["code"].as_str().unwrap());
    let held = hold(&app, "LOCK TABLE events IN EXCLUSIVE MODE").await;
    let settings = format!("/rooms/{id}/settings");
    let lock = spawn_request(
        &app,
        Method::PATCH,
        settings.clone(),
        Some("user-1"),
        Some(json!({"isLocked": true})),
    );
    assert!(eventually(|| async { app.waiting_on_locks().await >= 1 }).await);
    let join = spawn_request(
        &app,
        Method::POST,
        format!("/rooms/code/{code}/join"),
        None,
        Some(json!({"displayName": "Grace"})),
    );
    let (status, problem) = join.await.unwrap();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "https://neuronmeet.com/problems/timed-out");
    release(held).await;
    let (status, locked) = lock.await.unwrap();
    assert_eq!(status, 200, "a command written past the deadline: {locked}");
    assert_eq!(locked["isLocked"], true);
    // A later command on the room takes its turn after the join's: once it is answered, the
    // join has had its chance to be written.
    let (status, _) = spawn_request(
        &app,
        Method::PATCH,
        settings,
        Some("user-1"),
        Some(json!({"allowChat": false})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'ParticipantJoined'")
            .await,
        0,
        "the join answered 503 was written"
    );
}

/// A join whose write the database stops answering in the middle of (its statements sent, no
/// COMMIT yet) is answered 503 once the write is given up, and it is not in the room once the
/// database answers again (before: 503 at the deadline, and the write committed later).
#[tokio::test]
async fn a_join_answered_503_under_a_stalled_database_is_never_listed() {
    let proxy = Arc::new(Proxy::default());
    let app = Arc::new(
        TestApp::spawn_with(Options {
            proxy: Some(Arc::clone(&proxy)),
            limits: Limits {
                request_timeout: Duration::from_secs(1),
                write_lock_timeout: Duration::from_secs(2),
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let code = room["code"].as_str().unwrap();
    // The join's write waits on this lock (the test's own connection, not through the proxy);
    // the database then stops answering the service, and the lock goes.
    let held = hold(&app, "LOCK TABLE events IN EXCLUSIVE MODE").await;
    let join = spawn_request(
        &app,
        Method::POST,
        format!("/rooms/code/{code}/join"),
        None,
        Some(json!({"displayName": "Grace"})),
    );
    assert!(eventually(|| async { app.waiting_on_locks().await >= 1 }).await);
    proxy.stall();
    release(held).await;
    let (status, problem) = join.await.unwrap();
    assert_eq!(status, 503, "{problem}");
    // The abandoned write's connection is closed at once, so the server rolls it back now, not
    // when the network comes back or after `idle_in_transaction_session_timeout` (10 s).
    let open = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                AND xact_start IS NOT NULL AND pid <> pg_backend_pid()";
    let mut rolled_back = false;
    for _ in 0..50 {
        if app.count(open).await == 0 {
            rolled_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rolled_back,
        "the abandoned write's transaction is still open"
    );
    proxy.resume();
    // The service's next write goes through: had the join been written, it would be by now.
    assert_eq!(app.create_room(json!({})).await.status(), 201);
    assert_eq!(
        app.count("SELECT count(*) FROM participants").await,
        0,
        "the join answered 503 is in the room"
    );
}

/// Two rooms whose rows a stuck transaction holds: their commands fail alone after the lock
/// timeout (503, not written), and creates keep being written meanwhile (before: both writers
/// waited on the stuck transaction, and every write of the instance with them).
#[tokio::test]
async fn a_stuck_transaction_fails_only_the_commands_on_its_rooms() {
    let app = Arc::new(TestApp::spawn().await);
    let (a, b) = (room(&app).await, room(&app).await);
    let held = hold(
        &app,
        &format!("SELECT 1 FROM rooms WHERE id IN ('{a}', '{b}') FOR UPDATE"),
    )
    .await;
    let stuck: Vec<_> = [&a, &b]
        .into_iter()
        .map(|id| {
            spawn_request(
                &app,
                Method::PATCH,
                format!("/rooms/{id}/settings"),
                Some("user-1"),
                Some(json!({"isLocked": true})),
            )
        })
        .collect();
    let creates: Vec<_> = (0..5)
        .map(|_| {
            spawn_request(
                &app,
                Method::POST,
                "/rooms".into(),
                Some("user-1"),
                Some(json!({})),
            )
        })
        .collect();
    let answers = tokio::time::timeout(Duration::from_secs(8), async {
        let mut answers = Vec::new();
        for task in stuck.into_iter().chain(creates) {
            answers.push(task.await.unwrap());
        }
        answers
    })
    .await;
    release(held).await;
    let answers = answers.expect("writes stalled behind the stuck transaction");
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [503, 503, 201, 201, 201, 201, 201], "{answers:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE event_type = 'RoomLocked'")
            .await,
        0
    );
}

/// A batch in which one command fails for a reason of its own that is not a constraint (its
/// room's view row does not decode) is split: its neighbours are written (before: every
/// command of the batch failed with it).
#[tokio::test]
async fn an_error_of_one_command_in_a_batch_fails_only_that_command() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            limits: Limits {
                write_lock_timeout: Duration::from_secs(60),
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let (good, bad) = (room(&app).await, room(&app).await);
    let held = hold(&app, "LOCK TABLE events IN EXCLUSIVE MODE").await;
    // One command blocks each writer; the two PATCHes then queue up as one batch.
    let blockers: Vec<_> = (1..=2)
        .map(|_| {
            spawn_request(
                &app,
                Method::POST,
                "/rooms".into(),
                Some("user-1"),
                Some(json!({})),
            )
        })
        .collect();
    assert!(eventually(|| async { app.waiting_on_locks().await >= 2 }).await);
    let patches: Vec<_> = [&good, &bad]
        .into_iter()
        .map(|id| {
            spawn_request(
                &app,
                Method::PATCH,
                format!("/rooms/{id}/settings"),
                Some("user-1"),
                Some(json!({"allowChat": false})),
            )
        })
        .collect();
    assert!(
        eventually(|| async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            metrics
                .lines()
                .any(|line| line == "event_store_waiting_commands 2")
        })
        .await,
        "the two PATCHes did not queue up"
    );
    sqlx::query("UPDATE rooms SET code = 'not a room code' WHERE id = $1")
        .bind(&bad)
        .execute(&app.db)
        .await
        .unwrap();
    release(held).await;
    for blocker in blockers {
        assert_eq!(blocker.await.unwrap().0, 201);
    }
    let statuses: Vec<u16> = futures_util::future::join_all(patches)
        .await
        .into_iter()
        .map(|answer| answer.unwrap().0)
        .collect();
    assert_eq!(
        statuses[0], 200,
        "the good room's command failed with the bad one"
    );
    assert_eq!(statuses[1], 500);
}

/// Draws a code taken by the first room every other time: each create after the first rolls
/// back once (a code collision), then succeeds with a fresh code.
#[derive(Default)]
struct EveryOtherDrawCollides(std::sync::atomic::AtomicUsize);

impl neuronmeet::codes::CodeGenerator for EveryOtherDrawCollides {
    fn draw(&self) -> aggregates::RoomCode {
        match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 2 {
            0 => aggregates::RoomCode::parse("abc-def-ghi").unwrap(),
            _ => neuronmeet::codes::SecureCodes.draw(),
        }
    }
}

/// Connections the service's pool has opened (nextest runs each test in a process of its own).
async fn opened(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("db_connections_opened_total "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A write that rolls back (here a code collision) returns its connection to the pool (before:
/// the connection was closed, and a new server process forked for the next write).
#[tokio::test]
async fn a_rolled_back_write_returns_its_connection_to_the_pool() {
    let app = TestApp::spawn_with(Options {
        codes: Arc::new(EveryOtherDrawCollides::default()),
        ..Options::default()
    })
    .await;
    assert_eq!(app.create_room(json!({})).await.status(), 201);
    let before = opened(&app).await;
    for _ in 0..10 {
        assert_eq!(app.create_room(json!({})).await.status(), 201);
    }
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, 11);
    let after = opened(&app).await;
    assert!(
        after - before <= 1.0,
        "10 rolled-back writes opened {} connections",
        after - before
    );
}
