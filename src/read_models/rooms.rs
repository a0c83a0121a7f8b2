//! The `rooms` table: how a [`RoomView`] is stored, changed by events and read back.

use std::collections::HashMap;

use aggregates::{Room, RoomCode, RoomEvent, RoomSettings};
use cqrs_es::Aggregate;
use projections::{RoomSettingsView, RoomView};
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};

use super::{Projection, Rows, StoredEvent};
use crate::sql::Statement;

/// The live table.
const TABLE: &str = "rooms";
/// Room codes are unique: a violation of this constraint means "code taken, draw another".
const CODE_KEY: &str = "rooms_code_key";

/// The code a command drew is already used by another room: draw another.
#[derive(Debug, thiserror::Error)]
#[error("room code already taken")]
pub struct CodeTaken;

/// The room view, one row per room.
pub struct Rooms;

impl Projection for Rooms {
    fn table(&self) -> &'static str {
        TABLE
    }

    fn apply<'a>(
        &'a self,
        rows: Rows<'a>,
        table: &'a str,
        events: &'a [StoredEvent<'a>],
    ) -> futures_util::future::BoxFuture<'a, Result<Option<Vec<Statement>>, sqlx::Error>> {
        Box::pin(project(rows, table, events))
    }

    fn violation(&self, constraint: &str) -> Option<crate::BoxError> {
        (constraint == CODE_KEY).then(|| Box::new(CodeTaken) as crate::BoxError)
    }
}

const COLUMNS: &str = "id, code, name, host_id, host_display_name, host_avatar_url, is_active, \
    is_locked, started_at, created_at, updated_at, ended_at, settings_id, allow_chat, \
    allow_screen_share, allow_guest_access, waiting_room, mute_participants_on_join, \
    max_participants, version";

pub async fn find_by_id<'e>(
    db: impl PgExecutor<'e>,
    id: &str,
) -> Result<Option<RoomView>, sqlx::Error> {
    select_one(db, TABLE, "id = $1", id).await
}

pub async fn find_by_code<'e>(
    db: impl PgExecutor<'e>,
    code: &str,
) -> Result<Option<RoomView>, sqlx::Error> {
    select_one(db, TABLE, "code = $1", code).await
}

/// Which of a host's rooms to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Ended,
    All,
}

/// Where a page of a host's rooms ends: the last room's `(created_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub id: String,
}

/// Up to `limit` rooms hosted by `host_id`, newest first, after `after`. Keyset paging: rooms
/// created meanwhile sort before the page a client is on, so it never sees one twice or skips
/// one that existed when it began.
pub async fn hosted_by<'e>(
    db: impl PgExecutor<'e>,
    host_id: &str,
    status: Status,
    after: Option<&After>,
    limit: i64,
) -> Result<Vec<RoomView>, sqlx::Error> {
    let status = match status {
        Status::Active => "AND is_active",
        Status::Ended => "AND NOT is_active",
        Status::All => "",
    };
    // Two statements, not `$3 IS NULL OR ...`: a generic plan could not use the cursor as an
    // index bound.
    let after_cursor = if after.is_some() {
        "AND (created_at, id) < ($3, $4)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM {TABLE} \
          WHERE host_id = $1 {status} {after_cursor} \
          ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let mut query = sqlx::query_as::<_, Stored>(&sql).bind(host_id).bind(limit);
    if let Some(after) = after {
        query = query.bind(after.created_at).bind(after.id.as_str());
    }
    query
        .fetch_all(db)
        .await
        .map(|rows| rows.into_iter().map(|Stored(view)| view).collect())
}

/// The current rows of `ids` in `table`, locked until the transaction ends (in id order, as
/// every batch locks them), for applying further events.
async fn find_for_update(
    conn: &mut PgConnection,
    table: &str,
    ids: &[&str],
) -> Result<HashMap<String, RoomView>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query_as::<_, Stored>(&format!(
        "SELECT {COLUMNS} FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
    .map(|rows| {
        rows.into_iter()
            .map(|Stored(view)| (view.id.clone(), view))
            .collect()
    })
}

async fn select_one<'e>(
    db: impl PgExecutor<'e>,
    table: &str,
    filter: &str,
    value: &str,
) -> Result<Option<RoomView>, sqlx::Error> {
    sqlx::query_as::<_, Stored>(&format!("SELECT {COLUMNS} FROM {table} WHERE {filter}"))
        .bind(value)
        .fetch_optional(db)
        .await
        .map(|row| row.map(|Stored(view)| view))
}

/// Applies events, in log order, to the room views in `table` (`rooms`, or a replay's fresh
/// table): each room touched is read at most once (locked, unless its history starts in
/// these events) and written once, all rows in one statement. Other aggregates are ignored.
/// Commands do not hand over views: a room whose view changes and whose history started
/// before these events is read.
async fn project(
    rows: Rows<'_>,
    table: &str,
    events: &[StoredEvent<'_>],
) -> Result<Option<Vec<Statement>>, sqlx::Error> {
    let mut concerning = Vec::new();
    for event in events {
        if event.aggregate_type != Room::TYPE {
            continue;
        }
        let decoded =
            RoomEvent::deserialize(event.payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        if RoomView::concerns(&decoded) {
            concerning.push((event, decoded));
        }
    }
    let existing = super::continued_rooms(concerning.iter().map(|(event, _)| *event));
    let mut stored = match rows {
        Rows::Read(conn) => find_for_update(conn, table, &existing).await?,
        Rows::Known(_) if existing.is_empty() => HashMap::new(),
        Rows::Known(_) => return Ok(None),
    };
    let mut views: HashMap<&str, RoomView> = HashMap::new();
    for (event, decoded) in concerning {
        let current = match views.remove(event.aggregate_id) {
            Some(view) => Some(view),
            None => stored.remove(event.aggregate_id),
        };
        let view = RoomView::apply(current, event.sequence, &decoded)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        views.insert(event.aggregate_id, view);
    }
    if views.is_empty() {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(vec![upsert(
        table,
        &views.into_values().collect::<Vec<_>>(),
    )]))
}

/// Inserts or replaces the rows of `views` in `table` (`rooms`, or a replay's fresh table), in
/// one statement whatever their number.
fn upsert(table: &str, views: &[RoomView]) -> Statement {
    Statement::new(format!(
        "INSERT INTO {table} ({COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::bool[], $8::bool[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], \
           $12::timestamptz[], $13::text[], $14::bool[], $15::bool[], $16::bool[], $17::bool[], \
           $18::bool[], $19::int4[], $20::int8[]) \
         ON CONFLICT (id) DO UPDATE SET \
           code = EXCLUDED.code, name = EXCLUDED.name, host_id = EXCLUDED.host_id, \
           host_display_name = EXCLUDED.host_display_name, host_avatar_url = EXCLUDED.host_avatar_url, \
           is_active = EXCLUDED.is_active, is_locked = EXCLUDED.is_locked, \
           started_at = EXCLUDED.started_at, created_at = EXCLUDED.created_at, \
           updated_at = EXCLUDED.updated_at, ended_at = EXCLUDED.ended_at, \
           settings_id = EXCLUDED.settings_id, allow_chat = EXCLUDED.allow_chat, \
           allow_screen_share = EXCLUDED.allow_screen_share, \
           allow_guest_access = EXCLUDED.allow_guest_access, waiting_room = EXCLUDED.waiting_room, \
           mute_participants_on_join = EXCLUDED.mute_participants_on_join, \
           max_participants = EXCLUDED.max_participants, version = EXCLUDED.version"
    ))
    .arg(column(views, |v| v.id.clone()))
    .arg(column(views, |v| v.code.to_string()))
    .arg(column(views, |v| v.name.clone()))
    .arg(column(views, |v| v.host_id.clone()))
    .arg(column(views, |v| v.host_display_name.clone()))
    .arg(column(views, |v| v.host_avatar_url.clone()))
    .arg(column(views, |v| v.is_active))
    .arg(column(views, |v| v.is_locked))
    .arg(column(views, |v| v.started_at))
    .arg(column(views, |v| v.created_at))
    .arg(column(views, |v| v.updated_at))
    .arg(column(views, |v| v.ended_at))
    .arg(setting(views, |s| s.id.clone()))
    .arg(setting(views, |s| s.values.allow_chat))
    .arg(setting(views, |s| s.values.allow_screen_share))
    .arg(setting(views, |s| s.values.allow_guest_access))
    .arg(setting(views, |s| s.values.waiting_room))
    .arg(setting(views, |s| s.values.mute_participants_on_join))
    .arg(setting(views, |s| s.values.max_participants as i32))
    .arg(column(views, |v| v.version))
}

/// One array per column, for UNNEST.
fn column<T>(views: &[RoomView], value: impl Fn(&RoomView) -> T) -> Vec<T> {
    views.iter().map(value).collect()
}

fn setting<T>(views: &[RoomView], value: impl Fn(&RoomSettingsView) -> T) -> Vec<Option<T>> {
    views
        .iter()
        .map(|v| v.settings.as_ref().map(&value))
        .collect()
}

struct Stored(RoomView);

impl FromRow<'_, PgRow> for Stored {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let code: String = row.try_get("code")?;
        let code = RoomCode::parse(&code).map_err(|e| sqlx::Error::ColumnDecode {
            index: "code".into(),
            source: Box::new(e),
        })?;
        let settings = match row.try_get::<Option<String>, _>("settings_id")? {
            None => None,
            Some(id) => Some(RoomSettingsView {
                id,
                values: RoomSettings {
                    allow_chat: row.try_get("allow_chat")?,
                    allow_screen_share: row.try_get("allow_screen_share")?,
                    allow_guest_access: row.try_get("allow_guest_access")?,
                    waiting_room: row.try_get("waiting_room")?,
                    mute_participants_on_join: row.try_get("mute_participants_on_join")?,
                    max_participants: i64::from(row.try_get::<i32, _>("max_participants")?),
                },
            }),
        };
        Ok(Self(RoomView {
            id: row.try_get("id")?,
            code,
            name: row.try_get("name")?,
            host_id: row.try_get("host_id")?,
            host_display_name: row.try_get("host_display_name")?,
            host_avatar_url: row.try_get("host_avatar_url")?,
            is_active: row.try_get("is_active")?,
            is_locked: row.try_get("is_locked")?,
            started_at: row.try_get("started_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            ended_at: row.try_get("ended_at")?,
            settings,
            version: row.try_get("version")?,
        }))
    }
}
