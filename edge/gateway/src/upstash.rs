//! The Upstash rate-limit backend: one Redis script call per policy per
//! request, over Upstash's REST API, through [`Platform::fetch`].
//!
//! Each algorithm is a Lua script (`src/upstash/*.lua`) that reproduces the
//! decisions of its Rust reference in `edgegate_durable_objects::algorithms`
//! exactly, on the server's clock, and gives the counter a TTL that ends
//! when the state means the same as no state. A check is `POST {url}/` with
//! `["EVALSHA", sha1, "1", key, limit, period_ms, capacity, cost]`; only
//! when Redis does not know the script yet (`NOSCRIPT`) does a second call
//! send it whole with `EVAL`, which also caches it for every later call.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Uri};
use serde::Deserialize;

use edgegate_config::Upstash;
use edgegate_durable_objects::algorithms::{Algorithm, Decision, Policy};

use crate::platform::{EdgeBody, FetchError, FetchOptions, Platform};

/// Prefix of every counter key, so counters do not collide with other data
/// in the same database.
pub const KEY_PREFIX: &str = "edgegate:rl:";

/// Largest reply body read (a decision is a few dozen bytes; errors are short).
const MAX_REPLY_BYTES: usize = 16 * 1024;

/// Longest Upstash error message kept in an [`UpstashError`].
const MAX_MESSAGE_CHARS: usize = 200;

/// The script of one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// [`edgegate_durable_objects::algorithms::token_bucket`].
    TokenBucket,
    /// [`edgegate_durable_objects::algorithms::sliding_window`].
    SlidingWindow,
    /// [`edgegate_durable_objects::algorithms::gcra`].
    Gcra,
    /// [`edgegate_durable_objects::algorithms::fixed_window`].
    FixedWindow,
}

const SOURCES: [&str; 4] = [
    concat!(
        include_str!("upstash/prelude.lua"),
        include_str!("upstash/token_bucket.lua")
    ),
    concat!(
        include_str!("upstash/prelude.lua"),
        include_str!("upstash/sliding_window.lua")
    ),
    concat!(
        include_str!("upstash/prelude.lua"),
        include_str!("upstash/gcra.lua")
    ),
    concat!(
        include_str!("upstash/prelude.lua"),
        include_str!("upstash/fixed_window.lua")
    ),
];

impl Script {
    /// Every script.
    pub const ALL: [Script; 4] = [
        Script::TokenBucket,
        Script::SlidingWindow,
        Script::Gcra,
        Script::FixedWindow,
    ];

    /// The script of `algorithm`.
    pub fn for_algorithm(algorithm: Algorithm) -> Script {
        match algorithm {
            Algorithm::TokenBucket => Script::TokenBucket,
            Algorithm::SlidingWindow => Script::SlidingWindow,
            Algorithm::Gcra => Script::Gcra,
            Algorithm::FixedWindow => Script::FixedWindow,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The Lua source: the shared prelude, then the algorithm.
    ///
    /// `KEYS[1]` is the counter; `ARGV` is `limit`, `period_ms`, `capacity`,
    /// `cost` and, for tests only, `now_ms` (see the prelude). The reply is
    /// `[allowed (0/1), limit, remaining, reset_ms, retry_after_ms]`.
    pub fn source(self) -> &'static str {
        SOURCES[self.index()]
    }

    /// Lowercase hex SHA-1 of [`Script::source`], as `EVALSHA` names it.
    pub fn sha1(self) -> &'static str {
        static SHAS: OnceLock<[String; 4]> = OnceLock::new();
        &SHAS.get_or_init(|| SOURCES.map(|s| sha1_smol::Sha1::from(s).digest().to_string()))
            [self.index()]
    }
}

/// Why a call to Upstash has no answer. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstashError {
    /// The endpoint could not be reached, or the connection broke.
    #[error("upstash unreachable: {0}")]
    Transport(FetchError),
    /// No complete answer within the configured time.
    #[error("upstash did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// An HTTP error status without an Upstash error body.
    #[error("upstash answered HTTP {0}")]
    Status(u16),
    /// Upstash or Redis refused the command (`{"error": …}`).
    #[error("upstash error: {0}")]
    Command(String),
    /// The answer is not what the command returns.
    #[error("upstash reply unreadable: {0}")]
    BadReply(String),
    /// The configured URL is not an `http(s)://` URL.
    #[error("upstash URL is not a valid http(s) URL")]
    InvalidUrl,
}

/// A client of one Upstash REST endpoint.
pub struct UpstashClient {
    endpoint: Uri,
    authorization: HeaderValue,
    timeout: Duration,
}

// Keeps the token out of debug output.
impl std::fmt::Debug for UpstashClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstashClient")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `{"result": …}` or `{"error": "…"}`.
#[derive(Deserialize)]
struct Reply<T> {
    result: Option<T>,
    error: Option<String>,
}

impl UpstashClient {
    /// A client for a resolved `[upstash]` endpoint (URL and token known).
    pub fn new(config: &Upstash) -> Result<Self, UpstashError> {
        let base = config.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(UpstashError::InvalidUrl);
        }
        let endpoint: Uri = format!("{base}/")
            .parse()
            .map_err(|_| UpstashError::InvalidUrl)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", config.token))
            .map_err(|_| UpstashError::Command("the token is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        Ok(Self {
            endpoint,
            authorization,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// The time one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one command (`body` is its JSON array) and reads its result.
    pub async fn command<P, T>(&self, platform: &P, body: Bytes) -> Result<T, UpstashError>
    where
        P: Platform,
        T: for<'de> Deserialize<'de>,
    {
        let mut request = Request::new(P::Body::from_bytes(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let options = FetchOptions {
            connect_timeout: self.timeout,
            timeout: self.timeout,
        };
        let response = platform
            .fetch(request, options)
            .await
            .map_err(|e| match e {
                FetchError::Timeout => UpstashError::Timeout(self.timeout),
                other => UpstashError::Transport(other),
            })?;
        let status = response.status();
        let body = response
            .into_body()
            .read_to_end(MAX_REPLY_BYTES)
            .await
            .map_err(UpstashError::BadReply)?;
        match serde_json::from_slice::<Reply<T>>(&body) {
            Ok(Reply {
                error: Some(message),
                ..
            }) => Err(UpstashError::Command(
                message.chars().take(MAX_MESSAGE_CHARS).collect(),
            )),
            _ if !status.is_success() => Err(UpstashError::Status(status.as_u16())),
            Ok(Reply {
                result: Some(result),
                ..
            }) => Ok(result),
            Ok(_) => Err(UpstashError::BadReply("no result".into())),
            Err(e) => Err(UpstashError::BadReply(e.to_string())),
        }
    }
}

/// One policy's calls, precomputed: per request only the counter's key is
/// written into the body.
pub struct UpstashLimiter {
    client: UpstashClient,
    script: Script,
    /// `["EVALSHA","<sha1>","1",`
    evalsha_head: String,
    /// `["EVAL","<script>","1",`
    eval_head: String,
    /// `,"<limit>","<period_ms>","<capacity>","1"]`
    tail: String,
}

impl UpstashLimiter {
    /// The limiter of `policy` on the resolved endpoint `config`.
    pub fn new(config: &Upstash, policy: &Policy) -> Result<Self, UpstashError> {
        let client = UpstashClient::new(config)?;
        let script = Script::for_algorithm(policy.algorithm());
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        Ok(Self {
            client,
            script,
            evalsha_head: format!("[\"EVALSHA\",{},\"1\",", quoted(script.sha1())),
            eval_head: format!("[\"EVAL\",{},\"1\",", quoted(script.source())),
            tail: format!(
                ",\"{}\",\"{}\",\"{}\",\"1\"]",
                policy.limit(),
                policy.period_ms(),
                policy.capacity()
            ),
        })
    }

    /// The script this limiter runs.
    pub fn script(&self) -> Script {
        self.script
    }

    /// Counts one request against `counter` (e.g. `per-ip:203.0.113.9`):
    /// one round trip, two the first time Redis meets the script. The whole
    /// check is bounded by the endpoint's `timeout_ms`.
    pub async fn check<P: Platform>(
        &self,
        platform: &P,
        counter: &str,
    ) -> Result<Decision, UpstashError> {
        let timeout = self.client.timeout();
        within(platform, timeout, self.ask(platform, counter))
            .await
            .unwrap_or(Err(UpstashError::Timeout(timeout)))
    }

    async fn ask<P: Platform>(
        &self,
        platform: &P,
        counter: &str,
    ) -> Result<Decision, UpstashError> {
        let reply = match self
            .client
            .command(platform, self.body(&self.evalsha_head, counter))
            .await
        {
            Err(UpstashError::Command(message)) if message.starts_with("NOSCRIPT") => {
                self.client
                    .command(platform, self.body(&self.eval_head, counter))
                    .await
            }
            other => other,
        }?;
        decision(reply)
    }

    fn body(&self, head: &str, counter: &str) -> Bytes {
        let mut body =
            Vec::with_capacity(head.len() + KEY_PREFIX.len() + counter.len() + 8 + self.tail.len());
        body.extend_from_slice(head.as_bytes());
        body.push(b'"');
        body.extend_from_slice(KEY_PREFIX.as_bytes());
        push_json_escaped(&mut body, counter);
        body.push(b'"');
        body.extend_from_slice(self.tail.as_bytes());
        Bytes::from(body)
    }
}

/// Appends `s` escaped for a JSON string: the counter holds caller-chosen
/// text (header values, user ids).
fn push_json_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0..0x20 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            _ => out.push(b),
        }
    }
}

/// The scripts' reply `[allowed, limit, remaining, reset_ms, retry_after_ms]`.
fn decision(reply: Vec<u64>) -> Result<Decision, UpstashError> {
    match reply[..] {
        [
            allowed @ (0 | 1),
            limit,
            remaining,
            reset_ms,
            retry_after_ms,
        ] => Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining,
            reset_ms,
            retry_after_ms,
        }),
        _ => Err(UpstashError::BadReply(format!(
            "expected [allowed, limit, remaining, reset_ms, retry_after_ms], got {reply:?}"
        ))),
    }
}

/// `future`'s output, or `None` once `limit` has passed on the platform's
/// clock (the future is then dropped, abandoning its request).
async fn within<P: Platform, F: Future>(
    platform: &P,
    limit: Duration,
    future: F,
) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(platform.sleep(limit));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_share_the_prelude_and_have_distinct_hashes() {
        let mut shas: Vec<&str> = Script::ALL.iter().map(|s| s.sha1()).collect();
        for script in Script::ALL {
            assert!(
                script
                    .source()
                    .starts_with(include_str!("upstash/prelude.lua"))
            );
            assert_eq!(script.sha1().len(), 40);
        }
        shas.sort();
        shas.dedup();
        assert_eq!(shas.len(), 4);
        // SHA-1 of the empty string, as a check of the encoding.
        assert_eq!(
            sha1_smol::Sha1::from("").digest().to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn request_body_is_a_json_command_with_an_escaped_key() {
        let config = Upstash {
            url: "https://eu1.upstash.io/".into(),
            token: "secret-token".into(),
            timeout_ms: 1000,
        };
        let policy = Policy::new(Algorithm::Gcra, 10, 60_000, Some(20)).unwrap();
        let limiter = UpstashLimiter::new(&config, &policy).unwrap();
        let body = limiter.body(&limiter.evalsha_head, "per-user:user=\"x\\\n\u{e9}");
        let command: Vec<String> = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            command,
            [
                "EVALSHA",
                Script::Gcra.sha1(),
                "1",
                "edgegate:rl:per-user:user=\"x\\\n\u{e9}",
                "10",
                "60000",
                "20",
                "1"
            ]
        );
        let body = limiter.body(&limiter.eval_head, "k");
        let command: Vec<String> = serde_json::from_slice(&body).unwrap();
        assert_eq!(command[1], Script::Gcra.source());
        assert_eq!(limiter.client.endpoint, "https://eu1.upstash.io/");
        assert!(!format!("{:?}", limiter.client).contains("secret-token"));
    }

    #[test]
    fn replies_become_decisions_or_typed_errors() {
        assert_eq!(
            decision(vec![0, 10, 0, 6000, 6000]),
            Ok(Decision {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_ms: 6000,
                retry_after_ms: 6000
            })
        );
        assert!(matches!(
            decision(vec![2, 1, 1, 1, 1]),
            Err(UpstashError::BadReply(_))
        ));
        assert!(matches!(decision(vec![1]), Err(UpstashError::BadReply(_))));
        let bad = Upstash {
            url: "redis://x".into(),
            token: "t".into(),
            timeout_ms: 1,
        };
        assert!(matches!(
            UpstashClient::new(&bad),
            Err(UpstashError::InvalidUrl)
        ));
    }
}
