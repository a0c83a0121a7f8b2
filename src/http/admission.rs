//! Admission control: how many requests may run at once, adapted to the latency they see.
//!
//! Queueing more work than the database and the CPU can finish only makes every request slow,
//! until clients time out and all work is wasted. So requests beyond a limit are refused at once,
//! before their token is checked or their body read, with a 503 and `Retry-After`, costing
//! almost nothing. The limit moves against a latency target, in the manner of TCP Vegas and
//! Netflix's concurrency-limits: each 100 ms window whose mean latency exceeds the target cuts
//! it in proportion (target / mean, between a half and nine tenths; a half when the database
//! pool ran out), and a window within the target in which the limit turned requests away
//! raises it by a twentieth. It starts at `MAX_CONCURRENT_REQUESTS` (a burst on an idle service
//! is served, not refused), never goes above it, and never below four requests per pool
//! connection (clients crowding one room queue behind each other without overloading anything,
//! and must not be refused for it).
//!
//! A request that waited the pool's whole acquire timeout while every connection was in use is
//! answered as "busy", not as a database outage: the database is fine, this instance is full.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use super::problem::{NoLatencySample, PoolTimedOut};

const WINDOW: Duration = Duration::from_millis(100);

/// Routes that operators need most when the service is overloaded are never refused.
const ALWAYS_ADMITTED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub struct Admission {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    /// Some request was turned away in the current window.
    refused: AtomicBool,
    window: Mutex<Window>,
    bounds: Bounds,
}

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
    /// Mean latency a window may have before the limit comes down.
    pub target: Duration,
}

struct Window {
    started: Instant,
    requests: u32,
    total: Duration,
    pool_ran_out: bool,
}

/// A request admitted; dropping it frees its place. Only requests answered count as latency
/// samples: one cancelled (its client left) or timed out says how long a client or a deadline
/// waited, not how loaded the service is (slow clients pulled the limit to its floor).
struct Admitted<'a> {
    admission: &'a Admission,
    started: Instant,
}

impl Admitted<'_> {
    fn finish(self, pool_ran_out: bool) {
        self.admission.record(self.started.elapsed(), pool_ran_out);
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(bounds: Bounds) -> Self {
        let bounds = Bounds {
            min: bounds.min.clamp(1, bounds.max.max(1)),
            ..bounds
        };
        let start = bounds.max;
        metrics::gauge!("http_concurrency_limit").set(start as f64);
        Self {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(start),
            refused: AtomicBool::new(false),
            window: Mutex::new(Window {
                started: Instant::now(),
                requests: 0,
                total: Duration::ZERO,
                pool_ran_out: false,
            }),
            bounds,
        }
    }

    fn try_admit(&self) -> Option<Admitted<'_>> {
        let limit = self.limit.load(Ordering::Acquire);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.refused.store(true, Ordering::Relaxed);
            return None;
        }
        Some(Admitted {
            admission: self,
            started: Instant::now(),
        })
    }

    fn record(&self, latency: Duration, pool_ran_out: bool) {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.requests += 1;
        window.total += latency;
        window.pool_ran_out |= pool_ran_out;
        if window.started.elapsed() < WINDOW {
            return;
        }
        let mean = window.total / window.requests;
        let pressure = if window.pool_ran_out {
            2.0
        } else {
            mean.as_secs_f64() / self.bounds.target.as_secs_f64()
        };
        let limited = self.refused.swap(false, Ordering::Relaxed);
        let limit = next_limit(
            self.limit.load(Ordering::Acquire),
            pressure,
            limited,
            self.bounds,
        );
        self.limit.store(limit, Ordering::Release);
        metrics::gauge!("http_concurrency_limit").set(limit as f64);
        *window = Window {
            started: Instant::now(),
            requests: 0,
            total: Duration::ZERO,
            pool_ran_out: false,
        };
    }
}

/// `pressure` is the window's mean latency over the target: above 1, the limit comes down in
/// proportion (by a tenth to a half); otherwise it goes up by a twentieth (at least one) if it
/// was what turned requests away. Always within the bounds.
fn next_limit(limit: usize, pressure: f64, limited: bool, bounds: Bounds) -> usize {
    let next = if pressure > 1.0 {
        (limit as f64 * (1.0 / pressure).clamp(0.5, 0.9)) as usize
    } else if limited {
        limit + (limit / 20).max(1)
    } else {
        limit
    };
    next.clamp(bounds.min, bounds.max)
}

/// The middleware: refuse at once beyond the limit; measure what was admitted.
pub async fn admit(
    State((admission, pool)): State<(Arc<Admission>, PgPool)>,
    request: Request,
    next: Next,
) -> Response {
    if ALWAYS_ADMITTED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Some(admitted) = admission.try_admit() else {
        metrics::counter!("http_requests_shed_total", "reason" => "overload").increment(1);
        return refused(OVERLOADED);
    };
    let response = next.run(request).await;
    let pool_timed_out = response.extensions().get::<PoolTimedOut>().is_some();
    let busy = pool_timed_out && crate::db::saturated(&pool).await;
    if response.extensions().get::<NoLatencySample>().is_none() {
        admitted.finish(busy);
    }
    if busy {
        metrics::counter!("http_requests_shed_total", "reason" => "pool_busy").increment(1);
        return refused(BUSY);
    }
    response
}

const OVERLOADED: &str = r#"{"type":"https://neuronmeet.com/problems/overloaded","title":"Service overloaded","status":503,"detail":"the service is at its concurrency limit; retry after the delay in Retry-After"}"#;
const BUSY: &str = r#"{"type":"https://neuronmeet.com/problems/overloaded","title":"Service overloaded","status":503,"detail":"every database connection of this instance stayed in use; retry after the delay in Retry-After"}"#;

/// A 503 built from constants: refusing must cost far less than serving.
fn refused(body: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            ),
            (header::RETRY_AFTER, HeaderValue::from_static("1")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        min: 10,
        max: 512,
        target: Duration::from_millis(50),
    };

    #[test]
    fn overload_brings_the_limit_down_in_proportion_to_the_pool_size_and_no_further() {
        assert_eq!(next_limit(512, 12.0, true, BOUNDS), 256); // at most halved
        assert_eq!(next_limit(100, 1.25, true, BOUNDS), 80);
        assert_eq!(next_limit(100, 1.01, false, BOUNDS), 90); // at least a tenth
        let mut limit = 512;
        for _ in 0..100 {
            limit = next_limit(limit, 2.0, true, BOUNDS);
        }
        assert_eq!(limit, 10);
    }

    #[test]
    fn the_limit_grows_only_while_it_turns_requests_away_within_the_target() {
        assert_eq!(next_limit(40, 0.5, false, BOUNDS), 40);
        assert_eq!(next_limit(40, 0.5, true, BOUNDS), 42);
        assert_eq!(next_limit(10, 1.0, true, BOUNDS), 11);
        assert_eq!(next_limit(512, 0.1, true, BOUNDS), 512);
    }

    #[test]
    fn bounds_that_cross_keep_at_least_one_request() {
        let admission = Admission::new(Bounds {
            min: 10,
            max: 2,
            target: Duration::from_millis(50),
        });
        assert_eq!(admission.limit.load(Ordering::Relaxed), 2);
        let first = admission.try_admit();
        let second = admission.try_admit();
        assert!(first.is_some() && second.is_some());
        assert!(admission.try_admit().is_none());
        drop(first);
        assert!(admission.try_admit().is_some());
    }
}
