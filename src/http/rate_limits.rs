//! Rate limits on the anonymous, cheap paths: looking a room up by its code
//! (`GET /rooms/code/{code}`) and joining it (`POST /rooms/code/{code}/join`).
//!
//! Room codes are the only secret between the public and a meeting, so whoever can try codes
//! fast enough can find meetings; and a guest needs no account, so whoever can join fast
//! enough can fill a room or its waiting room. Per client address:
//!
//! - guest joins (joins without a token; members with a user token are not limited per
//!   address, so that the members behind one NAT never share a budget);
//! - code lookups;
//! - failed lookups (a 404 from either route: an unknown or malformed code), more strictly.
//!   The strict bucket is looked at (without taking from it) before anything else, and taken
//!   from when the answer is a 404 (its last one is taken up front, so that the requests in
//!   flight when it refills do not all pass): once it is empty, every lookup and join from
//!   that address is refused, found codes too, until it refills. An enumerator finds nothing,
//!   and reaches the database for the first few codes it tries, then for one every refill.
//!
//! And per room: guest joins (direct, or knocks on a waiting room), keyed on the code in the
//! path, so that it needs no database lookup either.
//!
//! Everything is decided from the request head, before the body is read, before admission
//! control, and before any database work: a refused client costs no database connection and
//! no admitted place. A refusal is a 429 problem (`rate-limited`) with `Retry-After`, counted in
//! `rate_limited_total{route, limit}`.
//!
//! The client address is the peer's, unless the peer is one of `TRUSTED_PROXIES`
//! (`client_address`). IPv6 addresses are limited by their /64, which one host usually has
//! whole.
//!
//! The limits are governor's GCRA, one state per key in a mutex-guarded map. A background task
//! drops, every 10 s, the keys whose bucket has refilled (they are indistinguishable from new
//! ones), so a limit holds at most the keys active within its period and 10 s more; the gauge
//! `rate_limit_keys{limit}` shows how many.

use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::RoomCode;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{NotUntil, Quota, RateLimiter};

use super::client_address::{address_key, client_address, TrustedProxies};
use super::{ApiError, Limits};

/// Guest joins per client address: a class of 30 behind one school NAT joining at once, then
/// one a second.
pub const GUEST_JOINS_PER_ADDRESS: Rate = Rate::new(30, Duration::from_secs(30));
/// Code lookups per client address: 60 at once, then one a second.
pub const CODE_LOOKUPS_PER_ADDRESS: Rate = Rate::new(60, Duration::from_secs(60));
/// Failed lookups (unknown codes) per client address: 10 at once, then one every 6 s.
pub const FAILED_LOOKUPS_PER_ADDRESS: Rate = Rate::new(10, Duration::from_secs(60));
/// Guest joins (and knocks) per room: the largest room (100 places) joining, or joining again,
/// at once, then 100 a minute.
pub const GUEST_JOINS_PER_ROOM: Rate = Rate::new(100, Duration::from_secs(60));

const LOOKUP_ROUTE: &str = "/rooms/code/{code}";
const JOIN_ROUTE: &str = "/rooms/code/{code}/join";
/// How often the keys whose bucket has refilled are dropped.
const TIDY_EVERY: Duration = Duration::from_secs(10);

/// A rate limit: `burst` requests at once, refilled at `burst` per `period` (one every
/// `period / burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    burst: NonZeroU32,
    period: Duration,
}

impl Rate {
    /// `burst` at once, then `burst` per `period`. Panics on a burst of 0.
    pub const fn new(burst: u32, period: Duration) -> Self {
        Self {
            burst: NonZeroU32::new(burst).expect("a burst of at least one"),
            period,
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.period / self.burst.get())
            .expect("a positive interval (checked when parsed)")
            .allow_burst(self.burst)
    }

    /// `N/PERIOD` (`30/30s`: 30 at once, then 30 per 30 s), or `off` (also `0`): no limit.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(None);
        }
        let usage = || format!("`{text}` is not a rate like 30/30s or 10/1m (or `off`)");
        let (burst, period) = text.split_once('/').ok_or_else(usage)?;
        let burst: u32 = burst.trim().parse().map_err(|_| usage())?;
        let period = crate::cli::parse_duration(period.trim())?;
        if burst == 0 || period / burst < Duration::from_micros(1) {
            return Err(usage());
        }
        Ok(Some(Self::new(burst, period)))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (number, unit) = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ]
        .into_iter()
        .find(|(size, _)| ms.is_multiple_of(*size))
        .map_or((ms, "ms"), |(size, unit)| (ms / size, unit));
        write!(f, "{}/{number}{unit}", self.burst)
    }
}

/// A well-formed room code in a path segment (percent-decoded, as axum's `Path` reads it),
/// packed into a number: nine letters in base 26. Malformed codes name no room.
fn room_key(segment: &str) -> Option<u64> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    let code = RoomCode::parse(&decoded).ok()?;
    Some(
        code.as_str()
            .bytes()
            .filter(|b| *b != b'-')
            .fold(0, |key, letter| key * 26 + u64::from(letter - b'a')),
    )
}

/// One map of states, shared by a limiter that decides and records, and one that only peeks.
struct Shared<K: Hash + Eq + Clone>(Arc<HashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Shared<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Shared<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below)
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The shared map, read only: governor decides as it would, and the state it would write is
/// dropped (and a key not in the map is not added). So a limiter over it answers "would a
/// request be allowed now?" without taking anything from the bucket.
struct Peek<K: Hash + Eq + Clone>(Arc<HashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Peek<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let states = self.0.lock();
        let Some(state) = states.get(key) else {
            return f(None).map(|(outcome, _)| outcome);
        };
        // Every answer is an "error" to the state, which then keeps its value.
        let decided = state.measure_and_replace(&NotKeyed::NonKey, |tat| {
            Err::<(Infallible, Nanos), _>(f(tat).map(|(outcome, _)| outcome))
        });
        match decided {
            Ok(never) => match never {},
            Err(outcome) => outcome,
        }
    }
}

/// One limit: its name (the metrics label), the limiter, and a peeking one over its states.
struct Limit<K: Hash + Eq + Clone> {
    name: &'static str,
    detail: &'static str,
    limiter: RateLimiter<K, Shared<K>, MonotonicClock>,
    peek: RateLimiter<K, Peek<K>, MonotonicClock, StateInformationMiddleware>,
    /// The most keys seen since the map last shrank.
    peak: AtomicUsize,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    fn new(
        name: &'static str,
        detail: &'static str,
        rate: Option<Rate>,
        clock: &MonotonicClock,
    ) -> Option<Self> {
        let quota = rate?.quota();
        let states = Arc::new(HashMapStateStore::default());
        let limiter = RateLimiter::new(quota, Shared(Arc::clone(&states)), clock.clone());
        // Made after `limiter`, so its time starts a little later: it sees a little less time
        // passed, and never allows what `limiter` would refuse.
        let peek = RateLimiter::new(quota, Peek(states), clock.clone());
        metrics::gauge!("rate_limit_keys", "limit" => name).set(0.0);
        Some(Self {
            name,
            detail,
            limiter,
            peek,
            peak: AtomicUsize::new(0),
        })
    }

    /// Takes one from `key`'s bucket, or says when it will have one.
    fn take(&self, key: &K) -> Result<(), NotUntil<Instant>> {
        self.limiter.check_key(key)
    }

    /// Whether `key`'s bucket has one, without taking it: how many it would have left after
    /// taking it, or when it will have one.
    fn peek(&self, key: &K) -> Result<u32, NotUntil<Instant>> {
        self.peek
            .check_key(key)
            .map(|state| state.remaining_burst_capacity())
    }

    /// Drops the keys whose bucket has refilled; gives the memory back once most are gone.
    fn tidy(&self) {
        let before = self.limiter.len();
        self.limiter.retain_recent();
        let after = self.limiter.len();
        let peak = self.peak.fetch_max(before, Ordering::Relaxed).max(before);
        if after < peak / 2 {
            self.limiter.shrink_to_fit();
            self.peak.store(after, Ordering::Relaxed);
        }
        metrics::gauge!("rate_limit_keys", "limit" => self.name).set(after as f64);
    }
}

/// The limits of one instance, from `Limits`.
pub struct RateLimits {
    trusted: TrustedProxies,
    guest_joins: Option<Limit<IpAddr>>,
    code_lookups: Option<Limit<IpAddr>>,
    failed_lookups: Option<Limit<IpAddr>>,
    room_guest_joins: Option<Limit<u64>>,
    clock: MonotonicClock,
}

/// A request refused: which limit, and when to retry.
struct Refused {
    limit: &'static str,
    detail: &'static str,
    retry_after: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Lookup,
    Join,
}

impl Route {
    fn template(self) -> &'static str {
        match self {
            Self::Lookup => LOOKUP_ROUTE,
            Self::Join => JOIN_ROUTE,
        }
    }
}

/// The limited route a request is for, and its code segment (as sent). HEAD is served by the
/// GET handler, so it is a lookup too.
fn route<'a>(method: &Method, path: &'a str) -> Option<(Route, &'a str)> {
    let rest = path.strip_prefix("/rooms/code/")?;
    match rest.split_once('/') {
        None if !rest.is_empty() && (method == Method::GET || method == Method::HEAD) => {
            Some((Route::Lookup, rest))
        }
        Some((code, "join")) if !code.is_empty() && method == Method::POST => {
            Some((Route::Join, code))
        }
        _ => None,
    }
}

impl RateLimits {
    /// The limits `limits` configures, with a task that tidies them while they are in use;
    /// `None` when every limit is off.
    pub fn start(limits: &Limits) -> Option<Arc<Self>> {
        let clock = MonotonicClock;
        let rate_limits = Self {
            trusted: limits.trusted_proxies.clone(),
            guest_joins: Limit::new(
                "guest_joins",
                "too many guest joins from this address; retry after the delay in Retry-After",
                limits.guest_joins_per_address,
                &clock,
            ),
            code_lookups: Limit::new(
                "code_lookups",
                "too many room lookups from this address; retry after the delay in Retry-After",
                limits.code_lookups_per_address,
                &clock,
            ),
            failed_lookups: Limit::new(
                "failed_lookups",
                "too many unknown room codes from this address; retry after the delay in Retry-After",
                limits.failed_lookups_per_address,
                &clock,
            ),
            room_guest_joins: Limit::new(
                "room_guest_joins",
                "too many guests joining this room; retry after the delay in Retry-After",
                limits.guest_joins_per_room,
                &clock,
            ),
            clock,
        };
        let any = rate_limits.guest_joins.is_some()
            || rate_limits.code_lookups.is_some()
            || rate_limits.failed_lookups.is_some()
            || rate_limits.room_guest_joins.is_some();
        if !any {
            return None;
        }
        let rate_limits = Arc::new(rate_limits);
        let weak = Arc::downgrade(&rate_limits);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TIDY_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(rate_limits) = weak.upgrade() else {
                    return;
                };
                rate_limits.tidy();
            }
        });
        Some(rate_limits)
    }

    fn tidy(&self) {
        for limit in [&self.guest_joins, &self.code_lookups, &self.failed_lookups]
            .into_iter()
            .flatten()
        {
            limit.tidy();
        }
        if let Some(limit) = &self.room_guest_joins {
            limit.tidy();
        }
    }

    /// Whether a request may go on: the strict bucket of failed lookups first (looked at, not
    /// taken from), then the bucket of its kind, then, for a guest join, the room's. `true`
    /// when the request took the failed-lookups bucket's last one already (its 404 then takes
    /// nothing more).
    fn admit(
        &self,
        route: Route,
        client: IpAddr,
        guest: bool,
        room: Option<u64>,
    ) -> Result<bool, Refused> {
        let mut took_last_failure = false;
        if let Some(limit) = &self.failed_lookups {
            let left = limit.peek(&client).map_err(|n| self.refused(limit, n))?;
            // The last one is taken now, found or not: otherwise every request of the address
            // in flight when the bucket refills would pass before the first 404 takes it.
            if left == 0 {
                limit.take(&client).map_err(|n| self.refused(limit, n))?;
                took_last_failure = true;
            }
        }
        match route {
            Route::Lookup => {
                if let Some(limit) = &self.code_lookups {
                    limit.take(&client).map_err(|n| self.refused(limit, n))?;
                }
            }
            Route::Join if guest => {
                if let Some(limit) = &self.guest_joins {
                    limit.take(&client).map_err(|n| self.refused(limit, n))?;
                }
                if let (Some(limit), Some(room)) = (&self.room_guest_joins, room) {
                    limit.take(&room).map_err(|n| self.refused(limit, n))?;
                }
            }
            Route::Join => {}
        }
        Ok(took_last_failure)
    }

    fn refused<K: Hash + Eq + Clone>(
        &self,
        limit: &Limit<K>,
        not_until: NotUntil<Instant>,
    ) -> Refused {
        let wait = not_until.wait_time_from(self.clock.now());
        Refused {
            limit: limit.name,
            detail: limit.detail,
            retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    }

    /// A 404 from a limited route: one taken from the client's strict bucket.
    fn failed(&self, client: IpAddr) {
        if let Some(limit) = &self.failed_lookups {
            let _empty_already = limit.take(&client);
        }
    }
}

/// The middleware, outside body reading and admission control: refuses a request beyond a
/// limit with a 429, and counts the 404s of the limited routes against the client's address.
pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Some((route, code)) = route(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let client = address_key(client_address(
        peer.ip(),
        request.headers(),
        &limits.trusted,
    ));
    let guest = route == Route::Join && !request.headers().contains_key(header::AUTHORIZATION);
    let room = if guest { room_key(code) } else { None };
    let took_last_failure = match limits.admit(route, client, guest, room) {
        Ok(took) => took,
        Err(refused) => {
            let (route, limit) = (route.template(), refused.limit);
            metrics::counter!("rate_limited_total", "route" => route, "limit" => limit)
                .increment(1);
            return ApiError::RateLimited {
                detail: refused.detail,
                retry_after: refused.retry_after.max(1),
            }
            .into_response();
        }
    };
    let response = next.run(request).await;
    if response.status() == StatusCode::NOT_FOUND && !took_last_failure {
        limits.failed(client);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rates_parse_and_print_alike() {
        assert_eq!(
            Rate::parse("30/30s"),
            Ok(Some(Rate::new(30, Duration::from_secs(30))))
        );
        assert_eq!(Rate::parse("off"), Ok(None));
        assert_eq!(Rate::parse("0"), Ok(None));
        for bad in ["30", "0/1m", "x/1m", "30/", "30/1w", "2000000/1s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        for text in ["30/30s", "10/1m", "100/1h", "5/250ms", "1/2d"] {
            assert_eq!(Rate::parse(text).unwrap().unwrap().to_string(), text);
        }
        assert_eq!(GUEST_JOINS_PER_ADDRESS.to_string(), "30/30s");
    }

    #[test]
    fn routes_and_room_keys_are_read_from_the_path() {
        assert!(matches!(
            route(&Method::GET, "/rooms/code/abc-def-ghi"),
            Some((Route::Lookup, "abc-def-ghi"))
        ));
        assert!(matches!(
            route(&Method::HEAD, "/rooms/code/x"),
            Some((Route::Lookup, "x"))
        ));
        assert!(matches!(
            route(&Method::POST, "/rooms/code/x/join"),
            Some((Route::Join, "x"))
        ));
        for (method, path) in [
            (Method::POST, "/rooms/code/x"),
            (Method::GET, "/rooms/code/x/join"),
            (Method::GET, "/rooms/code/"),
            (Method::POST, "/rooms"),
            (Method::GET, "/rooms/abc"),
        ] {
            assert!(route(&method, path).is_none(), "{method} {path}");
        }
        assert_eq!(room_key("aaa-aaa-aab"), Some(1));
        // However the code is spelled in the path, it is one room.
        assert_eq!(room_key("abc-def-ghi"), room_key("%61bc%2Ddef-ghi"));
        assert_ne!(room_key("abc-def-ghi"), room_key("abc-def-ghj"));
        assert_eq!(room_key("abc-def-gh"), None);
        assert_eq!(room_key("ABC-DEF-GHI"), None);
    }

    #[tokio::test]
    async fn the_failed_bucket_is_looked_at_without_taking_from_it() {
        let limits = RateLimits::start(&Limits {
            failed_lookups_per_address: Some(Rate::new(2, Duration::from_secs(60))),
            ..Limits::default()
        })
        .unwrap();
        let client = ip("192.0.2.1");
        for _ in 0..10 {
            assert!(matches!(
                limits.admit(Route::Lookup, client, false, None),
                Ok(false)
            ));
        }
        limits.failed(client);
        // The last one left is taken up front (and a 404 then takes nothing more).
        assert!(matches!(
            limits.admit(Route::Join, client, false, None),
            Ok(true)
        ));
        let refused = limits
            .admit(Route::Join, client, false, None)
            .err()
            .unwrap();
        assert_eq!(refused.limit, "failed_lookups");
        assert!(
            (29..=30).contains(&refused.retry_after),
            "{}",
            refused.retry_after
        );
        assert!(limits
            .admit(Route::Lookup, ip("192.0.2.2"), false, None)
            .is_ok());
    }

    #[test]
    fn every_limit_off_is_no_limits_at_all() {
        let off = Limits {
            guest_joins_per_address: None,
            code_lookups_per_address: None,
            failed_lookups_per_address: None,
            guest_joins_per_room: None,
            ..Limits::default()
        };
        assert!(RateLimits::start(&off).is_none());
    }
}
