//! Inline projections: read models written in the command's own transaction, and rebuilt from
//! the log by replay. Each projection owns one table; the registry below is the one list that
//! the event store, replay and the CLI go through.

pub mod participants;
pub mod room_states;
pub mod rooms;

use std::collections::HashMap;

use aggregates::Room;
use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::PgConnection;

use crate::sql::Statement;

/// An event as stored, as much of it as projections need.
pub struct StoredEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub payload: &'a Value,
}

/// The rooms among `events` whose history does not start there (their first event there is not
/// their first event): a projection reads (and locks) their rows, all at once.
pub fn continued_rooms<'a>(events: impl IntoIterator<Item = &'a StoredEvent<'a>>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    events
        .into_iter()
        .filter(|event| seen.insert(event.aggregate_id) && event.sequence > 1)
        .map(|event| event.aggregate_id)
        .collect()
}

/// Where a projection finds the rows that events continue (those of rooms whose history does
/// not start in them).
pub enum Rows<'a> {
    /// Read, and locked, in the transaction that writes.
    Read(&'a mut PgConnection),
    /// Handed over by the commands that made the events; a row not among them is not known.
    Known(&'a Known),
}

impl Rows<'_> {
    fn reborrow(&mut self) -> Rows<'_> {
        match self {
            Rows::Read(conn) => Rows::Read(conn),
            Rows::Known(known) => Rows::Known(known),
        }
    }
}

/// What the commands of a write know of their rooms: each room's state, and its sequence,
/// before their events (the state they were decided against).
#[derive(Debug, Default)]
pub struct Known {
    pub states: HashMap<String, (i64, Room)>,
}

/// A read model kept in one table by applying events to its rows.
pub trait Projection: Send + Sync {
    /// The live table.
    fn table(&self) -> &'static str;
    /// What operators call it (`neuronmeet replay --projection NAME`): its table's name.
    fn name(&self) -> &'static str {
        self.table()
    }
    /// The statements that apply `events`, in log order, to the rows of `table`: the live
    /// table inside a command's transaction, or a rebuild's fresh copy of it (same columns and
    /// constraints). The rows they continue come from `rows`; `None` when a row they need is not
    /// known (it must be read).
    fn apply<'a>(
        &'a self,
        rows: Rows<'a>,
        table: &'a str,
        events: &'a [StoredEvent<'a>],
    ) -> BoxFuture<'a, Result<Option<Vec<Statement>>, sqlx::Error>>;

    /// What a violation of one of the table's unique constraints means to the command whose
    /// transaction hit it (an error the command handles), or `None` for constraints that mean
    /// nothing beyond a failure.
    fn violation(&self, _constraint: &str) -> Option<crate::BoxError> {
        None
    }
}

/// Every inline projection, in the order a command's transaction applies them.
pub static ALL: &[&dyn Projection] = &[
    &rooms::Rooms,
    &participants::Participants,
    &room_states::RoomStates,
];

pub fn find(name: &str) -> Option<&'static dyn Projection> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// What a unique violation means, by constraint name, for whichever projection owns it.
pub fn violation(constraint: &str) -> Option<crate::BoxError> {
    ALL.iter().find_map(|p| p.violation(constraint))
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|p| p.name()).collect()
}

/// The statements that apply `events` to every projection's live table; `None` when a row
/// they continue is not known.
pub async fn apply_all(
    mut rows: Rows<'_>,
    events: &[StoredEvent<'_>],
) -> Result<Option<Vec<Statement>>, sqlx::Error> {
    let mut statements = Vec::new();
    for projection in ALL {
        match projection
            .apply(rows.reborrow(), projection.table(), events)
            .await?
        {
            Some(more) => statements.extend(more),
            None => return Ok(None),
        }
    }
    Ok(Some(statements))
}
