//! Sliding window: an interpolated two-window counter.

use serde::{Deserialize, Serialize};

use super::{Decision, Policy, align, to_u64};

/// Sliding-window state: counts of the current aligned window and the one
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// Start of the current window (a multiple of `period_ms`).
    pub window_start_ms: u64,
    /// Cost admitted in the previous window.
    pub previous: u64,
    /// Cost admitted in the current window.
    pub current: u64,
}

/// Windows aligned to multiples of `period_ms`; at `elapsed` ms into the
/// current window the estimated count is
/// `previous · (period − elapsed) / period + current`, and a request of
/// `cost` is admitted when the estimate plus `cost` is at most `limit`
/// (compared exactly, multiplied out by `period`).
///
/// `reset_ms` is when the estimate reaches 0 (end of the next window if the
/// current one has counts, else end of the current one); `retry_after_ms` is
/// the exact first millisecond at which the decayed estimate admits `cost`.
/// A clock that goes back into an earlier window counts as the first
/// millisecond of the stored window.
pub fn sliding_window(
    policy: &Policy,
    state: Option<&SlidingWindow>,
    now_ms: u64,
    cost: u64,
) -> (Decision, SlidingWindow) {
    let period_ms = policy.period_ms();
    let limit = policy.limit();
    let aligned = align(now_ms, period_ms);
    let (start, previous, current) = match state {
        None => (aligned, 0, 0),
        Some(s) if aligned > s.window_start_ms => {
            if aligned - s.window_start_ms == period_ms {
                (aligned, s.current, 0)
            } else {
                (aligned, 0, 0)
            }
        }
        // Same window, or the clock went back: stay in the stored window.
        Some(s) => (s.window_start_ms, s.previous, s.current),
    };
    let elapsed = now_ms.saturating_sub(start).min(period_ms - 1);

    let period = u128::from(period_ms);
    let left = period - u128::from(elapsed);
    let carried = u128::from(previous).saturating_mul(left);
    let quota = u128::from(limit).saturating_mul(period);
    let need = u128::from(cost).saturating_mul(period);
    let used = carried.saturating_add(u128::from(current).saturating_mul(period));

    let allowed = used.saturating_add(need) <= quota;
    let (current_after, used_after) = if allowed {
        (current.saturating_add(cost), used + need)
    } else {
        (current, used)
    };

    let retry_after_ms = if allowed {
        0
    } else if cost > limit {
        period_ms
    } else if let Some(room) = limit.checked_sub(current.saturating_add(cost)) {
        // Room in this window once the previous window's weight decays to
        // `room · period`; `previous > 0` since the request was refused.
        let room = u128::from(room) * period;
        let admit_at = period - room / u128::from(previous.max(1));
        to_u64(admit_at.saturating_sub(u128::from(elapsed)).max(1))
    } else {
        // Not before the next window, where `current` becomes the decaying part.
        let room = u128::from(limit - cost) * period;
        let admit_at = if current == 0 {
            0
        } else {
            period - (room / u128::from(current)).min(period)
        };
        to_u64(left + admit_at)
    };

    let reset_ms = if current_after > 0 {
        period_ms.saturating_add(period_ms - elapsed)
    } else if previous > 0 {
        period_ms - elapsed
    } else {
        0
    };
    let decision = Decision {
        allowed,
        limit,
        remaining: to_u64(quota.saturating_sub(used_after) / period),
        reset_ms,
        retry_after_ms,
    };
    let state = SlidingWindow {
        window_start_ms: start,
        previous,
        current: current_after,
    };
    (decision, state)
}
