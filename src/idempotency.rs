//! Idempotency-Key on POST /rooms (the IETF httpapi Idempotency-Key draft): the first request
//! of a caller with a key is recorded with its response in its command's own transaction; a
//! repeat within 24 hours gets that response again and creates nothing.

use aggregates::RoomEvent;
use projections::RoomView;
use serde::Deserialize;
use sqlx::{PgConnection, PgExecutor};

use crate::read_models::StoredEvent;

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
    /// The response body to the room the command's events make. It is recorded with the key,
    /// in the command's transaction, so that the first response is kept whatever becomes of
    /// the request afterwards (a client that hangs up, a timeout, the process dying).
    pub respond: fn(RoomView) -> Result<String, crate::BoxError>,
}

/// The key was recorded by an earlier request (possibly one that committed a moment ago).
#[derive(Debug, thiserror::Error)]
#[error("the idempotency key was used before")]
pub struct KeyUsed;

/// Another request with the key is running now.
#[derive(Debug, thiserror::Error)]
#[error("a request with this idempotency key is running")]
pub struct KeyBusy;

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

/// Claims the key for this transaction, or says that another request with it runs now. An
/// advisory lock, so the transaction takes no id here (its first write stays the events insert)
/// and a repeat is told at once instead of waiting with a connection for the first to commit.
pub async fn claim(conn: &mut PgConnection, key: &Idempotency) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(length($1) || ':' || $1 || $2, 0))",
    )
    .bind(&key.caller)
    .bind(&key.key)
    .fetch_one(conn)
    .await
}

/// Records the key and the response to the room `events` create inside the command's
/// transaction, after its events: the transaction takes its id at the events insert, which
/// keeps the relay's commit order (docs/architecture.md). A key of the same caller forgotten
/// (older than 24 hours) is replaced.
pub async fn record(
    conn: &mut PgConnection,
    key: &Idempotency,
    events: &[StoredEvent<'_>],
) -> Result<(), sqlx::Error> {
    let decode = sqlx::Error::Decode;
    let mut view = None;
    for event in events {
        let decoded = RoomEvent::deserialize(event.payload).map_err(|e| decode(e.into()))?;
        if RoomView::concerns(&decoded) {
            view = Some(
                RoomView::apply(view, event.sequence, &decoded).map_err(|e| decode(e.into()))?,
            );
        }
    }
    let view = view.ok_or_else(|| decode("a keyed command made no room".into()))?;
    let room_id = view.id.clone();
    let response = (key.respond)(view).map_err(decode)?;
    sqlx::query(&format!(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 \
            AND created_at < now() - interval '{REMEMBERED}'"
    ))
    .bind(&key.caller)
    .bind(&key.key)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request, room_id, response) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.caller)
    .bind(&key.key)
    .bind(&key.request)
    .bind(room_id)
    .bind(response)
    .execute(conn)
    .await
    .map(|_| ())
}

/// What the first request with this caller's key left: its request, the room it created, and
/// its response (none when an older version recorded the key, and died before the response).
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    caller: &str,
    key: &str,
) -> Result<Option<(String, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT request, room_id, response FROM idempotency_keys \
          WHERE caller = $1 AND key = $2 AND created_at >= now() - interval '{REMEMBERED}'"
    ))
    .bind(caller)
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Keeps a response for a key an older version recorded without one; a response kept already
/// stays.
pub async fn save_response<'e>(
    db: impl PgExecutor<'e>,
    caller: &str,
    key: &str,
    response: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = $3 \
          WHERE caller = $1 AND key = $2 AND response IS NULL",
    )
    .bind(caller)
    .bind(key)
    .bind(response)
    .execute(db)
    .await
    .map(|_| ())
}
