//! Generic cell rate algorithm (virtual scheduling form).

use serde::{Deserialize, Serialize};

use super::{Decision, Policy, ceil_div, to_u64};

/// GCRA state: the theoretical arrival time (TAT) of the next request,
/// `tat_ms + tat_frac / scale` milliseconds.
///
/// Time is counted in ticks of `1 / limit` ms so that the emission interval
/// `period_ms / limit` is a whole number of ticks (`period_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gcra {
    /// Whole milliseconds of the TAT.
    pub tat_ms: u64,
    /// Fraction of a millisecond, in `1 / scale` ms (`< scale`).
    pub tat_frac: u64,
    /// The `limit` of the policy that wrote the state (a state written under
    /// another limit is rescaled).
    pub scale: u64,
}

/// GCRA with emission interval `T = period_ms / limit` and burst tolerance
/// `τ = (capacity − 1) · T`, `capacity` being `burst` (default `limit`).
///
/// A request of `cost` n arriving at `now` is admitted when
/// `max(TAT, now) + n·T − now ≤ τ + T`, and then sets
/// `TAT = max(TAT, now) + n·T`; a refused request leaves TAT alone. So
/// `capacity` requests pass at one instant and one more every `T` after;
/// admission is the same as [`token_bucket`](super::token_bucket) with the
/// same capacity, but the state is a single instant, which is what a
/// compare-and-set store (Redis) keeps most cheaply.
///
/// `reset_ms` is `TAT − now` (when the bucket would be full again);
/// `retry_after_ms` is `max(TAT, now) + n·T − (τ + T) − now`. A clock that
/// goes back is clamped to `TAT − (τ + T)`, the earliest instant the state
/// can have been written at.
pub fn gcra(policy: &Policy, state: Option<&Gcra>, now_ms: u64, cost: u64) -> (Decision, Gcra) {
    let ticks_per_ms = u128::from(policy.limit());
    let interval = u128::from(policy.period_ms());
    let tolerance = u128::from(policy.capacity()).saturating_mul(interval);

    let tat = match state {
        Some(s) if s.scale > 0 => {
            let frac = if u128::from(s.scale) == ticks_per_ms {
                u128::from(s.tat_frac)
            } else {
                u128::from(s.tat_frac).saturating_mul(ticks_per_ms) / u128::from(s.scale)
            };
            u128::from(s.tat_ms)
                .saturating_mul(ticks_per_ms)
                .saturating_add(frac)
        }
        _ => 0,
    };
    let now = u128::from(now_ms)
        .saturating_mul(ticks_per_ms)
        .max(tat.saturating_sub(tolerance));

    let increment = u128::from(cost).saturating_mul(interval);
    let new_tat = tat.max(now).saturating_add(increment);
    let allowed = new_tat - now <= tolerance;
    let retry_after_ms = if allowed {
        0
    } else if increment > tolerance {
        policy.period_ms()
    } else {
        ceil_div(new_tat - tolerance - now, ticks_per_ms)
    };
    let tat = if allowed { new_tat } else { tat };
    let used = tat.max(now) - now;

    let decision = Decision {
        allowed,
        limit: policy.limit(),
        remaining: to_u64(tolerance.saturating_sub(used) / interval),
        reset_ms: ceil_div(used, ticks_per_ms),
        retry_after_ms,
    };
    let state = Gcra {
        tat_ms: to_u64(tat / ticks_per_ms),
        tat_frac: to_u64(tat % ticks_per_ms),
        scale: policy.limit(),
    };
    (decision, state)
}
