//! Idempotency-Key on POST /rooms (the IETF httpapi Idempotency-Key draft): the first request
//! of a caller with a key is recorded in its command's own transaction, and its response once
//! known; a repeat within 24 hours gets that response again and creates nothing.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

/// How long a key is remembered.
const REMEMBERED: &str = "24 hours";
/// Longest key accepted.
pub const MAX_KEY_LENGTH: usize = 255;

/// The key of one caller's request, and the request it stands for.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub caller: String,
    pub key: String,
    /// The request body, canonical: the same JSON with its keys sorted.
    pub request: String,
}

/// The key was recorded by an earlier request (possibly one that committed a moment ago).
#[derive(Debug, thiserror::Error)]
#[error("the idempotency key was used before")]
pub struct KeyUsed;

tokio::task_local! {
    /// The key of the command running in this task, recorded by the event store in the command's
    /// transaction (cqrs-es's commit carries events and metadata, nothing else).
    pub static CURRENT: Idempotency;
}

/// The recording name of the constraint whose violation means [`KeyUsed`].
pub const KEY_CONSTRAINT: &str = "idempotency_keys_pkey";

/// A valid `Idempotency-Key` value: 1 to 255 printable ASCII characters.
pub fn valid_key(value: &str) -> bool {
    (1..=MAX_KEY_LENGTH).contains(&value.len()) && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Records the key inside the command's transaction, after its events: the transaction takes
/// its id at the events insert, which keeps the relay's commit order (docs/architecture.md).
/// A key of the same caller forgotten (older than 24 hours) is replaced.
pub async fn record(
    conn: &mut PgConnection,
    key: &Idempotency,
    room_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 \
            AND created_at < now() - interval '{REMEMBERED}'"
    ))
    .bind(&key.caller)
    .bind(&key.key)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request, room_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(&key.caller)
    .bind(&key.key)
    .bind(&key.request)
    .bind(room_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// What the first request with this caller's key left: its request, and its response if known.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    caller: &str,
    key: &str,
) -> Result<Option<(String, Option<Value>)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT request, response FROM idempotency_keys \
          WHERE caller = $1 AND key = $2 AND created_at >= now() - interval '{REMEMBERED}'"
    ))
    .bind(caller)
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Keeps the first response, for repeats.
pub async fn save_response<'e>(
    db: impl PgExecutor<'e>,
    key: &Idempotency,
    response: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE caller = $1 AND key = $2")
        .bind(&key.caller)
        .bind(&key.key)
        .bind(response)
        .execute(db)
        .await
        .map(|_| ())
}
