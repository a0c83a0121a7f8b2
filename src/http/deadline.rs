//! `REQUEST_TIMEOUT`: each request's deadline, shared with the command it runs
//! (`crate::deadline`), so that a timeout is answered only when nothing can be written.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::ApiError;
use crate::deadline::{Deadline, CURRENT};

pub async fn limit(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let deadline = Deadline::new(Instant::now() + timeout);
    let response = CURRENT.scope(deadline.clone(), next.run(request));
    tokio::pin!(response);
    tokio::select! {
        response = &mut response => response,
        _ = tokio::time::sleep_until(deadline.at()) => {
            if deadline.expire() {
                metrics::counter!("http_requests_shed_total", "reason" => "timeout").increment(1);
                ApiError::TimedOut.into_response()
            } else {
                // Its command is being written: the answer is the outcome.
                response.await
            }
        }
    }
}
