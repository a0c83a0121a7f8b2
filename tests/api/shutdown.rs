//! SIGTERM under load: the real binary stops accepting, finishes what it accepted, and exits 0.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{NatsServer, SECRET};
use serde_json::{json, Value};

/// The real binary, serving on a free port with `settings` besides the required ones, once it
/// answers /healthz; its database URL, its NATS server, and its base URL.
async fn spawn_service(
    settings: &[(&str, &str)],
) -> (std::process::Child, String, NatsServer, String) {
    let (database_url, _) = common::fresh_database().await;
    let nats = NatsServer::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("NATS_URL", &nats.url)
        .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        // Empty, as a compose file passes an unset variable: no issuer is required.
        .env("JWT_ISSUER", "")
        .env("PORT", port.to_string())
        .envs(settings.iter().copied())
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
    (service, database_url, nats, base)
}

fn terminate(service: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Its exit status, once it exits within `bound` of now.
async fn exit_within(
    service: &mut std::process::Child,
    bound: Duration,
) -> std::process::ExitStatus {
    let stopped = Instant::now();
    loop {
        if let Some(exit) = service.try_wait().unwrap() {
            eprintln!("exited {:?} after SIGTERM", stopped.elapsed());
            return exit;
        }
        assert!(
            stopped.elapsed() < bound,
            "the service did not exit within {bound:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_under_load_loses_no_accepted_request() {
    let (mut service, database_url, _nats, base) = spawn_service(&[]).await;
    let client = reqwest::Client::new();

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
        terminate(&service);
    };
    let (created, ()) = tokio::join!(load, terminate);
    let created: Vec<String> = created.into_iter().flat_map(Result::unwrap).collect();
    assert!(
        !created.is_empty(),
        "no request was accepted before the shutdown"
    );
    let exit = exit_within(&mut service, Duration::from_secs(20)).await;
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

/// An idle keep-alive connection and one with half a request head do not hold the process up:
/// hyper's graceful shutdown leaves the half-sent head waiting, and neither the header-read
/// timeout nor the drain deadline (both far off here) is what ends them.
#[tokio::test]
async fn sigterm_closes_idle_and_half_open_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut service, _, _nats, base) =
        spawn_service(&[("HEADER_READ_TIMEOUT", "60s"), ("SHUTDOWN_TIMEOUT", "60s")]).await;
    let address = base.trim_start_matches("http://");
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut half = tokio::net::TcpStream::connect(address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // The half-sent head has reached the server before it is told to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(&service);
    let exit = exit_within(&mut service, Duration::from_secs(10)).await;
    assert!(exit.success(), "exit status {exit}");
}

/// A request still in flight at the drain deadline (a body that trickles in) is cut off then,
/// and the process exits 0.
#[tokio::test]
async fn sigterm_ends_what_remains_at_the_shutdown_deadline() {
    use tokio::io::AsyncWriteExt;
    let (mut service, _, _nats, base) =
        spawn_service(&[("BODY_READ_TIMEOUT", "60s"), ("SHUTDOWN_TIMEOUT", "1s")]).await;
    let mut slow = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(
        b"POST /rooms/code/abc-def-ghi/join HTTP/1.1\r\nHost: test\r\n\
          Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(&service);
    let exit = exit_within(&mut service, Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit}");
}

/// Live feeds hold their connections open for good: SIGTERM closes them at once (their
/// request is answered; only the stream goes on), and the process exits well within its drain
/// deadline.
#[tokio::test]
async fn sigterm_with_a_thousand_feeds_open_exits_promptly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut service, _, _nats, base) = spawn_service(&[
        ("SHUTDOWN_TIMEOUT", "60s"),
        ("LIVE_MAX_STREAMS_EACH", "1000"),
    ])
    .await;
    let client = reqwest::Client::new();
    let token = neuronmeet::auth::Tokens::new(SECRET, None, None)
        .mint(common::claims("user-1"), Duration::from_secs(600))
        .unwrap();
    let room: Value = client
        .post(format!("{base}/rooms"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request = format!(
        "GET /rooms/{}/live HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n",
        room["id"].as_str().unwrap()
    );
    let address = base.trim_start_matches("http://").to_owned();
    let mut feeds = Vec::new();
    // In batches under the admission limit's floor (4 per pool connection: 40), so that
    // opening them is never refused, however slow the machine.
    for _ in 0..50 {
        let batch = (0..20).map(|_| {
            let (address, request) = (address.clone(), request.clone());
            tokio::spawn(async move {
                let mut feed = tokio::net::TcpStream::connect(address).await.unwrap();
                feed.write_all(request.as_bytes()).await.unwrap();
                let mut head = [0u8; 12];
                feed.read_exact(&mut head).await.unwrap();
                assert_eq!(&head, b"HTTP/1.1 200");
                feed
            })
        });
        for feed in futures_util::future::join_all(batch).await {
            feeds.push(feed.unwrap());
        }
    }
    terminate(&service);
    let exit = exit_within(&mut service, Duration::from_secs(5)).await;
    assert!(exit.success(), "exit status {exit}");
    drop(feeds);
}
