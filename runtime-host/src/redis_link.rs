//! The Redis that several `edgegate serve` processes share (`[redis] url`):
//!
//! - **Rate limits** (`backend = "redis"`): the edge sends the very command
//!   it would send to Upstash's REST API (`EVALSHA`/`EVAL` of its scripts)
//!   to `http://redis.edgegate.internal/`; `outbound` hands that request to
//!   [`Redis::rest`], which runs it on this process's connection. The
//!   scripts stay written once, and the edge never sees credentials.
//! - **Object peers**: what an object publishes to its peers goes out on the
//!   channel [`CHANNEL`] as `{"o":origin,"c":class,"n":name,"m":message}`;
//!   every process subscribes and hands messages of other origins to its
//!   objects.
//!
//! Redis going away is expected: commands fail at once while there is no
//! connection (the policy's `on_failure` decides), published messages are
//! dropped, and both connections come back with exponential backoff, after
//! which objects with sockets hear `peers-linked`. The URL may hold a
//! password: logs and errors name only `host:port`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, TlsCertificates, Value};
use serde_json::{Value as Json, json};
use tokio::sync::{Notify, mpsc};
use wasmtime_wasi_http::{Error as ErrorCode, RequestOptions, WasiBody};

use crate::objects::{ObjectKey, Objects, PeerLink, valid_class};
use crate::settings::LoadError;

/// The authority the edge sends `backend = "redis"` commands to.
pub const AUTHORITY: &str = "redis.edgegate.internal";
/// The pub/sub channel of object peers.
pub const CHANNEL: &str = "edgegate:objects";
/// The feature the edge looks for in `EDGEGATE_HOST_FEATURES`.
pub const FEATURE: &str = "redis";

/// Commands the edge may run: its rate-limit scripts.
const ALLOWED_COMMANDS: [&str; 2] = ["EVALSHA", "EVAL"];
/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for an answer on an open connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The subscription is pinged this often, so a silent network failure is
/// noticed too.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Peer messages waiting for the connection; beyond, they are dropped.
const PUBLISH_QUEUE: usize = 4096;
/// Largest command the edge may send.
const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// Set once a link exists: the edge is told it may use the backend.
static LINKED: AtomicBool = AtomicBool::new(false);

/// `EDGEGATE_HOST_FEATURES` for the edge: `base`, plus [`FEATURE`] when this
/// process has a Redis link.
pub fn host_features(base: &str) -> String {
    if LINKED.load(Ordering::Relaxed) {
        format!("{base},{FEATURE}")
    } else {
        base.to_string()
    }
}

/// Whether `uri` addresses the Redis link.
pub fn is_redis(uri: &Uri) -> bool {
    uri.host()
        .is_some_and(|h| h.eq_ignore_ascii_case(AUTHORITY))
}

/// Why a command has no result. Never contains the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// No connection, or it broke.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis refused the command (its own error text, e.g. `NOSCRIPT …`).
    #[error("{0}")]
    Command(String),
}

/// The link: a command connection and a subscription, each reconnecting.
pub struct Redis {
    client: Client,
    /// `host:port`, for logs.
    address: String,
    /// This process's id among the peers.
    origin: Arc<str>,
    /// The command connection and its generation, while connected.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Wakes the supervisor when the current connection broke.
    broken: Notify,
}

/// Starts the link of `client` ([`client_of`] the `[redis]` section;
/// nothing without one) and links `objects` to their peers through it.
/// Connects in the background: Redis may be down at start.
pub fn start(client: Option<Client>, objects: &Arc<Objects>) -> Option<Arc<Redis>> {
    let client = client?;
    let redis = Arc::new(Redis {
        address: client.get_connection_info().addr().to_string(),
        client,
        origin: Arc::from(new_origin()),
        current: Mutex::new(None),
        broken: Notify::new(),
    });
    tracing::info!(address = %redis.address, origin = %redis.origin, "redis link starting");
    tokio::spawn(Arc::clone(&redis).supervise());
    let (publish, queue) = mpsc::channel(PUBLISH_QUEUE);
    tokio::spawn(Arc::clone(&redis).publish_loop(queue));
    tokio::spawn(Arc::clone(&redis).subscribe_loop(Arc::clone(objects)));
    objects.link_peers(Arc::new(Publisher(publish)));
    LINKED.store(true, Ordering::Relaxed);
    Some(redis)
}

/// The client of `[redis]`, not connected: what only the host environment
/// tells (the `env:` URL, the `ca_file`) is checked here, at load. With
/// `ca_file`, a `rediss://` server must show a certificate from those
/// authorities rather than a public one. Errors never contain the URL.
pub fn client_of(config: &edgegate_config::Redis) -> Result<Client, LoadError> {
    let error = |path: &str, reason: String| LoadError {
        path: path.into(),
        reason,
    };
    let url = match config.url.strip_prefix("env:") {
        Some(name) => std::env::var(name).map_err(|_| {
            error(
                "redis.url",
                format!("environment variable {name} is not set"),
            )
        })?,
        None => config.url.clone(),
    };
    let client = Client::open(url.as_str())
        .map_err(|_| error("redis.url", "not a valid redis:// or rediss:// URL".into()))?;
    let tls = match client.get_connection_info().addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(error(
                "redis.url",
                "#insecure would accept any certificate; trust a private authority with redis.ca_file instead".into(),
            ));
        }
        addr => matches!(addr, ConnectionAddr::TcpTls { .. }),
    };
    let Some(path) = config.ca_file.as_deref() else {
        return Ok(client);
    };
    let ca_error = |reason: String| error("redis.ca_file", reason);
    if !tls {
        return Err(ca_error(
            "needs a rediss:// url (TLS); redis:// is plain TCP".into(),
        ));
    }
    let pem = std::fs::read(path).map_err(|e| ca_error(format!("{path}: {e}")))?;
    // An empty store would refuse every server, and late.
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(ca_error(format!("{path}: no PEM certificate in it")));
    }
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    Client::build_with_tls(url.as_str(), certificates)
        .map_err(|e| ca_error(format!("{path}: {}", e.detail().unwrap_or("not usable"))))
}

/// A random id for this process (peers tell each other apart by it).
fn new_origin() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Unique enough among the processes of one machine.
        bytes = u64::from(std::process::id()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exponential backoff with jitter, from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The wait before the next attempt: half of the step plus a random
    /// part of the other half, so processes do not retry in lockstep.
    fn wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(BACKOFF_MAX);
        let mut byte = [0u8; 1];
        let _ = getrandom::getrandom(&mut byte);
        step / 2 + step / 2 * u32::from(byte[0]) / 255
    }
}

impl Redis {
    /// Keeps a command connection open: connects, waits until a command
    /// finds it broken, connects again after a backoff.
    async fn supervise(self: Arc<Self>) {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut backoff = Backoff::new();
        let mut generation = 0u64;
        let mut failures = 0u32;
        loop {
            let attempt = tokio::time::timeout(
                CONNECT_TIMEOUT,
                self.client
                    .get_multiplexed_async_connection_with_config(&config),
            )
            .await;
            match attempt {
                Ok(Ok(connection)) => {
                    generation += 1;
                    *lock(&self.current) = Some((generation, connection));
                    if generation == 1 {
                        tracing::info!(address = %self.address, "redis connected");
                    } else {
                        tracing::info!(address = %self.address, "redis reconnected");
                    }
                    backoff.reset();
                    failures = 0;
                    self.broken.notified().await;
                    tracing::warn!(address = %self.address, "redis connection lost; reconnecting");
                }
                Ok(Err(e)) => failed(&self.address, &mut failures, &e.to_string()),
                Err(_) => failed(&self.address, &mut failures, "connect timed out"),
            }
            tokio::time::sleep(backoff.wait()).await;
        }
    }

    /// Gives up the connection of `generation` (it broke).
    fn report(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
            drop(current);
            self.broken.notify_one();
        }
    }

    /// Runs one command; fails at once while there is no connection.
    pub async fn command(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        let Some((generation, mut connection)) = lock(&self.current).clone() else {
            return Err(RedisError::Unavailable("not connected".into()));
        };
        match cmd.query_async::<Value>(&mut connection).await {
            Ok(value) => Ok(value),
            Err(e) => match (e.code(), e.detail()) {
                (Some(code), detail) if !e.is_io_error() => {
                    Err(RedisError::Command(match detail {
                        Some(detail) => format!("{code} {detail}"),
                        None => code.to_string(),
                    }))
                }
                _ => {
                    if e.is_io_error()
                        || e.is_timeout()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error()
                    {
                        self.report(generation);
                    }
                    Err(RedisError::Unavailable(e.to_string()))
                }
            },
        }
    }

    /// Sends the objects' messages, in order, while connected; drops them
    /// otherwise.
    async fn publish_loop(self: Arc<Self>, mut queue: mpsc::Receiver<(ObjectKey, String)>) {
        let mut dropped = 0u64;
        while let Some((key, message)) = queue.recv().await {
            let envelope = json!({
                "o": &*self.origin,
                "c": &*key.class,
                "n": &*key.name,
                "m": message,
            })
            .to_string();
            match self
                .command(redis::cmd("PUBLISH").arg(CHANNEL).arg(envelope))
                .await
            {
                Ok(_) if dropped > 0 => {
                    tracing::info!(dropped, "peer messages flow again");
                    dropped = 0;
                }
                Ok(_) => {}
                Err(e) => {
                    if dropped == 0 {
                        tracing::warn!("peer messages dropped while redis is unavailable: {e}");
                    }
                    dropped += 1;
                }
            }
        }
    }

    /// Keeps the subscription to [`CHANNEL`]: delivers what other processes
    /// publish, and tells objects when it (re)starts.
    async fn subscribe_loop(self: Arc<Self>, objects: Arc<Objects>) {
        let mut backoff = Backoff::new();
        let mut failures = 0u32;
        loop {
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(CHANNEL).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match attempt {
                Ok(Ok(pubsub)) => {
                    tracing::info!(address = %self.address, channel = CHANNEL, "redis subscribed");
                    backoff.reset();
                    failures = 0;
                    objects.peers_linked();
                    self.listen(pubsub, &objects).await;
                    tracing::warn!(address = %self.address, "redis subscription lost; resubscribing");
                }
                Ok(Err(e)) => failed(&self.address, &mut failures, &e.to_string()),
                Err(_) => failed(&self.address, &mut failures, "subscribe timed out"),
            }
            tokio::time::sleep(backoff.wait()).await;
        }
    }

    /// Delivers messages until the subscription ends or stops answering.
    async fn listen(&self, pubsub: redis::aio::PubSub, objects: &Arc<Objects>) {
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.receive(message.get_payload_bytes(), objects),
                    None => return,
                },
                _ = ping.tick() => {
                    let answer = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    /// Hands one published envelope to its object (unless it is our own).
    fn receive(&self, payload: &[u8], objects: &Arc<Objects>) {
        #[derive(serde::Deserialize)]
        struct Envelope {
            o: String,
            c: String,
            n: String,
            m: String,
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
            tracing::debug!("unreadable message on {CHANNEL}");
            return;
        };
        if *envelope.o == *self.origin || !valid_class(&envelope.c) {
            return;
        }
        let origin: Arc<str> = Arc::from(envelope.o);
        let key = ObjectKey::new(&envelope.c, &envelope.n);
        objects.peer_message(&key, &origin, envelope.m);
    }

    /// Answers the edge's Upstash-style request (`POST /` with a JSON
    /// command) by running it here: `{"result": …}`, or `{"error": …}` with
    /// 400 (Redis refused it) or 503 (no connection).
    pub async fn rest(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, ErrorCode> {
        if request.method() != Method::POST || request.uri().path() != "/" {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                &json!({"error": "ERR only POST / with one command"}),
            ));
        }
        let body = match Limited::new(request.into_body(), MAX_COMMAND_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok(reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": "ERR command too large"}),
                ));
            }
            Err(_) => return Err(ErrorCode::HttpRequestBodySize(None)),
        };
        let cmd = match parse_command(&body) {
            Ok(cmd) => cmd,
            Err(why) => return Ok(reply(StatusCode::BAD_REQUEST, &json!({ "error": why }))),
        };
        let run = self.command(&cmd);
        let result = match options.and_then(|o| o.first_byte_timeout) {
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .map_err(|_| ErrorCode::ConnectionReadTimeout)?,
            None => run.await,
        };
        Ok(match result {
            Ok(value) => reply(
                StatusCode::OK,
                &json!({ "result": edgegate_upstash_wire::reply(value) }),
            ),
            Err(RedisError::Command(message)) => {
                reply(StatusCode::BAD_REQUEST, &json!({ "error": message }))
            }
            Err(e) => {
                tracing::debug!("redis command failed: {e}");
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "error": e.to_string() }),
                )
            }
        })
    }
}

/// Logs a failed connection attempt: the first as a warning, later ones
/// (while it stays down) at debug level.
fn failed(address: &str, failures: &mut u32, why: &str) {
    if *failures == 0 {
        tracing::warn!(%address, "redis unavailable, retrying with backoff: {why}");
    } else {
        tracing::debug!(%address, attempt = *failures + 1, "redis still unavailable: {why}");
    }
    *failures = failures.saturating_add(1);
}

/// A JSON command (`["EVALSHA","…","1","key","10"]`) of an allowed kind.
fn parse_command(body: &[u8]) -> Result<Cmd, String> {
    let json = serde_json::from_slice::<Json>(body).unwrap_or(Json::Null);
    let (name, cmd) = edgegate_upstash_wire::command(&json).map_err(|e| e.to_string())?;
    if !ALLOWED_COMMANDS
        .iter()
        .any(|allowed| name.eq_ignore_ascii_case(allowed))
    {
        return Err(format!("ERR command {name:?} is not allowed here"));
    }
    Ok(cmd)
}

fn reply(status: StatusCode, body: &Json) -> Response<WasiBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Objects' messages to the link's publisher.
struct Publisher(mpsc::Sender<(ObjectKey, String)>);

impl PeerLink for Publisher {
    fn publish(&self, key: &ObjectKey, message: String) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.0.try_send((key.clone(), message)) {
            tracing::debug!(class = %key.class, name = %key.name, "peer queue full; message dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scripts_run() {
        assert!(parse_command(br#"["EVALSHA","abc","1","k","1"]"#).is_ok());
        assert!(parse_command(br#"["eval","return 1","0"]"#).is_ok());
        assert!(parse_command(br#"["FLUSHALL"]"#).is_err());
        assert!(parse_command(br#"["EVAL",{}]"#).is_err());
        assert!(parse_command(b"[]").is_err());
        assert!(parse_command(b"nope").is_err());
    }

    #[test]
    fn the_authority_is_recognised() {
        assert!(is_redis(
            &"http://redis.edgegate.internal/".parse().unwrap()
        ));
        assert!(is_redis(
            &"http://REDIS.edgegate.internal:80/".parse().unwrap()
        ));
        assert!(!is_redis(&"http://redis.example.com/".parse().unwrap()));
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.wait()).collect();
        assert!(waits[0] <= BACKOFF_MIN && waits[0] >= BACKOFF_MIN / 2);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX));
        assert!(waits[9] >= BACKOFF_MAX / 2);
        backoff.reset();
        assert!(backoff.wait() <= BACKOFF_MIN);
    }

    #[test]
    fn errors_name_the_key_and_never_show_the_url() {
        let config = |url: &str, ca_file: Option<&str>| edgegate_config::Redis {
            url: url.into(),
            timeout_ms: 1000,
            ca_file: ca_file.map(String::from),
        };
        let bad = client_of(&config("http://user:hunter2@x", None)).unwrap_err();
        assert_eq!(bad.path, "redis.url");
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
        let missing = client_of(&config("env:EDGEGATE_SURELY_UNSET", None)).unwrap_err();
        assert!(missing.to_string().contains("EDGEGATE_SURELY_UNSET"));
        let insecure = client_of(&config("rediss://:hunter2@x/#insecure", None)).unwrap_err();
        assert_eq!(insecure.path, "redis.url");
        assert!(!insecure.to_string().contains("hunter2"), "{insecure}");
        let plain = client_of(&config("redis://:hunter2@x", Some("/nonexistent.pem"))).unwrap_err();
        assert_eq!(plain.path, "redis.ca_file");
        assert!(plain.reason.contains("rediss://"), "{plain}");
        assert!(client_of(&config("rediss://:hunter2@x/", None)).is_ok());
    }
}
