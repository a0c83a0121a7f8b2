//! The `neuronmeet` command line. Every flag mirrors an environment variable.

use crate::BoxError;
use std::net::{Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Claims, Tokens};
use crate::codes::SecureCodes;
use crate::http::{Limits, Rate, TrustedProxies};
use crate::jwks::{Jwks, JwksOptions, KeySource};
use crate::relay::{self, RelayConfig, RelayStatus};
use crate::{app, db};
use crate::{read_models, replay, tail};

#[derive(Parser)]
#[command(name = "neuronmeet", version, about = "NeuronMeet rooms service")]
struct Cli {
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of `serve`'s settings costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseArgs),
    /// Run only the relay that publishes committed events to NATS JetStream.
    Relay(RelayArgs),
    /// Rebuild a read model from the event log, while the service keeps serving.
    Replay(ReplayArgs),
    /// Print room events from JetStream with a durable consumer (an example for subscribers).
    Tail(TailArgs),
    /// Print a bearer token signed with JWT_SECRET, for development.
    Token(TokenArgs),
    /// Print the OpenAPI document (what GET /openapi.json serves), for client generators.
    Openapi,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines, for development.
    Pretty,
    /// One JSON object per line, for production log pipelines.
    Json,
}

#[derive(Args)]
struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Size of the connection pool (the relay holds two more connections of its own).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    database_max_connections: u32,
}

#[derive(Args)]
struct JwtArgs {
    /// HS256 signing secret, at least 32 bytes. Required: there is no default.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    jwt_secret: Secret,
    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
}

/// An identity provider whose RS256/ES256/... user tokens are accepted besides HS256 ones.
#[derive(Args)]
struct ProviderArgs {
    /// The provider's JWKS URL (e.g. https://TENANT.auth0.com/.well-known/jwks.json). Needs
    /// JWT_ISSUER and JWT_AUDIENCE. Redirects are followed only to https URLs.
    #[arg(long, env = "JWT_JWKS_URL", conflicts_with = "jwt_jwks_file")]
    jwt_jwks_url: Option<String>,
    /// A file holding the provider's JWKS, instead of a URL.
    #[arg(long, env = "JWT_JWKS_FILE")]
    jwt_jwks_file: Option<std::path::PathBuf>,
    /// Fetch the JWKS again once it is this old (a withdrawn key stops working within it).
    #[arg(long, env = "JWT_JWKS_MAX_AGE", default_value = "10m", value_parser = parse_duration)]
    jwt_jwks_max_age: std::time::Duration,
    /// A token naming an unknown key fetches the JWKS at most this often.
    #[arg(long, env = "JWT_JWKS_MIN_REFRESH", default_value = "30s", value_parser = parse_duration)]
    jwt_jwks_min_refresh: std::time::Duration,
}

impl DatabaseArgs {
    /// The pool, once every pending migration is applied.
    async fn migrated_pool(&self) -> Result<sqlx::PgPool, BoxError> {
        let pool = db::connect_lazy(&self.database_url, self.database_max_connections)?;
        db::migrate(&pool)
            .await
            .map_err(|e| format!("applying migrations failed: {e}"))?;
        Ok(pool)
    }
}

impl JwtArgs {
    fn tokens(&self) -> Tokens {
        Tokens::new(
            self.jwt_secret.0.as_bytes(),
            set(&self.jwt_issuer),
            set(&self.jwt_audience),
        )
    }
}

impl ProviderArgs {
    /// `tokens`, also accepting the provider's tokens when one is configured.
    async fn accepted_by(self, tokens: Tokens, jwt: &JwtArgs) -> Result<Tokens, BoxError> {
        let url = set(&self.jwt_jwks_url);
        let file = self
            .jwt_jwks_file
            .filter(|path| !path.as_os_str().is_empty());
        let source = match (url, file) {
            (Some(url), _) => KeySource::Url(parse_jwks_url(&url)?),
            (None, Some(path)) => KeySource::File(path),
            (None, None) => return Ok(tokens),
        };
        // A provider signs tokens for many applications: only those meant for this one count.
        if set(&jwt.jwt_issuer).is_none() || set(&jwt.jwt_audience).is_none() {
            return Err("JWT_JWKS_URL and JWT_JWKS_FILE need JWT_ISSUER and JWT_AUDIENCE (the provider's issuer and this API's audience)".into());
        }
        let options = JwksOptions {
            max_age: self.jwt_jwks_max_age,
            min_refresh_interval: self.jwt_jwks_min_refresh,
        };
        Ok(tokens.with_provider(Jwks::load(source, options).await?))
    }
}

#[derive(Args)]
struct NatsArgs {
    /// NATS server URL; every committed event is published to JetStream there.
    #[arg(long, env = "NATS_URL", value_parser = relay::parse_nats_url)]
    nats_url: String,
    /// JetStream stream for room events.
    #[arg(long, env = "NATS_STREAM", default_value = relay::STREAM, value_parser = relay::parse_stream_name)]
    nats_stream: String,
    /// JetStream duplicate window: re-publishes within it are dropped.
    #[arg(long, env = "NATS_DUPLICATE_WINDOW", default_value = "2m", value_parser = parse_duration)]
    nats_duplicate_window: std::time::Duration,
    /// Servers of a NATS cluster that keep a copy of the stream the relay creates (1 to 5;
    /// JetStream's own limit). An existing stream keeps its own.
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    nats_stream_replicas: u8,
    /// How long the relay waits for a JetStream reply or publish acknowledgement before it
    /// takes the server for gone and starts over: the bound on the wait a stream leader that
    /// died adds to its successor's election.
    #[arg(long, env = "NATS_REQUEST_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    nats_request_timeout: std::time::Duration,
}

impl NatsArgs {
    fn relay_config(self) -> RelayConfig {
        RelayConfig {
            stream: self.nats_stream,
            duplicate_window: self.nats_duplicate_window,
            stream_replicas: self.nats_stream_replicas.into(),
            request_timeout: self.nats_request_timeout,
            ..RelayConfig::new(self.nats_url)
        }
    }
}

#[derive(Args)]
struct RelayArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Args)]
struct TailArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Durable consumer name: a restarted tail goes on where it stopped.
    #[arg(long, default_value = "neuronmeet-tail")]
    durable: String,
    /// Subject filter, e.g. `rooms.*.RoomCreated`.
    #[arg(long, default_value = relay::SUBJECTS)]
    subject: String,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The read model to rebuild; every one when not given.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(read_models::names()))]
    projection: Option<String>,
    /// Events read and written per batch.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch_size: i64,
    /// Longest one attempt to swap in the rebuilt table waits for the live one (requests queue
    /// behind it meanwhile); then it lets go, reports who holds the table, and tries again.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    lock_timeout: std::time::Duration,
    /// Give up (leaving the live table as it is) after being blocked this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    give_up_after: std::time::Duration,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    jwt: JwtArgs,
    #[command(flatten)]
    provider: ProviderArgs,
    #[command(flatten)]
    nats: NatsArgs,
    /// TCP port to listen on (all interfaces).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Longest a request may take before it gets a 503 (a command it started still completes).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    request_timeout: std::time::Duration,
    /// A request head (or the next one on a keep-alive connection) not received within this
    /// closes the connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    header_read_timeout: std::time::Duration,
    /// A request body not received within this gets a 408.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    body_read_timeout: std::time::Duration,
    /// The most connections open at once; beyond, new ones wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// On SIGTERM, requests in flight get this long to finish; then every connection is closed.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// The longest a write waits for a lock another transaction holds (a stuck instance's
    /// transaction, say); then that command alone gets a 503, unwritten.
    #[arg(long, env = "WRITE_LOCK_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    write_lock_timeout: std::time::Duration,
    /// The most live feeds (Server-Sent Events) open at once on this instance; beyond, 503.
    #[arg(long, env = "LIVE_MAX_STREAMS", default_value_t = 10_000)]
    live_max_streams: usize,
    /// The most live feeds one participant (or a room's host) holds open at once; beyond, 429.
    #[arg(long, env = "LIVE_MAX_STREAMS_EACH", default_value_t = 5)]
    live_max_streams_each: usize,
    /// The most requests served at once. The limit adapts between 4 × the pool size and this;
    /// beyond it, requests are refused at once with a 503 rather than queued.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Commands on one room are decided in batches in this instance. `false` only to measure
    /// what the batches save (bench/): each command is then decided and appended alone, and
    /// concurrent commands on one room conflict and are decided again at once.
    #[arg(long, env = "ROOM_BATCHES", default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    room_batches: bool,
    /// Mean request latency above which the adaptive concurrency limit comes down.
    #[arg(long, env = "LATENCY_TARGET", default_value = "50ms", value_parser = parse_duration)]
    latency_target: std::time::Duration,
    /// Show a user's `email` as their name in rooms when their token has no `name` (everyone in
    /// the room, guests included, sees it). Off: such a user is "Host" or "Participant N".
    #[arg(long, env = "DISPLAY_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    display_email: bool,
    /// Comma-separated origins allowed by CORS (e.g. https://app.example.com), or `*` for any
    /// origin. Unset: CORS off.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<axum::http::HeaderValue>,
    /// Guest joins (without a token) per client address: `N/PERIOD` (N at once, then N per
    /// PERIOD), or `off`.
    #[arg(long, env = "RATE_LIMIT_GUEST_JOINS", default_value_t = RateSetting(Limits::default().guest_joins_per_address), value_parser = parse_rate)]
    rate_limit_guest_joins: RateSetting,
    /// Lookups by code (GET /rooms/code/{code}) per client address, or `off`.
    #[arg(long, env = "RATE_LIMIT_CODE_LOOKUPS", default_value_t = RateSetting(Limits::default().code_lookups_per_address), value_parser = parse_rate)]
    rate_limit_code_lookups: RateSetting,
    /// Lookups and joins of unknown codes (404) per client address; once used up, every lookup
    /// and join from that address is refused until it refills. Or `off`.
    #[arg(long, env = "RATE_LIMIT_FAILED_LOOKUPS", default_value_t = RateSetting(Limits::default().failed_lookups_per_address), value_parser = parse_rate)]
    rate_limit_failed_lookups: RateSetting,
    /// Guest joins (and knocks) per room, or `off`.
    #[arg(long, env = "RATE_LIMIT_ROOM_GUEST_JOINS", default_value_t = RateSetting(Limits::default().guest_joins_per_room), value_parser = parse_rate)]
    rate_limit_room_guest_joins: RateSetting,
    /// Comma-separated CIDRs of the proxies (load balancers) in front: only from these peers is
    /// the client address read from X-Forwarded-For / Forwarded. Unset: the peer's address.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::from_str)]
    trusted_proxies: TrustedProxies,
}

/// A rate limit's setting: a rate, or off.
#[derive(Clone, Copy)]
struct RateSetting(Option<Rate>);

impl std::fmt::Display for RateSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rate) => rate.fmt(f),
            None => f.write_str("off"),
        }
    }
}

fn parse_rate(text: &str) -> Result<RateSetting, String> {
    Rate::parse(text).map(RateSetting)
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    jwt: JwtArgs,
    /// The user id (`sub`); it becomes the host id of rooms created with the token.
    #[arg(long)]
    sub: String,
    /// Display name (`name` claim).
    #[arg(long)]
    name: Option<String>,
    /// E-mail (`email` claim), the display name when no name is given.
    #[arg(long)]
    email: Option<String>,
    /// Avatar URL (`picture` claim).
    #[arg(long)]
    picture: Option<String>,
    /// How long the token is valid: 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: std::time::Duration,
}

/// A setting's value; an empty one (`JWT_ISSUER=` in a compose file) counts as unset.
fn set(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// The JWKS URL: https, or http only to this machine (keys fetched in plain text could be
/// swapped by anyone on the way).
fn parse_jwks_url(text: &str) -> Result<String, BoxError> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("JWT_JWKS_URL `{text}`: {e}"))?;
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(url.into()),
        "http" if local => Ok(url.into()),
        _ => Err(
            format!("JWT_JWKS_URL `{text}` must be an https URL (http only to localhost)").into(),
        ),
    }
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.len() < 32 {
        return Err(format!(
            "must be at least 32 bytes (got {}); generate one with `openssl rand -hex 32`",
            value.len()
        ));
    }
    Ok(Secret(value.to_owned()))
}

/// A duration like `250ms`, `90s`, `15m`, `1h` or `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 250ms, 90s or 1h"))?;
    let millis = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use ms, s, m, h or d"
            ))
        }
    };
    number
        .checked_mul(millis)
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a positive duration"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("neuronmeet: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Relay(args) => {
            let pool = args.database.migrated_pool().await?;
            let (stop, stopped) = watch::channel(false);
            let relay = tokio::spawn(relay::run(
                pool,
                args.nats.relay_config(),
                RelayStatus::default(),
                stopped,
            ));
            shutdown_signal().await;
            stop.send_replace(true);
            relay.await?;
            Ok(())
        }
        Command::Migrate(args) => {
            args.migrated_pool().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay(args) => {
            let pool = args.database.migrated_pool().await?;
            let options = replay::Options {
                batch_size: args.batch_size,
                lock_timeout: args.lock_timeout,
                give_up_after: args.give_up_after,
                ..replay::Options::default()
            };
            let names = match args.projection {
                Some(name) => vec![name],
                None => read_models::names().into_iter().map(String::from).collect(),
            };
            for name in names {
                let summary = replay::run(&pool, &name, &options, |report| {
                    print_replay_report(&name, report)
                })
                .await?;
                println!(
                    "replayed {} events into {} rows of {} in {:.2}s ({:.0} events/s)",
                    summary.events,
                    summary.rows,
                    summary.projection,
                    summary.elapsed.as_secs_f64(),
                    summary.events_per_second()
                );
            }
            Ok(())
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi_json());
            Ok(())
        }
        Command::Tail(args) => {
            tail::run(
                &args.nats.nats_url,
                &args.nats.nats_stream,
                &args.durable,
                &args.subject,
            )
            .await
        }
        Command::Token(args) => {
            let claims = Claims {
                name: args.name,
                email: args.email,
                picture: args.picture,
                ..Claims::for_subject(args.sub)
            };
            println!("{}", args.jwt.tokens().mint(claims, args.ttl)?);
            Ok(())
        }
    }
}

fn print_replay_report(projection: &str, report: replay::Report<'_>) {
    match report {
        replay::Report::CleanedUp { table } => {
            eprintln!("replay {projection}: dropped {table}, left by an interrupted rebuild")
        }
        replay::Report::Progress(p) => eprintln!(
            "replay {projection}: {}/{} events, {:.0} events/s, position ({}, {}), ETA {:.0}s",
            p.events,
            p.total,
            p.rate(),
            p.position.transaction_id,
            p.position.global_position,
            p.eta().as_secs_f64()
        ),
        replay::Report::Waiting(blockers) => {
            eprintln!("replay {projection}: waiting to swap in the rebuilt table; held by:");
            for blocker in blockers {
                eprintln!("  {blocker}");
            }
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), BoxError> {
    if !args.room_batches {
        tracing::warn!("ROOM_BATCHES=false: commands on one room are not batched and retry blindly; for measuring only");
    }
    let tokens = args
        .provider
        .accepted_by(args.jwt.tokens(), &args.jwt)
        .await?
        .showing_email(args.display_email);
    let pool = args.database.migrated_pool().await?;
    let (stop, stopped) = watch::channel(false);
    let relay_status = RelayStatus::default();
    let nats_url = args.nats.nats_url.clone();
    let relay = tokio::spawn(relay::run(
        pool.clone(),
        args.nats.relay_config(),
        relay_status.clone(),
        stopped,
    ));
    let limits = Limits {
        request_timeout: args.request_timeout,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        max_connections: args.max_connections as usize,
        shutdown_timeout: args.shutdown_timeout,
        write_lock_timeout: args.write_lock_timeout,
        live_max_streams: args.live_max_streams,
        live_max_streams_each: args.live_max_streams_each,
        max_concurrent_requests: args.max_concurrent_requests,
        min_concurrent_requests: 4 * args.database.database_max_connections as usize,
        latency_target: args.latency_target,
        cors_origins: args.cors_origins,
        room_batches: args.room_batches,
        guest_joins_per_address: args.rate_limit_guest_joins.0,
        code_lookups_per_address: args.rate_limit_code_lookups.0,
        failed_lookups_per_address: args.rate_limit_failed_lookups.0,
        guest_joins_per_room: args.rate_limit_room_guest_joins.0,
        trusted_proxies: args.trusted_proxies,
    };
    let app = app::build(
        pool.clone(),
        tokens,
        Arc::new(SecureCodes),
        relay_status,
        Some(nats_url),
        &limits,
    );
    // Both IPv6 and IPv4 where the system allows a dual-stack socket, IPv4 alone otherwise.
    let listener =
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, args.port))).await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind(("0.0.0.0", args.port))
                .await
                .map_err(|e| format!("cannot listen on port {}: {e}", args.port))?,
        };
    tracing::info!(address = %listener.local_addr()?, "serving");
    app::serve(listener, app, limits, shutdown_signal()).await?;
    // In-flight requests are done; the relay publishes what they committed, then stops.
    stop.send_replace(true);
    relay.await?;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604800)));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
