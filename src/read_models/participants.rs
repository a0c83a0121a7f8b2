//! The `participants` table: who is in each room, joined or waiting.

use std::collections::HashMap;

use aggregates::{Role, Room, RoomEvent, Status};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::ParticipantView;
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, Row};

use super::{Projection, Rows, StoredEvent};
use crate::sql::Statement;

const TABLE: &str = "participants";
const COLUMNS: &str =
    "id, room_id, user_id, display_name, avatar_url, role, status, muted, joined_at";

pub struct Participants;

impl Projection for Participants {
    fn table(&self) -> &'static str {
        TABLE
    }

    /// Participants' rows follow from the events alone: nothing is read.
    fn apply<'a>(
        &'a self,
        _rows: Rows<'a>,
        table: &'a str,
        events: &'a [StoredEvent<'a>],
    ) -> futures_util::future::BoxFuture<'a, Result<Option<Vec<Statement>>, sqlx::Error>> {
        Box::pin(async move { project(table, events).map(Some) })
    }
}

/// The room's participants with `status`, in the order they joined (or arrived).
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    room_id: &str,
    status: Status,
) -> Result<Vec<ParticipantView>, sqlx::Error> {
    sqlx::query_as::<_, Stored>(&format!(
        "SELECT {COLUMNS} FROM {TABLE} WHERE room_id = $1 AND status = $2 ORDER BY joined_at, id"
    ))
    .bind(room_id)
    .bind(status_text(status))
    .fetch_all(db)
    .await
    .map(|rows| rows.into_iter().map(|Stored(p)| p).collect())
}

/// The participant `id` of the room, if they are in it.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    room_id: &str,
    id: &str,
) -> Result<Option<ParticipantView>, sqlx::Error> {
    select_one(db, "room_id = $1 AND id = $2", room_id, id).await
}

/// The participant that user `user_id` is in the room, if any.
pub async fn find_user<'e>(
    db: impl PgExecutor<'e>,
    room_id: &str,
    user_id: &str,
) -> Result<Option<ParticipantView>, sqlx::Error> {
    select_one(db, "room_id = $1 AND user_id = $2", room_id, user_id).await
}

async fn select_one<'e>(
    db: impl PgExecutor<'e>,
    filter: &str,
    room_id: &str,
    value: &str,
) -> Result<Option<ParticipantView>, sqlx::Error> {
    sqlx::query_as::<_, Stored>(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE {filter}"))
        .bind(room_id)
        .bind(value)
        .fetch_optional(db)
        .await
        .map(|row| row.map(|Stored(p)| p))
}

/// What a batch of events leaves of a participant.
enum Change {
    Upsert(ParticipantView),
    /// Admitted at this time; their row was written by an earlier batch.
    Admit(DateTime<Utc>),
    Delete,
}

/// Applies events in log order: the final change of each participant touched, then at most
/// three statements (deletes, upserts, admissions) for the whole batch.
fn project(table: &str, events: &[StoredEvent<'_>]) -> Result<Vec<Statement>, sqlx::Error> {
    let mut changes: HashMap<String, Change> = HashMap::new();
    for event in events {
        if event.aggregate_type != Room::TYPE {
            continue;
        }
        let decoded =
            RoomEvent::deserialize(event.payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let (id, change) = match decoded {
            RoomEvent::ParticipantJoined(entered) => (
                entered.participant_id.clone(),
                Change::Upsert(ParticipantView::entered(&entered, Status::Joined)),
            ),
            RoomEvent::ParticipantWaiting(entered) => (
                entered.participant_id.clone(),
                Change::Upsert(ParticipantView::entered(&entered, Status::Waiting)),
            ),
            RoomEvent::ParticipantAdmitted(admitted) => {
                let change = match changes.remove(&admitted.participant_id) {
                    Some(Change::Upsert(view)) => Change::Upsert(view.admitted(admitted.at)),
                    _ => Change::Admit(admitted.at),
                };
                (admitted.participant_id, change)
            }
            RoomEvent::ParticipantDenied(decided) => (decided.participant_id, Change::Delete),
            RoomEvent::ParticipantLeft(left) => (left.participant_id, Change::Delete),
            _ => continue,
        };
        changes.insert(id, change);
    }
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    let (mut admitted, mut admitted_at) = (Vec::new(), Vec::new());
    for (id, change) in changes {
        match change {
            Change::Delete => deletes.push(id),
            Change::Upsert(view) => upserts.push(view),
            Change::Admit(at) => {
                admitted.push(id);
                admitted_at.push(at);
            }
        }
    }
    let mut statements = Vec::new();
    if !deletes.is_empty() {
        statements.push(
            Statement::new(format!("DELETE FROM {table} WHERE id = ANY($1::text[])")).arg(deletes),
        );
    }
    if !admitted.is_empty() {
        statements.push(
            Statement::new(format!(
                "UPDATE {table} p SET status = 'joined', joined_at = a.at \
                   FROM UNNEST($1::text[], $2::timestamptz[]) AS a(id, at) WHERE p.id = a.id"
            ))
            .arg(admitted)
            .arg(admitted_at),
        );
    }
    if !upserts.is_empty() {
        let column = |f: fn(&ParticipantView) -> Option<String>| -> Vec<Option<String>> {
            upserts.iter().map(f).collect()
        };
        statements.push(
            Statement::new(format!(
                "INSERT INTO {table} ({COLUMNS}) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                      $6::text[], $7::text[], $8::bool[], $9::timestamptz[]) \
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, joined_at = EXCLUDED.joined_at"
            ))
            .arg(column(|p| Some(p.id.clone())))
            .arg(column(|p| Some(p.room_id.clone())))
            .arg(column(|p| p.user_id.clone()))
            .arg(column(|p| Some(p.display_name.clone())))
            .arg(column(|p| p.avatar_url.clone()))
            .arg(column(|p| Some(role_text(p.role).to_owned())))
            .arg(column(|p| Some(status_text(p.status).to_owned())))
            .arg(upserts.iter().map(|p| p.muted).collect::<Vec<_>>())
            .arg(upserts.iter().map(|p| p.joined_at).collect::<Vec<_>>()),
        );
    }
    Ok(statements)
}

pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Member => "member",
        Role::Guest => "guest",
    }
}

pub fn status_text(status: Status) -> &'static str {
    match status {
        Status::Joined => "joined",
        Status::Waiting => "waiting",
    }
}

struct Stored(ParticipantView);

impl FromRow<'_, PgRow> for Stored {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let decode = |column: &str, text: String| sqlx::Error::ColumnDecode {
            index: column.into(),
            source: format!("unknown value {text:?}").into(),
        };
        let role = match row.try_get::<String, _>("role")? {
            text if text == "host" => Role::Host,
            text if text == "member" => Role::Member,
            text if text == "guest" => Role::Guest,
            other => return Err(decode("role", other)),
        };
        let status = match row.try_get::<String, _>("status")? {
            text if text == "joined" => Status::Joined,
            text if text == "waiting" => Status::Waiting,
            other => return Err(decode("status", other)),
        };
        Ok(Self(ParticipantView {
            id: row.try_get("id")?,
            room_id: row.try_get("room_id")?,
            user_id: row.try_get("user_id")?,
            display_name: row.try_get("display_name")?,
            avatar_url: row.try_get("avatar_url")?,
            role,
            status,
            muted: row.try_get("muted")?,
            joined_at: row.try_get("joined_at")?,
        }))
    }
}
