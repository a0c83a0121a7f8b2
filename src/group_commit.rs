//! Group commit: commands that arrive while a write is in flight are written together, in one
//! transaction (one multi-row INSERT of their events, one upsert per read-model table), the
//! way EventStoreDB's writer flushes whatever queued during its previous flush. Nothing waits
//! for a timer: a command arriving at an idle writer is written at once, alone.
//!
//! Each command keeps its own outcome. A batch refused for something that may concern one of
//! its commands only (a unique or other integrity constraint: a room code taken, another
//! instance appending to a room first; or a deadlock or serialization failure) rolls back
//! whole, and its commands are then written one by one, so that only the command concerned
//! fails. Any other error (the database going away, a timeout) is every command's answer:
//! none is retried behind its caller's back (its COMMIT may or may not have happened, as for a
//! single command). A command that waited longer than a connection may be waited for is
//! answered as a pool timeout would be, unwritten, so that a stall cannot pile up work that
//! clients have long given up on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::deadline::{self, Deadline, Expired};
use crate::read_models::Known;
use crate::BoxError;

/// Writers, each with its own transaction in flight: while one commits, the next batch fills.
const WRITERS: usize = 2;
/// The most commands in one transaction, and the most events: a command may be a room's batch
/// of up to 128 commands (`room_batches`), so the events bound the statements' size.
const MAX_BATCH: usize = 128;
const MAX_EVENTS: usize = 1_000;
/// The longest a command waits for a writer: as long as for a pooled connection.
const MAX_WAIT: Duration = crate::db::ACQUIRE_TIMEOUT;

/// Writes a batch of commands' events (and their read models) in one transaction.
pub trait Write: Send + Sync + 'static {
    /// `known`: the states of the rooms the events continue, as their commands know them.
    fn write(
        &self,
        events: &[&SerializedEvent],
        known: &Known,
    ) -> impl std::future::Future<Output = Result<(), PersistenceError>> + Send;

    /// Whether a batch refused with `error` is written again command by command (the error
    /// may concern one of them only), or the error is every command's answer.
    fn worth_splitting(&self, error: &PersistenceError) -> bool;

    /// The answer to a command that waited longer than [`MAX_WAIT`] for a writer.
    fn waited_too_long(&self) -> PersistenceError;
}

struct Pending {
    events: Vec<SerializedEvent>,
    known: Known,
    queued: Instant,
    /// The deadlines of the command's requests (one, or a room batch's): a writer takes the
    /// command only before every one of them.
    deadlines: Vec<Deadline>,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

impl Pending {
    /// Whether a writer may write the command now; if not, it is answered unwritten.
    fn claim<W: Write>(self, writer: &W) -> Option<Self> {
        let refusal = if self.queued.elapsed() > MAX_WAIT {
            writer.waited_too_long()
        } else {
            match deadline::begin_writes(&self.deadlines) {
                Ok(()) => return Some(self),
                Err(expired) => PersistenceError::UnknownError(Box::new(expired)),
            }
        };
        let _ = self.done.send(Err(refusal));
        None
    }

    /// Tells the command its outcome; its write is over before it hears of it, so that a
    /// command rolled back may be decided and written again, and one written (or perhaps
    /// written: a lost connection) is never answered as expired.
    fn answer(self, outcome: Result<(), PersistenceError>) {
        deadline::end_writes(&self.deadlines, rolled_back(&outcome));
        let _ = self.done.send(outcome);
    }

    /// After its batch rolled back, whether the command may still be written alone: not if
    /// a request's deadline passed meanwhile (then it is answered unwritten).
    fn still_claimed(self) -> Option<Self> {
        deadline::end_writes(&self.deadlines, true);
        match deadline::begin_writes(&self.deadlines) {
            Ok(()) => Some(self),
            Err(expired) => {
                let _ = self
                    .done
                    .send(Err(PersistenceError::UnknownError(Box::new(expired))));
                None
            }
        }
    }
}

/// Whether a write's outcome says it did not happen: refused, rolled back. A connection error
/// may have come after COMMIT reached the server.
pub fn rolled_back(outcome: &Result<(), PersistenceError>) -> bool {
    matches!(outcome, Err(error) if !matches!(error, PersistenceError::ConnectionError(_)))
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

    /// Writes one command's events, with whichever commands queue up beside them; `known` and
    /// `deadlines` as [`crate::event_store::EventRepository::append`] takes them.
    pub async fn write(
        &self,
        events: Vec<SerializedEvent>,
        known: Known,
        deadlines: Vec<Deadline>,
    ) -> Result<(), PersistenceError> {
        if deadlines.iter().any(Deadline::passed) {
            return Err(PersistenceError::UnknownError(Box::new(Expired)));
        }
        let (done, outcome) = oneshot::channel();
        metrics::gauge!("event_store_waiting_commands").increment(1.0);
        let queued = Instant::now();
        if let Err(unsent) = self.queue.send(Pending {
            events,
            known,
            queued,
            deadlines,
            done,
        }) {
            drop(unsent);
            metrics::gauge!("event_store_waiting_commands").decrement(1.0);
            return Err(stopped());
        }
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
            let mut events = first.events.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && events < MAX_EVENTS {
                match arrivals.try_recv() {
                    Ok(next) => {
                        events += next.events.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            metrics::gauge!("event_store_waiting_commands").decrement(batch.len() as f64);
            batch
        };
        // A bug that panics fails its batch (its commands are told the writers stopped), never
        // the writer: the next batch is written as usual.
        let written = std::panic::AssertUnwindSafe(write_batch(writer.as_ref(), batch))
            .catch_unwind()
            .await;
        if written.is_err() {
            metrics::counter!("event_store_batches_panicked_total").increment(1);
            tracing::error!("writing a batch of commands panicked; its commands failed");
        }
    }
}

async fn write_batch<W: Write>(writer: &W, batch: Vec<Pending>) {
    let mut batch: Vec<Pending> = batch
        .into_iter()
        .filter_map(|pending| pending.claim(writer))
        .collect();
    if batch.is_empty() {
        return;
    }
    metrics::histogram!("event_store_batch_commands").record(batch.len() as f64);
    if batch.len() == 1 {
        let pending = batch.pop().expect("one command");
        let written = writer
            .write(&pending.events.iter().collect::<Vec<_>>(), &pending.known)
            .await;
        pending.answer(written);
        return;
    }
    // Rooms in one order in every batch: two batches inserting events of the same rooms take
    // the index's locks in the same order, and cannot deadlock on them. (Each room's events
    // stay in sequence order; the relay publishes in commit and position order.)
    // Moved, not copied: a command written alone after a split reads its rows instead.
    let mut known = Known::default();
    for pending in &mut batch {
        known
            .states
            .extend(std::mem::take(&mut pending.known.states));
    }
    let mut events: Vec<&SerializedEvent> = batch.iter().flat_map(|p| &p.events).collect();
    events.sort_by(|a, b| {
        (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
            &b.aggregate_type,
            &b.aggregate_id,
            b.sequence,
        ))
    });
    let written = writer.write(&events, &known).await;
    drop(events);
    match written {
        Ok(()) => {
            for pending in batch {
                pending.answer(Ok(()));
            }
        }
        Err(error) if writer.worth_splitting(&error) => {
            // Rolled back whole: each command alone now gets the outcome that is its own.
            metrics::counter!("event_store_batches_split_total").increment(1);
            for pending in batch.into_iter().filter_map(Pending::still_claimed) {
                let written = writer
                    .write(&pending.events.iter().collect::<Vec<_>>(), &pending.known)
                    .await;
                pending.answer(written);
            }
        }
        Err(error) => {
            let connection = matches!(error, PersistenceError::ConnectionError(_));
            let copy = SharedError::copies(match error {
                PersistenceError::ConnectionError(e) | PersistenceError::UnknownError(e) => e,
                other => Box::new(other),
            });
            for pending in batch {
                pending.answer(Err(match connection {
                    true => PersistenceError::ConnectionError(copy()),
                    false => PersistenceError::UnknownError(copy()),
                }));
            }
        }
    }
}

/// One error, told to every command of the batch it failed.
#[derive(Debug)]
pub struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl SharedError {
    /// Makes one copy of `error` for each command it is told to, all sharing it.
    pub fn copies(error: BoxError) -> impl Fn() -> BoxError {
        let error: Arc<dyn std::error::Error + Send + Sync> = Arc::from(error);
        move || Box::new(SharedError(Arc::clone(&error)))
    }
}

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
