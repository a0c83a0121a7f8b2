//! The relay and `neuronmeet tail` on NATS clusters: a `NATS_URL` list of servers (some of them
//! down), and a three-node JetStream cluster losing its stream leader under load.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{NatsCluster, NatsServer, Options, TestApp};
use neuronmeet::relay::RelayConfig;
use serde_json::json;

fn with_relay(config: RelayConfig) -> Options {
    Options {
        relay: Some(config),
        ..Options::default()
    }
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

fn ids(messages: &[async_nats::jetstream::message::StreamMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned())
        .collect()
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

/// The stream's leader, as the cluster reports it (None while it elects one).
async fn stream_leader(js: &async_nats::jetstream::Context) -> Option<String> {
    let info = async {
        let mut stream = js.get_stream("ROOMS").await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    };
    tokio::time::timeout(Duration::from_millis(500), info)
        .await
        .ok()
        .flatten()
}

/// Waits (up to 30 s) until every replica of the stream is online and caught up.
async fn replicas_current(js: &async_nats::jetstream::Context) -> bool {
    for _ in 0..300 {
        let current = async {
            let mut stream = js.get_stream("ROOMS").await.ok()?;
            let info = stream.info().await.ok()?;
            let cluster = info.cluster.as_ref()?;
            Some(
                cluster.leader.is_some()
                    && cluster.replicas.iter().all(|r| r.current && !r.offline),
            )
        };
        if let Ok(Some(true)) = tokio::time::timeout(Duration::from_millis(500), current).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// When the relay's published count moved, sampled every 10 ms: the gaps are its stalls.
fn watch_published(
    app: &Arc<TestApp>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    let (app, stop) = (Arc::clone(app), Arc::clone(stop));
    tokio::spawn(async move {
        let mut moves = vec![Instant::now()];
        let mut last = app.relay_status.get().published;
        while !stop.load(Ordering::SeqCst) {
            let published = app.relay_status.get().published;
            if published != last {
                moves.push(Instant::now());
                last = published;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        moves
    })
}

/// The longest time the published count stood still across `at`.
fn stall_across(moves: &[Instant], at: Instant) -> Duration {
    moves
        .windows(2)
        .filter(|pair| pair[1] > at)
        .map(|pair| pair[1] - pair[0])
        .take(3)
        .max()
        .unwrap_or_default()
}

/// Three nodes, the stream R3, its leader SIGKILLed twice while rooms are being created: the
/// relay publishes on with the new leader, every event once, each room's in order, and its lag
/// returns to 0. The stall each leader change caused is printed (a figure for docs/operations.md,
/// not a pass/fail bound: it depends on the machine and on nats-server's election timeout).
#[tokio::test]
async fn a_stream_leader_killed_under_load_loses_and_duplicates_nothing() {
    let mut cluster = NatsCluster::start(3).await;
    let config = RelayConfig {
        stream_replicas: 3,
        poll_interval: Duration::from_millis(200),
        ..RelayConfig::new(cluster.url())
    };
    let app = Arc::new(TestApp::spawn_with(with_relay(config)).await);
    app.create_room(json!({})).await;
    // The cluster elects its meta leader first, then the relay creates the stream.
    let mut published = false;
    for _ in 0..300 {
        if app.relay_status.get().published >= 2 {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published, "{:?}", app.relay_status.get());
    let js = cluster.jetstream().await;
    let mut stream = js.get_stream("ROOMS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);

    let stop = Arc::new(AtomicBool::new(false));
    let moves = watch_published(&app, &stop);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            tokio::spawn(async move {
                for _ in 0..1000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    assert_eq!(app.create_room(json!({})).await.status(), 201);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    let mut kills = Vec::new();
    for round in 1..=2 {
        assert!(
            replicas_current(&js).await,
            "round {round}: replicas not current"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut leader = None;
        for _ in 0..100 {
            leader = stream_leader(&js).await;
            if leader.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let leader = leader.expect("a stream leader");
        let before = app.relay_status.get().published;
        let killed_at = Instant::now();
        cluster.kill(&leader);
        let mut elected = None;
        let mut resumed = false;
        while killed_at.elapsed() < Duration::from_secs(30) {
            if elected.is_none() {
                if let Some(new) = stream_leader(&js).await.filter(|l| *l != leader) {
                    elected = Some((new, killed_at.elapsed()));
                }
            }
            // Well past a batch that was in flight at the kill: published after it.
            if app.relay_status.get().published > before + 20 && elected.is_some() {
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            resumed,
            "round {round}: publishing did not resume within 30 s after killing {leader}: {:?}",
            app.relay_status.get()
        );
        kills.push((round, leader.clone(), killed_at, elected));
        cluster.restart(&leader).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let moves = moves.await.unwrap();
    for (round, leader, killed_at, elected) in kills {
        let (new, elected_after) = elected.unwrap();
        eprintln!(
            "leader kill {round}: {leader} killed, {new} leads after {elected_after:?}; \
             publishing stalled {:?}",
            stall_across(&moves, killed_at)
        );
    }

    let mut lag = (-1, 0.0);
    for _ in 0..300 {
        lag = neuronmeet::relay::lag(&app.db, "nats:ROOMS").await.unwrap();
        if lag.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lag.0, 0, "the relay's lag did not return to 0 within 30 s");
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["relay"]["status"], "publishing", "{ready}");

    let messages = common::stream_messages(&js, "ROOMS").await;
    let published = ids(&messages);
    let logged = logged_ids(&app).await;
    assert_eq!(
        published.iter().collect::<HashSet<_>>().len(),
        published.len(),
        "an event was published twice"
    );
    assert_eq!(
        published.iter().collect::<HashSet<_>>(),
        logged.iter().collect::<HashSet<_>>(),
        "published events differ from the log"
    );
    common::assert_each_rooms_order(&messages);
}

/// JetStream keeps 1 to 5 replicas: anything else is refused at start, naming the setting, not
/// found out when the relay first creates the stream.
#[tokio::test]
async fn a_replica_count_jetstream_cannot_keep_stops_startup() {
    for replicas in ["0", "7", "three"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
            .arg("relay")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("NATS_URL", "nats://127.0.0.1:4222")
            .env("NATS_STREAM_REPLICAS", replicas)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{replicas}: {stderr}");
        assert!(
            stderr.contains("NATS_STREAM_REPLICAS"),
            "{replicas}: {stderr}"
        );
    }
}
