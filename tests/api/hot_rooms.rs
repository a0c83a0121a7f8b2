//! Hot rooms: a room's commands that queue behind its batch in flight are decided together,
//! each against the events of those before it, and appended in one transaction; across
//! instances, the loser of a race decides its whole queued group again, once. To make batches
//! at will, the tests hold a lock that makes inserting events wait (as group_commit.rs does).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{eventually, release, spawn_request, NatsServer, Options, Proxy, TestApp};
use crate::group_commit::{hold_inserts, metric, patient};
use neuronmeet::commands::{NewRoom, RoomCommands};

/// A command sent in a task of its own: its status and problem type (empty for a 2xx).
type Sent = tokio::task::JoinHandle<(u16, String)>;

fn send(
    app: &Arc<TestApp>,
    method: Method,
    path: String,
    sub: String,
    body: Option<Value>,
) -> Sent {
    let sent = spawn_request(app, method, path, Some(&sub), body);
    tokio::spawn(async move {
        let (status, body) = sent.await.unwrap();
        let kind = body["type"].as_str().unwrap_or_default();
        let kind = kind.rsplit('/').next().unwrap_or_default().to_owned();
        (status, kind)
    })
}

async fn new_room(app: &TestApp, settings: Value) -> Value {
    let response = app
        .call(Method::POST, "/rooms", "host", Some(json!({})))
        .await;
    assert_eq!(response.status(), 201);
    let room: Value = response.json().await.unwrap();
    let path = format!("/rooms/{}/settings", room["id"].as_str().unwrap());
    let response = app.call(Method::PATCH, &path, "host", Some(settings)).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Joins `room` as `user`, answered `status`; the participant's id.
async fn participant(app: &TestApp, room: &Value, user: &str, status: u16) -> String {
    let path = format!("/rooms/code/{}/join", room["code"].as_str().unwrap());
    let response = app.call(Method::POST, &path, user, None).await;
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    body["participant"]["id"].as_str().unwrap().to_owned()
}

fn join(app: &Arc<TestApp>, room: &Value, user: &str) -> Sent {
    let path = format!("/rooms/code/{}/join", room["code"].as_str().unwrap());
    send(app, Method::POST, path, user.to_owned(), None)
}

/// Waits until `count` commands (over every instance in this process) wait behind their
/// room's batch in flight.
async fn wait_until_queued(app: &TestApp, count: f64) {
    assert!(
        eventually(|| async { metric(app, "room_commands_queued").await >= count }).await,
        "{} commands queued behind their rooms' batches, not {count}",
        metric(app, "room_commands_queued").await
    );
}

/// `aggregate_conflicts_total{aggregate="Room"}` (over every instance in this process).
async fn conflicts(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("aggregate_conflicts_total{aggregate=\"Room\"} "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

async fn answers(sent: Vec<Sent>) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    for command in sent {
        answers.push(command.await.unwrap());
    }
    answers
}

fn count(answers: &[(u16, String)], status: u16, kind: &str) -> usize {
    answers
        .iter()
        .filter(|(s, k)| *s == status && k == kind)
        .count()
}

async fn transactions(app: &TestApp, room: &Value, after_sequence: i64) -> i64 {
    app.count(&format!(
        "SELECT count(DISTINCT transaction_id::text) FROM events \
         WHERE aggregate_id = '{}' AND sequence > {after_sequence}",
        room["id"].as_str().unwrap()
    ))
    .await
}

/// 150 users join a room of 100 at once: the first join is written alone while the others
/// queue behind it; they are then decided in one batch, each against the joins before it (the
/// 101st is refused `room-full`), and written in one transaction, each event with its own
/// command's metadata.
#[tokio::test]
async fn a_crowd_joining_one_room_is_decided_in_one_batch_and_the_limit_holds() {
    const {
        assert!(
            neuronmeet::room_batches::MAX_BATCH >= 100,
            "the queued joins fit one batch"
        )
    };
    let app = Arc::new(TestApp::spawn_with(patient()).await);
    let room = new_room(&app, json!({"maxParticipants": 100})).await;
    let path = format!("/rooms/code/{}/join", room["code"].as_str().unwrap());
    let join = |n: usize| {
        spawn_request(
            &app,
            Method::POST,
            path.clone(),
            Some(&format!("user-{n}")),
            None,
        )
    };
    let lock = hold_inserts(&app).await;
    let first = join(0);
    assert!(eventually(|| async { app.waiting_on_locks().await >= 1 }).await);
    let crowd: Vec<_> = (1..150).map(join).collect();
    wait_until_queued(&app, 149.0).await;
    release(lock).await;
    let mut answers = Vec::new();
    for sent in std::iter::once(first).chain(crowd) {
        answers.push(sent.await.unwrap());
    }
    let refused = answers
        .iter()
        .filter(|(status, body)| {
            *status == 409 && body["type"].as_str().unwrap().ends_with("/room-full")
        })
        .count();
    let joined: Vec<(usize, &str)> = (answers.iter().enumerate())
        .filter(|(_, (status, _))| *status == 201)
        .map(|(n, (_, body))| (n, body["participant"]["id"].as_str().unwrap()))
        .collect();
    assert_eq!((joined.len(), refused), (100, 50), "{answers:?}");
    // Each answer is its own: the participant it names is the user who sent it.
    for (n, pid) in joined {
        let user: String = sqlx::query_scalar("SELECT user_id FROM participants WHERE id = $1")
            .bind(pid)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(user, format!("user-{n}"));
    }
    assert_eq!(
        transactions(&app, &room, 3).await,
        2,
        "the lone first join, then the batch"
    );
    let id = room["id"].as_str().unwrap();
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(sequences, (1..=103).collect::<Vec<_>>());
    let own_metadata = app
        .count(&format!(
            "SELECT count(*) FROM events WHERE aggregate_id = '{id}' \
             AND event_type = 'ParticipantJoined' \
             AND metadata ->> 'userId' = payload -> 'ParticipantJoined' ->> 'userId'"
        ))
        .await;
    assert_eq!(
        own_metadata, 100,
        "each event carries its own command's user"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM participants WHERE room_id = '{id}' AND status = 'joined'"
        ))
        .await,
        100
    );
}

/// Two instances, two rooms, and every shape a batch can take: joins, knocks, admits, a
/// denial, a settings change, a decision that changes nothing, refusals (full) and a leave, queued on both
/// instances at once. Each answer is its own; the instance that loses a race decides its
/// whole queue again rather than one command at a time; each room's events reach NATS in
/// order; and replay rebuilds exactly the rows the batches wrote.
#[tokio::test]
async fn every_batch_shape_keeps_order_on_nats_and_replay_rebuilds_its_rows() {
    let nats = NatsServer::start().await;
    let first = Arc::new(
        TestApp::spawn_with(Options {
            relay: Some(nats.relay_config()),
            ..patient()
        })
        .await,
    );
    let second = Arc::new(
        TestApp::spawn_with(Options {
            database: Some((first.database_url.clone(), first.database_name.clone())),
            ..patient()
        })
        .await,
    );
    let lobby = new_room(&first, json!({"waitingRoom": true, "maxParticipants": 10})).await;
    let small = new_room(&first, json!({"maxParticipants": 3})).await;
    let mut waiting = Vec::new();
    for user in ["w0", "w1", "w2"] {
        waiting.push(participant(&first, &lobby, user, 202).await);
    }
    let leaver = participant(&first, &small, "leaver", 201).await;
    let before = |room: &Value| {
        let id = room["id"].as_str().unwrap().to_owned();
        let app = Arc::clone(&first);
        async move {
            app.count(&format!(
                "SELECT max(sequence) FROM events WHERE aggregate_id = '{id}'"
            ))
            .await
        }
    };
    let (lobby_before, small_before) = (before(&lobby).await, before(&small).await);

    let lock = hold_inserts(&first).await;
    let lobby_id = lobby["id"].as_str().unwrap();
    let small_id = small["id"].as_str().unwrap();
    let decide = |app: &Arc<TestApp>, pid: &str, what: &str| {
        send(
            app,
            Method::POST,
            format!("/rooms/{lobby_id}/participants/{pid}/{what}"),
            "host".to_owned(),
            None,
        )
    };
    // One command per room and instance goes first and waits on the lock: each instance's
    // batch in flight. The rest queue behind them.
    let taken = || metric(&first, "event_store_batch_commands_sum");
    let taken_before = taken().await;
    let mut sent = vec![
        join(&first, &lobby, "k0"),
        join(&second, &lobby, "k1"),
        join(&first, &small, "s0"),
        join(&second, &small, "s1"),
    ];
    // The four are with the writers (over both instances), which wait on the lock.
    assert!(eventually(|| async { taken().await >= taken_before + 4.0 }).await);
    let queued = vec![
        decide(&first, &waiting[0], "admit"),
        decide(&first, &waiting[1], "deny"),
        decide(&second, &waiting[2], "admit"),
        // The same admit on the other instance: no change, so no event.
        decide(&second, &waiting[0], "admit"),
        send(
            &first,
            Method::PATCH,
            format!("/rooms/{lobby_id}/settings"),
            "host".to_owned(),
            Some(json!({"allowChat": false})),
        ),
        join(&first, &lobby, "k2"),
        join(&second, &lobby, "k3"),
        join(&first, &small, "s2"),
        join(&second, &small, "s3"),
        join(&first, &small, "s4"),
        send(
            &second,
            Method::DELETE,
            format!("/rooms/{small_id}/participants/{leaver}"),
            "leaver".to_owned(),
            None,
        ),
    ];
    let queued_count = queued.len() as f64;
    sent.extend(queued);
    wait_until_queued(&first, queued_count).await;
    release(lock).await;
    let answers = answers(sent).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    // The lobby's answers do not depend on the order: knocks wait, decisions are on others.
    assert_eq!(statuses[..2], [202, 202], "{answers:?}");
    assert_eq!(statuses[4..9], [200, 200, 200, 200, 200], "{answers:?}");
    assert_eq!(statuses[9..11], [202, 202], "{answers:?}");
    assert_eq!(statuses[14], 204, "{answers:?}");
    // The small room: three places, one taken by the leaver until they leave; five joins. The
    // leave frees a place only if it is decided before the last join that finds the room full.
    let small_answers: Vec<_> = [2, 3, 11, 12, 13].map(|i| answers[i].clone()).to_vec();
    let joined = count(&small_answers, 201, "");
    assert!(
        (2..=3).contains(&joined) && count(&small_answers, 409, "room-full") == 5 - joined,
        "{small_answers:?}"
    );
    assert!(conflicts(&first).await >= 1.0, "the instances raced");
    // Fifteen commands, of which eleven or twelve wrote events. Per room: each instance's
    // first batch, and the rest of each instance's queue as one batch, the loser of a race
    // deciding its first batch again with its queue: at most three transactions.
    let written = transactions(&first, &lobby, lobby_before).await
        + transactions(&first, &small, small_before).await;
    assert!(
        written <= 6,
        "{written} transactions for 11 or 12 written commands"
    );

    let logged = first.count("SELECT count(*) FROM events").await as usize;
    let messages = nats.wait_for(logged).await;
    assert_eq!(messages.len(), logged);
    crate::common::assert_each_rooms_order(&messages);

    crate::common::assert_replay_rebuilds_the_same_rows(&first.db).await;
}

/// `event_store_writes_total{rows}`: how many writes had every row they continue handed over
/// by their commands (`known`) or read them in their transaction (`read`).
async fn writes(app: &TestApp, rows: &str) -> f64 {
    metric(app, &format!("event_store_writes_total{{rows=\"{rows}\"}}")).await
}

/// A create continues nothing, and a join hands over the room's state it was decided against:
/// neither write reads a row. A settings change changes the room's view, which commands do not
/// hold: that write reads the view first. Replay agrees with what both ways wrote.
#[tokio::test]
async fn a_lone_command_hands_its_rooms_state_to_its_write() {
    let app = Arc::new(TestApp::spawn().await);
    let counts = || async { (writes(&app, "known").await, writes(&app, "read").await) };
    let start = counts().await;
    let room = new_room(&app, json!({"waitingRoom": true})).await;
    let after_create_and_patch = counts().await;
    assert_eq!(
        after_create_and_patch,
        (start.0 + 1.0, start.1 + 1.0),
        "the create without reads, the settings change with"
    );
    let pid = participant(&app, &room, "ada", 202).await;
    let path = format!(
        "/rooms/{}/participants/{pid}/admit",
        room["id"].as_str().unwrap()
    );
    assert_eq!(
        app.call(Method::POST, &path, "host", None).await.status(),
        200
    );
    assert_eq!(
        counts().await,
        (after_create_and_patch.0 + 2.0, after_create_and_patch.1),
        "the knock and the admission without reads"
    );
    crate::common::assert_replay_rebuilds_the_same_rows(&app.db).await;
}

/// A lone command whose write reads nothing sends BEGIN, its events and every read model's
/// statements at once, then COMMIT: two round trips. Before, each statement waited for the
/// answer to the one before it: seven for a warm create, counted here (BEGIN, the events, two
/// upserts and COMMIT, and the pool's own exchanges).
/// The commands run without the HTTP layer, whose readiness checks use the database too.
#[tokio::test]
async fn a_lone_create_is_written_in_two_round_trips() {
    let (url, _) = crate::common::fresh_database().await;
    let proxy = Arc::new(Proxy::default());
    let pool = neuronmeet::db::connect_lazy(&proxy.start(&url).await, 2).unwrap();
    let commands = RoomCommands::new(
        pool,
        Arc::new(neuronmeet::codes::SecureCodes),
        neuronmeet::event_store::WRITE_LOCK_TIMEOUT,
    );
    let host = aggregates::Host {
        id: "user-1".into(),
        display_name: "Ada".into(),
        avatar_url: None,
    };
    let create = || commands.create_room(NewRoom::default(), host.clone(), String::new(), None);
    // The first one also connects and prepares its statements.
    create().await.unwrap();
    for _ in 0..3 {
        let before = proxy.client_turns();
        create().await.unwrap();
        assert_eq!(proxy.client_turns() - before, 2);
    }
}
