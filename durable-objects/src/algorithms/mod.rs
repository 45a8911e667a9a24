//! Rate-limit algorithms as pure functions of `(policy, state, now, cost)`.
//!
//! Every backend (this crate's Durable Object, the Upstash and Redis
//! backends) makes the same decisions by mirroring these functions, and they
//! can be benchmarked without any platform.
//!
//! Semantics shared by all four algorithms:
//!
//! - Integer arithmetic only (`u128` inside, saturating), so no input panics
//!   or overflows. Continuous refill is exact: no rounding drift when `limit`
//!   does not divide `period_ms`, as long as `capacity × period_ms < 2^64`.
//! - `limit` decisions of cost 1 at one instant on a fresh state admit
//!   exactly `capacity` (token bucket, GCRA) or `limit` (windows) requests.
//! - A `now_ms` earlier than the time the state already reflects is treated
//!   as time standing still: a clock going backwards never admits more than a
//!   steady clock would.
//! - `cost` 0 peeks: always allowed, the state keeps its meaning.
//! - A `cost` above the capacity can never be admitted: it is refused with
//!   `retry_after_ms = period_ms`.
//! - A refused decision never changes what the state means, so backends need
//!   not store it.
//!
//! [`Decision`] fields: `remaining` is how many cost-1 requests would be
//! admitted right after this decision; `reset_ms` is how long until the
//! quota is entirely available again (0 when it already is);
//! `retry_after_ms` is 0 when allowed, else how long until this same request
//! would be admitted if nothing else arrives.

mod codec;
mod fixed_window;
mod gcra;
mod sliding_window;
mod token_bucket;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

pub use codec::DecodeError;
pub use fixed_window::{FixedWindow, fixed_window};
pub use gcra::{Gcra, gcra};
pub use sliding_window::{SlidingWindow, sliding_window};
pub use token_bucket::{TokenBucket, token_bucket};

/// Counting algorithm; the names match the `algorithm` key of the
/// configuration's `[[rate_limits]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Bucket of `capacity` tokens refilled continuously at `limit` per period.
    TokenBucket,
    /// Interpolated two-window counter.
    SlidingWindow,
    /// Generic cell rate algorithm (virtual scheduling).
    Gcra,
    /// Counter per window aligned to multiples of the period.
    FixedWindow,
}

/// Why a policy is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// `limit` is 0.
    #[error("limit must be at least 1")]
    ZeroLimit,
    /// `period_ms` is 0.
    #[error("period_ms must be at least 1")]
    ZeroPeriod,
    /// `burst` is 0.
    #[error("burst must be at least 1 when given")]
    ZeroBurst,
}

/// A validated rate-limit policy: `limit` requests per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Policy {
    algorithm: Algorithm,
    limit: u64,
    period_ms: u64,
    burst: Option<u64>,
}

impl Policy {
    /// A policy; `burst` is the bucket capacity of `token_bucket` and `gcra`
    /// (defaults to `limit`, ignored by the window algorithms).
    pub fn new(
        algorithm: Algorithm,
        limit: u64,
        period_ms: u64,
        burst: Option<u64>,
    ) -> Result<Self, PolicyError> {
        if limit == 0 {
            return Err(PolicyError::ZeroLimit);
        }
        if period_ms == 0 {
            return Err(PolicyError::ZeroPeriod);
        }
        if burst == Some(0) {
            return Err(PolicyError::ZeroBurst);
        }
        Ok(Self {
            algorithm,
            limit,
            period_ms,
            burst,
        })
    }

    /// The counting algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Requests admitted per period (≥ 1).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Period length in milliseconds (≥ 1).
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// The configured burst, if any.
    pub fn burst(&self) -> Option<u64> {
        self.burst
    }

    /// Most requests admissible at one instant: `burst` (default `limit`) for
    /// `token_bucket` and `gcra`, `limit` for the window algorithms.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra => self.burst.unwrap_or(self.limit),
            Algorithm::SlidingWindow | Algorithm::FixedWindow => self.limit,
        }
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            algorithm: Algorithm,
            limit: u64,
            period_ms: u64,
            #[serde(default)]
            burst: Option<u64>,
        }
        let f = Fields::deserialize(deserializer)?;
        Policy::new(f.algorithm, f.limit, f.period_ms, f.burst).map_err(serde::de::Error::custom)
    }
}

/// The outcome of one rate-limit check (also the JSON answer of the
/// rate-limiter object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The policy's `limit`.
    pub limit: u64,
    /// Cost-1 requests admissible right after this decision.
    pub remaining: u64,
    /// Milliseconds until the whole quota is available again (0 if it is).
    pub reset_ms: u64,
    /// 0 when allowed; else milliseconds until this request would be admitted.
    pub retry_after_ms: u64,
}

/// The stored state of any algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum LimiterState {
    /// See [`token_bucket`].
    TokenBucket(TokenBucket),
    /// See [`sliding_window`].
    SlidingWindow(SlidingWindow),
    /// See [`gcra`].
    Gcra(Gcra),
    /// See [`fixed_window`].
    FixedWindow(FixedWindow),
}

impl LimiterState {
    /// The algorithm this state belongs to.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            LimiterState::TokenBucket(_) => Algorithm::TokenBucket,
            LimiterState::SlidingWindow(_) => Algorithm::SlidingWindow,
            LimiterState::Gcra(_) => Algorithm::Gcra,
            LimiterState::FixedWindow(_) => Algorithm::FixedWindow,
        }
    }
}

/// Runs `policy`'s algorithm. A `state` of another algorithm (the policy was
/// changed) is ignored and counting starts afresh.
pub fn check(
    policy: &Policy,
    state: Option<&LimiterState>,
    now_ms: u64,
    cost: u64,
) -> (Decision, LimiterState) {
    match policy.algorithm {
        Algorithm::TokenBucket => {
            let s = match state {
                Some(LimiterState::TokenBucket(s)) => Some(s),
                _ => None,
            };
            let (d, s) = token_bucket(policy, s, now_ms, cost);
            (d, LimiterState::TokenBucket(s))
        }
        Algorithm::SlidingWindow => {
            let s = match state {
                Some(LimiterState::SlidingWindow(s)) => Some(s),
                _ => None,
            };
            let (d, s) = sliding_window(policy, s, now_ms, cost);
            (d, LimiterState::SlidingWindow(s))
        }
        Algorithm::Gcra => {
            let s = match state {
                Some(LimiterState::Gcra(s)) => Some(s),
                _ => None,
            };
            let (d, s) = gcra(policy, s, now_ms, cost);
            (d, LimiterState::Gcra(s))
        }
        Algorithm::FixedWindow => {
            let s = match state {
                Some(LimiterState::FixedWindow(s)) => Some(s),
                _ => None,
            };
            let (d, s) = fixed_window(policy, s, now_ms, cost);
            (d, LimiterState::FixedWindow(s))
        }
    }
}

/// `⌈a / b⌉` for `b > 0`, saturated to `u64`.
fn ceil_div(a: u128, b: u128) -> u64 {
    to_u64(a.div_ceil(b))
}

/// `v` saturated to `u64`.
fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Start of the window of length `period_ms` that contains `now_ms`.
fn align(now_ms: u64, period_ms: u64) -> u64 {
    now_ms - now_ms % period_ms
}
