//! Wiring: the pieces of a running service, and serving them until shutdown.

use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;

use crate::auth::Tokens;
use crate::codes::CodeGenerator;
use crate::commands::RoomCommands;
use crate::http::{self, AppState, Limits};
use crate::live::Live;
use crate::relay::RelayStatus;

/// The HTTP application over an already migrated database. Live feeds follow room events on
/// the NATS servers of `nats_url` (without one, they read the log when they open, and get no
/// live events).
pub fn build(
    pool: PgPool,
    tokens: Tokens,
    codes: Arc<dyn CodeGenerator>,
    relay: RelayStatus,
    nats_url: Option<String>,
    limits: &Limits,
) -> Router {
    let live = Live::new(limits.live_max_streams, limits.live_max_streams_each);
    tokio::spawn(live.clone().tick_keep_alives());
    if let Some(nats_url) = nats_url {
        tokio::spawn(live.clone().follow(nats_url));
    }
    let mut commands = RoomCommands::new(pool.clone(), codes, limits.write_lock_timeout);
    if !limits.room_batches {
        commands = commands.without_room_batches();
    }
    let state = AppState {
        checks: http::Checks::start(pool.clone(), relay.clone()),
        pool,
        tokens,
        commands,
        relay,
        live,
        trusted_proxies: limits.trusted_proxies.clone(),
        openapi: Default::default(),
        metrics: crate::telemetry::handle(),
    };
    http::router(state, limits)
}

/// Serves until `shutdown` completes, then lets requests in flight finish (within
/// `limits.shutdown_timeout`).
pub use crate::http::serve;
