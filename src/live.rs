//! Live room events for this instance's feeds (`GET /rooms/{id}/live`, the waiting feed).
//!
//! One NATS subscription per instance on `rooms.>` (what the relay publishes, from whichever
//! instance committed it) is fanned out in memory to the feeds of each room. The subscription
//! is the cheap path, not the source of truth: a feed reads the log first, then takes live
//! events in room sequence, and reads the log again whenever it sees a gap (a message lost on
//! the way, a slow feed that fell behind its buffer) or NATS comes back after an outage. Why
//! one subscription per instance and not one per room: the number of rooms with a feed open
//! changes all the time, and every room event reaches each instance anyway at a few hundred
//! bytes; a subscription per room would trade that for subscription churn and a window in which
//! a new feed's first events could be missed (the log read covers it either way).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Event;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::relay;

/// One event of a room, as feeds send it: the room sequence, the type, the data as on NATS.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub sequence: i64,
    pub kind: String,
    /// The JSON of the event's data (serde_json's, as the relay publishes it).
    pub data: String,
    /// The data's `participantId`, for the events that concern one participant.
    pub participant: Option<String>,
}

impl LiveEvent {
    pub fn new(sequence: i64, kind: String, data: &Value) -> Self {
        Self {
            sequence,
            participant: data["participantId"].as_str().map(str::to_owned),
            data: data.to_string(),
            kind,
        }
    }
}

/// Live events of a room, delivered to one feed in memory.
pub type Receiver = broadcast::Receiver<Arc<LiveEvent>>;

/// Events a room's channel holds for a feed that has not taken them yet; a feed further behind
/// is told it lagged and reads the log instead.
const ROOM_BUFFER: usize = 256;

/// A feed sends a comment this often, so that proxies do not close it while it is idle.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Feeds take their keep-alive ticks from this many slots, one slot ticking every
/// `KEEP_ALIVE / KEEP_ALIVE_SLOTS` (250 ms), each slot every `KEEP_ALIVE`.
///
/// Why slots and not a timer per feed: 10,000 idle feeds with a timer each wake the runtime
/// 667 times a second, one comment at a time, and each wake-up (timer wheel, parking and
/// unparking a worker) cost nearly as much as the comment's write. One timer for the instance
/// wakes a slot's feeds together: 4 wake-ups a second. A feed joins the slot that has just
/// ticked, so its first comment comes within `KEEP_ALIVE` of its start, and then one every
/// `KEEP_ALIVE` exactly, busy or not (a comment on a busy feed costs a few bytes; clients
/// ignore it).
const KEEP_ALIVE_SLOTS: usize = 60;

/// The instance's keep-alive ticks (see `KEEP_ALIVE_SLOTS`).
struct KeepAlives {
    slots: Vec<watch::Sender<()>>,
    /// The slot that ticked last.
    current: AtomicUsize,
}

#[derive(Clone)]
pub struct Live {
    rooms: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<LiveEvent>>>>>,
    /// Open feeds by holder (`room:participant`).
    holders: Arc<Mutex<HashMap<String, usize>>>,
    /// Counts NATS (re)connections: a feed that sees it change reads the log, since events
    /// published while this instance was cut off never reach it.
    connected: watch::Sender<u64>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// Feeds one participant (or the host of one room) may hold open at once: a few tabs, not
    /// an instance's worth of connections from one stolen token.
    max_each: usize,
    keep_alives: Arc<KeepAlives>,
}

impl Live {
    /// At most `max_streams` feeds open at once, `max_each` of one holder.
    pub fn new(max_streams: usize, max_each: usize) -> Self {
        metrics::gauge!("live_streams_limit").set(max_streams as f64);
        Self {
            rooms: Arc::default(),
            holders: Arc::default(),
            connected: watch::Sender::new(0),
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            max_each,
            keep_alives: Arc::new(KeepAlives {
                slots: (0..KEEP_ALIVE_SLOTS)
                    .map(|_| watch::Sender::new(()))
                    .collect(),
                current: AtomicUsize::new(0),
            }),
        }
    }

    /// A new feed's keep-alive tick: it changes every `KEEP_ALIVE`, the first time within
    /// `KEEP_ALIVE` of now (while `tick_keep_alives` runs).
    pub fn keep_alive(&self) -> watch::Receiver<()> {
        let keep_alives = &self.keep_alives;
        keep_alives.slots[keep_alives.current.load(Ordering::Acquire)].subscribe()
    }

    /// Ticks the feeds' keep-alives, a slot at a time, until the process ends.
    pub async fn tick_keep_alives(self) {
        let keep_alives = &self.keep_alives;
        let mut ticks = tokio::time::interval(KEEP_ALIVE / KEEP_ALIVE_SLOTS as u32);
        for slot in (0..KEEP_ALIVE_SLOTS).cycle() {
            ticks.tick().await;
            keep_alives.slots[slot].send_replace(());
            keep_alives.current.store(slot, Ordering::Release);
        }
    }

    /// A place for one more feed of `holder`, if the instance and the holder have one.
    pub fn open(&self, holder: String) -> Result<Stream, Refused> {
        {
            let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
            let held = holders.entry(holder.clone()).or_default();
            if *held >= self.max_each {
                return Err(Refused::Holder);
            }
            *held += 1;
        }
        // From here on, dropping it gives the holder's place back.
        let mut stream = Stream {
            permit: None,
            holder,
            live: self.clone(),
        };
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| Refused::Instance)?;
        stream.permit = Some(permit);
        metrics::gauge!("live_streams_open")
            .set((self.max_streams - self.streams.available_permits()) as f64);
        Ok(stream)
    }

    /// The live events of `room_id` from now on.
    pub fn subscribe(&self, room_id: &str) -> Receiver {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = rooms.get(room_id) {
            return sender.subscribe();
        }
        // Forget rooms nobody follows any more, so the map holds only followed rooms.
        rooms.retain(|_, sender| sender.receiver_count() > 0);
        let (sender, receiver) = broadcast::channel(ROOM_BUFFER);
        rooms.insert(room_id.to_owned(), sender);
        receiver
    }

    /// Changes each time NATS connects again.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connected.subscribe()
    }

    /// Hands an event to the feeds of its room, if any.
    pub fn deliver(&self, room_id: &str, event: LiveEvent) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = rooms.get(room_id) {
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Follows `rooms.>` on the NATS servers of `nats_url` until the process ends, reconnecting
    /// as long as it takes.
    pub async fn follow(self, nats_url: String) {
        let servers = match relay::nats_servers(&nats_url) {
            Ok(servers) => servers,
            Err(error) => {
                tracing::error!(%error, "live feeds cannot use NATS_URL; they read the log only");
                return;
            }
        };
        let connected = self.connected.clone();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    // Back after an outage, or messages dropped because this instance read too
                    // slowly: either way, what feeds missed is in the log.
                    if matches!(event, Event::Connected | Event::SlowConsumer(_)) {
                        connected.send_modify(|n| *n += 1);
                    }
                }
            })
            .connect(servers)
            .await;
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "live feeds cannot connect to NATS");
                return;
            }
        };
        let mut messages = match client.subscribe(relay::SUBJECTS).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(%error, "live feeds cannot subscribe to room events");
                return;
            }
        };
        // Whatever was published before this subscription is in the log.
        self.connected.send_modify(|n| *n += 1);
        while let Some(message) = messages.next().await {
            match parse(&message.payload) {
                Some((room_id, event)) => self.deliver(&room_id, event),
                None => tracing::debug!(subject = %message.subject, "not a room event"),
            }
        }
    }
}

/// The room and the event of a published CloudEvents envelope (docs/events.md).
fn parse(payload: &[u8]) -> Option<(String, LiveEvent)> {
    let envelope: Value = serde_json::from_slice(payload).ok()?;
    let room_id = envelope["subject"].as_str()?.to_owned();
    let sequence = match &envelope["sequence"] {
        Value::String(text) => text.parse().ok()?,
        other => other.as_i64()?,
    };
    let kind = envelope["type"].as_str()?.to_owned();
    Some((room_id, LiveEvent::new(sequence, kind, &envelope["data"])))
}

/// Why a feed was not opened.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The instance has `LIVE_MAX_STREAMS` feeds open.
    Instance,
    /// This holder has `LIVE_MAX_STREAMS_EACH` open.
    Holder,
}

/// A feed's place; it is given back when the feed ends.
pub struct Stream {
    permit: Option<OwnedSemaphorePermit>,
    holder: String,
    live: Live,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut holders = self.live.holders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = holders.get_mut(&self.holder) {
            *held -= 1;
            if *held == 0 {
                holders.remove(&self.holder);
            }
        }
        if self.permit.is_some() {
            // The permit goes back after this: one more than available now.
            let live = &self.live;
            let open = live.max_streams - live.streams.available_permits() - 1;
            metrics::gauge!("live_streams_open").set(open as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_gets_a_few_feeds_and_the_instance_its_limit() {
        let live = Live::new(7, 5);
        let mine: Vec<_> = (0..5).map(|_| live.open("r:p1".into()).unwrap()).collect();
        assert_eq!(live.open("r:p1".into()).err(), Some(Refused::Holder));
        let theirs = live.open("r:p2".into()).unwrap();
        let more = live.open("r:p3".into()).unwrap();
        assert_eq!(live.open("r:p4".into()).err(), Some(Refused::Instance));
        drop((theirs, more));
        drop(mine);
        let again = live.open("r:p1".into());
        assert!(again.is_ok());
        assert_eq!(
            live.holders.lock().unwrap().len(),
            1,
            "the others' places are given back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_gets_a_keep_alive_tick_within_the_interval_then_every_interval() {
        let live = Live::new(1, 1);
        tokio::spawn(live.clone().tick_keep_alives());
        // Other slots have ticked since the instance started.
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        let mut tick = live.keep_alive();
        let opened = tokio::time::Instant::now();
        tick.changed().await.unwrap();
        let first = opened.elapsed();
        assert!(
            first <= KEEP_ALIVE && first >= KEEP_ALIVE - KEEP_ALIVE / KEEP_ALIVE_SLOTS as u32,
            "first tick after {first:?}"
        );
        for _ in 0..3 {
            let at = tokio::time::Instant::now();
            tick.changed().await.unwrap();
            assert_eq!(at.elapsed(), KEEP_ALIVE);
        }
    }

    #[test]
    fn reads_both_sequence_forms_of_the_envelope() {
        for sequence in [r#""0000000000000000007""#, "7"] {
            let payload = format!(
                r#"{{"subject": "r1", "type": "ParticipantLeft", "sequence": {sequence},
                    "data": {{"participantId": "p1", "roomId": "r1"}}}}"#
            );
            let (room, event) = parse(payload.as_bytes()).unwrap();
            assert_eq!(room, "r1");
            assert_eq!(event.sequence, 7);
            assert_eq!(event.participant.as_deref(), Some("p1"));
            assert_eq!(event.data, r#"{"participantId":"p1","roomId":"r1"}"#);
        }
        assert!(parse(b"not json").is_none());
    }
}
