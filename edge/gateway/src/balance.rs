//! Smooth weighted round-robin (as in nginx) with a circuit breaker per
//! target: picks spread evenly in proportion to weight, and a target that
//! keeps failing is left out for a while (open), then given one request
//! again (half-open) before it is trusted (closed).
//!
//! State lives in the edge instance: each instance (each Worker isolate,
//! each reused WASI instance) learns on its own, as each nginx worker does.

use std::sync::Mutex;

/// When a target is ejected and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open the circuit (0 disables it).
    pub max_failures: u32,
    /// First ejection; doubles on each consecutive trip, up to 16 times.
    pub ejection_ms: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    open_until_ms: u64,
    trips: u32,
}

#[derive(Debug)]
struct State {
    current: Vec<i64>,
    health: Vec<Health>,
    fresh: bool,
}

/// The targets of `upstream` listed in a host's unhealthy-targets value:
/// `name=i,j;other=k` (target indexes as configured).
pub fn unhealthy_targets(list: Option<&str>, upstream: &str) -> Vec<usize> {
    list.into_iter()
        .flat_map(|l| l.split(';'))
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(name, _)| *name == upstream)
        .flat_map(|(_, indexes)| indexes.split(','))
        .filter_map(|i| i.trim().parse().ok())
        .collect()
}

/// Balancer over the targets of one upstream.
#[derive(Debug)]
pub struct Balancer {
    weights: Vec<i64>,
    breaker: Breaker,
    state: Mutex<State>,
}

impl Balancer {
    /// A balancer for targets with these weights (all ≥ 1).
    pub fn new(weights: impl IntoIterator<Item = u32>, breaker: Breaker) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let state = Mutex::new(State {
            current: vec![0; weights.len()],
            health: vec![Health::default(); weights.len()],
            fresh: true,
        });
        Self {
            weights,
            breaker,
            state,
        }
    }

    /// Picks the next target: not one in `exclude`, and neither an ejected
    /// one nor one in `unhealthy` (failing the host's active health checks)
    /// while any other is left. `seed` is asked for once, on the first pick:
    /// hosts that create an instance per request (Spin, `wasmtime serve`)
    /// would otherwise send everything to the first target.
    pub fn pick(
        &self,
        exclude: &[usize],
        unhealthy: &[usize],
        now_ms: u64,
        seed: impl FnOnce() -> u64,
    ) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let usable = |state: &State, i: usize, skip_open: bool| {
            let ejected =
                skip_open && (state.health[i].open_until_ms > now_ms || unhealthy.contains(&i));
            !exclude.contains(&i) && !ejected
        };
        // Prefer closed circuits; then anything not yet tried; then anything.
        let pool: Vec<usize> = [true, false]
            .into_iter()
            .map(|skip_open| {
                (0..self.weights.len())
                    .filter(|&i| usable(&state, i, skip_open))
                    .collect::<Vec<_>>()
            })
            .find(|p| !p.is_empty())
            .unwrap_or_else(|| (0..self.weights.len()).collect());
        let mut total = 0;
        let mut best = pool[0];
        for &i in &pool {
            state.current[i] += self.weights[i];
            total += self.weights[i];
            if state.current[i] > state.current[best] {
                best = i;
            }
        }
        if state.fresh {
            // Start the rotation at a weighted-random target.
            state.fresh = false;
            let mut r = (seed() % total as u64) as i64;
            if let Some(&i) = pool.iter().find(|&&i| {
                r -= self.weights[i];
                r < 0
            }) {
                best = i;
            }
        }
        state.current[best] -= total;
        best
    }

    /// Records how a call to `target` went.
    pub fn report(&self, target: usize, ok: bool, now_ms: u64) {
        if self.breaker.max_failures == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let h = &mut state.health[target];
        if ok {
            *h = Health::default();
            return;
        }
        h.failures += 1;
        if h.failures >= self.breaker.max_failures {
            let backoff = self
                .breaker
                .ejection_ms
                .saturating_mul(1 << h.trips.min(16));
            h.open_until_ms = now_ms.saturating_add(backoff);
            h.trips += 1;
            // Half-open: after the ejection one more failure trips again.
            h.failures = self.breaker.max_failures - 1;
        }
    }

    /// Whether `target` is ejected at `now_ms`.
    #[cfg(test)]
    pub fn is_open(&self, target: usize, now_ms: u64) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.health[target].open_until_ms > now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Breaker = Breaker {
        max_failures: 0,
        ejection_ms: 0,
    };
    const ON: Breaker = Breaker {
        max_failures: 3,
        ejection_ms: 1_000,
    };

    #[test]
    fn picks_follow_weights_smoothly() {
        let b = Balancer::new([5, 1, 1], OFF);
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&[], &[], 0, || 0)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn a_fresh_balancer_starts_at_a_weighted_random_target() {
        // Seeds 0..7 over weights [5, 1, 1]: 0–4 → first, 5 → second, 6 → third.
        let firsts: Vec<usize> = (0..7)
            .map(|seed| Balancer::new([5, 1, 1], OFF).pick(&[], &[], 0, || seed))
            .collect();
        assert_eq!(firsts, vec![0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn excluded_target_is_skipped_while_others_remain() {
        let b = Balancer::new([1, 1], OFF);
        for _ in 0..4 {
            assert_eq!(b.pick(&[0], &[], 0, || 0), 1);
        }
        let single = Balancer::new([1], OFF);
        assert_eq!(single.pick(&[0], &[], 0, || 0), 0);
    }

    #[test]
    fn failing_target_is_ejected_then_tried_again_and_restored() {
        let b = Balancer::new([1, 1], ON);
        for _ in 0..3 {
            b.report(0, false, 0);
        }
        assert!(b.is_open(0, 999));
        assert!(
            (0..6).all(|_| b.pick(&[], &[], 500, || 0) == 1),
            "open circuit is avoided"
        );
        // Half-open after the ejection: picked again; one failure re-opens
        // for twice as long.
        assert!((0..2).any(|_| b.pick(&[], &[], 1_000, || 0) == 0));
        b.report(0, false, 1_000);
        assert!(b.is_open(0, 2_999) && !b.is_open(0, 3_000));
        // A success closes it for good.
        b.report(0, true, 3_000);
        b.report(0, false, 3_001);
        assert!(!b.is_open(0, 3_002));
    }

    #[test]
    fn all_ejected_still_serves() {
        let b = Balancer::new([1, 1], ON);
        for t in 0..2 {
            for _ in 0..3 {
                b.report(t, false, 0);
            }
        }
        let picks: Vec<usize> = (0..4).map(|_| b.pick(&[], &[], 10, || 0)).collect();
        assert!(picks.contains(&0) && picks.contains(&1));
    }

    #[test]
    fn unhealthy_targets_are_avoided_while_others_are_left() {
        let list = Some("other=0;users=0,2");
        assert_eq!(unhealthy_targets(list, "users"), vec![0, 2]);
        assert_eq!(unhealthy_targets(list, "none"), Vec::<usize>::new());
        let b = Balancer::new([1, 1, 1], OFF);
        assert!((0..6).all(|_| b.pick(&[], &[0, 2], 0, || 0) == 1));
        // All unhealthy: traffic still flows rather than failing everything.
        let picks: Vec<usize> = (0..3).map(|_| b.pick(&[], &[0, 1, 2], 0, || 0)).collect();
        assert_eq!(picks.len(), 3);
    }
}
