//! A running service for integration tests: real HTTP on a free port, a fresh PostgreSQL
//! database per test (created from DATABASE_URL, which scripts/test points at a throwaway
//! server), and helpers to mint tokens and cut the database connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use neuronmeet::auth::{Claims, Tokens};
use neuronmeet::codes::{CodeGenerator, SecureCodes};
use neuronmeet::db;
use neuronmeet::relay::{self, RelayConfig, RelayStatus};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const SECRET: &[u8] = b"integration-tests-secret-of-32-bytes!";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// A pool of the test's own, for inspecting the database directly.
    pub db: PgPool,
    pub tokens: Tokens,
    pub database_name: String,
    pub database_url: String,
    pub relay: Option<tokio::task::JoinHandle<()>>,
    pub relay_status: RelayStatus,
    _stop_relay: watch::Sender<bool>,
}

pub struct Options {
    pub codes: Arc<dyn CodeGenerator>,
    pub max_connections: u32,
    /// Route the service's database traffic through a proxy the test can cut.
    pub proxy: Option<Arc<Proxy>>,
    /// Use this database (url, name) instead of a fresh one: several instances, one database.
    pub database: Option<(String, String)>,
    /// Run a relay publishing to this configuration.
    pub relay: Option<RelayConfig>,
    pub limits: neuronmeet::http::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            codes: Arc::new(SecureCodes),
            max_connections: 10,
            proxy: None,
            database: None,
            relay: None,
            limits: Default::default(),
        }
    }
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a PostgreSQL server whose user may create databases; \
         scripts/test sets it up",
    )
}

/// A new, migrated, empty database; returns its URL and name. It is a copy of a template that
/// is migrated once per set of migrations (and per server), which is much faster than
/// migrating each test's database.
pub async fn fresh_database() -> (String, String) {
    let admin = admin_url();
    let template = migrated_template(&admin).await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut conn)
        .await
        .expect("create the test database from the template");
    (database_url(&admin, &name), name)
}

fn database_url(admin: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(admin).expect("DATABASE_URL is a URL");
    url.set_path(name);
    url.to_string()
}

/// The name of a database migrated with exactly this build's migrations, created if missing.
/// Test processes run at once: an advisory lock makes one of them build it, under a temporary
/// name, so a copy is never taken of a half-migrated template.
async fn migrated_template(admin: &str) -> String {
    let fingerprint = db::MIGRATOR
        .iter()
        .flat_map(|m| m.checksum.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let template = format!("nm_template_{fingerprint:016x}");
    let mut conn = PgConnection::connect(admin)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut conn)
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building}"),
            format!("CREATE DATABASE {building}"),
        ] {
            sqlx::query(&statement).execute(&mut conn).await.unwrap();
        }
        let pool = PgPool::connect(&database_url(admin, &building))
            .await
            .expect("connect to the template");
        db::migrate(&pool).await.expect("migrate the template");
        pool.close().await;
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut conn)
        .await
        .unwrap();
    template
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let (url, database_name) = match options.database {
            Some(database) => database,
            None => fresh_database().await,
        };
        let service_url = match &options.proxy {
            Some(proxy) => proxy.start(&url).await,
            None => url.clone(),
        };
        let pool = db::connect_lazy(&service_url, options.max_connections).unwrap();
        let tokens = Tokens::new(SECRET, None, None);
        let relay_status = RelayStatus::default();
        let (stop_relay, relay_stopped) = watch::channel(false);
        let nats_url = options.relay.as_ref().map(|config| config.nats_url.clone());
        let relay = options.relay.map(|config| {
            tokio::spawn(relay::run(
                pool.clone(),
                config,
                relay_status.clone(),
                relay_stopped,
            ))
        });
        let app = neuronmeet::app::build(
            pool,
            tokens.clone(),
            options.codes,
            relay_status.clone(),
            nats_url,
            &options.limits,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(neuronmeet::app::serve(
            listener,
            app,
            options.limits,
            std::future::pending(),
        ));
        Self {
            base,
            client: reqwest::Client::new(),
            db: PgPool::connect(&url).await.unwrap(),
            tokens,
            database_name,
            database_url: url,
            relay,
            relay_status,
            _stop_relay: stop_relay,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with(claims(sub))
    }

    pub fn token_with(&self, claims: Claims) -> String {
        self.tokens.mint(claims, Duration::from_secs(3600)).unwrap()
    }

    /// POST /rooms with a valid token and a JSON body.
    pub async fn create_room(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/rooms"))
            .bearer_auth(self.token("user-1"))
            .json(&body)
            .send()
            .await
            .expect("POST /rooms")
    }

    /// A request as user `sub`, with a JSON body when given.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        sub: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(self.token(sub));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("a response")
    }

    /// GET /rooms/{id} with a valid token of `sub`.
    pub async fn get_room(&self, id: &str, sub: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/rooms/{id}")))
            .bearer_auth(self.token(sub))
            .send()
            .await
            .expect("GET /rooms/{id}")
    }

    /// A GET without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// Backends of this test's database waiting for a lock.
    pub async fn waiting_on_locks(&self) -> i64 {
        self.count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

/// Polls `check` every 20 ms, for at most 5 s, until it holds; whether it did.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The value of `sql` (a count) once it reaches `expected`, or its last value after 5 s.
pub async fn count_when(db: &PgPool, sql: &str, expected: i64) -> i64 {
    let mut last = 0;
    for _ in 0..250 {
        last = sqlx::query_scalar(sql).fetch_one(db).await.unwrap();
        if last == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

pub fn claims(sub: &str) -> Claims {
    Claims::for_subject(sub)
}

/// A TCP proxy between the service and PostgreSQL. `cut` drops every connection and refuses
/// new ones, as a database that went away would; `restore` lets them through again.
#[derive(Default)]
pub struct Proxy {
    cut: AtomicBool,
    generation: tokio::sync::watch::Sender<u64>,
    /// While true, nothing is passed on in either direction (held, not dropped): a database
    /// that stopped answering.
    stalled: tokio::sync::watch::Sender<bool>,
    /// Added to every chunk in each direction: a slow network widens race windows.
    latency: Duration,
    /// How many times a client spoke after its server had (its first message included), over
    /// all connections: the round trips the clients waited on.
    client_turns: AtomicUsize,
}

impl Proxy {
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// Starts proxying to the database of `url`; returns the URL to reach it through the proxy.
    pub async fn start(self: &Arc<Self>, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if proxy.cut.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let mut cut = proxy.generation.subscribe();
                let latency = proxy.latency;
                let (stalled_up, stalled_down) =
                    (proxy.stalled.subscribe(), proxy.stalled.subscribe());
                let turns = Turns {
                    proxy: Arc::clone(&proxy),
                    server_spoke_last: Arc::new(AtomicBool::new(true)),
                };
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = forward(client_read, server_write, latency, stalled_up, (&turns, true)) => {}
                        _ = forward(server_read, client_write, latency, stalled_down, (&turns, false)) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        url.to_string()
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Holds every byte in both directions until [`Self::resume`].
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// The round trips clients have waited on so far, over all connections through the proxy.
    pub fn client_turns(&self) -> usize {
        self.client_turns.load(Ordering::SeqCst)
    }
}

/// Who spoke last on one proxied connection.
struct Turns {
    proxy: Arc<Proxy>,
    server_spoke_last: Arc<AtomicBool>,
}

impl Turns {
    fn spoke(&self, client: bool) {
        if self.server_spoke_last.swap(!client, Ordering::SeqCst) && client {
            self.proxy.client_turns.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
    mut stalled: tokio::sync::watch::Receiver<bool>,
    (turns, client): (&Turns, bool),
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        turns.spoke(client);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A nats-server with JetStream of the test's own, on a free port, that the test can stop and
/// start again (with the same store).
pub struct NatsServer {
    pub url: String,
    port: u16,
    store: std::path::PathBuf,
    process: Option<std::process::Child>,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = free_port();
        let store = std::env::temp_dir().join(format!(
            "neuronmeet-test-nats-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut server = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            process: None,
        };
        server.restart().await;
        server
    }

    pub async fn restart(&mut self) {
        let mut command = nats_server_command();
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store);
        self.process = Some(spawn_nats_server(command));
        wait_for_port(self.port).await;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            poll_interval: Duration::from_millis(200),
            ..RelayConfig::new(&self.url)
        }
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(&self.url).await.unwrap())
    }

    /// Every message in the ROOMS stream, in stream order.
    pub async fn messages(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        self.messages_in("ROOMS").await
    }

    /// Every message still in `stream` (purged and deleted ones are gone), in stream order.
    pub async fn messages_in(
        &self,
        stream: &str,
    ) -> Vec<async_nats::jetstream::message::StreamMessage> {
        stream_messages(&self.jetstream().await, stream).await
    }

    /// Waits until the stream holds at least `count` messages (or 30 s pass), then returns them.
    pub async fn wait_for(
        &self,
        count: usize,
    ) -> Vec<async_nats::jetstream::message::StreamMessage> {
        for _ in 0..300 {
            let messages = self.messages().await;
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.messages().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Every message still in `stream` (purged and deleted ones are gone), in stream order.
pub async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // Read each one, whatever it takes: after a leader change a read can time out or meet
        // no responders for a while, and a message skipped here would look like one lost.
        let mut tries = 0;
        let message = loop {
            match stream.get_raw_message(sequence).await {
                Ok(message) => break Some(message),
                Err(error) if error.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => break None,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(error) => panic!("reading message {sequence} of the stream failed: {error}"),
            }
        };
        messages.extend(message);
    }
    messages
}

/// The nats-server to run: `NATS_SERVER` (scripts/test sets it to the pinned release), else
/// `nats-server` on PATH.
fn nats_server_command() -> std::process::Command {
    let binary = std::env::var_os("NATS_SERVER").unwrap_or_else(|| "nats-server".into());
    let mut command = std::process::Command::new(binary);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Starts it, or fails the test loudly: a test that needs NATS must never pass without it.
fn spawn_nats_server(mut command: std::process::Command) -> std::process::Child {
    command.spawn().unwrap_or_else(|error| {
        panic!(
            "cannot run {:?} ({error}): set NATS_SERVER to a nats-server binary, or run the \
             tests with scripts/test, which installs the pinned one",
            command.get_program()
        )
    })
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nats-server did not start on port {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JetStream cluster of the test's own: nodes on 127.0.0.1 (free client and route ports),
/// each with a temporary store, that the test can kill (SIGKILL) and start again.
pub struct NatsCluster {
    dir: std::path::PathBuf,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    name: String,
    port: u16,
    config: std::path::PathBuf,
    process: Option<std::process::Child>,
}

impl NatsCluster {
    pub async fn start(size: usize) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "neuronmeet-test-nats-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::new();
        for (index, (port, route_port)) in ports.iter().enumerate() {
            let name = format!("n{}", index + 1);
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, other)| other != route_port)
                .map(|(_, other)| format!("\"nats-route://127.0.0.1:{other}\""))
                .collect();
            let store = dir.join(&name);
            let config = dir.join(format!("{name}.conf"));
            let log = dir.join(format!("{name}.log"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\n\
                     listen: \"127.0.0.1:{port}\"\n\
                     log_file: {log:?}\n\
                     jetstream {{ store_dir: {store:?} }}\n\
                     cluster {{\n  name: neuronmeet-test\n  listen: \"127.0.0.1:{route_port}\"\n  \
                     routes: [{}]\n}}\n",
                    routes.join(", ")
                ),
            )
            .unwrap();
            nodes.push(ClusterNode {
                name,
                port: *port,
                config,
                process: None,
            });
        }
        let mut cluster = Self { dir, nodes };
        for index in 0..size {
            cluster.spawn(index);
        }
        for node in &cluster.nodes {
            wait_for_port(node.port).await;
        }
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let mut command = nats_server_command();
        command.arg("-c").arg(&node.config);
        node.process = Some(spawn_nats_server(command));
    }

    /// Every node's URL, comma-separated: a `NATS_URL` for the whole cluster.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| n.url()).collect();
        urls.join(",")
    }

    /// SIGKILL: no lame-duck mode, no leadership handed over.
    pub fn kill(&mut self, name: &str) {
        let node = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        if let Some(mut child) = node.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self, name: &str) {
        let index = self.nodes.iter().position(|n| n.name == name).unwrap();
        self.spawn(index);
        wait_for_port(self.nodes[index].port).await;
    }

    /// A JetStream context on the nodes still running.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let running: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| n.url().parse().unwrap())
            .collect();
        let client = async_nats::connect(running).await.unwrap();
        async_nats::jetstream::new(client)
    }
}

impl ClusterNode {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A published envelope's `sequence`: 19 digits, zero-padded, that sort as the numbers do.
pub fn envelope_sequence(envelope: &serde_json::Value) -> i64 {
    let text = envelope["sequence"].as_str().expect("sequence is a string");
    assert_eq!(text.len(), 19, "{text}");
    text.parse().unwrap()
}

/// Each room's events appear in `messages` as 1, 2, 3, ... (in stream order, interleaved).
pub fn assert_each_rooms_order(messages: &[async_nats::jetstream::message::StreamMessage]) {
    let mut next: std::collections::HashMap<String, i64> = Default::default();
    for message in messages {
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let room = envelope["subject"].as_str().unwrap().to_owned();
        let expected = next.entry(room.clone()).or_insert(1);
        assert_eq!(
            envelope_sequence(&envelope),
            *expected,
            "{room} out of order"
        );
        *expected += 1;
    }
}

/// A published envelope's `globalposition`: a decimal string.
pub fn envelope_position(envelope: &serde_json::Value) -> i64 {
    let text = envelope["globalposition"]
        .as_str()
        .expect("globalposition is a string");
    assert_eq!(text.parse::<i64>().unwrap().to_string(), text);
    text.parse().unwrap()
}

/// A local port that nothing listens on (it was free a moment ago).
pub fn closed_port() -> u16 {
    free_port()
}

/// Every read model's rows, as one JSON value (each row as text, sorted).
async fn read_model_rows(db: &PgPool) -> serde_json::Value {
    sqlx::query_scalar(
        "SELECT json_agg(t ORDER BY t) FROM (SELECT row_to_json(r)::text AS t FROM rooms r \
         UNION ALL SELECT row_to_json(p)::text FROM participants p \
         UNION ALL SELECT row_to_json(s)::text FROM room_states s) AS x",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Rebuilds every projection from the log and checks that it made exactly the rows the
/// commands wrote.
pub async fn assert_replay_rebuilds_the_same_rows(db: &PgPool) {
    let before = read_model_rows(db).await;
    for projection in neuronmeet::read_models::names() {
        neuronmeet::replay::run(db, projection, &Default::default(), |_| {})
            .await
            .unwrap();
    }
    assert_eq!(
        read_model_rows(db).await,
        before,
        "replay rebuilds the same rows"
    );
}

/// `BEGIN; <sql>` on a connection of the test's own, left open until [`release`].
pub async fn hold(app: &TestApp, sql: &str) -> PoolConnection<Postgres> {
    let mut held = app.db.acquire().await.unwrap();
    sqlx::raw_sql(&format!("BEGIN; {sql}"))
        .execute(&mut *held)
        .await
        .unwrap();
    held
}

pub async fn release(mut held: PoolConnection<Postgres>) {
    sqlx::raw_sql("COMMIT").execute(&mut *held).await.unwrap();
}

/// A request in a task of its own, with a token of `sub` (none: anonymous) and a JSON `body`:
/// its status and body.
pub fn spawn_request(
    app: &Arc<TestApp>,
    method: reqwest::Method,
    path: String,
    sub: Option<&str>,
    body: Option<serde_json::Value>,
) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    let app = Arc::clone(app);
    let sub = sub.map(str::to_owned);
    tokio::spawn(async move {
        let mut request = app.client.request(method, app.url(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(sub) = sub {
            request = request.bearer_auth(app.token(&sub));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    })
}

/// A request with a bearer token (a join token, say) instead of a user's.
pub async fn with_token(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}
