//! The relay and `neuronmeet tail` on NATS clusters: a `NATS_URL` list of servers (some of them
//! down), and a three-node JetStream cluster losing its stream leader under load.

use crate::common;

use std::time::Duration;

use crate::common::{NatsServer, Options, TestApp};
use neuronmeet::relay::RelayConfig;
use serde_json::json;

fn with_relay(config: RelayConfig) -> Options {
    Options {
        relay: Some(config),
        ..Options::default()
    }
}

/// A list as the README documents it, its first server down: the relay uses the others.
#[tokio::test]
async fn the_relay_takes_a_nats_url_list_with_a_server_down() {
    let nats = NatsServer::start().await;
    let down = format!("nats://127.0.0.1:{}", common::closed_port());
    let config = RelayConfig {
        nats_url: format!("{down}, {}", nats.url),
        ..nats.relay_config()
    };
    let app = TestApp::spawn_with(with_relay(config)).await;
    app.create_room(json!({})).await;
    assert_eq!(
        nats.wait_for(2).await.len(),
        2,
        "{:?}",
        app.relay_status.get()
    );
}

/// `neuronmeet tail`, its stdout piped to the test.
struct Tail {
    child: std::process::Child,
    lines: Option<std::io::Lines<std::io::BufReader<std::process::ChildStdout>>>,
}

impl Tail {
    fn start(nats_url: &str) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
            .args(["tail", "--nats-url", nats_url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        Self {
            child,
            lines: Some(lines),
        }
    }

    /// The next `count` lines it prints (fewer if it ends or 20 s pass).
    async fn read(&mut self, count: usize) -> Vec<String> {
        let mut lines = self.lines.take().unwrap();
        let reading = tokio::task::spawn_blocking(move || {
            let read: Vec<String> = lines.by_ref().take(count).map_while(Result::ok).collect();
            (read, lines)
        });
        match tokio::time::timeout(Duration::from_secs(20), reading).await {
            Ok(done) => {
                let (read, lines) = done.unwrap();
                self.lines = Some(lines);
                read
            }
            Err(_) => {
                let _ = self.child.kill();
                panic!("tail printed fewer than {count} lines within 20 s");
            }
        }
    }

    /// Its exit status and stderr, once it exits (killed after 20 s).
    async fn exit(mut self) -> (Option<std::process::ExitStatus>, String) {
        let mut status = None;
        for _ in 0..200 {
            status = self.child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tail_takes_a_nats_url_list_with_a_server_down() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(with_relay(nats.relay_config())).await;
    app.create_room(json!({})).await;
    assert_eq!(nats.wait_for(2).await.len(), 2);

    let down = format!("nats://127.0.0.1:{}", common::closed_port());
    let mut tail = Tail::start(&format!("{down},{}", nats.url));
    let lines = tail.read(2).await;
    assert!(lines[0].contains(" RoomCreated "), "{lines:?}");
    assert!(lines[1].contains(" SettingsConfigured "), "{lines:?}");
}

/// `neuronmeet tail | head -n 1`: once head has gone, the next line tail prints meets a closed
/// pipe, and tail ends quietly, with success, as Unix filters do.
#[tokio::test]
async fn tail_ends_quietly_when_its_reader_goes_away() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(with_relay(nats.relay_config())).await;
    app.create_room(json!({})).await;
    assert_eq!(nats.wait_for(2).await.len(), 2);

    let mut tail = Tail::start(&nats.url);
    assert_eq!(tail.read(1).await.len(), 1);
    drop(tail.lines.take()); // head exits: the pipe's read end is closed
    app.create_room(json!({})).await; // more to print
    let (status, stderr) = tail.exit().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}, stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.to_lowercase().contains("error"),
        "{stderr}"
    );
}
