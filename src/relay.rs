//! The relay: every committed event, in commit order, to NATS JetStream, exactly once as
//! consumers see it. The events table is the outbox.
//!
//! - Commit order without gaps: events are read by `(transaction_id, global_position)` past the
//!   checkpoint and only from transactions older than every one still running
//!   (`pg_snapshot_xmin`). Identity values are taken before commit, so reading by
//!   `global_position` alone would skip a slow transaction's events forever.
//! - At-least-once: each publish's PublishAck is awaited before the checkpoint advances.
//! - No duplicates: `Nats-Msg-Id` = `<roomId>:<sequence>` lets JetStream drop re-publishes
//!   within its duplicate window; on taking over, the relay also moves its checkpoint past the
//!   last message already in the stream, which covers outages longer than that window.
//! - One publisher: a PostgreSQL advisory lock held on a dedicated connection; when its holder
//!   dies the session ends, the lock is released, and a standby takes over within a second.
//! - Waking: while there is work the relay keeps reading; when idle it sets a flag that makes
//!   committing transactions NOTIFY it (a NOTIFY on every commit would serialize commits), with
//!   a polling fallback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use crate::BoxError;

use crate::event_log::{self, LoggedEvent, Position, Settled};

/// Advisory lock key of the relay ("ROOMSRLY" in ASCII).
const LEADER_LOCK: i64 = 0x524f_4f4d_5352_4c59;
const CHECKPOINT: &str = "nats";
/// The JetStream stream of room events, and the subjects it holds (`rooms.<roomId>.<Type>`).
pub const STREAM: &str = "ROOMS";
pub const SUBJECTS: &str = "rooms.>";
pub const NOTIFY_CHANNEL: &str = "events_committed";

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub nats_url: String,
    pub stream: String,
    pub duplicate_window: Duration,
    pub batch_size: i64,
    /// How long to let events gather after a partial batch while busy: fewer, larger batches
    /// for a bounded delay.
    pub linger: Duration,
    /// How often to look for events when no notification arrives (a missed NOTIFY, say).
    pub poll_interval: Duration,
}

impl RelayConfig {
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            stream: STREAM.into(),
            duplicate_window: Duration::from_secs(120),
            batch_size: 500,
            linger: Duration::from_millis(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What /readyz shows of this instance's relay.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayState {
    /// `starting`, `standby` (another instance publishes), `publishing` or `degraded`.
    pub status: &'static str,
    pub published: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Clone, Default)]
pub struct RelayStatus(Arc<Mutex<RelayState>>);

impl RelayStatus {
    pub fn get(&self) -> RelayState {
        self.0.lock().expect("relay status lock").clone()
    }

    fn update(&self, change: impl FnOnce(&mut RelayState)) {
        change(&mut self.0.lock().expect("relay status lock"));
    }
}

/// Runs until `shutdown` turns true, finishing the batch in hand. Failures (NATS or
/// PostgreSQL down) are reported in `status` and retried; they never end the relay.
pub async fn run(
    pool: PgPool,
    config: RelayConfig,
    status: RelayStatus,
    mut shutdown: watch::Receiver<bool>,
) {
    status.update(|s| s.status = "starting");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&config.nats_url)
        .await;
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            status.update(|s| {
                s.status = "degraded";
                s.last_error = Some(format!("invalid NATS_URL: {error}"));
            });
            tracing::error!(%error, "the relay cannot use NATS_URL");
            return;
        }
    };
    let js = jetstream::new(client);
    while !stopping(&shutdown) {
        match lead(&pool, &js, &config, &status, &mut shutdown).await {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(error = %error, "relay degraded; retrying");
                status.update(|s| {
                    s.status = "degraded";
                    s.last_error = Some(error.to_string());
                });
                sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await;
            }
        }
    }
    tracing::info!("relay stopped");
}

/// Waits for leadership, then publishes until shutdown or an error.
async fn lead(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    status: &RelayStatus,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), BoxError> {
    // A connection of its own: the lock lives as long as this session, and the leader reads
    // the log and writes its checkpoint through it (so a lost session stops it publishing).
    let mut session = PgConnection::connect_with(&pool.connect_options()).await?;
    loop {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut session)
            .await?;
        if leader {
            break;
        }
        status.update(|s| s.status = "standby");
        if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
            return Ok(());
        }
    }
    tracing::info!("relay is the publisher");
    // Checkpoints need not wait for the disk: one lost in a crash only means re-publishing
    // events that JetStream de-duplicates (and reconciliation skips).
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut session)
        .await?;
    // LISTEN holds its connection for good: give it a pool of its own, not a slot of the API's.
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(pool.connect_options().as_ref().clone())
        .await?;
    let mut listener = PgListener::connect_with(&listener_pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    ensure_stream(js, config).await?;
    let mut checkpoint = reconcile(&mut session, js, config).await?;
    status.update(|s| {
        s.status = "publishing";
        s.last_error = None;
    });
    while !stopping(shutdown) {
        // While there is work, keep publishing: committers need not wake us. A partial batch
        // means we are caught up: let the next events gather for a moment rather than spin.
        let published = publish_batch(&mut session, js, config, &mut checkpoint, status).await?;
        if published as i64 == config.batch_size {
            continue;
        }
        if published > 0 {
            sleep_or_shutdown(config.linger, shutdown).await;
            continue;
        }
        // Idle: ask committers to NOTIFY, then look once more, since a transaction that read
        // the flag before it was set commits without notifying.
        set_armed(&mut session, true).await?;
        await_running_transactions(&mut session).await?;
        let published = publish_batch(&mut session, js, config, &mut checkpoint, status).await?;
        if published == 0 {
            tokio::select! {
                notification = listener.recv() => { notification?; }
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        set_armed(&mut session, false).await?;
    }
    Ok(())
}

async fn set_armed(session: &mut PgConnection, armed: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE relay_wakeup SET armed = $1")
        .bind(armed)
        .execute(session)
        .await
        .map(|_| ())
}

/// Waits (up to 100 ms) for the transactions running now to end. Each of them may have read
/// the wake-up flag at commit before we set it; once they are done, their events are visible to
/// our next read, and every later committer sees the flag.
async fn await_running_transactions(session: &mut PgConnection) -> Result<(), sqlx::Error> {
    let running: Vec<String> =
        sqlx::query_scalar("SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x")
            .fetch_all(&mut *session)
            .await?;
    for _ in 0..100 {
        let still_running: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[]) AS x \
                             WHERE pg_xact_status(x::xid8) = 'in progress')",
        )
        .bind(&running)
        .fetch_one(&mut *session)
        .await?;
        if !still_running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Creates the stream, or brings an existing one's settings up to date.
pub async fn ensure_stream(js: &jetstream::Context, config: &RelayConfig) -> Result<(), BoxError> {
    js.create_or_update_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![SUBJECTS.into()],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Loads the checkpoint, first moving it past the last event already in the stream, so that a
/// relay whose checkpoint fell behind (it crashed between publish and checkpoint, and was down
/// longer than the duplicate window) never publishes an event twice.
async fn reconcile(
    session: &mut PgConnection,
    js: &jetstream::Context,
    config: &RelayConfig,
) -> Result<Position, BoxError> {
    sqlx::query("INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(CHECKPOINT)
        .execute(&mut *session)
        .await?;
    let mut stream = js.get_stream(&config.stream).await?;
    let last = stream.info().await?.state.last_sequence;
    if last > 0 {
        let message = stream.get_raw_message(last).await?;
        let envelope: Value = serde_json::from_slice(&message.payload)?;
        let Some(position) = envelope["globalposition"].as_i64() else {
            return Err(format!(
                "the last message in {} has no globalposition",
                config.stream
            )
            .into());
        };
        let moved = sqlx::query(
            "UPDATE checkpoints c SET transaction_id = e.transaction_id, global_position = e.global_position, \
                    updated_at = now() \
               FROM events e \
              WHERE c.name = $1 AND e.global_position = $2 \
                AND (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)",
        )
        .bind(CHECKPOINT)
        .bind(position)
        .execute(&mut *session)
        .await?
        .rows_affected();
        if moved > 0 {
            tracing::warn!(
                position,
                "checkpoint was behind the stream; moved it to the last published event"
            );
        }
    }
    Ok(sqlx::query_as(
        "SELECT transaction_id::text AS transaction_id, global_position FROM checkpoints WHERE name = $1",
    )
    .bind(CHECKPOINT)
    .fetch_one(&mut *session)
    .await?)
}

/// Publishes the next batch after `checkpoint` and advances it; returns how many events it
/// published.
async fn publish_batch(
    session: &mut PgConnection,
    js: &jetstream::Context,
    config: &RelayConfig,
    checkpoint: &mut Position,
    status: &RelayStatus,
) -> Result<usize, BoxError> {
    let batch =
        event_log::read_after(&mut *session, checkpoint, config.batch_size, Settled::Only).await?;
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    // Send the whole batch, then await the acks: one round trip's wait per batch, and
    // JetStream stores messages from one connection in the order they were sent.
    let mut acks = Vec::with_capacity(batch.len());
    for event in &batch {
        let id = format!("{}:{}", event.aggregate_id, event.sequence);
        let body = serde_json::to_vec(&envelope(event, &id))?;
        let subject = format!("rooms.{}.{}", event.aggregate_id, event.event_type);
        acks.push(
            js.send_publish(
                subject,
                PublishMessage::build().message_id(&id).payload(body.into()),
            )
            .await?,
        );
    }
    for (ack, event) in acks.into_iter().zip(&batch) {
        ack.await?;
        // From commit (well, insert) to PublishAck: what a subscriber waits for an event.
        let delay = (Utc::now() - event.recorded_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!("relay_publish_delay_seconds").record(delay.as_secs_f64());
    }
    metrics::counter!("relay_published_total").increment(batch.len() as u64);
    sqlx::query(
        "UPDATE checkpoints SET transaction_id = $2::text::xid8, global_position = $3, updated_at = now() \
          WHERE name = $1",
    )
    .bind(CHECKPOINT)
    .bind(&last.position.transaction_id)
    .bind(last.position.global_position)
    .execute(session)
    .await?;
    *checkpoint = last.position.clone();
    status.update(|s| s.published += batch.len() as u64);
    Ok(batch.len())
}

/// The CloudEvents 1.0 envelope of an event (see docs/events.md).
fn envelope(event: &LoggedEvent, id: &str) -> Value {
    // Stored payloads are tagged with their type (`{"RoomCreated": {...}}`); `data` is the
    // payload itself.
    let data = event
        .payload
        .get(&event.event_type)
        .unwrap_or(&event.payload);
    serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "/neuronmeet/rooms",
        "type": event.event_type,
        "subject": event.aggregate_id,
        "time": event.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "dataschemaversion": event.event_version,
        "sequence": event.sequence,
        "globalposition": event.position.global_position,
        "data": data,
    })
}

/// Shutdown was requested, or whoever could request it is gone.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Sleeps, or returns true early when shutdown is requested.
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => stopping(shutdown),
        _ = shutdown.changed() => true,
    }
}

/// Events committed but not yet published, and the age of the oldest, for /readyz.
pub async fn lag(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(e.recorded_at))::float8, 0) \
           FROM events e LEFT JOIN checkpoints c ON c.name = $1 \
          WHERE (e.transaction_id, e.global_position) > (COALESCE(c.transaction_id, '0'), COALESCE(c.global_position, 0))",
    )
    .bind(CHECKPOINT)
    .fetch_one(pool)
    .await
}
