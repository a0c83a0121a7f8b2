//! Connections: accepting them, bounding what a slow or idle one may hold, and closing them on
//! shutdown within a deadline.
//!
//! axum's own `serve` has no header-read timeout, no cap on connections and no drain deadline:
//! a client that sends half its headers, or one that holds an idle keep-alive connection, kept
//! the process alive after SIGTERM. So connections are served here with hyper directly.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::Limits;

/// After shutdown begins, a connection with no request in the service (an idle one, or one
/// that has sent half a request head) is closed after this, not after the drain deadline.
const IDLE_GRACE: Duration = Duration::from_millis(200);

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets requests
/// in flight finish for up to `limits.shutdown_timeout`, and closes whatever remains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    metrics::gauge!("http_connections_limit").set(limits.max_connections as f64);
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's backlog instead of
        // taking memory and file descriptors here.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            app: app.clone(),
            peer,
            header_read_timeout: limits.header_read_timeout,
            closed: closed.clone(),
        };
        connections.spawn(async move {
            let _slot = slot;
            connection.serve(stream).await;
        });
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        open,
        deadline = ?limits.shutdown_timeout,
        "no longer accepting; finishing requests in flight"
    );
    closing.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown deadline passed; closing the connections that remain"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    header_read_timeout: Duration,
    closed: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        // Responses are written whole; Nagle's algorithm would only delay them.
        let _ = stream.set_nodelay(true);
        let _open = Gauge::open();
        let in_service = Arc::new(AtomicUsize::new(0));
        let service = {
            let (app, peer, in_service) = (self.app, self.peer, Arc::clone(&in_service));
            tower::service_fn(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let counted = InService::enter(&in_service);
                // Boxed: hyper keeps the service's future in an allocation of its size for as
                // long as the connection lives, after the response too. The router's future is
                // most of a kilobyte; a live feed holds its connection for hours, so the future
                // goes in a box of its own, freed once the response is made.
                let response = Box::pin(app.clone().oneshot(request));
                async move {
                    let response = response.await;
                    drop(counted);
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // hyper counts this from when it starts waiting for a request head, so it also closes
        // a keep-alive connection idle for as long (docs/operations.md says so).
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = self.closed.wait_for(|closed| *closed) => {}
        }
        // Shutting down: no more requests on this connection. hyper closes it at once when it
        // is idle, and after the response in flight otherwise.
        connection.as_mut().graceful_shutdown();
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = tokio::time::sleep(IDLE_GRACE) => {
                    // hyper waits for a request head it has begun to receive; nothing of it
                    // has reached the service, so nothing is lost by closing it now.
                    if in_service.load(Ordering::Acquire) == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// A request inside the service (from its head being read to its response being made).
struct InService(Arc<AtomicUsize>);

impl InService {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `http_connections_open`, kept while the connection is.
struct Gauge;

impl Gauge {
    fn open() -> Self {
        metrics::gauge!("http_connections_open").increment(1.0);
        Self
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}
