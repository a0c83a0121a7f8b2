//! `neuronmeet replay`: rebuilding the room view from the log, also while creates run.

mod common;

use std::sync::Arc;

use common::TestApp;
use serde_json::{json, Value};

async fn rows(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT row_to_json(r) FROM rooms r ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn replay_rebuilds_identical_rows() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..30 {
        let response = app
            .create_room(json!({"name": format!("room {i}"), "waitingRoom": i % 2 == 0, "maxParticipants": 2 + i}))
            .await;
        created.push(response.bytes().await.unwrap());
    }
    let before = rows(&app).await;
    let mut reports = 0;
    let summary = neuronmeet::replay::run(&app.db, "rooms", 7, |_| reports += 1)
        .await
        .unwrap();
    assert_eq!(summary.events, 60);
    assert_eq!(summary.rooms, 30);
    assert!(reports >= 1, "progress is reported at least at the end");
    assert_eq!(rows(&app).await, before);

    // Every GET answers what it answered before, and the constraints are back in place.
    for posted in created {
        let id = serde_json::from_slice::<Value>(&posted).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let fetched = app.get_room(&id, "user-1").await;
        assert_eq!(fetched.bytes().await.unwrap(), posted);
    }
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = 'rooms'::regclass ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(constraints, ["rooms_code_key", "rooms_pkey"]);
    assert_eq!(app.create_room(json!({})).await.status(), 201);
}

#[tokio::test]
async fn replay_while_creates_run_loses_none() {
    let app = Arc::new(TestApp::spawn().await);
    for _ in 0..20 {
        app.create_room(json!({})).await;
    }
    let writers = (0..4).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            for _ in 0..25 {
                assert_eq!(app.create_room(json!({})).await.status(), 201);
            }
        })
    });
    let writers = futures_util::future::join_all(writers);
    let replay = neuronmeet::replay::run(&app.db, "rooms", 3, |_| {});
    let (written, replayed) = tokio::join!(writers, replay);
    written.into_iter().for_each(Result::unwrap);
    replayed.unwrap();

    let (rooms_in_log, views, without_view): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT aggregate_id) FROM events), (SELECT count(*) FROM rooms), \
                (SELECT count(DISTINCT aggregate_id) FROM events e \
                  WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = e.aggregate_id))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rooms_in_log, 120);
    assert_eq!(without_view, 0);
    assert_eq!(views, 120);
}

#[tokio::test]
async fn replay_refuses_unknown_projections() {
    let app = TestApp::spawn().await;
    let error = neuronmeet::replay::run(&app.db, "nope", 10, |_| {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown projection"), "{error}");
}

/// Transaction ids are compared as numbers: 999 comes before 1000 (a text comparison would
/// put "1000" first and skip events).
#[tokio::test]
async fn the_log_is_read_in_commit_order_across_transaction_id_digit_boundaries() {
    use neuronmeet::event_log::{read_after, Position, Settled};
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.create_room(json!({})).await;
    }
    // Burn transaction ids up to the next power of ten.
    let current: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let boundary = 10i64.pow(current.to_string().len() as u32);
    sqlx::query(&format!(
        "DO $$ BEGIN FOR i IN 1..{} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$",
        boundary - current
    ))
    .execute(&app.db)
    .await
    .unwrap();
    for _ in 0..3 {
        app.create_room(json!({})).await;
    }
    // Read as the relay does, in batches of two; transactions still running elsewhere in the
    // cluster (other tests) may hold back the newest events for a moment.
    let mut position = Position::start();
    let mut read = Vec::new();
    for _ in 0..100 {
        let batch = read_after(&app.db, &position, 2, Settled::Only)
            .await
            .unwrap();
        match batch.last() {
            Some(last) => position = last.position.clone(),
            None if read.len() >= 12 => break,
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
        read.extend(batch.into_iter().map(|e| e.position));
    }
    let expected: Vec<Position> = sqlx::query_as(
        "SELECT transaction_id::text AS transaction_id, global_position FROM events \
         ORDER BY events.transaction_id, events.global_position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(expected.len(), 12);
    assert!(
        expected.first().unwrap().transaction_id.len()
            < expected.last().unwrap().transaction_id.len(),
        "the test did not cross a digit boundary: {expected:?}"
    );
    assert_eq!(read, expected);
}
