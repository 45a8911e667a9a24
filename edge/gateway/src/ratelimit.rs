//! Rate-limit evaluation: which counter a request hits, asking its backend,
//! and what the answer means (429, headers, or the policy's failure mode).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request};

use edgegate_auth::Identity;
use edgegate_config::{Algorithm, Backend, FailureMode, RateLimit, Redis, Upstash};
use edgegate_durable_objects::algorithms::{self, Decision, Policy};
use edgegate_durable_objects::headers::rate_limit_headers;
use edgegate_durable_objects::ratelimiter::CheckRequest;

use crate::platform::{EdgeBody, Platform};
use crate::upstash::{UpstashError, UpstashLimiter};

/// Durable Object class that counts (`RateLimiter`).
pub const LIMITER_CLASS: &str = "ratelimiter";

/// Where `backend = "redis"` checks go: the host intercepts this authority
/// and runs the command on its own Redis connection, so the edge keeps one
/// implementation of the scripts (the Upstash client's) and never holds
/// Redis credentials.
pub const REDIS_AUTHORITY: &str = "redis.edgegate.internal";

/// A compiled policy.
pub(crate) struct CompiledPolicy {
    pub(crate) config: RateLimit,
    body: Bytes,
    /// `backend = "upstash"` with a resolved endpoint.
    upstash: Option<UpstashLimiter>,
    /// `backend = "redis"`: the same client, aimed at the host.
    redis: Option<UpstashLimiter>,
}

/// What a request is counted by.
pub(crate) struct Subject<'a> {
    pub ip: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    pub headers: &'a HeaderMap,
}

/// The outcome of all of a route's policies.
pub(crate) enum Outcome {
    /// Admitted; these headers go on the response.
    Admitted(HeaderMap),
    /// Refused by a policy: 429 with these headers.
    Refused(HeaderMap),
    /// A backend could not answer and its policy fails closed.
    Unavailable(String),
}

impl CompiledPolicy {
    /// Compiles a validated policy; `redis` is the configuration's `[redis]`.
    pub(crate) fn new(config: &RateLimit, redis: Option<&Redis>) -> Result<Self, String> {
        let algorithm = match config.algorithm {
            Algorithm::TokenBucket => algorithms::Algorithm::TokenBucket,
            Algorithm::SlidingWindow => algorithms::Algorithm::SlidingWindow,
            Algorithm::Gcra => algorithms::Algorithm::Gcra,
            Algorithm::FixedWindow => algorithms::Algorithm::FixedWindow,
        };
        let policy = Policy::new(
            algorithm,
            config.limit,
            config.period_s.saturating_mul(1000),
            config.burst,
        )
        .map_err(|e| e.to_string())?;
        // The request body is the same for every call: serialize it once.
        let body = serde_json::to_vec(&CheckRequest::new(&policy, 1)).map_err(|e| e.to_string())?;
        // Without a resolved endpoint (secrets not resolved) the policy
        // compiles, and each check follows `on_failure`.
        let upstash = match (&config.backend, &config.upstash) {
            (Backend::Upstash, Some(endpoint)) => {
                Some(UpstashLimiter::new(endpoint, &policy).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        let redis = match (&config.backend, redis) {
            (Backend::Redis, Some(redis)) => {
                let endpoint = Upstash {
                    url: format!("http://{REDIS_AUTHORITY}"),
                    // The host does not check it; the client wants one.
                    token: "edgegate".into(),
                    timeout_ms: redis.timeout_ms,
                };
                Some(UpstashLimiter::new(&endpoint, &policy).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        Ok(Self {
            config: config.clone(),
            body: Bytes::from(body),
            upstash,
            redis,
        })
    }

    /// The counter this request hits, e.g. `per-ip:203.0.113.9`.
    pub(crate) fn counter(&self, subject: &Subject<'_>) -> String {
        let ip = subject.ip.unwrap_or("unknown");
        let key = match self.config.key.as_str() {
            "ip" => ip.to_string(),
            "global" => "global".to_string(),
            // Anonymous callers fall back to their address, so a route with
            // optional identity cannot be used to share one bucket.
            "user" => match subject.identity.and_then(|i| i.user.as_deref()) {
                Some(user) => format!("user={user}"),
                None => format!("ip={ip}"),
            },
            "api_key" => match subject.identity.and_then(|i| i.consumer.as_deref()) {
                Some(consumer) => format!("consumer={consumer}"),
                None => format!("ip={ip}"),
            },
            other => {
                let name = other.strip_prefix("header:").unwrap_or(other);
                let value = subject
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                format!("{name}={value}")
            }
        };
        format!("{}:{key}", self.config.name)
    }
}

/// Checks every policy in order; all must admit.
pub(crate) async fn check<P: Platform>(
    platform: &P,
    policies: &[&CompiledPolicy],
    subject: &Subject<'_>,
) -> Outcome {
    let mut headers = HeaderMap::new();
    for policy in policies {
        let decision = match ask(platform, policy, subject).await {
            Ok(d) => d,
            Err(why) => match policy.config.on_failure {
                FailureMode::Open => continue,
                FailureMode::Closed => {
                    return Outcome::Unavailable(format!(
                        "rate limit \"{}\" cannot be checked: {why}",
                        policy.config.name
                    ));
                }
            },
        };
        rate_limit_headers(
            &policy.config.name,
            policy.config.period_s.saturating_mul(1000),
            &decision,
        )
        .append_to(&mut headers);
        if !decision.allowed {
            return Outcome::Refused(headers);
        }
    }
    Outcome::Admitted(headers)
}

async fn ask<P: Platform>(
    platform: &P,
    policy: &CompiledPolicy,
    subject: &Subject<'_>,
) -> Result<Decision, String> {
    match policy.config.backend {
        Backend::DurableObject => {}
        Backend::Upstash => {
            let Some(limiter) = &policy.upstash else {
                return Err("no Upstash endpoint is configured".into());
            };
            return limiter
                .check(platform, &policy.counter(subject))
                .await
                .map_err(|e| e.to_string());
        }
        Backend::Redis => {
            if !platform.has_redis() {
                return Err(
                    "backend \"redis\" needs `edgegate serve` with a [redis] section; \
                     this host offers no Redis"
                        .into(),
                );
            }
            let Some(limiter) = &policy.redis else {
                return Err("no [redis] section is configured".into());
            };
            return limiter
                .check(platform, &policy.counter(subject))
                .await
                .map_err(|e| redis_reason(&e));
        }
    }
    let mut request = Request::new(P::Body::from_bytes(policy.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static("http://ratelimiter/check");
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response = platform
        .durable_object(LIMITER_CLASS, &policy.counter(subject), request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("limiter answered {}", response.status()));
    }
    let body = response.into_body().read_to_end(4096).await?;
    serde_json::from_slice(&body).map_err(|e| format!("limiter answer unreadable: {e}"))
}

/// The Upstash client's errors in the words of the redis backend (the
/// transport to the host is an implementation detail).
fn redis_reason(error: &UpstashError) -> String {
    match error {
        UpstashError::Transport(e) => format!("the host's Redis link failed: {e}"),
        UpstashError::Timeout(limit) => {
            format!("redis did not answer within {} ms", limit.as_millis())
        }
        UpstashError::Status(status) => format!("the host's Redis link answered HTTP {status}"),
        UpstashError::Command(message) => format!("redis: {message}"),
        UpstashError::BadReply(message) => format!("redis reply unreadable: {message}"),
        UpstashError::InvalidUrl => "invalid redis endpoint".into(),
    }
}
