//! A request's deadline, as its command sees it: a command is not started, queued or retried
//! past it, and once it is being written its outcome is the answer, whenever that comes.
//!
//! The request and its command decide together who wins at the deadline. The request marks it
//! expired, and then answers 503 at once: nothing can be written any more. Or the command is
//! being written, and then the request waits for that write's outcome. So a 503 for a timeout
//! always means "not written", and a client that retries elsewhere cannot end up twice in a
//! room.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const EXPIRED: u8 = 2;
/// Written, or perhaps written (a COMMIT whose answer was lost): the outcome is the answer.
const DONE: u8 = 3;

#[derive(Debug, Clone)]
pub struct Deadline {
    at: Instant,
    state: Arc<AtomicU8>,
}

tokio::task_local! {
    /// The deadline of the request whose command runs in this task: it reaches the event
    /// store's writers through cqrs-es, which carries only events and metadata.
    pub static CURRENT: Deadline;
}

/// The command was not written: its deadline passed first.
#[derive(Debug, thiserror::Error)]
#[error("the request's deadline passed before its command was written")]
pub struct Expired;

impl Deadline {
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            state: Arc::new(AtomicU8::new(OPEN)),
        }
    }

    /// The deadline of the request running in this task, if it has one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    /// The command may start writing: nothing can expire it until [`Self::end_write`].
    pub fn begin_write(&self) -> Result<(), Expired> {
        if Instant::now() >= self.at {
            self.expire();
        }
        self.state
            .compare_exchange(OPEN, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|_| Expired)
    }

    /// The write is over. Known not written (rolled back): the command may be decided and
    /// written again, or expire. Written, or perhaps written: for good, nothing expires it, and
    /// the request waits for its answer.
    pub fn end_write(&self, unwritten: bool) {
        let next = if unwritten { OPEN } else { DONE };
        let _ = self
            .state
            .compare_exchange(WRITING, next, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the deadline passed unless a write is under way; true when nothing can be
    /// written any more.
    pub fn expire(&self) -> bool {
        match self
            .state
            .compare_exchange(OPEN, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == EXPIRED,
        }
    }

    /// Whether the deadline has passed (a command checks before each attempt).
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// Claims every one of `deadlines` for a write, or none: past one of them, those claimed
/// already are released, and the write must not happen.
pub fn begin_writes(deadlines: &[Deadline]) -> Result<(), Expired> {
    for (claimed, deadline) in deadlines.iter().enumerate() {
        if let Err(expired) = deadline.begin_write() {
            end_writes(&deadlines[..claimed], true);
            return Err(expired);
        }
    }
    Ok(())
}

/// Ends the write of each of `deadlines` (see [`Deadline::end_write`]).
pub fn end_writes(deadlines: &[Deadline], unwritten: bool) {
    for deadline in deadlines {
        deadline.end_write(unwritten);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_write_under_way_holds_off_expiry_and_one_after_it_is_refused() {
        let deadline = Deadline::new(Instant::now() + Duration::from_secs(60));
        deadline.begin_write().unwrap();
        assert!(
            !deadline.expire(),
            "a write is under way: its outcome is the answer"
        );
        deadline.end_write(true);
        assert!(deadline.expire());
        assert!(deadline.begin_write().is_err());
    }

    #[test]
    fn a_write_that_happened_is_never_expired_after() {
        let deadline = Deadline::new(Instant::now() + Duration::from_secs(60));
        deadline.begin_write().unwrap();
        deadline.end_write(false);
        assert!(
            !deadline.expire(),
            "written: the request waits for the outcome"
        );
    }

    #[test]
    fn a_write_of_several_claims_all_or_none() {
        let later = Instant::now() + Duration::from_secs(60);
        let open = [Deadline::new(later), Deadline::new(later)];
        let past = Deadline::new(Instant::now());
        let mixed = [open[0].clone(), past, open[1].clone()];
        assert!(begin_writes(&mixed).is_err());
        assert!(
            open.iter().all(Deadline::expire),
            "released, and expirable again"
        );
        let fresh = [Deadline::new(later), Deadline::new(later)];
        begin_writes(&fresh).unwrap();
        end_writes(&fresh, false);
        assert!(
            !fresh.iter().any(Deadline::expire),
            "written: never expired"
        );
    }

    #[test]
    fn nothing_starts_writing_once_the_deadline_is_past() {
        let deadline = Deadline::new(Instant::now());
        assert!(deadline.begin_write().is_err());
        assert!(deadline.expire());
    }
}
