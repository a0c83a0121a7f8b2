//! Reading the event log in commit order, for the relay and for replay.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

/// A place in the log, in commit order: the inserting transaction, then the global position.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Position {
    /// The `xid8` as text (sqlx has no type for it).
    pub transaction_id: String,
    pub global_position: i64,
}

impl Position {
    pub fn start() -> Self {
        Self {
            transaction_id: "0".into(),
            global_position: 0,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoggedEvent {
    #[sqlx(flatten)]
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub recorded_at: DateTime<Utc>,
}

/// Which events a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Only events of transactions older than every transaction still running: no event
    /// committed later can ever appear before them. (Identity values are taken at insert, so a
    /// slow transaction may commit a LOWER global position after higher ones were read.)
    Only,
    /// Everything visible: only when no writer can be running (the events table is locked).
    Any,
}

/// Up to `limit` events after `after`, in commit order.
///
/// ORDER BY names the table's columns: a bare `transaction_id` would mean the `::text` output
/// column, and "1000" sorts before "999".
pub async fn read_after<'e>(
    db: impl PgExecutor<'e>,
    after: &Position,
    limit: i64,
    settled: Settled,
) -> Result<Vec<LoggedEvent>, sqlx::Error> {
    let settled_filter = match settled {
        Settled::Only => "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        Settled::Any => "",
    };
    sqlx::query_as(&format!(
        "SELECT transaction_id::text AS transaction_id, global_position, aggregate_type, aggregate_id, \
                sequence, event_type, event_version, payload, recorded_at \
           FROM events \
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2) {settled_filter} \
          ORDER BY events.transaction_id, events.global_position \
          LIMIT $3"
    ))
    .bind(&after.transaction_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The payload an event carries, without its type tag: stored payloads are externally tagged
/// (`{"RoomCreated": {...}}`). What subscribers receive as `data`.
pub fn data<'a>(event_type: &str, payload: &'a Value) -> &'a Value {
    payload.get(event_type).unwrap_or(payload)
}

/// An event of one aggregate's history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryEvent {
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub recorded_at: DateTime<Utc>,
}

/// The sequence of the last event of one aggregate (0 when it has none).
pub async fn last_sequence<'e>(
    db: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(db)
    .await
}

/// Up to `limit` events of one aggregate after `after`, in sequence order.
pub async fn history<'e>(
    db: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<HistoryEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sequence, event_type, payload, recorded_at FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
          ORDER BY sequence LIMIT $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
