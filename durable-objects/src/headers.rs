//! RateLimit header fields for the edge's responses, in the structured-field
//! form of draft-ietf-httpapi-ratelimit-headers-08/09:
//!
//! ```text
//! RateLimit-Policy: "per-ip";q=100;w=60
//! RateLimit: "per-ip";r=42;t=18
//! Retry-After: 3
//! ```
//!
//! Every backend produces a [`Decision`], so every backend advertises its
//! limits the same way.

use std::fmt::Write;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::algorithms::Decision;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `⌈ms / 1000⌉`: header fields count whole seconds, and rounding down would
/// invite a retry that is still refused.
pub fn seconds_ceil(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// One `RateLimit-Policy` list member: `"<name>";q=<limit>;w=<period_s>`
/// (`w` rounded up, at least 1).
pub fn policy_item(name: &str, limit: u64, period_ms: u64) -> String {
    let mut out = sf_string(name);
    let _ = write!(out, ";q={limit};w={}", seconds_ceil(period_ms).max(1));
    out
}

/// One `RateLimit` list member: `"<name>";r=<remaining>;t=<reset_s>`
/// (`t` rounded up).
pub fn ratelimit_item(name: &str, remaining: u64, reset_ms: u64) -> String {
    let mut out = sf_string(name);
    let _ = write!(out, ";r={remaining};t={}", seconds_ceil(reset_ms));
    out
}

/// The header fields for one policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy` value.
    pub policy: HeaderValue,
    /// `RateLimit` value.
    pub ratelimit: HeaderValue,
    /// `Retry-After` seconds, only when the request was refused.
    pub retry_after: Option<u64>,
}

/// Header fields describing `decision` of the policy `name` whose period is
/// `period_ms`.
pub fn rate_limit_headers(name: &str, period_ms: u64, decision: &Decision) -> RateLimitHeaders {
    RateLimitHeaders {
        policy: header_value(policy_item(name, decision.limit, period_ms)),
        ratelimit: header_value(ratelimit_item(name, decision.remaining, decision.reset_ms)),
        retry_after: (!decision.allowed).then(|| seconds_ceil(decision.retry_after_ms).max(1)),
    }
}

impl RateLimitHeaders {
    /// Adds the fields to `headers`. Several policies append several field
    /// lines (a list, as the draft allows); `Retry-After` keeps the largest
    /// value, since the request passes only when every policy admits it.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy.clone());
        headers.append(RATELIMIT, self.ratelimit.clone());
        if let Some(secs) = self.retry_after {
            let current = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if current.is_none_or(|c| c < secs) {
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
        }
    }
}

/// `s` as a structured-field String: quoted, `"` and `\` escaped, and
/// characters a String cannot hold (controls, non-ASCII) replaced by `?`.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

fn header_value(s: String) -> HeaderValue {
    // `sf_string` and digits only produce visible ASCII and spaces.
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}
