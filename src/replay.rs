//! Rebuilding read models from the log while the service serves.
//!
//! The log is read in commit order, in batches, into a fresh table; at the end, with new event
//! inserts briefly blocked, the last events are applied and the fresh table replaces the old
//! one in the same transaction. Creates that run meanwhile wait for that moment, then write to
//! the new table: none is lost.

use crate::BoxError;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

use crate::db::Tx;
use crate::event_log::{self, LoggedEvent, Position, Settled};
use crate::read_model;

pub const PROJECTIONS: &[&str] = &["rooms"];
const FRESH: &str = "rooms_rebuild";

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub events: u64,
    pub rooms: i64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Rebuilds `projection` from the whole log; `progress` is called about once a second.
pub async fn run(
    pool: &PgPool,
    projection: &str,
    batch_size: i64,
    mut progress: impl FnMut(&Progress),
) -> Result<Summary, BoxError> {
    if !PROJECTIONS.contains(&projection) {
        return Err(format!(
            "unknown projection {projection:?}; known: {}",
            PROJECTIONS.join(", ")
        )
        .into());
    }
    let started = Instant::now();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {FRESH}; \
         CREATE TABLE {FRESH} (LIKE rooms INCLUDING DEFAULTS, \
           CONSTRAINT {FRESH}_pkey PRIMARY KEY (id), CONSTRAINT {FRESH}_code_key UNIQUE (code));"
    ))
    .execute(pool)
    .await?;

    let mut state = Progress {
        position: Position::start(),
        events: 0,
        total: total as u64,
        started,
    };
    let mut last_report = Instant::now();
    let mut conn = pool.acquire().await?;
    loop {
        let batch =
            event_log::read_after(&mut *conn, &state.position, batch_size, Settled::Only).await?;
        if batch.is_empty() {
            break;
        }
        apply(&mut conn, &batch).await?;
        state.advance(&batch);
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(&state);
            last_report = Instant::now();
        }
    }

    drop(conn); // the swap takes a connection of its own
                // The swap: block new events, apply the last ones, replace the table, all in one
                // transaction. EXCLUSIVE waits for running writers and lets readers through.
    let mut tx = Tx::begin(pool).await?;
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(tx.conn())
        .await?;
    loop {
        let batch =
            event_log::read_after(tx.conn(), &state.position, batch_size, Settled::Any).await?;
        if batch.is_empty() {
            break;
        }
        apply(tx.conn(), &batch).await?;
        state.advance(&batch);
    }
    sqlx::raw_sql(&format!(
        "DROP TABLE rooms; \
         ALTER TABLE {FRESH} RENAME TO rooms; \
         ALTER TABLE rooms RENAME CONSTRAINT {FRESH}_pkey TO rooms_pkey; \
         ALTER TABLE rooms RENAME CONSTRAINT {FRESH}_code_key TO rooms_code_key;"
    ))
    .execute(tx.conn())
    .await?;
    let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM rooms")
        .fetch_one(tx.conn())
        .await?;
    tx.commit().await?;
    progress(&state);
    Ok(Summary {
        events: state.events,
        rooms,
        elapsed: started.elapsed(),
    })
}

/// Applies a batch to the fresh table.
async fn apply(conn: &mut PgConnection, batch: &[LoggedEvent]) -> Result<(), sqlx::Error> {
    let stored = batch.iter().map(|e| read_model::StoredEvent {
        aggregate_type: &e.aggregate_type,
        aggregate_id: &e.aggregate_id,
        sequence: e.sequence,
        payload: &e.payload,
    });
    read_model::project(conn, FRESH, &stored.collect::<Vec<_>>()).await
}

pub struct Progress {
    pub position: Position,
    pub events: u64,
    /// Events in the log when the replay started (more may arrive).
    pub total: u64,
    started: Instant,
}

impl Progress {
    fn advance(&mut self, batch: &[LoggedEvent]) {
        self.events += batch.len() as u64;
        if let Some(last) = batch.last() {
            self.position = last.position.clone();
        }
    }

    pub fn rate(&self) -> f64 {
        self.events as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn eta(&self) -> Duration {
        let left = self.total.saturating_sub(self.events) as f64;
        Duration::from_secs_f64(left / self.rate().max(1.0))
    }
}
