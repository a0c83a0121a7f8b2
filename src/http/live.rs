//! Live feeds over Server-Sent Events: a room's events as they happen (`GET /rooms/{id}/live`),
//! and a waiting participant's outcome (`GET /rooms/{id}/participants/{pid}/live`).
//!
//! A feed reads the log, then follows the room's live events (`crate::live`), by room sequence:
//! an event it has sent already is skipped, and a gap sends it back to the log, so that a
//! client resuming with `Last-Event-ID` gets every event after it exactly once. It holds no
//! database connection while it waits; its task ends when the client leaves.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::{Room, Status};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::participants::{caller_participant, Joined};
use super::problem::Problem;
use super::query::{Params, RawParams};
use super::rooms::find_room;
use super::{ApiError, AppState, Credential, WithPass};
use crate::event_log;
use crate::live::{self, LiveEvent};
use crate::read_models::{participants, rooms};

/// Events a feed keeps for a client that reads slower than they come; beyond, the feed ends.
const FEED_BUFFER: usize = 1000;
/// Events read from the log at a time.
const LOG_PAGE: i64 = 500;

pub fn router() -> OpenApiRouter<super::AppState> {
    OpenApiRouter::new()
        .routes(routes!(room_feed))
        .routes(routes!(waiting_feed))
}

// Documentation only: what each Server-Sent Event of a feed carries.
/// One event of a room's feed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct RoomFeedEvent {
    /// The event's room sequence (what `Last-Event-ID` resumes after).
    id: String,
    /// The event type: `RoomCreated`, `SettingsConfigured`, `SettingsUpdated`, `RoomLocked`,
    /// `RoomUnlocked`, `RoomEnded`, `ParticipantJoined`, `ParticipantWaiting`,
    /// `ParticipantAdmitted`, `ParticipantDenied`, `ParticipantLeft`, `ParticipantBlocked`.
    event: String,
    /// The event's data as JSON, exactly as in the CloudEvents `data` on NATS.
    data: String,
}

/// The one event of a waiting feed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OutcomeEvent {
    /// `admitted`, `denied` or `ended`.
    event: String,
    /// JSON: `{participant, joinToken, expiresAt}` when admitted, else `{participantId}`.
    data: String,
}

/// Who watches a room's feed: the host sees everything; a participant not the waiting room's
/// events, and their feed ends when they leave.
enum Viewer {
    Host,
    Participant(String),
}

impl Viewer {
    /// Who holds the feed, for the per-holder limit.
    fn holder(&self, room_id: &str) -> String {
        match self {
            Self::Host => format!("{room_id}:host"),
            Self::Participant(me) => format!("{room_id}:{me}"),
        }
    }

    /// The Server-Sent Event of `event` for this viewer, if they see it: the host gets the data
    /// as on NATS; a participant without anyone's user id or guests' origins (participant lists
    /// carry none either).
    fn event(&self, event: &LiveEvent) -> Option<Event> {
        if !self.sees(event) {
            return None;
        }
        let sse = Event::default()
            .id(event.sequence.to_string())
            .event(&event.kind);
        Some(match self {
            Self::Host => sse.data(&event.data),
            Self::Participant(_) => {
                let mut data: serde_json::Value = serde_json::from_str(&event.data).ok()?;
                if let Some(fields) = data.as_object_mut() {
                    fields.remove("userId");
                    fields.remove("origin");
                }
                sse.data(data.to_string())
            }
        })
    }

    fn sees(&self, event: &LiveEvent) -> bool {
        match self {
            Self::Host => true,
            Self::Participant(_) => !matches!(
                event.kind.as_str(),
                "ParticipantWaiting" | "ParticipantDenied" | "ParticipantBlocked"
            ),
        }
    }

    /// The last event this viewer's feed sends.
    fn ends_with(&self, event: &LiveEvent) -> bool {
        event.kind == "RoomEnded"
            || matches!(self, Self::Participant(me)
                if event.kind == "ParticipantLeft" && event.participant.as_ref() == Some(me))
    }
}

/// A room's events, live
///
/// `text/event-stream` for the host (user token, or the host's join token) and joined
/// participants (user or join token): each event of the room in room order, `id:` its room
/// sequence, `event:` its type, `data:` its data exactly as on NATS (docs/events.md). With
/// `Last-Event-ID` (or `?after=`) the events after it come first, from the log, then the live
/// ones, with no gap and no duplicate; without either, the feed starts with the next event
/// (`?after=0`: the whole history first). Participants do not see the waiting room's events
/// (`ParticipantWaiting`, `ParticipantDenied`, `ParticipantBlocked`). The feed ends after
/// `RoomEnded`, and for a participant after their own `ParticipantLeft`. A comment every 15 s
/// keeps it open through proxies; a client that reads slower than 1,000 events behind is cut
/// off with a comment saying to reconnect with `Last-Event-ID`. Watch one with `curl -N`.
#[utoipa::path(
    get,
    path = "/rooms/{id}/live",
    tag = "participants",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Room id"),
        ("after" = Option<i64>, Query, minimum = 0, description = "Start after this room sequence (0: the whole history)."),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[1-9][0-9]{0,17}$", description = "The `id` of the last event received: resume after it. Wins over `after`."),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: the room's events (see the AsyncAPI document, asyncapi.yaml, for each type's data).", content_type = "text/event-stream", body = RoomFeedEvent),
        (status = 400, description = "`Last-Event-ID` or `after` is not a room sequence.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Neither the host nor a joined participant (a waiting pass, or another room's join token).", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        crate::http::problem::Unavailable,
    )
)]
async fn room_feed(
    State(state): State<AppState>,
    credential: Credential,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let mut params = Params::new(query)?;
    let after = params.text("after");
    // An id this service sent: a room sequence, 1 to 18 digits (as the document's pattern).
    let resume = headers.get("last-event-id").map(|value| {
        value
            .to_str()
            .ok()
            .filter(|text| {
                (1..=18).contains(&text.len())
                    && !text.starts_with('0')
                    && text.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|text| text.parse::<i64>().ok())
    });
    let after = match (resume, after) {
        (Some(Some(sequence)), _) => Some(sequence),
        (Some(None), _) => {
            params.invalid(
                "Last-Event-ID",
                "must be an event's id: a positive integer of at most 18 digits",
            );
            None
        }
        (None, Some(text)) => match text.parse::<i64>() {
            Ok(sequence) if sequence >= 0 => Some(sequence),
            _ => {
                params.invalid("after", format!("must be an integer from 0 (got {text:?})"));
                None
            }
        },
        (None, None) => None,
    };
    params.finish()?;
    let room = find_room(&state, &id).await?;
    let viewer = match &credential {
        Credential::User(claims) if claims.sub == room.host_id => Viewer::Host,
        Credential::Participant(join) if join.room != id => {
            return Err(ApiError::Forbidden(
                "this join token is for another room".into(),
            ))
        }
        credential => match caller_participant(&state, credential, &id).await? {
            Some(me) if me.status != Status::Joined => return Err(not_in_room()),
            Some(me) if me.user_id.as_deref() == Some(room.host_id.as_str()) => Viewer::Host,
            Some(me) => Viewer::Participant(me.id),
            None => return Err(not_in_room()),
        },
    };
    let last = last_sequence(&state, &id).await?;
    let after = after.unwrap_or(last);
    if !room.is_active && after >= last {
        // Nothing will come: a client resuming after RoomEnded is told to stop (an EventSource
        // does not reconnect after a 204).
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let slot = state.live.open(viewer.holder(&id)).map_err(refused)?;
    // Following the room before reading the log: nothing can fall between the two.
    let events = state.live.subscribe(&id);
    let feed = Feed::start(state.live.keep_alive());
    let (sender, overflowed) = (feed.sender.clone(), Arc::clone(&feed.overflowed));
    let (pool, connections) = (state.pool.clone(), state.live.connections());
    tokio::spawn(async move {
        let _slot = slot;
        follow_room(
            pool,
            id,
            after,
            viewer,
            events,
            connections,
            sender,
            overflowed,
        )
        .await;
    });
    Ok(feed.response())
}

fn not_in_room() -> ApiError {
    ApiError::Forbidden("only the host and the room's joined participants follow its feed".into())
}

fn refused(refused: live::Refused) -> ApiError {
    match refused {
        live::Refused::Instance => {
            metrics::counter!("http_requests_shed_total", "reason" => "live_streams").increment(1);
            ApiError::Overloaded(
                "this instance has as many live feeds open as LIVE_MAX_STREAMS allows".into(),
            )
        }
        live::Refused::Holder => ApiError::RateLimited {
            detail: "this participant has as many feeds open as LIVE_MAX_STREAMS_EACH allows: close one first",
            retry_after: 5,
        },
    }
}

async fn last_sequence(state: &AppState, room_id: &str) -> Result<i64, ApiError> {
    Ok(event_log::last_sequence(&state.pool, Room::TYPE, room_id).await?)
}

#[allow(clippy::too_many_arguments)]
async fn follow_room(
    pool: sqlx::PgPool,
    room_id: String,
    mut last: i64,
    viewer: Viewer,
    mut events: live::Receiver,
    mut connections: tokio::sync::watch::Receiver<u64>,
    sender: mpsc::Sender<Box<Event>>,
    overflowed: Arc<AtomicBool>,
) {
    connections.borrow_and_update();
    loop {
        // From the log: everything after the last event sent. Boxed, and freed once read: a
        // feed's task is mostly idle, and should not carry a query's and a send's state inline
        // while it waits (thousands of feeds per instance).
        let from_log = Box::pin(send_from_log(&pool, &room_id, &mut last, &viewer, &sender));
        if !from_log.await {
            return;
        }
        // Live, until a gap or a reconnection sends it back to the log.
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) if event.sequence <= last => continue,
                    Ok(event) if event.sequence == last + 1 => {
                        last = event.sequence;
                        if !send(&sender, &overflowed, &viewer, &event) || viewer.ends_with(&event) {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = connections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Every feed of the instance reads the log now: spread them over a second.
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
                    break;
                }
                _ = sender.closed() => return,
            }
        }
    }
}

/// Sends the events of the log after `last` (updating it) at the client's pace: a long history
/// is not a slow reader. False when the feed is over (the client left, the log cannot be read,
/// or the viewer's last event was sent).
async fn send_from_log(
    pool: &sqlx::PgPool,
    room_id: &str,
    last: &mut i64,
    viewer: &Viewer,
    sender: &mpsc::Sender<Box<Event>>,
) -> bool {
    loop {
        let page = match event_log::history(pool, Room::TYPE, room_id, *last, LOG_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, room_id, "a live feed cannot read the log; ending it");
                let _ = sender.try_send(Box::new(Event::default().comment(
                    "the service cannot read the room's events now: reconnect with Last-Event-ID",
                )));
                return false;
            }
        };
        let full = page.len() as i64 == LOG_PAGE;
        for logged in page {
            let data = event_log::data(&logged.event_type, &logged.payload);
            let event = LiveEvent::new(logged.sequence, logged.event_type.clone(), data);
            *last = event.sequence;
            if let Some(sse) = viewer.event(&event) {
                if sender.send(Box::new(sse)).await.is_err() {
                    return false;
                }
            }
            if viewer.ends_with(&event) {
                return false;
            }
        }
        if !full {
            return true;
        }
    }
}

/// Sends a live `event` if the viewer sees it; false when the feed is over (the client left,
/// or fell too far behind).
fn send(
    sender: &mpsc::Sender<Box<Event>>,
    overflowed: &AtomicBool,
    viewer: &Viewer,
    event: &LiveEvent,
) -> bool {
    let Some(sse) = viewer.event(event) else {
        return true;
    };
    match sender.try_send(Box::new(sse)) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!("live_streams_dropped_total", "reason" => "slow_reader").increment(1);
            overflowed.store(true, Ordering::Release);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// A waiting participant's outcome, live
///
/// With the participant's waiting pass: one event when the host decides, then the feed ends.
/// `admitted` with `{"participant", "joinToken", "expiresAt"}`, `denied`, or `ended` (the room
/// ended). Connecting after the outcome answers it at once. This is how a waiting page learns
/// it was let in without polling.
#[utoipa::path(
    get,
    path = "/rooms/{id}/participants/{pid}/live",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ("pid" = String, Path, description = "Participant id")),
    responses(
        (status = 200, description = "Server-Sent Events: one of `admitted` (data `{participant, joinToken, expiresAt}`), `denied` or `ended` (data `{\"participantId\"}`), then the end.", content_type = "text/event-stream", body = OutcomeEvent),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Not this participant's waiting pass.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        crate::http::problem::Unavailable,
    )
)]
async fn waiting_feed(
    State(state): State<AppState>,
    credential: WithPass,
    Path((id, pid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match &credential {
        WithPass::Pass(pass) if pass.room == id && pass.sub == pid => {}
        _ => {
            return Err(ApiError::Forbidden(
                "the waiting feed is for the participant's own waiting pass".into(),
            ))
        }
    }
    find_room(&state, &id).await?;
    let slot = state.live.open(format!("{id}:{pid}")).map_err(refused)?;
    let events = state.live.subscribe(&id);
    let feed = Feed::start(state.live.keep_alive());
    let sender = feed.sender.clone();
    let connections = state.live.connections();
    tokio::spawn(async move {
        let _slot = slot;
        wait_for_outcome(state, id, pid, events, connections, sender).await;
    });
    Ok(feed.response())
}

async fn wait_for_outcome(
    state: AppState,
    room_id: String,
    pid: String,
    mut events: live::Receiver,
    mut connections: tokio::sync::watch::Receiver<u64>,
    sender: mpsc::Sender<Box<Event>>,
) {
    loop {
        connections.borrow_and_update();
        match Box::pin(outcome(&state, &room_id, &pid)).await {
            Ok(Some(event)) => {
                let _ = sender.try_send(Box::new(event));
                return;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %error, room_id, "a waiting feed cannot read the room; ending it");
                let _ = sender.try_send(Box::new(
                    Event::default().comment("the service cannot read the room now: reconnect"),
                ));
                return;
            }
        }
        // Until something that may decide it: an event about this participant, the room's
        // end, a gap, or NATS connecting again.
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) if event.participant.as_deref() == Some(pid.as_str())
                        || event.kind == "RoomEnded" => break,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = connections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = sender.closed() => return,
            }
        }
    }
}

/// The participant's outcome, if the host (or the room's end) decided it.
async fn outcome(state: &AppState, room_id: &str, pid: &str) -> Result<Option<Event>, ApiError> {
    match participants::find(&state.pool, room_id, pid).await? {
        Some(participant) if participant.status == Status::Waiting => Ok(None),
        Some(participant) => {
            let admitted = Joined::of(state, participant)?;
            Ok(Some(
                Event::default()
                    .event("admitted")
                    .json_data(admitted)
                    .map_err(|e| ApiError::Internal(Box::new(e)))?,
            ))
        }
        None => {
            // Gone from the waiting room: denied, or turned away by the room's end (which
            // denies everyone waiting in the same transaction that ends it).
            let ended = rooms::find_by_id(&state.pool, room_id)
                .await?
                .is_none_or(|room| !room.is_active);
            let kind = if ended { "ended" } else { "denied" };
            Ok(Some(
                Event::default()
                    .event(kind)
                    .data(json!({"participantId": pid}).to_string()),
            ))
        }
    }
}

/// The client's side of a feed: the events its task sends, a comment at each keep-alive tick,
/// then, if it fell too far behind, a comment saying how to resume.
///
/// The events are boxed in the channel: tokio allocates a channel's first block of 32 slots
/// when it is made, and a box is 8 bytes where an `Event` is 48; a feed that sits idle for
/// hours holds that block the whole time.
struct Feed {
    sender: mpsc::Sender<Box<Event>>,
    receiver: mpsc::Receiver<Box<Event>>,
    overflowed: Arc<AtomicBool>,
    keep_alive: watch::Receiver<()>,
}

impl Feed {
    /// A feed that sends a keep-alive comment each time `keep_alive` changes (`Live::keep_alive`).
    fn start(keep_alive: watch::Receiver<()>) -> Self {
        let (sender, receiver) = mpsc::channel(FEED_BUFFER);
        Self {
            sender,
            receiver,
            overflowed: Arc::default(),
            keep_alive,
        }
    }

    fn response(self) -> Response {
        let Self {
            receiver,
            overflowed,
            keep_alive,
            ..
        } = self;
        Sse::new(events(receiver, overflowed, keep_alive)).into_response()
    }
}

/// What a feed's response holds between two of its events.
struct Pending {
    receiver: mpsc::Receiver<Box<Event>>,
    overflowed: Arc<AtomicBool>,
    keep_alive: watch::Receiver<()>,
}

fn events(
    receiver: mpsc::Receiver<Box<Event>>,
    overflowed: Arc<AtomicBool>,
    keep_alive: watch::Receiver<()>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let pending = Pending {
        receiver,
        overflowed,
        keep_alive,
    };
    futures_util::stream::unfold(Some(pending), |pending| async move {
        let mut pending = pending?;
        let received = tokio::select! {
            // Events first: a keep-alive tick on a busy feed can wait for the next poll.
            biased;
            received = pending.receiver.recv() => received,
            // The instance's keep-alive timer (a tick per `live::KEEP_ALIVE`; without one,
            // in tests, no comments).
            Ok(()) = pending.keep_alive.changed() => {
                return Some((Ok(Event::DEFAULT_KEEP_ALIVE), Some(pending)));
            }
        };
        match received {
            Some(event) => Some((Ok(*event), Some(pending))),
            None if pending.overflowed.load(Ordering::Acquire) => Some((
                Ok(Event::default().comment(
                    "this feed fell too far behind and ends here: reconnect with Last-Event-ID to resume",
                )),
                None,
            )),
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, participant: &str) -> LiveEvent {
        LiveEvent::new(1, kind.into(), &json!({"participantId": participant}))
    }

    #[tokio::test]
    async fn a_reader_too_far_behind_is_cut_off_with_a_comment_saying_how_to_resume() {
        let (_ticks, keep_alive) = watch::channel(());
        let feed = Feed::start(keep_alive);
        let locked = event("RoomLocked", "p1");
        let mut sent = 0;
        while send(&feed.sender, &feed.overflowed, &Viewer::Host, &locked) {
            sent += 1;
        }
        assert_eq!(sent, FEED_BUFFER);
        let body = axum::body::to_bytes(feed.response().into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(text.matches("event: RoomLocked").count(), FEED_BUFFER);
        assert!(
            text.trim_end()
                .ends_with("reconnect with Last-Event-ID to resume"),
            "{}",
            &text[text.len() - 200..]
        );
    }

    #[tokio::test]
    async fn a_keep_alive_tick_sends_a_comment_between_events() {
        use http_body_util::BodyExt;
        let (ticks, keep_alive) = watch::channel(());
        let feed = Feed::start(keep_alive);
        let sender = feed.sender.clone();
        let mut body = feed.response().into_body();
        let mut next = async || {
            let frame = body.frame().await?.unwrap();
            Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
        };
        ticks.send_replace(());
        assert_eq!(next().await.as_deref(), Some(":\n\n"));
        sender
            .try_send(Box::new(Event::default().event("RoomLocked").data("{}")))
            .unwrap();
        assert_eq!(
            next().await.as_deref(),
            Some("event: RoomLocked\ndata: {}\n\n")
        );
        ticks.send_replace(());
        assert_eq!(next().await.as_deref(), Some(":\n\n"));
        drop(sender);
        assert_eq!(next().await, None, "the feed ends with its task");
    }

    #[test]
    fn participants_see_no_knock_and_their_feed_ends_when_they_leave() {
        let me = Viewer::Participant("p1".into());
        assert!(!me.sees(&event("ParticipantWaiting", "p2")));
        assert!(!me.sees(&event("ParticipantDenied", "p2")));
        assert!(me.sees(&event("ParticipantJoined", "p2")));
        assert!(Viewer::Host.sees(&event("ParticipantWaiting", "p2")));
        assert!(me.ends_with(&event("ParticipantLeft", "p1")));
        assert!(!me.ends_with(&event("ParticipantLeft", "p2")));
        assert!(!Viewer::Host.ends_with(&event("ParticipantLeft", "p1")));
        assert!(Viewer::Host.ends_with(&event("RoomEnded", "")));
    }
}
