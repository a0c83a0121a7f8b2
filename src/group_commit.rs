//! Group commit: commands that arrive while a write is in flight are written together, in one
//! transaction (one multi-row INSERT of their events, one upsert per read-model table), the
//! way EventStoreDB's writer flushes whatever queued during its previous flush. Nothing waits
//! for a timer: a command arriving at an idle writer is written at once, alone.
//!
//! Each command keeps its own outcome. A batch that a constraint refuses (a room code taken,
//! another instance appending to a room first) rolls back whole, and its commands are then
//! written one by one, so that only the command the constraint concerns fails. A batch cut by
//! the database going away is answered with that error for every command in it: none of them
//! is retried behind the caller's back (its COMMIT may or may not have happened, as for a
//! single command).

use std::sync::Arc;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Writers, each with its own transaction in flight: while one commits, the next batch fills.
const WRITERS: usize = 2;
/// The most commands in one transaction (a few hundred events, well under a statement's limits).
const MAX_BATCH: usize = 128;

/// Writes a batch of commands' events (and their read models) in one transaction.
pub trait Write: Send + Sync + 'static {
    fn write(
        &self,
        events: Vec<SerializedEvent>,
    ) -> impl std::future::Future<Output = Result<(), PersistenceError>> + Send;
}

struct Pending {
    events: Vec<SerializedEvent>,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the writers (on the current tokio runtime); they stop when this is dropped.
    pub fn start(writer: impl Write) -> Self {
        let (queue, arrivals) = mpsc::unbounded_channel();
        let arrivals = Arc::new(Mutex::new(arrivals));
        let writer = Arc::new(writer);
        for _ in 0..WRITERS {
            tokio::spawn(run(Arc::clone(&writer), Arc::clone(&arrivals)));
        }
        Self { queue }
    }

    /// Writes one command's events, with whichever commands queue up beside them.
    pub async fn write(&self, events: Vec<SerializedEvent>) -> Result<(), PersistenceError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { events, done })
            .map_err(|_| stopped())?;
        metrics::gauge!("event_store_waiting_commands").increment(1.0);
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> PersistenceError {
    PersistenceError::UnknownError("the event store's writers stopped".into())
}

async fn run<W: Write>(writer: Arc<W>, arrivals: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    loop {
        let batch = {
            let mut arrivals = arrivals.lock().await;
            let Some(first) = arrivals.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match arrivals.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            metrics::gauge!("event_store_waiting_commands").decrement(batch.len() as f64);
            batch
        };
        write_batch(writer.as_ref(), batch).await;
    }
}

async fn write_batch<W: Write>(writer: &W, mut batch: Vec<Pending>) {
    metrics::histogram!("event_store_batch_commands").record(batch.len() as f64);
    if batch.len() == 1 {
        let Pending { events, done } = batch.pop().expect("one command");
        let _ = done.send(writer.write(events).await);
        return;
    }
    let events = batch
        .iter()
        .flat_map(|p| p.events.iter().cloned())
        .collect();
    match writer.write(events).await {
        Ok(()) => {
            for pending in batch {
                let _ = pending.done.send(Ok(()));
            }
        }
        Err(PersistenceError::ConnectionError(error)) => {
            let error: Arc<dyn std::error::Error + Send + Sync> = Arc::from(error);
            for pending in batch {
                let shared = SharedError(Arc::clone(&error));
                let _ = pending
                    .done
                    .send(Err(PersistenceError::ConnectionError(Box::new(shared))));
            }
        }
        Err(_) => {
            // Rolled back whole: each command alone now gets the outcome that is its own.
            metrics::counter!("event_store_batches_split_total").increment(1);
            for Pending { events, done } in batch {
                let _ = done.send(writer.write(events).await);
            }
        }
    }
}

/// One connection error, told to every command of the batch it cut.
#[derive(Debug)]
struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the batch this command was written in failed")
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}
