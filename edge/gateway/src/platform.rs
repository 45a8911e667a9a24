//! What the gateway needs from the world it runs in. Each target implements
//! this once, thinly; everything else lives in this crate.

use std::time::Duration;

use bytes::Bytes;

/// How an upstream call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Time to open the connection.
    pub connect_timeout: Duration,
    /// Time until the response head, and between body chunks after it.
    pub timeout: Duration,
}

/// Why an upstream call failed; decides 502 or 504 and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No connection could be made (refused, unreachable, DNS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connection broke before a response head arrived.
    #[error("connection reset: {0}")]
    Reset(String),
    /// Connect or response timeout.
    #[error("timed out")]
    Timeout,
    /// Anything else (protocol errors, request body errors).
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, FetchError::Other(_))
    }
}

/// A request or response body of the platform: streamed, never buffered by
/// the gateway unless it says so.
pub trait EdgeBody: Sized + 'static {
    /// A body with these bytes.
    fn from_bytes(bytes: Bytes) -> Self;
    /// An empty body.
    fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }
    /// Wraps the body so that streaming more than `max` bytes fails; the
    /// returned flag is set when that happened.
    fn limit(self, max: u64, exceeded: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self;
    /// Reads the whole body, failing beyond `max` bytes (small documents only, such as JWKS).
    #[allow(async_fn_in_trait)]
    async fn read_to_end(self, max: usize) -> Result<Bytes, String>;
}

/// The gateway's window on its platform.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// The platform's streaming body.
    type Body: EdgeBody;

    /// Sends a request to an origin (absolute URI).
    async fn fetch(
        &self,
        request: http::Request<Self::Body>,
        options: FetchOptions,
    ) -> Result<http::Response<Self::Body>, FetchError>;

    /// Sends a request to the Durable Object `name` of `class`, as
    /// Cloudflare's `stub.fetch(request)` does. Targets without Durable
    /// Objects answer `FetchError::Connect`.
    async fn durable_object(
        &self,
        class: &str,
        name: &str,
        request: http::Request<Self::Body>,
    ) -> Result<http::Response<Self::Body>, FetchError>;

    /// Whether `durable_object` reaches live objects here (WebSocket hubs
    /// need them).
    fn has_durable_objects(&self) -> bool;

    /// Whether the host runs `backend = "redis"` commands sent to
    /// [`crate::REDIS_AUTHORITY`] (`edgegate serve` with a
    /// `[redis]` section).
    fn has_redis(&self) -> bool {
        false
    }

    /// Waits (retry backoff).
    async fn sleep(&self, duration: Duration);

    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;

    /// A monotonic clock in nanoseconds (latencies); any origin.
    fn monotonic_ns(&self) -> u64;

    /// Writes one access-log line.
    fn log(&self, line: &str);

    /// Whether the platform consumes access records (metrics, traces) even
    /// when `[gateway] access_log` is off; it then decides what to print.
    fn wants_access_records(&self) -> bool {
        false
    }

    /// Fills `buf` with random bytes (ids, balancing jitter).
    fn fill_random(&self, buf: &mut [u8]);
}

/// Facts about the caller's connection that only the platform knows.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Peer IP address as text.
    pub ip: Option<String>,
    /// `http` or `https` as seen by the client.
    pub scheme: Option<String>,
    /// Targets the host's active health checks found unhealthy, as
    /// `upstream=i,j;other=k` (see `balance::unhealthy_targets`).
    pub unhealthy_targets: Option<String>,
}
