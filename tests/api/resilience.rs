//! The hard properties: unique codes under concurrency, collisions, a database that goes away,
//! and clients that hang up mid-request.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Options, Proxy, TestApp};
use aggregates::RoomCode;
use neuronmeet::codes::CodeGenerator;
use neuronmeet::commands::{NewRoom, RoomCommands};
use neuronmeet::idempotency::Idempotency;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// Hands out the scripted codes in order, then repeats the last one; counts draws.
struct ScriptedCodes {
    script: Mutex<Vec<&'static str>>,
    draws: AtomicUsize,
}

impl ScriptedCodes {
    fn new(script: &[&'static str]) -> Arc<Self> {
        let mut script = script.to_vec();
        script.reverse();
        Arc::new(Self {
            script: Mutex::new(script),
            draws: AtomicUsize::new(0),
        })
    }
}

impl CodeGenerator for ScriptedCodes {
    fn draw(&self) -> RoomCode {
        self.draws.fetch_add(1, Ordering::SeqCst);
        let mut script = self.script.lock().unwrap();
        let code = if script.len() > 1 {
            script.pop().unwrap()
        } else {
            script[0]
        };
        RoomCode::parse(code).unwrap()
    }
}

#[tokio::test]
async fn two_hundred_concurrent_creates_get_distinct_codes() {
    let app = Arc::new(TestApp::spawn().await);
    let creates = (0..200).map(|i| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = app.create_room(json!({"name": format!("room {i}")})).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    let codes: HashSet<String> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(codes.len(), 200);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 400);
    assert_eq!(
        app.count("SELECT count(DISTINCT code) FROM rooms").await,
        200
    );
}

#[tokio::test]
async fn a_taken_code_is_drawn_again() {
    let codes = ScriptedCodes::new(&["aaa-aaa-aaa", "aaa-aaa-aaa", "aaa-aaa-aaa", "bbb-bbb-bbb"]);
    let app = TestApp::spawn_with(Options {
        codes: codes.clone(),
        ..Options::default()
    })
    .await;
    let first: Value = app.create_room(json!({})).await.json().await.unwrap();
    assert_eq!(first["code"], "aaa-aaa-aaa");
    assert_eq!(codes.draws.load(Ordering::SeqCst), 1);

    let second = app.create_room(json!({})).await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["code"], "bbb-bbb-bbb");
    assert_eq!(
        codes.draws.load(Ordering::SeqCst),
        4,
        "two collisions, then a free code"
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 4);
}

#[tokio::test]
async fn gives_up_with_400_after_ten_colliding_draws() {
    let codes = ScriptedCodes::new(&["ccc-ccc-ccc"]);
    let app = TestApp::spawn_with(Options {
        codes: codes.clone(),
        ..Options::default()
    })
    .await;
    assert_eq!(app.create_room(json!({})).await.status(), 201);
    let draws_before = codes.draws.load(Ordering::SeqCst);

    let response = app.create_room(json!({})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["title"], "Failed to generate unique room code");
    assert_eq!(codes.draws.load(Ordering::SeqCst) - draws_before, 10);
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        2,
        "the failed create left nothing"
    );
}

#[tokio::test]
async fn a_database_outage_is_503_with_retry_after_and_heals_by_itself() {
    let proxy = Arc::new(Proxy::default());
    let app = TestApp::spawn_with(Options {
        proxy: Some(proxy.clone()),
        ..Options::default()
    })
    .await;
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let get = || app.get_room(room["id"].as_str().unwrap(), "user-1");

    proxy.cut();
    for response in [app.create_room(json!({})).await, get().await] {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            !problem["detail"].as_str().unwrap().contains("127.0.0.1"),
            "no internals: {problem}"
        );
    }

    proxy.restore();
    let healed =
        common::eventually(|| async { app.create_room(json!({})).await.status() == 201 }).await;
    assert!(
        healed,
        "the service did not recover after the database returned"
    );
    assert_eq!(get().await.status(), 200);
}

/// Clients that send a create and hang up, one after another, at every moment of the command
/// (before, inside BEGIN, inside the transaction, after), against a slow database with a
/// single pooled connection: whatever was committed has its view, and that connection is never
/// left inside a transaction (sqlx 0.8's `Pool::begin` is not cancel-safe).
#[tokio::test]
async fn clients_that_hang_up_leave_no_half_done_command() {
    let app = TestApp::spawn_with(Options {
        max_connections: 1,
        proxy: Some(Arc::new(Proxy::with_latency(Duration::from_millis(2)))),
        ..Options::default()
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let body = "{\"name\":\"dropped\"}";
    let request = format!(
        "POST /rooms HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.token("user-1"),
        body.len()
    );
    let idle_in_transaction = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND state LIKE 'idle in transaction%'",
        app.database_name
    );
    for (done, delay) in (1..=40).map(|ms| (ms, Duration::from_millis(ms as u64 - 1))) {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(delay).await;
        drop(stream);
        // The command goes on without its client, and completes...
        let rooms = common::count_when(&app.db, "SELECT count(*) FROM rooms", done).await;
        assert_eq!(
            rooms, done,
            "hung up after {delay:?}: the command never completed"
        );
        // ...leaving its connection outside any transaction.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            app.count(&idle_in_transaction).await,
            0,
            "hung up after {delay:?}"
        );
    }

    // One statement, one snapshot: the log and the view agree, room by room.
    let (events, rooms, without_view): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rooms), \
                (SELECT count(DISTINCT aggregate_id) FROM events e \
                  WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = e.aggregate_id))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        rooms > 0,
        "no create got far enough to commit; the test proves nothing"
    );
    assert_eq!(without_view, 0, "rooms in the log without a view");
    assert_eq!(events, 2 * rooms);
    // And the service still serves.
    assert_eq!(app.create_room(json!({})).await.status(), 201);
}

/// A caller that gives up on a command (a timeout layer, a dropped future) at every moment of
/// it, against a slow database with one pooled connection: the command still completes on its
/// own, with its view, and no connection is ever left inside a transaction. Commands with and
/// without an idempotency key, so that both write paths are cut.
#[tokio::test]
async fn commands_abandoned_by_a_timeout_complete_on_their_own() {
    let (url, name) = common::fresh_database().await;
    let proxy = Arc::new(Proxy::with_latency(Duration::from_millis(2)));
    let pool = neuronmeet::db::connect_lazy(&proxy.start(&url).await, 1).unwrap();
    let commands = RoomCommands::new(
        pool.clone(),
        Arc::new(neuronmeet::codes::SecureCodes),
        neuronmeet::event_store::WRITE_LOCK_TIMEOUT,
    );
    let observer = sqlx::PgPool::connect(&url).await.unwrap();
    let count = |sql: String| {
        let observer = observer.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&observer)
                .await
                .unwrap()
        }
    };
    let host = aggregates::Host {
        id: "user-1".into(),
        display_name: "Ada".into(),
        avatar_url: None,
    };
    // Without a key the write is pipelined on a connection of its own; with one it runs on the
    // pooled connection, a statement at a time: both are abandoned at every moment.
    let create = |key: Option<i64>| {
        let idempotency = key.map(|n| Idempotency {
            caller: "user-1".into(),
            key: format!("abandoned-{n}"),
            request: "{}".into(),
            respond: |_| Ok(String::new()),
        });
        commands.create_room(NewRoom::default(), host.clone(), String::new(), idempotency)
    };
    let mut done = 0;
    for keyed in [false, true] {
        // How long a warm command takes here; the sweep abandons commands across that span.
        let mut span = Duration::ZERO;
        for _ in 0..3 {
            done += 1;
            let started = std::time::Instant::now();
            create(keyed.then_some(done)).await.unwrap();
            span = started.elapsed();
        }
        let mut abandoned = 0;
        for step in 0..60 {
            done += 1;
            let delay = span * step / 60;
            if tokio::time::timeout(delay, create(keyed.then_some(done)))
                .await
                .is_err()
            {
                abandoned += 1;
            }
            // The abandoned command completes on its own...
            let rooms = common::count_when(&observer, "SELECT count(*) FROM rooms", done).await;
            assert_eq!(
                rooms, done,
                "keyed {keyed}, abandoned after {delay:?}: the command never completed"
            );
            // ...and leaves its connection outside any transaction.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let idle_in_transaction = count(format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND state LIKE 'idle in transaction%'"
            ))
            .await;
            assert_eq!(
                idle_in_transaction, 0,
                "keyed {keyed}, abandoned after {delay:?}"
            );
        }
        assert!(
            abandoned > 30,
            "keyed {keyed}: one command takes {span:?}, yet only {abandoned} were abandoned; the test proves nothing"
        );
    }
    assert_eq!(
        count("SELECT count(*) FROM rooms".into()).await,
        done,
        "every command completed"
    );
    assert_eq!(count("SELECT count(*) FROM events".into()).await, 2 * done);
}
