//! The configuration schema: one TOML file, the same for every target.
//!
//! Key names are a contract with users' files; add keys, never rename them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and storage settings of `edgegate serve` (ignored by other targets).
    #[serde(default)]
    pub server: Server,
    /// Behaviour shared by every route.
    #[serde(default)]
    pub gateway: Gateway,
    /// Named groups of origin servers that routes forward to.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    /// How callers prove who they are.
    #[serde(default)]
    pub auth: Auth,
    /// Rate-limit policies that routes refer to by name.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Upstash REST endpoint for `backend = "upstash"` policies.
    #[serde(default)]
    pub upstash: Option<Upstash>,
    /// Redis for `backend = "redis"` policies and hub fan-out (runtime-host).
    #[serde(default)]
    pub redis: Option<Redis>,
    /// CORS policy for routes that do not set their own.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// Routes, matched most-specific first.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// `[server]`: runtime-host only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Public listener address.
    pub listen: String,
    /// Admin listener (`/healthz`, `/readyz`); never exposed on the public one.
    pub admin: String,
    /// Directory for Durable Object storage and the compiled-component cache.
    pub data_dir: Option<String>,
    /// Linear-memory cap of one edge instance, in MiB.
    pub max_instance_memory_mib: u64,
    /// How long guest code may run without yielding to the host before the
    /// request fails with 503 (a runaway guest).
    pub cpu_limit_ms: u64,
    /// Requests an edge instance serves before it is recycled.
    pub instance_max_requests: u64,
    /// Seconds a Durable Object may stay idle before it is evicted (its
    /// storage and WebSockets stay).
    pub object_idle_timeout_s: u64,
    /// Seconds a WebSocket may stay silent before it is pinged and closed.
    pub websocket_idle_timeout_s: u64,
    /// Seconds requests in flight get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_s: u64,
    /// Export trace spans over OTLP/HTTP.
    pub otlp: Option<Otlp>,
}

/// `[server.otlp]`: where `edgegate serve` sends trace spans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Otlp {
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:4318`); spans go to
    /// `<endpoint>/v1/traces` as JSON.
    pub endpoint: String,
    /// `service.name` of the exported resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Time one export may take.
    #[serde(default = "default_otlp_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_service_name() -> String {
    "edgegate".into()
}
fn default_otlp_timeout_ms() -> u64 {
    2_000
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9901".into(),
            data_dir: None,
            max_instance_memory_mib: 64,
            cpu_limit_ms: 1000,
            instance_max_requests: 10_000,
            object_idle_timeout_s: 30,
            websocket_idle_timeout_s: 300,
            shutdown_grace_s: 10,
            otlp: None,
        }
    }
}

/// `[gateway]`: behaviour shared by every route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    /// Keep the client's `x-forwarded-*` chain (only behind a trusted proxy).
    pub trust_forwarded_headers: bool,
    /// Headers added to every response (existing upstream values are kept).
    pub security_headers: BTreeMap<String, String>,
    /// One JSON line per request on standard output (Workers: the console).
    pub access_log: bool,
}

impl Default for Gateway {
    fn default() -> Self {
        let security_headers = [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            trust_forwarded_headers: false,
            security_headers,
            access_log: true,
        }
    }
}

/// `[[upstreams]]`: a named group of origin servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Name routes refer to.
    pub name: String,
    /// Origin servers, balanced by smooth weighted round-robin.
    pub targets: Vec<Target>,
    /// Time allowed for one attempt until the response head arrives, and
    /// between body chunks after it.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time allowed to open the connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Extra attempts for idempotent requests without a body.
    #[serde(default)]
    pub retries: u32,
    /// First backoff between attempts; doubles on each retry.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Consecutive failures (connect errors, timeouts, 502/503/504) that
    /// eject a target for a while; 0 turns the circuit breaker off.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// First ejection of a failing target; doubles while it keeps failing.
    #[serde(default = "default_ejection_ms")]
    pub ejection_ms: u64,
    /// Active health checks (`edgegate serve` only; other targets rely on
    /// the circuit breaker).
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// `[[upstreams]] health_check`: probes each target in the background.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path requested with `GET` on each target; 2xx and 3xx are healthy.
    pub path: String,
    /// Time between probes of one target.
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    /// Time one probe may take.
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring an unhealthy target back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a target out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_health_interval_ms() -> u64 {
    5_000
}
fn default_health_timeout_ms() -> u64 {
    1_000
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

fn default_max_failures() -> u32 {
    5
}
fn default_ejection_ms() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_retry_backoff_ms() -> u64 {
    25
}

/// One origin server of an upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://host:port` or `https://host:port`, optionally with a base path.
    pub url: String,
    /// Share of traffic relative to the other targets.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// JSON Web Token verification.
    pub jwt: Option<Jwt>,
    /// API keys, stored as SHA-256 digests.
    pub api_keys: Vec<ApiKey>,
    /// Request header that carries an API key.
    pub api_key_header: String,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            jwt: None,
            api_keys: Vec::new(),
            api_key_header: "x-api-key".into(),
        }
    }
}

/// `[auth.jwt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud` (one of these).
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Verification keys, each pinned to one algorithm.
    pub keys: Vec<JwtKey>,
    /// Claim holding roles (array or space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding OAuth scopes (space-separated string or array).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Claim naming the user (sent upstream as `x-user-id`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Cookie that may carry the token (for browsers and WebSocket clients).
    #[serde(default)]
    pub cookie: Option<String>,
    /// Query parameter that may carry the token (WebSocket clients); removed
    /// before the request goes upstream.
    #[serde(default)]
    pub query_param: Option<String>,
    /// How long keys fetched from a JWKS URL are trusted before a refresh.
    #[serde(default = "default_jwks_ttl_s")]
    pub jwks_ttl_s: u64,
}

fn default_leeway_s() -> u64 {
    30
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_jwks_ttl_s() -> u64 {
    300
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One JWT verification key (exactly one of `secret`, `pem`, `jwk`, `jwks_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Key id matched against the token's `kid` header.
    pub kid: Option<String>,
    /// The only algorithm this key accepts.
    pub alg: String,
    /// HMAC secret (`HS*`), literal or `env:NAME`.
    pub secret: Option<String>,
    /// PEM public key (`RS*`, `PS*`, `ES256`, `EdDSA`), literal or `env:NAME`.
    pub pem: Option<String>,
    /// JSON Web Key, as a TOML inline table or a JSON string.
    pub jwk: Option<toml::Value>,
    /// JWKS document URL; keys are fetched, cached and refreshed on unknown `kid`.
    pub jwks_url: Option<String>,
}

/// `[[auth.api_keys]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Consumer identity sent upstream as `x-consumer`.
    pub consumer: String,
    /// Lowercase hex SHA-256 of the key (or `env:NAME`).
    pub key_sha256: String,
    /// Roles granted to this consumer.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes granted to this consumer.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Rate-limit algorithm.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Refills `limit` tokens per period, bursts up to `burst`.
    TokenBucket,
    /// Interpolated two-window count.
    SlidingWindow,
    /// Generic cell rate algorithm.
    Gcra,
    /// Count per aligned window.
    FixedWindow,
}

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// One Durable Object per key (Workers, runtime-host).
    #[default]
    DurableObject,
    /// Upstash REST API (any target with outbound HTTP).
    Upstash,
    /// Redis shared by several runtime-hosts.
    Redis,
}

/// What a route does when its limiter cannot answer.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Refuse the request (503).
    #[default]
    Closed,
    /// Let the request through.
    Open,
}

/// `[[rate_limits]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Name routes refer to.
    pub name: String,
    /// Counting algorithm.
    pub algorithm: Algorithm,
    /// What is counted: `ip`, `user`, `api_key`, `header:<name>` or `global`.
    pub key: String,
    /// Requests admitted per period.
    pub limit: u64,
    /// Period length in seconds.
    pub period_s: u64,
    /// Extra burst capacity for `token_bucket` and `gcra` (defaults to `limit`).
    pub burst: Option<u64>,
    /// Where the counters live.
    #[serde(default)]
    pub backend: Backend,
    /// Behaviour when the backend cannot answer.
    #[serde(default)]
    pub on_failure: FailureMode,
    /// Upstash endpoint of this policy alone (`backend = "upstash"` only),
    /// instead of `[upstash]`. [`Config::resolve_secrets`] fills it from
    /// `[upstash]` for every upstash-backed policy that has none.
    #[serde(default)]
    pub upstash: Option<Upstash>,
}

/// `[upstash]`, or `upstash = { … }` of one rate limit.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstash {
    /// REST URL.
    #[serde(default = "default_upstash_url")]
    pub url: String,
    /// REST token.
    #[serde(default = "default_upstash_token")]
    pub token: String,
    /// Time one check may take, connection included, before the policy's
    /// `on_failure` applies.
    #[serde(default = "default_upstash_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for Upstash {
    /// URL and token from `UPSTASH_REDIS_REST_URL` and `UPSTASH_REDIS_REST_TOKEN`.
    fn default() -> Self {
        Self {
            url: default_upstash_url(),
            token: default_upstash_token(),
            timeout_ms: default_upstash_timeout_ms(),
        }
    }
}

// The token is a secret: debug output shows only whether it comes from the
// environment.
impl std::fmt::Debug for Upstash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.starts_with("env:") {
            self.token.as_str()
        } else {
            "<redacted>"
        };
        f.debug_struct("Upstash")
            .field("url", &self.url)
            .field("token", &token)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_upstash_url() -> String {
    "env:UPSTASH_REDIS_REST_URL".into()
}
fn default_upstash_token() -> String {
    "env:UPSTASH_REDIS_REST_TOKEN".into()
}
fn default_upstash_timeout_ms() -> u64 {
    1_000
}

/// `[redis]`: the Redis that several `edgegate serve` processes share for
/// `backend = "redis"` counters and WebSocket hub fan-out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), or
    /// `env:NAME`. Only the host reads it; the edge never connects to Redis
    /// itself.
    pub url: String,
    /// Time one rate-limit check may take before the policy's `on_failure`
    /// applies.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file of the certificate authorities a `rediss://` server's
    /// certificate must chain to, instead of the public ones (a private
    /// CA). Read at start.
    #[serde(default)]
    pub ca_file: Option<String>,
}

// The URL may carry a password: debug output shows only where it comes from.
impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = if self.url.starts_with("env:") {
            self.url.as_str()
        } else {
            "<redacted>"
        };
        f.debug_struct("Redis")
            .field("url", &url)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn default_redis_timeout_ms() -> u64 {
    1_000
}

/// Route authentication requirement.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone.
    #[default]
    None,
    /// A valid JWT.
    Jwt,
    /// A known API key.
    ApiKey,
    /// Either a valid JWT or a known API key.
    Any,
}

/// A CORS policy.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins, or `["*"]`.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Allowed methods (defaults to the route's methods, else GET/HEAD/POST).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a preflight answer may be cached.
    #[serde(default)]
    pub max_age_s: Option<u64>,
}

/// `match = { … }` of a route.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Host (exact, or `*.example.com`).
    pub host: Option<String>,
    /// Exact path or template with `{param}` segments.
    pub path: Option<String>,
    /// Path prefix on segment boundaries.
    pub path_prefix: Option<String>,
    /// Allowed methods (any when empty).
    #[serde(default)]
    pub methods: Vec<String>,
}

/// `websocket = { … }` of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocket {
    /// Hub name, may use path parameters (`{room}`).
    pub hub: String,
    /// Largest message accepted (close 1009 beyond).
    #[serde(default = "default_ws_max")]
    pub max_message_bytes: u64,
    /// Messages one connection may send per second (bursts of twice that).
    #[serde(default = "default_ws_rate")]
    pub messages_per_second: u64,
}

fn default_ws_rate() -> u64 {
    20
}

fn default_ws_max() -> u64 {
    65_536
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name used in logs and metrics.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub match_: Match,
    /// Upstream to forward to (not needed for WebSocket routes).
    pub upstream: Option<String>,
    /// Path prefix removed before forwarding.
    pub strip_prefix: Option<String>,
    /// Upstream path, may use path parameters (`/v2/users/{id}`).
    pub rewrite: Option<String>,
    /// Who may call.
    #[serde(default)]
    pub auth: AuthMode,
    /// Caller needs at least one of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Caller needs all of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rate-limit policies; all must admit.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// CORS policy for this route (overrides `[cors]`).
    pub cors: Option<Cors>,
    /// Makes this a WebSocket hub route.
    pub websocket: Option<WebSocket>,
    /// Makes this a backend route into a hub (may use path parameters):
    /// `POST` publishes the body `{"topic","data"}`, `GET` lists presence.
    pub hub: Option<String>,
    /// Overrides the upstream's `timeout_ms`.
    pub timeout_ms: Option<u64>,
}

fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
