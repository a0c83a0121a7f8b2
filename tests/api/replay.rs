//! `neuronmeet replay`: rebuilding the room view from the log, also while creates run, next to
//! long readers, twice at once, and killed part way.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::TestApp;
use neuronmeet::replay::{self, ReplayError, Report};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

async fn rows(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT row_to_json(r) FROM rooms r ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

fn options(batch_size: i64) -> replay::Options {
    replay::Options {
        batch_size,
        lock_timeout: Duration::from_millis(100),
        retry_interval: Duration::from_millis(100),
        ..replay::Options::default()
    }
}

async fn create_rooms(app: &Arc<TestApp>, count: usize) {
    let writers = (0..4).map(|w| {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            for _ in (w..count).step_by(4) {
                assert_eq!(app.create_room(json!({})).await.status(), 201);
            }
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        writer.unwrap();
    }
}

/// A session that holds a lock on `rooms` (as pg_dump or an analyst's query does) until it is
/// dropped or committed; and its pid.
async fn long_reader(app: &TestApp) -> (PgConnection, i32) {
    let mut reader = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM rooms")
        .execute(&mut reader)
        .await
        .unwrap();
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    (reader, pid)
}

/// Everything about the `rooms` table that a rebuild must keep, one line per item.
async fn describe_rooms(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT line FROM ( \
           SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) || ' -- ' \
                  || coalesce(obj_description(oid, 'pg_constraint'), '') \
             FROM pg_constraint WHERE conrelid = 'rooms'::regclass \
           UNION ALL \
           SELECT 'index ' || c.relname || ': ' || pg_get_indexdef(i.indexrelid) || ' -- ' \
                  || coalesce(obj_description(i.indexrelid, 'pg_class'), '') \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'rooms'::regclass \
           UNION ALL \
           SELECT 'table: ' || coalesce(obj_description(oid, 'pg_class'), '') || ' acl ' \
                  || coalesce(relacl::text, '') || ' options ' || coalesce(reloptions::text, '') \
                  || ' owner ' || pg_get_userbyid(relowner) \
             FROM pg_class WHERE oid = 'rooms'::regclass \
           UNION ALL \
           SELECT 'column ' || a.attnum || ' ' || a.attname || ': ' || format_type(a.atttypid, a.atttypmod) \
                  || ' not null ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') \
                  || ' -- ' || coalesce(col_description(a.attrelid, a.attnum), '') || ' acl ' || coalesce(a.attacl::text, '') \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
            WHERE a.attrelid = 'rooms'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         ) AS t(line) ORDER BY line",
    )
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
    let mut last_reported = None;
    let summary = replay::run(&app.db, "rooms", &options(7), |report| {
        if let Report::Progress(progress) = report {
            last_reported = Some((progress.events, progress.position.global_position));
        }
    })
    .await
    .unwrap();
    assert_eq!(summary.events, 60);
    assert_eq!(summary.rows, 30);
    let last_position: i64 = app.count("SELECT max(global_position) FROM events").await;
    assert_eq!(
        last_reported,
        Some((60, last_position)),
        "the last progress report is the end of the log"
    );
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
async fn the_rebuilt_table_keeps_every_index_constraint_comment_and_grant() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_room(json!({"name": format!("room {i}")})).await;
    }
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE ROLE {role}; \
         CREATE INDEX rooms_active_name ON rooms (lower(name)) WHERE is_active; \
         CREATE UNIQUE INDEX rooms_settings_id ON rooms (settings_id) INCLUDE (name); \
         ALTER TABLE rooms ADD CONSTRAINT rooms_name_not_blank CHECK (name <> ''); \
         ALTER TABLE rooms ADD CONSTRAINT rooms_host_code_key UNIQUE (host_id, code) DEFERRABLE INITIALLY DEFERRED; \
         COMMENT ON TABLE rooms IS 'the room view'; \
         COMMENT ON COLUMN rooms.name IS 'as the host typed it'; \
         COMMENT ON INDEX rooms_active_name IS 'for the analysts'; \
         COMMENT ON CONSTRAINT rooms_code_key ON rooms IS 'codes are unique'; \
         COMMENT ON CONSTRAINT rooms_name_not_blank ON rooms IS 'no blank names'; \
         ALTER TABLE rooms SET (fillfactor = 90); \
         GRANT SELECT ON rooms TO {role}; \
         GRANT UPDATE (name) ON rooms TO {role};"
    ))
    .execute(&app.db)
    .await
    .unwrap();
    let before = describe_rooms(&app).await;
    let rows_before = rows(&app).await;
    replay::run(&app.db, "rooms", &options(3), |_| {})
        .await
        .unwrap();
    let after = describe_rooms(&app).await;
    sqlx::raw_sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(rows(&app).await, rows_before);
    let leftovers = app
        .count("SELECT count(*) FROM pg_class WHERE relname LIKE 'rooms_rebuild%'")
        .await;
    assert_eq!(leftovers, 0);
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
    let options = options(3);
    let replay = replay::run(&app.db, "rooms", &options, |_| {});
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
    let error = replay::run(&app.db, "nope", &options(10), |_| {})
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

#[tokio::test]
async fn a_second_rebuild_says_who_runs_the_first_and_changes_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    create_rooms(&app, 40).await;
    let before = rows(&app).await;
    // The first rebuild is held at its swap by a long reader.
    let (mut reader, reader_pid) = long_reader(&app).await;
    let (waiting_tx, mut waiting) = tokio::sync::mpsc::unbounded_channel();
    let first = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            replay::run(&app.db, "rooms", &options(5), |report| {
                if let Report::Waiting(blockers) = report {
                    let _ = waiting_tx.send(blockers.iter().map(|b| b.pid).collect::<Vec<_>>());
                }
            })
            .await
        })
    };
    let blockers = tokio::time::timeout(Duration::from_secs(30), waiting.recv())
        .await
        .expect("the first rebuild reports its wait within 30 s")
        .expect("the first rebuild waits to swap");
    assert!(
        blockers.contains(&reader_pid),
        "{blockers:?} names the reader {reader_pid}"
    );

    let first_pid: i32 = app
        .count(
            "SELECT pid::int8 FROM pg_stat_activity \
              WHERE application_name = 'neuronmeet-replay' AND datname = current_database()",
        )
        .await as i32;
    match replay::run(&app.db, "rooms", &options(5), |_| {}).await {
        Err(ReplayError::AlreadyRunning { pid, .. }) => assert_eq!(pid, first_pid),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert_eq!(rows(&app).await, before, "the live table is untouched");

    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
    let summary = first.await.unwrap().unwrap();
    assert_eq!(summary.rows, 40);
    assert_eq!(rows(&app).await, before);
}

/// A swap waits for the table's lock at most lock_timeout at a time, so requests never queue
/// behind it for long, however long another session holds the table.
#[tokio::test]
async fn a_rebuild_next_to_a_long_reader_never_stalls_requests() {
    let app = Arc::new(
        TestApp::spawn_with(common::Options {
            limits: neuronmeet::http::Limits {
                // Well above the 200 ms a swap attempt may make a request wait; far below the
                // 4 s the reader holds the table.
                request_timeout: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        })
        .await,
    );
    create_rooms(&app, 20).await;
    let (mut reader, _) = long_reader(&app).await;
    let rebuild = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let options = replay::Options {
                batch_size: 5,
                ..replay::Options::default()
            };
            replay::run(&app.db, "rooms", &options, |_| {}).await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut statuses = Vec::new();
    while std::time::Instant::now() < deadline {
        let created = app.create_room(json!({})).await;
        statuses.push(created.status().as_u16());
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .map(str::to_owned);
        if let Some(id) = id {
            statuses.push(app.get_room(&id, "user-1").await.status().as_u16());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !rebuild.is_finished(),
        "the reader still holds the swap back"
    );
    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
    let summary = rebuild.await.unwrap().unwrap();
    assert!(statuses.len() > 20, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    let in_log = app
        .count("SELECT count(DISTINCT aggregate_id) FROM events")
        .await;
    assert_eq!(summary.rows, in_log);
}

fn replay_process(app: &TestApp, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_neuronmeet"))
        .arg("replay")
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGKILL, then wait until the server has ended the killed process's session (and released
/// its lock), as the next run would after any real crash.
async fn kill(app: &TestApp, mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = common::eventually(|| async {
        app.count(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE application_name = 'neuronmeet-replay' AND datname = current_database()",
        )
        .await
            == 0
    })
    .await;
    assert!(gone, "the killed rebuild's session lingers");
}

async fn live_table_oid(app: &TestApp) -> i64 {
    app.count("SELECT 'rooms'::regclass::oid::int8").await
}

#[tokio::test]
async fn a_rebuild_killed_while_loading_leaves_the_live_table_and_the_next_run_cleans_up() {
    let app = Arc::new(TestApp::spawn().await);
    create_rooms(&app, 300).await;
    let before = (
        rows(&app).await,
        describe_rooms(&app).await,
        live_table_oid(&app).await,
    );

    let child = replay_process(&app, &["--projection", "rooms", "--batch-size", "1"]);
    let loading = common::eventually(|| async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rooms_rebuild")
            .fetch_one(&app.db)
            .await
            .is_ok_and(|n| n > 10)
    })
    .await;
    kill(&app, child).await;
    assert!(loading, "the rebuild never started loading");
    assert_eq!(
        (
            rows(&app).await,
            describe_rooms(&app).await,
            live_table_oid(&app).await
        ),
        before
    );

    let output = replay_process(&app, &["--batch-size", "500"])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("dropped rooms_rebuild"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("into 300 rows of rooms"),
        "{output:?}"
    );
    assert_eq!(rows(&app).await, before.0);
    assert_eq!(describe_rooms(&app).await, before.1);
}

#[tokio::test]
async fn a_rebuild_killed_while_waiting_to_swap_leaves_the_live_table() {
    let app = Arc::new(TestApp::spawn().await);
    create_rooms(&app, 30).await;
    let before = (
        rows(&app).await,
        describe_rooms(&app).await,
        live_table_oid(&app).await,
    );
    let (mut reader, _) = long_reader(&app).await;

    let mut child = replay_process(&app, &["--lock-timeout", "100ms"]);
    let stderr = child.stderr.take().unwrap();
    let waiting = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("waiting to swap"))
    });
    let waiting = tokio::time::timeout(Duration::from_secs(30), waiting).await;
    kill(&app, child).await;
    assert!(matches!(waiting, Ok(Ok(true))), "{waiting:?}");
    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
    assert_eq!(
        (
            rows(&app).await,
            describe_rooms(&app).await,
            live_table_oid(&app).await
        ),
        before
    );
    assert_eq!(app.create_room(json!({})).await.status(), 201);
}

/// A session reading the copy while the rebuild swaps it in (an operator watching progress with
/// `SELECT count(*) FROM rooms_rebuild`): the attempt waits for it and gives up within
/// lock_timeout; nothing applied in a given-up attempt may be lost.
#[tokio::test]
async fn a_swap_held_up_by_a_reader_of_the_copy_loses_no_event() {
    let app = Arc::new(TestApp::spawn().await);
    create_rooms(&app, 150).await;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (app, writing) = (Arc::clone(&app), Arc::clone(&writing));
        tokio::spawn(async move {
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(app.create_room(json!({})).await.status(), 201);
            }
        })
    };
    // Held until the rebuild reports that it waits (or 10 s pass).
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let locker = {
        let (app, release) = (Arc::clone(&app), Arc::clone(&release));
        tokio::spawn(async move {
            let mut reader = PgConnection::connect(&app.database_url).await.unwrap();
            for _ in 0..2000 {
                let held = sqlx::Executor::execute(
                    &mut reader,
                    "BEGIN; SELECT count(*) FROM rooms_rebuild",
                )
                .await;
                if held.is_ok() {
                    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                        .fetch_one(&mut reader)
                        .await
                        .unwrap();
                    for _ in 0..1000 {
                        if release.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    sqlx::Executor::execute(&mut reader, "COMMIT")
                        .await
                        .unwrap();
                    return Some(pid);
                }
                let _ = sqlx::Executor::execute(&mut reader, "ROLLBACK").await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            None
        })
    };
    let mut blockers = Vec::new();
    let summary = replay::run(&app.db, "rooms", &options(1), |report| {
        if let Report::Waiting(waiting) = report {
            blockers.extend(waiting.iter().map(|b| b.pid));
            release.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .await
    .unwrap();
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let locker_pid = locker
        .await
        .unwrap()
        .expect("the copy was locked during the rebuild");
    assert!(
        blockers.contains(&locker_pid),
        "{blockers:?} names the reader of the copy {locker_pid}"
    );

    let without_view = app
        .count(
            "SELECT count(DISTINCT aggregate_id) FROM events e \
              WHERE NOT EXISTS (SELECT 1 FROM rooms r WHERE r.id = e.aggregate_id)",
        )
        .await;
    assert_eq!(without_view, 0, "rooms lost by the rebuild");
    assert!(summary.rows >= 150);
}
