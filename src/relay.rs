//! The relay: every committed event, in commit order, to NATS JetStream, exactly once as
//! consumers see it. The events table is the outbox.
//!
//! - Commit order without gaps: events are read by `(transaction_id, global_position)` past the
//!   checkpoint and only from transactions older than every one still running
//!   (`pg_snapshot_xmin`). Identity values are taken before commit, so reading by
//!   `global_position` alone would skip a slow transaction's events forever.
//! - At-least-once: each publish's PublishAck is awaited before the checkpoint advances.
//! - No holes: each publish carries `Nats-Expected-Last-Sequence`, so JetStream stores nothing
//!   after a message that was lost on the way (a reconnect drops the client's buffer).
//! - No duplicates: `Nats-Msg-Id` = `<roomId>:<sequence>` lets JetStream drop re-publishes
//!   within its duplicate window; on taking over, the relay also walks the messages stored after
//!   its checkpoint and moves past those that continue the log without a break, which covers
//!   outages longer than that window.
//! - One publisher: a PostgreSQL advisory lock held on a dedicated connection; when its holder
//!   dies the session ends, the lock is released, and a standby takes over within a second.
//!   Server-side TCP keepalives end a session whose client vanished.
//! - Waking: while there is work the relay keeps reading; when idle it sets a flag that makes
//!   committing transactions NOTIFY it (a NOTIFY on every commit would serialize commits), with
//!   a polling fallback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use crate::event_log::{self, LoggedEvent, Position, Settled};
use crate::BoxError;

/// Advisory lock key of the relay ("ROOMSRLY" in ASCII).
const LEADER_LOCK: i64 = 0x524f_4f4d_5352_4c59;
/// The JetStream stream of room events, and the subjects it holds (`rooms.<roomId>.<Type>`).
pub const STREAM: &str = "ROOMS";
pub const SUBJECTS: &str = "rooms.>";
pub const NOTIFY_CHANNEL: &str = "events_committed";
/// Messages walked at most on takeover; beyond, the relay publishes from where the walk ended
/// (JetStream's duplicate window drops what is already there).
const MAX_RECONCILE_WALK: u64 = 10_000;
/// First wait before looking again for events held back by an older transaction; it doubles up
/// to the poll interval while that transaction runs.
const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(20);
/// The pause before retrying after a NATS fault; see `Fault::retry_after`.
const NATS_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The backlog is counted up to this many events, so that /readyz stays cheap.
pub const LAG_COUNT_LIMIT: i64 = 10_000;

/// The checkpoint row of the relay publishing to `stream`.
pub fn checkpoint_name(stream: &str) -> String {
    format!("nats:{stream}")
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub nats_url: String,
    pub stream: String,
    /// The duplicate window of a stream the relay creates (an existing one keeps its own).
    pub duplicate_window: Duration,
    /// How many servers of a cluster keep a stream the relay creates (an existing one keeps
    /// its own).
    pub stream_replicas: usize,
    /// How long to wait for a JetStream API reply or a publish ack before taking the server
    /// for gone and starting over (a stream leader that died answers nothing).
    pub request_timeout: Duration,
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
            stream_replicas: 1,
            request_timeout: Duration::from_secs(1),
            batch_size: 500,
            linger: Duration::from_millis(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Checks a `NATS_URL`: one or more comma-separated `nats://`, `tls://`, `ws://` or `wss://`
/// URLs with a host. (async-nats would take `not-a-url` for a host name and retry it forever.)
pub fn parse_nats_url(text: &str) -> Result<String, String> {
    nats_servers(text).map(|_| text.to_owned())
}

/// The servers of a `NATS_URL`, to hand to async-nats as a list: given the text whole, it reads
/// `nats://a:4222,nats://b:4222` as one address, and fails at the second colon.
pub fn nats_servers(text: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    text.split(',')
        .map(str::trim)
        .map(|server| {
            let scheme = server.split_once("://").map(|(scheme, _)| scheme);
            if !matches!(scheme, Some("nats" | "tls" | "ws" | "wss")) {
                return Err(format!(
                    "`{server}` is not a NATS URL; expected nats://host:port (or tls://, ws://, wss://)"
                ));
            }
            server
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("`{server}` is not a NATS URL: {e}"))
        })
        .collect()
}

/// Checks a `NATS_STREAM`: a JetStream stream name has no spaces, dots, `*`, `>` or path
/// separators.
pub fn parse_stream_name(text: &str) -> Result<String, String> {
    let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if text.is_empty() || text.len() > 255 || text.contains(bad) {
        return Err(format!(
            "`{text}` is not a JetStream stream name (1 to 255 characters, no spaces, `.`, `*`, `>`, `/` or `\\`)"
        ));
    }
    Ok(text.to_owned())
}

/// What /readyz shows of this instance's relay.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayState {
    /// `starting`, `standby` (another instance publishes), `publishing` or `degraded`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub published: u64,
    /// Why it is degraded, as a code (the details are in the logs): `database_unavailable`,
    /// `nats_unavailable`, `stream_misconfigured`, `stream_diverged`, `cluster_changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'static str>,
    /// The checkpoint it keeps (`nats:<stream>`).
    #[serde(skip)]
    #[schema(ignore)]
    pub checkpoint: String,
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

    /// The checkpoint whose lag /readyz reports: this instance's relay's, or the default one.
    pub fn checkpoint(&self) -> String {
        let checkpoint = self.get().checkpoint;
        if checkpoint.is_empty() {
            checkpoint_name(STREAM)
        } else {
            checkpoint
        }
    }
}

/// Why the relay cannot publish right now. Each is retried; `reason` is what /readyz shows.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("NATS: {0}")]
    Nats(BoxError),
    #[error("{0}")]
    StreamMisconfigured(String),
    #[error("the stream's last message is not the one this relay published last: {0}")]
    StreamDiverged(BoxError),
    #[error("{0}")]
    ClusterChanged(String),
}

impl Fault {
    fn reason(&self) -> &'static str {
        match self {
            Self::Database(_) => "database_unavailable",
            Self::Nats(_) => "nats_unavailable",
            Self::StreamMisconfigured(_) => "stream_misconfigured",
            Self::StreamDiverged(_) => "stream_diverged",
            Self::ClusterChanged(_) => "cluster_changed",
        }
    }

    /// NATS faults are retried almost at once: most pass within seconds (a stream leader
    /// elected, a client reconnected to another server), and each request already waits
    /// `request_timeout` when nothing answers, so retrying cannot spin. The pause only spaces
    /// out instant refusals ("no responders" while a stream has no leader).
    fn retry_after(&self) -> Duration {
        match self {
            Self::Nats(_) => NATS_RETRY_PAUSE,
            _ => Duration::from_secs(1),
        }
    }

    fn nats(error: impl Into<BoxError>) -> Self {
        Self::Nats(error.into())
    }
}

/// Runs until `shutdown` turns true, finishing the batch in hand. Failures (NATS or
/// PostgreSQL down, a stream changed under it) are reported in `status` and retried; they never
/// end the relay.
pub async fn run(
    pool: PgPool,
    config: RelayConfig,
    status: RelayStatus,
    mut shutdown: watch::Receiver<bool>,
) {
    let checkpoint = checkpoint_name(&config.stream);
    status.update(|s| {
        s.status = "starting";
        s.checkpoint = checkpoint.clone();
    });
    // Connects in the background and keeps reconnecting, to any server of the list: NATS being
    // down is a fault to report and retry, not a reason to stop.
    let client = match nats_servers(&config.nats_url) {
        Ok(servers) => async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error),
    };
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            status.update(|s| {
                s.status = "degraded";
                s.reason = Some("nats_unavailable");
            });
            tracing::error!(%error, "the relay cannot use NATS_URL");
            return;
        }
    };
    // A JetStream request that a stream leader cannot answer (it died, or none is elected
    // yet) is never answered: without a bound of our own, async-nats waits 10 s for API
    // replies and 5 s for acks, and each leader change stalled publishing that much longer.
    // Acks of a healthy server take milliseconds (each one's wait starts when it is awaited,
    // after those before it), so a short bound costs nothing but a retry on a slow server.
    let js = jetstream::ContextBuilder::new()
        .timeout(config.request_timeout)
        .ack_timeout(config.request_timeout)
        .build(client);
    while !stopping(&shutdown) {
        if let Err(fault) = lead(&pool, &js, &config, &checkpoint, &status, &mut shutdown).await {
            let reason = fault.reason();
            tracing::warn!(error = %fault, reason, "relay degraded; retrying");
            metrics::counter!("relay_faults_total", "reason" => reason).increment(1);
            status.update(|s| {
                s.status = "degraded";
                s.reason = Some(reason);
            });
            sleep_or_shutdown(fault.retry_after(), &mut shutdown).await;
        }
    }
    tracing::info!("relay stopped");
}

/// The session the leader holds its lock on, reads the log and writes its checkpoint through.
/// The server probes it with TCP keepalives and gives up on unacknowledged data after 30 s, so
/// a relay whose host vanished (a half-open connection) loses the lead within a minute, not
/// after the kernel's two hours.
pub fn leader_connect_options(pool: &PgPool) -> PgConnectOptions {
    pool.connect_options()
        .as_ref()
        .clone()
        .application_name("neuronmeet-relay")
        .options(crate::db::SESSION_KEEPALIVES)
}

/// Waits for leadership, then publishes until shutdown or a fault.
async fn lead(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    checkpoint: &str,
    status: &RelayStatus,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Fault> {
    let mut session = PgConnection::connect_with(&leader_connect_options(pool)).await?;
    loop {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut session)
            .await?;
        if leader {
            break;
        }
        status.update(|s| {
            s.status = "standby";
            s.reason = None;
        });
        if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
            return Ok(());
        }
    }
    tracing::info!("relay is the publisher");
    // A leader that died while idle left the wake-up armed: every commit would NOTIFY.
    set_armed(&mut session, false).await?;
    let result = publish(&mut session, pool, js, config, checkpoint, status, shutdown).await;
    if result.is_err() {
        // Committers need not NOTIFY a relay that is not listening. Best effort: the session
        // may be what failed, and the next leader resets the flag anyway.
        let reset = set_armed(&mut session, false);
        let _ = tokio::time::timeout(Duration::from_secs(1), reset).await;
    }
    result
}

/// Publishes as the leader until shutdown or a fault.
async fn publish(
    session: &mut PgConnection,
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    checkpoint: &str,
    status: &RelayStatus,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Fault> {
    // Checkpoints need not wait for the disk: one lost in a crash only means re-publishing
    // events that JetStream de-duplicates (and reconciliation skips).
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut *session)
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
    let mut stream = ensure_stream(js, config).await?;
    let mut cursor = reconcile(&mut *session, &mut stream, checkpoint).await?;
    status.update(|s| {
        s.status = "publishing";
        s.reason = None;
    });
    let mut held_back = HELD_BACK_FIRST_WAIT;
    while !stopping(shutdown) {
        // While there is work, keep publishing: committers need not wake us. A partial batch
        // means we are caught up: let the next events gather for a moment rather than spin.
        let published =
            publish_batch(session, js, &mut stream, config, &mut cursor, status).await?;
        if published as i64 == config.batch_size {
            continue;
        }
        if published > 0 {
            held_back = HELD_BACK_FIRST_WAIT;
            sleep_or_shutdown(config.linger, shutdown).await;
            continue;
        }
        // Committed events that are not settled yet (a transaction that began before them is
        // still running, anywhere in the cluster) will not be announced again: look again on
        // our own, less often the longer that transaction runs.
        if unsettled_events(session, &cursor.position).await? {
            sleep_or_shutdown(held_back, shutdown).await;
            held_back = (held_back * 2).min(config.poll_interval);
            continue;
        }
        held_back = HELD_BACK_FIRST_WAIT;
        // Idle: ask committers to NOTIFY, then look once more, since a transaction that read
        // the flag before it was set commits without notifying.
        set_armed(session, true).await?;
        await_running_transactions(session).await?;
        let published =
            publish_batch(session, js, &mut stream, config, &mut cursor, status).await?;
        if published == 0 {
            tokio::select! {
                notification = listener.recv() => { notification?; }
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        set_armed(session, false).await?;
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

/// Whether committed events past `position` wait for older transactions to end.
async fn unsettled_events(
    session: &mut PgConnection,
    position: &Position,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2))",
    )
    .bind(&position.transaction_id)
    .bind(position.global_position)
    .fetch_one(session)
    .await
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

/// The stream, created when missing. An existing stream keeps the settings its operator gave it
/// (replicas, limits, max age, duplicate window); it only has to capture our subjects.
async fn ensure_stream(
    js: &jetstream::Context,
    config: &RelayConfig,
) -> Result<jetstream::stream::Stream, Fault> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    match js.get_stream(&config.stream).await {
        Ok(mut stream) => {
            let subjects = stream
                .info()
                .await
                .map_err(Fault::nats)?
                .config
                .subjects
                .clone();
            if !subjects.iter().any(|s| s == SUBJECTS || s == ">") {
                return Err(Fault::StreamMisconfigured(format!(
                    "stream {} captures {subjects:?}, not {SUBJECTS}",
                    config.stream
                )));
            }
            Ok(stream)
        }
        Err(error)
            if matches!(error.kind(), GetStreamErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            tracing::info!(stream = %config.stream, "creating the JetStream stream");
            let stream = js
                .create_stream(stream::Config {
                    name: config.stream.clone(),
                    subjects: vec![SUBJECTS.into()],
                    storage: stream::StorageType::File,
                    duplicate_window: config.duplicate_window,
                    num_replicas: config.stream_replicas,
                    ..Default::default()
                })
                .await
                .map_err(Fault::nats)?;
            Ok(stream)
        }
        Err(error) => Err(Fault::nats(error)),
    }
}

/// Where the relay stands: its checkpoint in the log, and the stream's last sequence, which
/// the next publish must follow (`None` after a broken run, until a batch has gone through).
struct Cursor {
    checkpoint: String,
    position: Position,
    /// Every message up to this stream sequence holds an event at or before `position`.
    stream_sequence: u64,
    /// The stream's last sequence, that the next message must follow.
    chain: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct StoredCheckpoint {
    transaction_id: String,
    global_position: i64,
    stream_sequence: Option<i64>,
    cluster_id: Option<i64>,
    this_cluster: i64,
    ahead_of_cluster: bool,
}

/// Loads the checkpoint, refuses one from another cluster, and moves it across the messages
/// stored after it that continue the log without a break: those a relay published before it
/// died without writing its checkpoint. It never moves across a message that does not follow
/// (a hole, a foreign or deleted message): events after that are published again, and
/// JetStream's duplicate window drops what is already there.
async fn reconcile(
    session: &mut PgConnection,
    stream: &mut jetstream::stream::Stream,
    checkpoint: &str,
) -> Result<Cursor, Fault> {
    // A new checkpoint starts where the relay of the previous version was (`nats`), if any;
    // that one is moved, not copied, so a stream configured later starts from the beginning.
    sqlx::query(
        "WITH legacy AS (DELETE FROM checkpoints WHERE name = 'nats' \
                          RETURNING transaction_id, global_position) \
         INSERT INTO checkpoints (name, transaction_id, global_position, cluster_id) \
         SELECT $1, COALESCE(legacy.transaction_id, '0'), COALESCE(legacy.global_position, 0), \
                (SELECT system_identifier FROM pg_control_system()) \
           FROM (SELECT 1) AS one LEFT JOIN legacy ON true \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(checkpoint)
    .execute(&mut *session)
    .await?;
    // Commit order is read from transaction ids. Every id in the log, and the checkpoint's,
    // must be in this cluster's past, or events committed from now on would sort before them
    // and never be read (a dump restored into a younger cluster). pg_upgrade and physical
    // copies keep the ids, and may change the cluster's identity: that alone is no fault.
    let stored: StoredCheckpoint = sqlx::query_as(
        "SELECT transaction_id::text AS transaction_id, global_position, stream_sequence, cluster_id, \
                (SELECT system_identifier FROM pg_control_system()) AS this_cluster, \
                GREATEST(transaction_id, (SELECT max(e.transaction_id) FROM events e)) \
                  >= pg_snapshot_xmax(pg_current_snapshot()) AS ahead_of_cluster \
           FROM checkpoints WHERE name = $1",
    )
    .bind(checkpoint)
    .fetch_one(&mut *session)
    .await?;
    if stored.ahead_of_cluster {
        return Err(Fault::ClusterChanged(format!(
            "the event log or checkpoint {checkpoint} holds transaction ids ahead of this \
             PostgreSQL cluster's (checkpoint written by cluster {:?}, this is {}): the database \
             was restored from a logical dump, and events committed now would sort before the \
             restored ones; publishing stopped (see docs/operations.md)",
            stored.cluster_id, stored.this_cluster
        )));
    }
    if stored.cluster_id != Some(stored.this_cluster) {
        if let Some(other) = stored.cluster_id {
            tracing::warn!(
                other,
                this = stored.this_cluster,
                "the checkpoint was written by another PostgreSQL cluster (pg_upgrade, or a \
                 restore); its transaction ids are consistent with this one, so publishing goes on"
            );
        }
        sqlx::query("UPDATE checkpoints SET cluster_id = $2 WHERE name = $1")
            .bind(checkpoint)
            .bind(stored.this_cluster)
            .execute(&mut *session)
            .await?;
    }

    let last = stream
        .info()
        .await
        .map_err(Fault::nats)?
        .state
        .last_sequence;
    let mut cursor = Cursor {
        checkpoint: checkpoint.to_owned(),
        position: Position {
            transaction_id: stored.transaction_id,
            global_position: stored.global_position,
        },
        stream_sequence: last,
        chain: Some(last),
    };
    let Some(known) = stored.stream_sequence.map(|s| s as u64) else {
        // A new checkpoint, or one from before stream sequences were kept: publish from it.
        // Messages already in the stream are acknowledged as duplicates without being stored,
        // so the stream's sequence cannot be predicted until a batch has gone through.
        if last > 0 {
            cursor.chain = None;
        }
        save_checkpoint(session, &cursor).await?;
        return Ok(cursor);
    };
    if last < known {
        tracing::warn!(
            stream_last = last,
            checkpoint_stream_sequence = known,
            "the stream is behind the checkpoint (recreated?); publishing from the checkpoint"
        );
    }
    if last <= known {
        save_checkpoint(session, &cursor).await?;
        return Ok(cursor);
    }

    let walk = (last - known).min(MAX_RECONCILE_WALK);
    let following =
        event_log::read_after(&mut *session, &cursor.position, walk as i64, Settled::Any).await?;
    let mut matched = 0;
    for (sequence, event) in (known + 1..=known + walk).zip(&following) {
        // The event's id and its place in the log, as published.
        let stored = match stream.get_raw_message(sequence).await {
            Ok(message) => serde_json::from_slice::<Value>(&message.payload)
                .ok()
                .and_then(|envelope| {
                    Some((
                        envelope["id"].as_str()?.to_owned(),
                        global_position(&envelope["globalposition"])?,
                    ))
                }),
            Err(_) => None, // deleted, or purged
        };
        let expected = (
            format!("{}:{}", event.aggregate_id, event.sequence),
            event.position.global_position,
        );
        if stored.as_ref() != Some(&expected) {
            tracing::warn!(
                stream_sequence = sequence,
                ?expected,
                found = ?stored,
                "the stream breaks off from the log here; publishing again from the last event that follows"
            );
            break;
        }
        cursor.position = event.position.clone();
        matched += 1;
    }
    if matched > 0 {
        tracing::warn!(
            events = matched,
            "checkpoint was behind the stream; moved it past events already published"
        );
    }
    if matched < walk || walk < last - known {
        // Re-publishing over messages already stored: duplicates are acknowledged without
        // being stored, so sequences cannot be predicted until a batch has gone through.
        cursor.chain = None;
        cursor.stream_sequence = known + matched;
    }
    save_checkpoint(session, &cursor).await?;
    Ok(cursor)
}

async fn save_checkpoint(session: &mut PgConnection, cursor: &Cursor) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE checkpoints SET transaction_id = $2::text::xid8, global_position = $3, \
                stream_sequence = $4, updated_at = now() \
          WHERE name = $1",
    )
    .bind(&cursor.checkpoint)
    .bind(&cursor.position.transaction_id)
    .bind(cursor.position.global_position)
    .bind(cursor.stream_sequence as i64)
    .execute(session)
    .await
    .map(|_| ())
}

/// Publishes the next batch after the checkpoint and advances it; returns how many events it
/// published.
async fn publish_batch(
    session: &mut PgConnection,
    js: &jetstream::Context,
    stream: &mut jetstream::stream::Stream,
    config: &RelayConfig,
    cursor: &mut Cursor,
    status: &RelayStatus,
) -> Result<usize, Fault> {
    let batch = event_log::read_after(
        &mut *session,
        &cursor.position,
        config.batch_size,
        Settled::Only,
    )
    .await?;
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    // Send the whole batch, then await the acks: one round trip's wait per batch. Each message
    // must directly follow the one before it, so if one is lost none after it is stored.
    let mut acks = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let id = format!("{}:{}", event.aggregate_id, event.sequence);
        let body = serde_json::to_vec(&envelope(event, &id)).map_err(Fault::nats)?;
        let subject = format!("rooms.{}.{}", event.aggregate_id, event.event_type);
        let mut message = PublishMessage::build().message_id(&id);
        if let Some(chain) = cursor.chain {
            message = message.expected_last_sequence(chain + i as u64);
        }
        let ack = js
            .send_publish(subject, message.payload(body.into()))
            .await
            .map_err(Fault::nats)?;
        acks.push(ack);
    }
    let mut stream_sequence = cursor.stream_sequence;
    for (ack, event) in acks.into_iter().zip(&batch) {
        let ack = ack.await.map_err(|error| match error.kind() {
            PublishErrorKind::WrongLastSequence => Fault::StreamDiverged(error.into()),
            _ => Fault::nats(error),
        })?;
        if !ack.duplicate {
            stream_sequence = stream_sequence.max(ack.sequence);
        }
        // From commit (well, insert) to PublishAck: what a subscriber waits for an event.
        let delay = (Utc::now() - event.recorded_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!("relay_publish_delay_seconds").record(delay.as_secs_f64());
    }
    metrics::counter!("relay_published_total").increment(batch.len() as u64);
    if cursor.chain.is_none() {
        // Past the re-published run: from here on the stream's end is known again.
        stream_sequence = stream
            .info()
            .await
            .map_err(Fault::nats)?
            .state
            .last_sequence;
    }
    cursor.position = last.position.clone();
    cursor.stream_sequence = stream_sequence;
    cursor.chain = Some(stream_sequence);
    save_checkpoint(session, cursor).await?;
    status.update(|s| s.published += batch.len() as u64);
    Ok(batch.len())
}

/// The CloudEvents 1.0 envelope of an event (see docs/events.md).
fn envelope(event: &LoggedEvent, id: &str) -> Value {
    let data = event_log::data(&event.event_type, &event.payload);
    serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "/neuronmeet/rooms",
        "type": event.event_type,
        "subject": event.aggregate_id,
        "time": event.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "dataschemaversion": event.event_version,
        "sequence": sequence_attribute(event.sequence),
        "globalposition": event.position.global_position.to_string(),
        "data": data,
    })
}

/// Width of the `sequence` attribute: every positive i64 fits.
const SEQUENCE_DIGITS: usize = 19;

/// The CloudEvents Sequence extension is a string that sorts lexicographically: zero-padded,
/// so that "…0010" follows "…0009".
pub fn sequence_attribute(sequence: i64) -> String {
    format!("{sequence:0SEQUENCE_DIGITS$}")
}

/// `globalposition` as published: a decimal string (CloudEvents integers are 32-bit), or a
/// JSON number in messages of versions before that.
fn global_position(attribute: &Value) -> Option<i64> {
    match attribute {
        Value::String(text) => text.parse().ok(),
        other => other.as_i64(),
    }
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

/// The backlog behind `checkpoint`, for /readyz and /metrics: events committed but not yet
/// published (counted up to [`LAG_COUNT_LIMIT`]), and the age of the oldest. Both are index
/// range reads from the checkpoint on, however long the log.
pub async fn lag(pool: &PgPool, checkpoint: &str) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "WITH c AS (SELECT COALESCE((SELECT transaction_id FROM checkpoints WHERE name = $1), '0') AS transaction_id, \
                           COALESCE((SELECT global_position FROM checkpoints WHERE name = $1), 0) AS global_position), \
              behind AS (SELECT e.recorded_at FROM events e, c \
                          WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position) \
                          ORDER BY e.transaction_id, e.global_position LIMIT $2) \
         SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at))::float8, 0) FROM behind",
    )
    .bind(checkpoint)
    .bind(LAG_COUNT_LIMIT)
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_nats_url_list_is_split_into_its_servers() {
        let servers = nats_servers("nats://a:4222, nats://b:4223,tls://c:4224").unwrap();
        let hosts: Vec<(String, u16)> = servers
            .iter()
            .map(|s| (s.host().to_owned(), s.port()))
            .collect();
        assert_eq!(
            hosts,
            [("a".into(), 4222), ("b".into(), 4223), ("c".into(), 4224)]
        );
        assert!(nats_servers("nats://a:4222,").is_err());
        assert!(nats_servers("nats://a:4222,b:4222").is_err());
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn sequences_sort_as_text_the_way_they_sort_as_numbers() {
        let numbers = [1, 2, 9, 10, 11, 99, 100, 1_000_000, i64::MAX];
        let mut texts: Vec<String> = numbers.iter().map(|n| sequence_attribute(*n)).collect();
        texts.sort();
        let back: Vec<i64> = texts.iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(back, numbers);
    }

    #[test]
    fn global_positions_read_as_strings_and_as_the_numbers_of_older_versions() {
        let beyond_int32 = 5_000_000_000_i64;
        assert_eq!(
            global_position(&Value::from(beyond_int32.to_string())),
            Some(beyond_int32)
        );
        assert_eq!(
            global_position(&Value::from(beyond_int32)),
            Some(beyond_int32)
        );
        assert_eq!(global_position(&Value::from("x")), None);
    }
}
