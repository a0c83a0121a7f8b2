//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::{db, relay};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
}

/// 200 when PostgreSQL answers and every migration is applied; 503 otherwise. The relay's
/// state and lag are reported; NATS being down does not make the service unready, since
/// creates still succeed (the log is the outbox) and are delivered when NATS returns.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let latest = db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.pool)
            .await;
    let database = match &applied {
        Ok(Some(version)) if *version >= latest => json!({"status": "ok"}),
        Ok(_) => json!({"status": "migrations pending"}),
        Err(error) => {
            tracing::warn!(%error, "readiness: database check failed");
            json!({"status": "unavailable"})
        }
    };
    let mut relay = serde_json::to_value(state.relay.get()).expect("relay state serializes");
    if let Ok((events, seconds)) = relay::lag(&state.pool).await {
        relay["lag"] = json!({"events": events, "seconds": seconds});
    }
    let ready = database["status"] == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({"status": if ready { "ready" } else { "unavailable" }, "database": database, "relay": relay}),
        ),
    )
}
