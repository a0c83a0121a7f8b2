//! Inline projections: read models written in the command's own transaction, and rebuilt from
//! the log by replay. Each projection owns one table; the registry below is the one list that
//! the event store, replay and the CLI go through.

pub mod participants;
pub mod room_states;
pub mod rooms;

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::PgConnection;

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

/// A read model kept in one table by applying events to its rows.
pub trait Projection: Send + Sync {
    /// The live table.
    fn table(&self) -> &'static str;
    /// What operators call it (`neuronmeet replay --projection NAME`): its table's name.
    fn name(&self) -> &'static str {
        self.table()
    }
    /// Applies `events`, in log order, to the rows of `table`: the live table inside a
    /// command's transaction, or a rebuild's fresh copy of it (same columns and constraints).
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
        events: &'a [StoredEvent<'a>],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

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

/// Applies `events` to every projection's live table.
pub async fn apply_all(
    conn: &mut PgConnection,
    events: &[StoredEvent<'_>],
) -> Result<(), sqlx::Error> {
    for projection in ALL {
        projection.apply(conn, projection.table(), events).await?;
    }
    Ok(())
}
