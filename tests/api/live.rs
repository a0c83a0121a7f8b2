//! Live feeds (Server-Sent Events): every event once, in room order, across instances, through
//! a NATS outage, resumed with Last-Event-ID; and a waiting page told its outcome.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{NatsServer, Options, TestApp};

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An open feed: its events as they come.
struct Feed {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
}

impl Feed {
    async fn open(app: &TestApp, path: &str, token: &str, last_event_id: Option<&str>) -> Feed {
        let mut request = app.client.get(app.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Feed {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or None when the feed ends; panics after 10 s.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim().to_owned());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim().to_owned());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        event.data.push_str(value.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("no event within 10 s");
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Sse> {
        let mut events = Vec::new();
        while events.len() < n {
            events.push(self.next().await.expect("the feed ended early"));
        }
        events
    }
}

/// An instance with a relay; one user may hold many feeds (the tests open dozens as the host).
async fn spawn_with_nats(nats: &NatsServer, database: Option<(String, String)>) -> TestApp {
    TestApp::spawn_with(Options {
        relay: Some(nats.relay_config()),
        database,
        limits: neuronmeet::http::Limits {
            live_max_streams_each: 100,
            ..Default::default()
        },
        ..Options::default()
    })
    .await
}

async fn new_room(app: &TestApp, body: Value) -> (String, String) {
    let room: Value = app.create_room(body).await.json().await.unwrap();
    (
        room["id"].as_str().unwrap().to_owned(),
        room["code"].as_str().unwrap().to_owned(),
    )
}

/// A guest named `name` knocks on the waiting room of `code`: (participant id, waiting pass).
async fn knock(app: &TestApp, code: &str, name: &str) -> (String, String) {
    let knocked: Value = app
        .client
        .post(app.url(&format!("/rooms/code/{code}/join")))
        .json(&json!({"displayName": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        knocked["participant"]["id"].as_str().unwrap().to_owned(),
        knocked["waitingPass"].as_str().unwrap().to_owned(),
    )
}

async fn toggle_chat(app: &TestApp, id: &str, n: usize) {
    for i in 0..n {
        let response = app
            .call(
                Method::PATCH,
                &format!("/rooms/{id}/settings"),
                "user-1",
                Some(json!({"allowChat": i % 2 == 1})),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
}

/// The room's events as GET /rooms/{id}/events has them: (sequence, type, data).
async fn history(app: &TestApp, id: &str) -> Vec<(String, String, String)> {
    let page: Value = app
        .call(
            Method::GET,
            &format!("/rooms/{id}/events?limit=500"),
            "user-1",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sequence"].to_string(),
                e["type"].as_str().unwrap().to_owned(),
                e["data"].to_string(),
            )
        })
        .collect()
}

fn triples(events: &[Sse]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            (
                e.id.clone().unwrap(),
                e.event.clone().unwrap(),
                data.to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_room_feed_sends_every_event_once_and_resumes_without_gap_or_repeat() {
    let nats = NatsServer::start().await;
    let app = spawn_with_nats(&nats, None).await;
    let (id, _) = new_room(&app, json!({})).await;
    let token = app.token("user-1");
    let path = format!("/rooms/{id}/live?after=0");
    let mut feed = Feed::open(&app, &path, &token, None).await;
    // The history first (RoomCreated, SettingsConfigured), then a burst of commits.
    toggle_chat(&app, &id, 30).await;
    let seen = feed.take(32).await;
    assert_eq!(triples(&seen), history(&app, &id).await);
    // Resume from the middle while more is committed: the rest, once each.
    drop(feed);
    let burst = {
        let app_id = id.clone();
        let app = Arc::new(app);
        let writer = Arc::clone(&app);
        let burst = tokio::spawn(async move { toggle_chat(&writer, &app_id, 20).await });
        let mut resumed = Feed::open(&app, &format!("/rooms/{id}/live"), &token, Some("16")).await;
        let rest = resumed.take(36).await;
        burst.await.unwrap();
        let all = history(&app, &id).await;
        assert_eq!(triples(&rest), all[16..].to_vec());
        rest
    };
    assert_eq!(burst.first().unwrap().id.as_deref(), Some("17"));
}

#[tokio::test]
async fn admission_reaches_a_waiting_feed_held_on_the_other_instance() {
    let nats = NatsServer::start().await;
    let a = spawn_with_nats(&nats, None).await;
    let b = spawn_with_nats(
        &nats,
        Some((a.database_url.clone(), a.database_name.clone())),
    )
    .await;
    let (id, code) = new_room(&a, json!({"waitingRoom": true})).await;
    let (pid, pass) = knock(&b, &code, "Grace").await;
    let path = format!("/rooms/{id}/participants/{pid}/live");
    let mut waiting = Feed::open(&b, &path, &pass, None).await;
    // The host, on A, watches the room too.
    let mut host = Feed::open(&a, &format!("/rooms/{id}/live"), &a.token("user-1"), None).await;
    let admit = a
        .call(
            Method::POST,
            &format!("/rooms/{id}/participants/{pid}/admit"),
            "user-1",
            None,
        )
        .await;
    assert_eq!(admit.status(), 200);
    let outcome = waiting.next().await.unwrap();
    assert_eq!(outcome.event.as_deref(), Some("admitted"));
    let admitted: Value = serde_json::from_str(&outcome.data).unwrap();
    assert_eq!(admitted["participant"]["status"], "joined");
    assert!(admitted["joinToken"].is_string());
    assert!(
        waiting.next().await.is_none(),
        "the waiting feed ends after its outcome"
    );
    assert_eq!(
        host.next().await.unwrap().event.as_deref(),
        Some("ParticipantAdmitted")
    );
    // Connecting after the outcome answers it at once.
    let mut again = Feed::open(&b, &path, &pass, None).await;
    assert_eq!(
        again.next().await.unwrap().event.as_deref(),
        Some("admitted")
    );
}

#[tokio::test]
async fn a_waiting_feed_hears_a_denial_and_the_end_of_the_room() {
    let nats = NatsServer::start().await;
    let app = spawn_with_nats(&nats, None).await;
    let (id, code) = new_room(&app, json!({"waitingRoom": true})).await;
    let passes = [
        knock(&app, &code, "Grace").await,
        knock(&app, &code, "Linus").await,
    ];
    let feed = |i: usize| {
        let (pid, pass) = passes[i].clone();
        let path = format!("/rooms/{id}/participants/{pid}/live");
        let app = &app;
        async move { Feed::open(app, &path, &pass, None).await }
    };
    let (mut grace, mut linus) = (feed(0).await, feed(1).await);
    let deny = format!("/rooms/{id}/participants/{}/deny", passes[0].0);
    assert_eq!(
        app.call(Method::POST, &deny, "user-1", None).await.status(),
        200
    );
    assert_eq!(grace.next().await.unwrap().event.as_deref(), Some("denied"));
    let end = app
        .call(Method::DELETE, &format!("/rooms/{id}"), "user-1", None)
        .await;
    assert_eq!(end.status(), 200);
    assert_eq!(linus.next().await.unwrap().event.as_deref(), Some("ended"));
}

#[tokio::test]
async fn feeds_refuse_the_wrong_credentials_and_a_bad_last_event_id() {
    let app = TestApp::spawn().await;
    let (a, _) = new_room(&app, json!({})).await;
    let (b, code_b) = new_room(&app, json!({"waitingRoom": true})).await;
    let host_a: Value = app
        .call(
            Method::POST,
            &format!("/rooms/code/{}/join", {
                let room: Value = app.get_room(&a, "user-1").await.json().await.unwrap();
                room["code"].as_str().unwrap().to_owned()
            }),
            "user-1",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let join_token_a = host_a["joinToken"].as_str().unwrap();
    let (_, pass_b) = knock(&app, &code_b, "Grace").await;
    let pass_b = pass_b.as_str();
    let status = |path: String, token: String, last: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.client.get(app.url(&path)).bearer_auth(token);
            if let Some(last) = last {
                request = request.header("last-event-id", last);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        status(format!("/rooms/{b}/live"), pass_b.into(), None).await,
        403
    );
    assert_eq!(
        status(format!("/rooms/{b}/live"), join_token_a.into(), None).await,
        403
    );
    assert_eq!(
        status(format!("/rooms/{b}/live"), app.token("stranger"), None).await,
        403
    );
    for bad in ["abc", "0", "-3"] {
        assert_eq!(
            status(format!("/rooms/{a}/live"), app.token("user-1"), Some(bad)).await,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        status(
            format!("/rooms/{a}/live?after=x"),
            app.token("user-1"),
            None
        )
        .await,
        400
    );
    // Someone else's pass, on the waiting feed.
    let other = format!("/rooms/{b}/participants/not-me/live");
    assert_eq!(status(other, pass_b.into(), None).await, 403);
}

#[tokio::test]
async fn feeds_open_through_a_nats_outage_catch_up_from_the_log() {
    let mut nats = NatsServer::start().await;
    let app = spawn_with_nats(&nats, None).await;
    let (id, _) = new_room(&app, json!({})).await;
    let token = app.token("user-1");
    let mut feeds = Vec::new();
    for _ in 0..50 {
        feeds.push(Feed::open(&app, &format!("/rooms/{id}/live"), &token, None).await);
    }
    nats.stop();
    toggle_chat(&app, &id, 5).await;
    nats.restart().await;
    let all = history(&app, &id).await;
    for feed in &mut feeds {
        assert_eq!(triples(&feed.take(5).await), all[2..].to_vec());
    }
}

/// What a participant's feed shows of others (no user ids), how many feeds one holder gets,
/// and a feed of an ended room resumed past its end (204: nothing will come).
#[tokio::test]
async fn participants_see_no_user_ids_hold_a_few_feeds_and_an_ended_room_says_so() {
    let nats = NatsServer::start().await;
    let app = TestApp::spawn_with(Options {
        relay: Some(nats.relay_config()),
        ..Options::default()
    })
    .await;
    let (id, code) = new_room(&app, json!({})).await;
    let join = |sub: &'static str| {
        let app = &app;
        let path = format!("/rooms/code/{code}/join");
        async move {
            let response = app.call(Method::POST, &path, sub, None).await;
            assert_eq!(response.status(), 201);
        }
    };
    join("ada").await;
    let ada = app.token("ada");
    let path = format!("/rooms/{id}/live");
    let mut feeds = Vec::new();
    for _ in 0..5 {
        feeds.push(Feed::open(&app, &path, &ada, None).await);
    }
    let sixth = app
        .client
        .get(app.url(&path))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), 429, "a sixth feed of one participant");
    join("bob").await;
    let seen = feeds[0].next().await.unwrap();
    assert_eq!(seen.event.as_deref(), Some("ParticipantJoined"));
    let data: Value = serde_json::from_str(&seen.data).unwrap();
    assert_eq!(data["displayName"], "Participant 2");
    assert!(data.get("userId").is_none(), "{data}");
    // The host's feed has the data as on NATS.
    let mut host = Feed::open(&app, &format!("{path}?after=0"), &app.token("user-1"), None).await;
    let bob = host.take(4).await.pop().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&bob.data).unwrap()["userId"],
        "bob"
    );
    // Ended: resumed after its last event, the feed answers 204 at once.
    let end = app
        .call(Method::DELETE, &format!("/rooms/{id}"), "user-1", None)
        .await;
    assert_eq!(end.status(), 200);
    let last = history(&app, &id).await.last().unwrap().0.clone();
    let resumed = app
        .client
        .get(app.url(&path))
        .bearer_auth(app.token("user-1"))
        .header("last-event-id", last)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 204);
}
