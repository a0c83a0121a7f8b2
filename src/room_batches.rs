//! Per-room batches: the commands on one room that queue while its batch is being decided and
//! written are the room's next batch. A room has at most one batch in flight in an instance, so
//! its commands never conflict with each other there; a crowd joining one room costs one
//! transaction per batch, not one per join.

use std::collections::HashMap;
use std::sync::Mutex;

use aggregates::{RoomCommand, RoomEvent};
use tokio::sync::oneshot;

use crate::commands::CommandError;
use crate::deadline::Deadline;

/// The most commands of one room decided and appended together (as many as a group commit
/// takes at once).
pub const MAX_BATCH: usize = 128;

/// A command waiting for its room's next batch.
pub struct Queued {
    pub command: RoomCommand,
    pub metadata: HashMap<String, String>,
    /// The deadline of the command's request: the command is written only before it.
    pub deadline: Option<Deadline>,
    pub done: oneshot::Sender<Result<Vec<RoomEvent>, CommandError>>,
}

impl Queued {
    pub fn answer(self, outcome: Result<Vec<RoomEvent>, CommandError>) {
        let _ = self.done.send(outcome);
    }
}

/// The rooms with a batch in flight in this instance, each with the commands queued behind it.
#[derive(Default)]
pub struct RoomQueues(Mutex<HashMap<String, Vec<Queued>>>);

impl RoomQueues {
    /// Queues `queued` behind the room's batch in flight; when the room has none, gives it
    /// back: the caller starts the room's batches with it (and calls [`Self::next`] until it
    /// returns none).
    pub fn push(&self, room_id: &str, queued: Queued) -> Option<Queued> {
        let mut rooms = self.0.lock().expect("room queues lock");
        match rooms.get_mut(room_id) {
            Some(waiting) => {
                waiting.push(queued);
                metrics::gauge!("room_commands_queued").increment(1.0);
                None
            }
            None => {
                rooms.insert(room_id.to_owned(), Vec::new());
                Some(queued)
            }
        }
    }

    /// The room's next batch: up to `most` of the commands queued, oldest first. Empty when
    /// none is queued: the room then has no batch in flight any more.
    pub fn next(&self, room_id: &str, most: usize) -> Vec<Queued> {
        let mut rooms = self.0.lock().expect("room queues lock");
        let Some(waiting) = rooms.get_mut(room_id) else {
            return Vec::new();
        };
        if waiting.is_empty() {
            rooms.remove(room_id);
            return Vec::new();
        }
        take(waiting, most)
    }

    /// Up to `most` commands queued since the batch in flight was taken, to be decided with it
    /// (after a conflict, when the batch is decided again anyway).
    pub fn more(&self, room_id: &str, most: usize) -> Vec<Queued> {
        let mut rooms = self.0.lock().expect("room queues lock");
        match rooms.get_mut(room_id) {
            Some(waiting) => take(waiting, most),
            None => Vec::new(),
        }
    }
}

/// The oldest `most` of `waiting`.
fn take(waiting: &mut Vec<Queued>, most: usize) -> Vec<Queued> {
    let rest = waiting.split_off(most.min(waiting.len()));
    let taken = std::mem::replace(waiting, rest);
    metrics::gauge!("room_commands_queued").decrement(taken.len() as f64);
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::{EndRoom, RoomCommand};

    fn queued(
        by: &str,
    ) -> (
        Queued,
        oneshot::Receiver<Result<Vec<RoomEvent>, CommandError>>,
    ) {
        let (done, answer) = oneshot::channel();
        let command = RoomCommand::EndRoom(EndRoom {
            by: by.to_owned(),
            at: crate::commands::now(),
        });
        let queued = Queued {
            command,
            metadata: HashMap::new(),
            deadline: None,
            done,
        };
        (queued, answer)
    }

    fn by(batch: &[Queued]) -> Vec<&str> {
        batch.iter().map(|q| q.command.user_id()).collect()
    }

    #[test]
    fn the_first_command_starts_the_room_and_the_rest_queue_in_order() {
        let queues = RoomQueues::default();
        assert!(queues.push("r", queued("a").0).is_some(), "an idle room");
        for user in ["b", "c", "d"] {
            assert!(queues.push("r", queued(user).0).is_none(), "behind a batch");
        }
        assert!(
            queues.push("other", queued("x").0).is_some(),
            "rooms are apart"
        );
        assert_eq!(by(&queues.next("r", 2)), ["b", "c"]);
        assert_eq!(by(&queues.more("r", 5)), ["d"]);
        assert!(
            queues.next("r", 2).is_empty(),
            "nothing left: the room is idle"
        );
        assert!(
            queues.push("r", queued("e").0).is_some(),
            "and starts again"
        );
    }
}
