//! Rate limits on the anonymous paths (GET /rooms/code/{code}, POST /rooms/code/{code}/join):
//! per client address and per room, decided before the body is read and before any database
//! work. Clients at other addresses are played with X-Forwarded-For through a "load balancer"
//! on 127.0.0.1 (TRUSTED_PROXIES=127.0.0.1/32); one test shows the header counts for nothing
//! when the peer is not trusted.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Options, Proxy, TestApp};
use neuronmeet::http::{Limits, Rate};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RATE_LIMITED: &str = "https://neuronmeet.com/problems/rate-limited";
const HOUR: Duration = Duration::from_secs(3600);

/// Limits as by default, behind a load balancer on 127.0.0.1.
fn behind_a_proxy() -> Limits {
    Limits {
        trusted_proxies: "127.0.0.1/32".parse().unwrap(),
        ..Limits::default()
    }
}

async fn spawn(limits: Limits) -> TestApp {
    TestApp::spawn_with(Options {
        limits,
        ..Options::default()
    })
    .await
}

async fn new_room(app: &TestApp, body: Value) -> Value {
    let response = app.create_room(body).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

fn code(room: &Value) -> &str {
    room["code"].as_str().unwrap()
}

/// A guest joins the room of `code`, from `from` (X-Forwarded-For) when given.
async fn guest_join(app: &TestApp, code: &str, from: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/rooms/code/{code}/join")))
        .json(&json!({"displayName": "Guest"}));
    if let Some(address) = from {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.unwrap()
}

/// User `sub` joins the room of `code`, from `from`.
async fn user_join(app: &TestApp, code: &str, sub: &str, from: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/rooms/code/{code}/join")))
        .bearer_auth(app.token(sub))
        .header("X-Forwarded-For", from)
        .send()
        .await
        .unwrap()
}

/// GET /rooms/code/{code} from `from`; at most 3 s.
async fn lookup(app: &TestApp, code: &str, from: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/rooms/code/{code}")))
        .header("X-Forwarded-For", from)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /rooms/code/{code} answered within 3 s: {e}"))
}

/// A 429 problem of type rate-limited with a Retry-After of at least a second; its detail.
async fn assert_rate_limited(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], RATE_LIMITED, "{problem}");
    assert_eq!(problem["status"], 429);
    problem["detail"].as_str().unwrap().to_owned()
}

async fn joined_count(app: &TestApp, room: &Value) -> usize {
    let id = room["id"].as_str().unwrap();
    let list = app
        .call(
            reqwest::Method::GET,
            &format!("/rooms/{id}/participants"),
            "user-1",
            None,
        )
        .await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    list["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn guest_joins_from_one_address_are_cut_off_before_the_room_fills_and_others_still_join() {
    let app = spawn(behind_a_proxy()).await;
    let room = new_room(&app, json!({"maxParticipants": 50})).await;
    let host = user_join(&app, code(&room), "user-1", "192.0.2.1").await;
    assert_eq!(host.status(), 201);
    // 49 guests from one address, at once: with the host, they would fill the room.
    let attempts = (0..49).map(|_| guest_join(&app, code(&room), Some("203.0.113.7")));
    let answers = futures_util::future::join_all(attempts).await;
    let mut joined = 0;
    let mut limited = Vec::new();
    for answer in answers {
        match answer.status().as_u16() {
            201 => joined += 1,
            _ => limited.push(assert_rate_limited(answer).await),
        }
    }
    assert!(
        (30..49).contains(&joined),
        "{joined} joined, {} refused",
        limited.len()
    );
    assert!(limited.iter().all(|detail| detail.contains("guest joins")));
    // Others still join: guests from other addresses (an IPv6 one too), and a member from the
    // very same address (user tokens are not limited per address).
    for from in ["198.51.100.1", "198.51.100.2", "2001:db8::1"] {
        assert_eq!(
            guest_join(&app, code(&room), Some(from)).await.status(),
            201
        );
    }
    let member = user_join(&app, code(&room), "member-1", "203.0.113.7").await;
    assert_eq!(member.status(), 201);
    assert_eq!(joined_count(&app, &room).await, 1 + joined + 4);
}

#[tokio::test]
async fn thirty_guest_joins_from_one_address_pass() {
    // A class of 30 behind one school NAT, joining one after the other, under the defaults.
    let app = spawn(Limits::default()).await;
    let room = new_room(&app, json!({"maxParticipants": 50})).await;
    for n in 0..30 {
        let answer = guest_join(&app, code(&room), None).await;
        assert_eq!(
            answer.status(),
            201,
            "guest {n}: {}",
            answer.text().await.unwrap()
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_trusted() {
    let strict = |trusted: &str| Limits {
        guest_joins_per_address: Some(Rate::new(3, HOUR)),
        trusted_proxies: trusted.parse().unwrap(),
        ..Limits::default()
    };
    // Not trusted: every guest is 127.0.0.1, whatever it claims.
    let app = spawn(strict("")).await;
    let room = new_room(&app, json!({})).await;
    for n in 1..=3 {
        let from = format!("198.51.100.{n}");
        assert_eq!(
            guest_join(&app, code(&room), Some(&from)).await.status(),
            201
        );
    }
    assert_rate_limited(guest_join(&app, code(&room), Some("198.51.100.4")).await).await;
    let forwarded = app
        .client
        .post(app.url(&format!("/rooms/code/{}/join", code(&room))))
        .header("Forwarded", "for=198.51.100.5")
        .json(&json!({"displayName": "Guest"}))
        .send()
        .await
        .unwrap();
    assert_rate_limited(forwarded).await;

    // Trusted (a load balancer on 127.0.0.1): each is its own client.
    let app = spawn(strict("127.0.0.1/32, 10.0.0.0/8")).await;
    let room = new_room(&app, json!({})).await;
    for n in 1..=4 {
        let from = format!("198.51.100.{n}");
        assert_eq!(
            guest_join(&app, code(&room), Some(&from)).await.status(),
            201
        );
    }
    // The right-most address that is not a trusted proxy: not what the client wrote before it.
    for spoofed in 1..=4 {
        let chain = format!("192.0.2.{spoofed}, 198.51.100.9, 10.0.0.3");
        let answer = guest_join(&app, code(&room), Some(&chain)).await;
        assert_eq!(answer.status(), if spoofed <= 3 { 201 } else { 429 });
    }
}

#[tokio::test]
async fn unknown_codes_cost_the_database_nothing_after_the_first_few() {
    let proxy = Arc::new(Proxy::default());
    let app = TestApp::spawn_with(Options {
        proxy: Some(Arc::clone(&proxy)),
        limits: behind_a_proxy(),
        ..Options::default()
    })
    .await;
    let room = new_room(&app, json!({})).await;
    let enumerator = "203.0.113.7";
    // The first ten unknown codes are looked up, and found unknown; joins count alike.
    for n in 0..10u8 {
        let unknown = format!("zzz-zzz-zz{}", (b'a' + n) as char);
        let answer = if n % 2 == 0 {
            lookup(&app, &unknown, enumerator).await
        } else {
            guest_join(&app, &unknown, Some(enumerator)).await
        };
        assert_eq!(answer.status(), 404, "{unknown}");
    }
    // Then everything from that address is refused, known codes too, and members' joins.
    let detail = assert_rate_limited(lookup(&app, "zzz-zzz-zzz", enumerator).await).await;
    assert!(detail.contains("unknown room codes"), "{detail}");
    assert_rate_limited(lookup(&app, code(&room), enumerator).await).await;
    assert_rate_limited(guest_join(&app, code(&room), Some(enumerator)).await).await;
    assert_rate_limited(user_join(&app, code(&room), "member-1", enumerator).await).await;
    // Other addresses are not concerned.
    assert_eq!(
        lookup(&app, code(&room), "198.51.100.1").await.status(),
        200
    );

    // With the database answering nothing, refusals still come at once: they need none.
    proxy.stall();
    for n in 0..20u8 {
        let unknown = format!("yyy-yyy-yy{}", (b'a' + n) as char);
        assert_rate_limited(lookup(&app, &unknown, enumerator).await).await;
    }
    proxy.resume();
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let refused = metrics
        .lines()
        .find(|line| {
            line.starts_with("rate_limited_total{")
                && line.contains(r#"route="/rooms/code/{code}""#)
                && line.contains(r#"limit="failed_lookups""#)
        })
        .unwrap_or_else(|| panic!("no rate_limited_total for lookups: {metrics}"));
    let count: f64 = refused.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 22.0, "{refused}");
    assert!(metrics.contains(r#"rate_limit_keys{limit="failed_lookups"}"#));
}

#[tokio::test]
async fn a_refused_guest_join_is_answered_before_its_body_arrives() {
    let app = spawn(Limits {
        guest_joins_per_address: Some(Rate::new(1, HOUR)),
        body_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    let room = new_room(&app, json!({})).await;
    assert_eq!(guest_join(&app, code(&room), None).await.status(), 201);
    // A join whose body never comes: refused from its head alone.
    let mut socket = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /rooms/code/{}/join HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        code(&room)
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains(RATE_LIMITED), "{answer}");
}

#[tokio::test]
async fn guest_joins_and_knocks_are_limited_per_room_whatever_the_addresses() {
    let app = spawn(Limits {
        guest_joins_per_room: Some(Rate::new(5, HOUR)),
        ..behind_a_proxy()
    })
    .await;
    let room = new_room(&app, json!({"waitingRoom": true})).await;
    let other = new_room(&app, json!({})).await;
    for n in 1..=5 {
        let from = format!("198.51.100.{n}");
        assert_eq!(
            guest_join(&app, code(&room), Some(&from)).await.status(),
            202
        );
    }
    let detail =
        assert_rate_limited(guest_join(&app, code(&room), Some("198.51.100.6")).await).await;
    assert!(detail.contains("this room"), "{detail}");
    // However the code is spelled in the path, it is the same room.
    let plain = code(&room);
    let spelled = format!("%{:02X}{}", plain.as_bytes()[0], &plain[1..]).replacen('-', "%2D", 1);
    assert_rate_limited(guest_join(&app, &spelled, Some("198.51.100.7")).await).await;
    // Other rooms, and members (one knock each, however often they try), are not concerned.
    assert_eq!(
        guest_join(&app, code(&other), Some("198.51.100.6"))
            .await
            .status(),
        201
    );
    let member = user_join(&app, code(&room), "member-1", "198.51.100.6").await;
    assert_eq!(member.status(), 202);
}

#[tokio::test]
async fn lookups_are_limited_per_address_and_documented() {
    let app = spawn(Limits {
        code_lookups_per_address: Some(Rate::new(3, HOUR)),
        ..behind_a_proxy()
    })
    .await;
    let room = new_room(&app, json!({})).await;
    for _ in 0..3 {
        assert_eq!(
            lookup(&app, code(&room), "198.51.100.1").await.status(),
            200
        );
    }
    let detail = assert_rate_limited(lookup(&app, code(&room), "198.51.100.1").await).await;
    assert!(detail.contains("room lookups"), "{detail}");
    // An IPv6 client is its /64: another address in it is the same client.
    for _ in 0..3 {
        assert_eq!(
            lookup(&app, code(&room), "2001:db8:0:1::1").await.status(),
            200
        );
    }
    assert_rate_limited(lookup(&app, code(&room), "2001:db8:0:1::2").await).await;
    assert_eq!(
        lookup(&app, code(&room), "2001:db8:0:2::1").await.status(),
        200
    );

    let doc = app.get_json("/openapi.json").await;
    for (path, method) in [
        ("/rooms/code/{code}", "get"),
        ("/rooms/code/{code}/join", "post"),
    ] {
        let refusal = &doc["paths"][path][method]["responses"]["429"];
        assert!(
            refusal["headers"]["Retry-After"].is_object(),
            "{path}: {refusal}"
        );
        let example = &refusal["content"]["application/problem+json"]["example"];
        assert_eq!(example["type"], RATE_LIMITED, "{path}: {refusal}");
    }
}
