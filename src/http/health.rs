//! Operations endpoints: liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::relay::RelayStatus;
use crate::{db, relay};

/// How often the background check looks at the database and the relay's lag.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A last check older than this means checking itself hangs (a query that does not return):
/// the database counts as unavailable.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// The database's state and the relay's lag, checked once a second by a task of its own.
/// /readyz and /metrics answer from its last check: public endpoints, which a flood of requests
/// must not turn into a flood of queries, nor hold on a slow database.
#[derive(Clone)]
pub struct Checks(watch::Receiver<Option<Check>>);

#[derive(Clone, Copy)]
struct Check {
    database: &'static str,
    lag: Option<(i64, f64)>,
    at: Instant,
}

impl Checks {
    /// Checks at once, then every [`CHECK_EVERY`], until every copy of this is dropped.
    pub fn start(pool: PgPool, relay_status: RelayStatus) -> Self {
        let (checked, checks) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let database = database_state(&pool).await;
                // The lag query needs a connection too: skipped when there is none to spare.
                let lag = match database {
                    "ok" => relay::lag(&pool, &relay_status.checkpoint()).await.ok(),
                    _ => None,
                };
                if let Some((events, seconds)) = lag {
                    metrics::gauge!("relay_lag_events").set(events as f64);
                    metrics::gauge!("relay_lag_seconds").set(seconds);
                }
                checked.send_replace(Some(Check {
                    database,
                    lag,
                    at: Instant::now(),
                }));
                tokio::select! {
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                    _ = checked.closed() => return,
                }
            }
        });
        Self(checks)
    }

    /// The last check; right after the start, the first one (waited for, not made here).
    async fn last(&self) -> Option<Check> {
        let mut checks = self.0.clone();
        let _ = tokio::time::timeout(STALE_AFTER, checks.wait_for(Option::is_some)).await;
        let last = *checks.borrow();
        last
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Prometheus metrics
///
/// HTTP requests by route and status with latency histograms, commands by outcome and
/// rejection reason, aggregate conflicts, code collisions, relay published count, delay and
/// lag (as of the last check, made once a second), and database pool usage.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(check) = state.checks.last().await {
        metrics::gauge!("health_check_age_seconds").set(check.at.elapsed().as_secs_f64());
    }
    let idle = state.pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(state.pool.size()) - idle);
    metrics::gauge!("db_pool_max_connections")
        .set(f64::from(state.pool.options().get_max_connections()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Liveness
///
/// 200 while the process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive.", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// Readiness
///
/// 200 when PostgreSQL answers and every migration is applied; 503 otherwise. The relay's
/// state, a reason code when it is degraded, and its lag are reported; NATS being down does
/// not make the service unready, since creates still succeed (the log is the outbox) and are
/// delivered when NATS returns. The database and the lag are checked once a second in the
/// background, and answered as of the last check (`age`); a last check older than 5 s counts
/// as the database unavailable. Errors themselves go to the log, never to this public answer.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "PostgreSQL reachable and migrated; the relay's state (with a reason code when degraded) and lag.", body = Readiness),
        (status = 503, description = "PostgreSQL unreachable or migrations pending.", body = Readiness,
            example = json!({"status": "unavailable", "database": {"status": "unavailable"},
                "relay": {"status": "degraded", "published": 42, "reason": "database_unavailable"}})),
    ))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let check = state.checks.last().await;
    let age = check.map(|check| check.at.elapsed());
    let (database, lag) = match check {
        Some(check) if check.at.elapsed() < STALE_AFTER => (check.database, check.lag),
        _ => ("unavailable", None),
    };
    let lag = lag.map(|(events, seconds)| Lag { events, seconds });
    // Busy is not down: an instance whose pool is full still serves, and taking it out of
    // rotation would only move its load onto the others.
    let ready = matches!(database, "ok" | "busy");
    let readiness = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        age: age.map(|age| age.as_secs_f64()),
        database: DatabaseState { status: database },
        relay: RelayReport {
            state: state.relay.get(),
            lag,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// How long readiness waits for a pooled connection before it tells busy from down.
const READY_WAIT: Duration = Duration::from_millis(500);
/// A full pool none of whose connections came back for this long is stuck, not busy.
const STUCK_AFTER: Duration = Duration::from_secs(10);

async fn database_state(pool: &PgPool) -> &'static str {
    let latest = db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let mut conn = match tokio::time::timeout(READY_WAIT, pool.acquire()).await {
        Ok(Ok(conn)) => conn,
        // Busy while connections keep coming back; all held for STUCK_AFTER is a wedged
        // pool (stuck queries, dead connections), which must not keep the instance in rotation.
        Err(_) if db::saturated(pool).await => {
            return match db::since_last_release() < STUCK_AFTER {
                true => "busy",
                false => "stuck",
            }
        }
        Err(_) => return "unavailable",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database check failed");
            return "unavailable";
        }
    };
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await;
    match applied {
        Ok(Some(version)) if version >= latest => "ok",
        Ok(_) => "migrations pending",
        Err(error) => {
            tracing::warn!(%error, "readiness: database check failed");
            "unavailable"
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "age": 0.42, "database": {"status": "ok"},
    "relay": {"status": "publishing", "published": 42, "lag": {"events": 0, "seconds": 0.0}}}))]
struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(value_type = String, pattern = "^(ready|unavailable)$")]
    status: &'static str,
    /// Seconds since the check of the database and the relay's lag this answer comes from
    /// (made once a second in the background); absent before the first one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    age: Option<f64>,
    database: DatabaseState,
    relay: RelayReport,
}

#[derive(Serialize, ToSchema)]
struct DatabaseState {
    /// `ok`, `busy` (every pooled connection in use; still ready), `stuck` (in use and none
    /// came back for 10 s: not ready), `migrations pending` or `unavailable`.
    #[schema(value_type = String)]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct RelayReport {
    #[serde(flatten)]
    #[schema(inline)]
    state: relay::RelayState,
    /// Events committed but not yet published; absent when it cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<Lag>,
}

#[derive(Serialize, ToSchema)]
struct Lag {
    #[schema(minimum = 0)]
    events: i64,
    /// Age of the oldest of them.
    seconds: f64,
}
