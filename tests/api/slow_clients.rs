//! Slow and half-open sockets: they hold connections, never the places of ordinary requests.

use std::time::Duration;

use neuronmeet::http::Limits;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Options, TestApp};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// What the server sends until it closes the connection, or `None` if it does not within 10 s.
async fn read_to_close(socket: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn slow_bodies_get_408_and_take_no_place_from_ordinary_requests() {
    let app = TestApp::spawn_with(Options {
        limits: Limits {
            max_concurrent_requests: 4,
            min_concurrent_requests: 4,
            body_read_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    // Three times as many bodies trickling in as requests may run at once.
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut socket = connect(&app).await;
        socket
            .write_all(
                b"POST /rooms/code/abc-def-ghi/join HTTP/1.1\r\nHost: test\r\n\
                  Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"displ",
            )
            .await
            .unwrap();
        slow.push(socket);
    }
    for _ in 0..20 {
        let response = app.create_room(json!({})).await;
        assert_eq!(
            response.status(),
            201,
            "an ordinary request was refused while slow bodies trickled in: {}",
            response.text().await.unwrap()
        );
    }
    for socket in &mut slow {
        let answer = read_to_close(socket)
            .await
            .expect("a slow body was neither answered nor closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(
            answer.contains("https://neuronmeet.com/problems/request-timeout"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_half_sent_request_head_is_dropped_after_the_header_read_timeout() {
    let app = TestApp::spawn_with(Options {
        limits: Limits {
            header_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let answer = read_to_close(&mut half).await;
    assert!(
        answer.is_some(),
        "a connection with half a request head stayed open"
    );
    // The service itself is fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}
