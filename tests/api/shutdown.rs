//! SIGTERM under load: the real binary stops accepting, finishes what it accepted, and exits 0.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{NatsServer, SECRET};
use serde_json::{json, Value};

#[tokio::test]
async fn sigterm_under_load_loses_no_accepted_request() {
    let (database_url, _) = common::fresh_database().await;
    let nats = NatsServer::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("NATS_URL", &nats.url)
        .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        // Empty, as a compose file passes an unset variable: no issuer is required.
        .env("JWT_ISSUER", "")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the service did not come up");

    let token = neuronmeet::auth::Tokens::new(SECRET, None, None)
        .mint(common::claims("user-1"), Duration::from_secs(600))
        .unwrap();
    let base = Arc::new(base);
    let load = (0..8).map(|_| {
        let (client, base, token) = (client.clone(), Arc::clone(&base), token.clone());
        tokio::spawn(async move {
            let mut created = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let Ok(response) = client
                    .post(format!("{base}/rooms"))
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await
                else {
                    break; // the listener is closed: shutdown has begun
                };
                if response.status() == 201 {
                    let room: Value = response.json().await.unwrap();
                    created.push(room["id"].as_str().unwrap().to_owned());
                }
            }
            created
        })
    });
    let load = futures_util::future::join_all(load);
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = Command::new("kill")
            .args(["-TERM", &service.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (created, ()) = tokio::join!(load, terminate);
    let created: Vec<String> = created.into_iter().flat_map(Result::unwrap).collect();
    assert!(
        !created.is_empty(),
        "no request was accepted before the shutdown"
    );

    let stopped = Instant::now();
    let exit = loop {
        if let Some(exit) = service.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the service did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");

    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    for id in &created {
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(
            events, 2,
            "room {id} was answered 201 but its events are not stored"
        );
    }
    // The relay published what was committed before it stopped, or will on the next start.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(stored >= 2 * created.len() as i64);
}
