//! What operators rely on: readiness, metrics, load shedding, timeouts, CORS, and a clean
//! shutdown of the real binary under load.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Options, Proxy, TestApp};
use neuronmeet::http::Limits;
use serde_json::{json, Value};

/// The value of one series in Prometheus text, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_as_requests_are_made() {
    let app = TestApp::spawn().await;
    let scrape = || async { app.get("/metrics").await.text().await.unwrap() };
    let created = r#"http_requests_total{method="POST",route="/rooms",status="201"}"#;
    let rejected = r#"commands_rejected_total{command="CreateRoom",reason="validation"}"#;
    let accepted = r#"commands_total{command="CreateRoom",outcome="accepted"}"#;
    let before = scrape().await;
    app.create_room(json!({})).await;
    app.create_room(json!({})).await;
    app.create_room(json!({"maxParticipants": 1})).await;
    let after = scrape().await;
    assert_eq!(
        sample(&after, created) - sample(&before, created),
        2.0,
        "{after}"
    );
    assert_eq!(sample(&after, accepted) - sample(&before, accepted), 2.0);
    assert_eq!(sample(&after, rejected) - sample(&before, rejected), 1.0);
    for series in [
        "http_request_duration_seconds_bucket",
        "db_pool_connections{state=\"idle\"}",
        "db_pool_max_connections",
        "relay_lag_events",
    ] {
        assert!(after.contains(series), "{series} missing from /metrics");
    }
}

/// /readyz once it says the database is `database` (it answers from a check made once a
/// second): its status and body.
async fn readiness_when(app: &TestApp, database: &str) -> (u16, Value) {
    for _ in 0..250 {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if body["database"]["status"] == database {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz never said the database is {database}");
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let proxy = Arc::new(Proxy::default());
    let app = TestApp::spawn_with(Options {
        proxy: Some(proxy.clone()),
        ..Options::default()
    })
    .await;
    let (status, body) = readiness_when(&app, "ok").await;
    assert_eq!(status, 200);
    assert!(body["age"].as_f64().unwrap() < 5.0, "{body}");

    proxy.cut();
    assert_eq!(readiness_when(&app, "unavailable").await.0, 503);
    assert_eq!(app.get("/healthz").await.status(), 200);

    proxy.restore();
    assert_eq!(readiness_when(&app, "ok").await.0, 200);
}

/// /readyz and /metrics answer from a check of the database made once a second in the
/// background: an anonymous flood of them costs no database work, and none of them waits for
/// the database (here the relay's lag query is blocked behind a lock: one check waits, no scrape
/// does).
#[tokio::test]
async fn scrapes_answer_from_the_last_check_without_querying_the_database() {
    let app = Arc::new(TestApp::spawn().await);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let lock = common::hold(&app, "LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await;
    let scrapes = (0..40).map(|i| {
        let app = Arc::clone(&app);
        let path = if i % 2 == 0 { "/metrics" } else { "/readyz" };
        async move {
            let response = app
                .client
                .get(app.url(path))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            (path, response.map(|r| r.status().as_u16()))
        }
    });
    let answers = futures_util::future::join_all(scrapes).await;
    assert!(
        answers.iter().all(|(_, status)| matches!(status, Ok(200))),
        "{answers:?}"
    );
    assert!(app.waiting_on_locks().await <= 1);
    common::release(lock).await;
}

#[tokio::test]
async fn excess_concurrent_requests_are_shed_with_503() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            proxy: Some(Arc::new(Proxy::with_latency(Duration::from_millis(20)))),
            limits: Limits {
                max_concurrent_requests: 2,
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let requests = (0..12).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = app.create_room(json!({})).await;
            let status = response.status().as_u16();
            if status == 503 {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
            }
            status
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = statuses.iter().filter(|s| **s == 201).count() as i64;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "nothing was shed: {statuses:?}");
    assert!(created >= 1, "{statuses:?}");
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, created);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let shed = statuses.iter().filter(|s| **s == 503).count() as f64;
    assert!(
        sample(&metrics, r#"http_requests_shed_total{reason="overload"}"#) >= shed,
        "{metrics}"
    );
}

/// Holds `LOCK TABLE <table>` in an open transaction: commands writing to it wait, in flight.
async fn hold_lock(app: &TestApp, table: &str) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    common::hold(app, &format!("LOCK TABLE {table} IN EXCLUSIVE MODE")).await
}

/// A create that blocks on the lock: in flight until the lock goes.
async fn blocked_create(app: &Arc<TestApp>) -> tokio::task::JoinHandle<u16> {
    let holder = {
        let app = Arc::clone(app);
        tokio::spawn(async move { app.create_room(json!({})).await.status().as_u16() })
    };
    assert!(
        common::eventually(|| async { app.waiting_on_locks().await >= 1 }).await,
        "the create did not reach the lock"
    );
    holder
}

#[tokio::test]
async fn a_request_beyond_the_limit_is_refused_before_its_token_and_body_are_read() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            limits: Limits {
                max_concurrent_requests: 1,
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let lock = hold_lock(&app, "events").await;
    let holder = blocked_create(&app).await;
    let refused = app
        .client
        .post(app.url("/rooms"))
        .bearer_auth("not-a-token")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    // Had the token or the body been read, this would be a 401 or a 400.
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().contains_key("x-request-id"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://neuronmeet.com/problems/overloaded"
    );
    // Operators' endpoints are never refused.
    assert_eq!(app.get("/healthz").await.status(), 200);
    common::release(lock).await;
    assert_eq!(holder.await.unwrap(), 201);
    assert_eq!(app.create_room(json!({})).await.status(), 201);
}

/// A change to a room's view that blocks on the lock (it reads the view in its transaction, on a
/// pooled connection; writes that read nothing use connections of their own): in flight until
/// the lock goes.
async fn blocked_settings_change(
    app: &Arc<TestApp>,
    id: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let holder = common::spawn_request(
        app,
        reqwest::Method::PATCH,
        format!("/rooms/{id}/settings"),
        Some("user-1"),
        Some(json!({"isLocked": true})),
    );
    assert!(
        common::eventually(|| async { app.waiting_on_locks().await >= 1 }).await,
        "the change did not reach the lock"
    );
    holder
}

/// Every connection of the pool held (here by a command blocked on a lock) is a busy instance,
/// not a database outage: the waiting request gets the overload answer, /readyz stays ready,
/// and the metrics say so; until nothing has come back for 10 s (stuck: not ready).
#[tokio::test]
async fn a_pool_that_stays_taken_is_reported_busy_not_as_a_database_outage() {
    let app = Arc::new(
        TestApp::spawn_with(Options {
            max_connections: 1,
            // The blocked change outlives the default 10 s request timeout and 1 s lock timeout
            // here.
            limits: Limits {
                request_timeout: std::time::Duration::from_secs(60),
                write_lock_timeout: std::time::Duration::from_secs(60),
                ..Limits::default()
            },
            ..Options::default()
        })
        .await,
    );
    let room: Value = app.create_room(json!({})).await.json().await.unwrap();
    let id = room["id"].as_str().unwrap().to_owned();
    let lock = hold_lock(&app, "rooms").await;
    let holder = blocked_settings_change(&app, &id).await;
    assert_eq!(readiness_when(&app, "busy").await.0, 200);
    let waiting = app.get_room(&id, "user-1").await;
    assert_eq!(waiting.status(), 503);
    assert_eq!(waiting.headers()["retry-after"], "1");
    let problem: Value = waiting.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://neuronmeet.com/problems/overloaded"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("database connection"),
        "{problem}"
    );
    // Held for 10 s with nothing coming back: stuck, and no longer ready.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(readiness_when(&app, "stuck").await.0, 503);
    common::release(lock).await;
    assert_eq!(holder.await.unwrap().0, 200);
    assert_eq!(readiness_when(&app, "ok").await.0, 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        sample(&metrics, r#"http_requests_shed_total{reason="pool_busy"}"#) >= 1.0,
        "{metrics}"
    );
}

/// The database gone (connections refused) is an outage, not a busy pool, however many
/// requests wait to connect.
#[tokio::test]
async fn a_database_that_refuses_connections_is_an_outage_not_a_busy_pool() {
    let proxy = Arc::new(Proxy::default());
    let app = Arc::new(
        TestApp::spawn_with(Options {
            proxy: Some(Arc::clone(&proxy)),
            max_connections: 2,
            ..Options::default()
        })
        .await,
    );
    assert_eq!(app.create_room(json!({})).await.status(), 201);
    proxy.cut();
    let answers = futures_util::future::join_all((0..6).map(|_| {
        let app = Arc::clone(&app);
        async move {
            let response = app.create_room(json!({})).await;
            let status = response.status().as_u16();
            let problem: Value = response.json().await.unwrap();
            (status, problem["type"].as_str().unwrap().to_owned())
        }
    }))
    .await;
    for (status, kind) in &answers {
        assert_eq!(*status, 503);
        assert_eq!(
            kind, "https://neuronmeet.com/problems/unavailable",
            "{answers:?}"
        );
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        sample(&metrics, r#"http_requests_shed_total{reason="pool_busy"}"#),
        0.0
    );
    proxy.restore();
}

/// A command being written when its request's deadline passes is neither cut short nor
/// answered 503: its outcome is the answer (before: 503, and the room created all the same).
#[tokio::test]
async fn a_request_whose_command_is_being_written_at_its_deadline_gets_its_outcome() {
    let app = TestApp::spawn_with(Options {
        proxy: Some(Arc::new(Proxy::with_latency(Duration::from_millis(30)))),
        limits: Limits {
            request_timeout: Duration::from_millis(100),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let response = app.create_room(json!({})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count("SELECT count(*) FROM rooms").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |app: &TestApp| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/rooms"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let closed = TestApp::spawn().await;
    let response = preflight(&closed).await.unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let open = TestApp::spawn_with(Options {
        limits: Limits {
            cors_origins: vec!["https://app.example.com".parse().unwrap()],
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let response = preflight(&open).await.unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // Every method and request header the API takes, and the headers it answers with.
    let patch = open
        .client
        .request(reqwest::Method::OPTIONS, open.url("/rooms/x/settings"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key,x-request-id",
        )
        .send()
        .await
        .unwrap();
    let allowed = |name: &str| patch.headers()[name].to_str().unwrap().to_ascii_lowercase();
    for method in ["get", "post", "patch", "delete"] {
        assert!(
            allowed("access-control-allow-methods").contains(method),
            "{method}"
        );
    }
    assert!(allowed("access-control-allow-headers").contains("idempotency-key"));
    let created = open
        .client
        .post(open.url("/rooms"))
        .bearer_auth(open.token("user-1"))
        .header("origin", "https://app.example.com")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("idempotent-replayed") && exposed.contains("location"),
        "{exposed}"
    );
    let other = open
        .client
        .get(open.url("/healthz"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// `*` is "any origin": tower-http's origin list panics on it, so it once stopped startup.
#[tokio::test]
async fn cors_origins_star_allows_any_origin() {
    let app = TestApp::spawn_with(Options {
        limits: Limits {
            cors_origins: vec!["*".parse().unwrap()],
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/rooms"))
        .header("origin", "https://anywhere.example.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}
