//! Token bucket with continuous refill.

use serde::{Deserialize, Serialize};

use super::{Decision, Policy, ceil_div, to_u64};

/// Token-bucket state.
///
/// Tokens are kept in units of `1 / scale` token so that a refill of
/// `limit / period_ms` tokens per millisecond is an integer: with `scale =
/// period_ms`, one millisecond adds exactly `limit` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Tokens × `scale` in the bucket at `updated_ms`.
    pub level: u64,
    /// Time the level was computed at (the latest time this state has seen).
    pub updated_ms: u64,
    /// Units per token: the `period_ms` of the policy that wrote the state
    /// (a state written under another period is rescaled).
    pub scale: u64,
}

/// Bucket of `capacity` tokens (`burst`, default `limit`), full when new,
/// refilled continuously at `limit` tokens per `period_ms`; a request takes
/// `cost` tokens or is refused without taking any.
///
/// `reset_ms` is the time until the bucket is full; `retry_after_ms` the time
/// until it holds `cost` tokens.
pub fn token_bucket(
    policy: &Policy,
    state: Option<&TokenBucket>,
    now_ms: u64,
    cost: u64,
) -> (Decision, TokenBucket) {
    let period = u128::from(policy.period_ms());
    let rate = u128::from(policy.limit());
    let full = u128::from(policy.capacity()).saturating_mul(period);

    let (level, updated) = match state {
        Some(s) if s.scale > 0 => {
            let level = if u128::from(s.scale) == period {
                u128::from(s.level)
            } else {
                u128::from(s.level).saturating_mul(period) / u128::from(s.scale)
            };
            (level, s.updated_ms)
        }
        _ => (full, now_ms),
    };
    let now = now_ms.max(updated);
    let elapsed = u128::from(now - updated);
    let mut level = level.saturating_add(elapsed.saturating_mul(rate)).min(full);

    let need = u128::from(cost).saturating_mul(period);
    let allowed = need <= level;
    let retry_after_ms = if allowed {
        level -= need;
        0
    } else if need > full {
        policy.period_ms()
    } else {
        ceil_div(need - level, rate)
    };

    let decision = Decision {
        allowed,
        limit: policy.limit(),
        remaining: to_u64(level / period),
        reset_ms: ceil_div(full - level, rate),
        retry_after_ms,
    };
    let state = TokenBucket {
        level: to_u64(level),
        updated_ms: now,
        scale: policy.period_ms(),
    };
    (decision, state)
}
