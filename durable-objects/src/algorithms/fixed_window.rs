//! Fixed window: a counter per window aligned to the period.

use serde::{Deserialize, Serialize};

use super::{Decision, Policy, align};

/// Fixed-window state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedWindow {
    /// Start of the counted window (a multiple of `period_ms`).
    pub window_start_ms: u64,
    /// Cost admitted in that window.
    pub count: u64,
}

/// Windows aligned to multiples of `period_ms` since the Unix epoch (so
/// every backend and every instance agrees on the boundaries); a request of
/// `cost` is admitted while the window's count plus `cost` is at most
/// `limit`.
///
/// `reset_ms` and, when refused, `retry_after_ms` are the time to the end of
/// the window. A clock that goes back into an earlier window counts in the
/// stored window.
pub fn fixed_window(
    policy: &Policy,
    state: Option<&FixedWindow>,
    now_ms: u64,
    cost: u64,
) -> (Decision, FixedWindow) {
    let period_ms = policy.period_ms();
    let limit = policy.limit();
    let aligned = align(now_ms, period_ms);
    let (start, count) = match state {
        Some(s) if aligned <= s.window_start_ms => (s.window_start_ms, s.count),
        _ => (aligned, 0),
    };
    let to_end = period_ms - now_ms.saturating_sub(start).min(period_ms - 1);

    let allowed = count.saturating_add(cost) <= limit;
    let count = if allowed {
        count.saturating_add(cost)
    } else {
        count
    };
    let retry_after_ms = if allowed {
        0
    } else if cost > limit {
        period_ms
    } else {
        to_end
    };
    let decision = Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(count),
        reset_ms: if count > 0 { to_end } else { 0 },
        retry_after_ms,
    };
    (
        decision,
        FixedWindow {
            window_start_ms: start,
            count,
        },
    )
}
