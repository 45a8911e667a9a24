//! The rate-limit algorithms as pure functions.

use edgegate_durable_objects::algorithms::{
    Algorithm, Decision, LimiterState, Policy, PolicyError, check, fixed_window, gcra,
    sliding_window, token_bucket,
};

const ALL: [Algorithm; 4] = [
    Algorithm::TokenBucket,
    Algorithm::SlidingWindow,
    Algorithm::Gcra,
    Algorithm::FixedWindow,
];

fn policy(algorithm: Algorithm, limit: u64, period_ms: u64, burst: Option<u64>) -> Policy {
    Policy::new(algorithm, limit, period_ms, burst).unwrap()
}

/// A sequence of checks over one state.
struct Run {
    policy: Policy,
    state: Option<LimiterState>,
}

impl Run {
    fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: None,
        }
    }

    fn at(&mut self, now_ms: u64) -> Decision {
        self.cost(now_ms, 1)
    }

    fn cost(&mut self, now_ms: u64, cost: u64) -> Decision {
        let (decision, state) = check(&self.policy, self.state.as_ref(), now_ms, cost);
        self.state = Some(state);
        decision
    }

    fn admitted(&mut self, now_ms: u64, n: u64) -> u64 {
        (0..n).filter(|_| self.at(now_ms).allowed).count() as u64
    }
}

const T0: u64 = 1_700_000_040_000; // a multiple of 60 s

#[test]
fn exactly_limit_admitted_in_one_instant() {
    for algorithm in ALL {
        for limit in [1, 7, 100] {
            let mut run = Run::new(policy(algorithm, limit, 60_000, None));
            assert_eq!(
                run.admitted(T0 + 123, limit * 3),
                limit,
                "{algorithm:?} {limit}"
            );
        }
    }
}

#[test]
fn burst_sets_capacity_of_token_bucket_and_gcra_only() {
    for (algorithm, expected) in [
        (Algorithm::TokenBucket, 25),
        (Algorithm::Gcra, 25),
        (Algorithm::SlidingWindow, 10),
        (Algorithm::FixedWindow, 10),
    ] {
        let mut run = Run::new(policy(algorithm, 10, 60_000, Some(25)));
        assert_eq!(run.admitted(T0, 100), expected, "{algorithm:?}");
    }
    let mut run = Run::new(policy(Algorithm::Gcra, 10, 1_000, Some(3)));
    assert_eq!(run.admitted(T0, 10), 3);
    // One emission interval (100 ms) later, one more.
    assert_eq!(run.admitted(T0 + 99, 1), 0);
    assert_eq!(run.admitted(T0 + 100, 5), 1);
}

#[test]
fn token_bucket_refills_continuously() {
    let p = policy(Algorithm::TokenBucket, 10, 60_000, None);
    let (d, s) = token_bucket(&p, None, T0, 1);
    assert_eq!(
        d,
        Decision {
            allowed: true,
            limit: 10,
            remaining: 9,
            reset_ms: 6_000,
            retry_after_ms: 0
        }
    );
    let mut state = s;
    for _ in 0..9 {
        state = token_bucket(&p, Some(&state), T0, 1).1;
    }
    let (d, _) = token_bucket(&p, Some(&state), T0, 1);
    assert!(!d.allowed);
    assert_eq!(
        (d.remaining, d.retry_after_ms, d.reset_ms),
        (0, 6_000, 60_000)
    );
    let (d, _) = token_bucket(&p, Some(&state), T0 + 5_999, 1);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 1));
    let (d, state) = token_bucket(&p, Some(&state), T0 + 6_000, 1);
    assert!(d.allowed);
    assert_eq!((d.remaining, d.reset_ms), (0, 60_000));
    // A request of cost 3 waits for three tokens.
    let (d, _) = token_bucket(&p, Some(&state), T0 + 6_000, 3);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 18_000));
}

#[test]
fn continuous_algorithms_do_not_drift() {
    // 7 per minute: 60000 / 7 ms is not an integer.
    for algorithm in [Algorithm::TokenBucket, Algorithm::Gcra] {
        let mut run = Run::new(policy(algorithm, 7, 60_000, None));
        assert_eq!(run.admitted(T0, 7), 7);
        let mut admitted = 0;
        for step in 1..=6_000 {
            admitted += run.admitted(T0 + step * 100, 1);
        }
        assert_eq!(admitted, 70, "{algorithm:?}: ten periods refill exactly 70");
    }
}

#[test]
fn gcra_matches_token_bucket() {
    let tb = policy(Algorithm::TokenBucket, 13, 10_000, Some(4));
    let gc = policy(Algorithm::Gcra, 13, 10_000, Some(4));
    let (mut a, mut b) = (Run::new(tb), Run::new(gc));
    let mut now = T0;
    for i in 0..2_000u64 {
        now += (i * 7919) % 1_700;
        let cost = i % 3;
        assert_eq!(a.cost(now, cost), b.cost(now, cost), "step {i}");
    }
}

#[test]
fn gcra_reports_tat_based_times() {
    let p = policy(Algorithm::Gcra, 10, 1_000, None);
    let (d, s) = gcra(&p, None, T0, 1);
    assert_eq!((d.remaining, d.reset_ms), (9, 100));
    let (d, _) = gcra(&p, Some(&s), T0 + 40, 2);
    assert_eq!((d.allowed, d.remaining, d.reset_ms), (true, 7, 260));
}

#[test]
fn sliding_window_interpolates() {
    let p = policy(Algorithm::SlidingWindow, 10, 60_000, None);
    let mut state = None;
    for _ in 0..10 {
        state = Some(sliding_window(&p, state.as_ref(), T0, 1).1);
    }
    // Halfway through: the current window is full until it slides out.
    let (d, _) = sliding_window(&p, state.as_ref(), T0 + 30_000, 1);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 36_000));
    assert_eq!(d.reset_ms, 90_000);
    // Next window: the previous 10 weigh 10 · (60000 − e) / 60000.
    let (d, _) = sliding_window(&p, state.as_ref(), T0 + 60_000, 1);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 6_000));
    let (d, _) = sliding_window(&p, state.as_ref(), T0 + 65_999, 1);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 1));
    let (d, s) = sliding_window(&p, state.as_ref(), T0 + 66_000, 1);
    assert_eq!((d.allowed, d.remaining), (true, 0));
    assert_eq!(d.reset_ms, 114_000);
    // Halfway through the next window, 5 of the 10 still count.
    let (d, _) = sliding_window(&p, Some(&s), T0 + 90_000, 1);
    assert_eq!((d.allowed, d.remaining), (true, 3));
    // Two windows later nothing counts.
    let (d, _) = sliding_window(&p, Some(&s), T0 + 180_000, 1);
    assert_eq!((d.allowed, d.remaining, d.reset_ms), (true, 9, 120_000));
}

#[test]
fn fixed_window_is_aligned() {
    let p = policy(Algorithm::FixedWindow, 2, 60_000, None);
    let (d, s) = fixed_window(&p, None, T0 + 45_000, 1);
    assert_eq!((d.allowed, d.remaining, d.reset_ms), (true, 1, 15_000));
    let (_, s) = fixed_window(&p, Some(&s), T0 + 50_000, 1);
    let (d, _) = fixed_window(&p, Some(&s), T0 + 59_999, 1);
    assert_eq!((d.allowed, d.retry_after_ms), (false, 1));
    let (d, _) = fixed_window(&p, Some(&s), T0 + 60_000, 1);
    assert_eq!((d.allowed, d.remaining, d.reset_ms), (true, 1, 60_000));
}

#[test]
fn clock_going_backwards_never_admits_more() {
    for algorithm in ALL {
        let mut run = Run::new(policy(algorithm, 5, 60_000, None));
        assert_eq!(run.admitted(T0 + 100_000, 5), 5);
        for back in [T0 + 99_999, T0, 1, 0] {
            let d = run.at(back);
            assert!(!d.allowed, "{algorithm:?} at {back}");
            assert!(d.retry_after_ms > 0);
        }
        // The state still works once the clock is back.
        assert!(run.at(T0 + 100_000 + 3 * 60_000).allowed, "{algorithm:?}");
    }
}

#[test]
fn extreme_values_do_not_panic() {
    for algorithm in ALL {
        for (limit, period, burst) in [
            (u64::MAX, u64::MAX, Some(u64::MAX)),
            (1, u64::MAX, None),
            (u64::MAX, 1, None),
        ] {
            let mut run = Run::new(policy(algorithm, limit, period, burst));
            for (now, cost) in [
                (u64::MAX, u64::MAX),
                (0, 1),
                (u64::MAX, 0),
                (u64::MAX / 2, u64::MAX),
            ] {
                run.cost(now, cost);
            }
        }
    }
}

#[test]
fn cost_above_capacity_is_refused_with_a_period() {
    for algorithm in ALL {
        let mut run = Run::new(policy(algorithm, 5, 60_000, None));
        let d = run.cost(T0, 6);
        assert!(!d.allowed);
        assert_eq!(
            (d.retry_after_ms, d.remaining),
            (60_000, 5),
            "{algorithm:?}"
        );
        // Peeking is always allowed and takes nothing.
        let d = run.cost(T0, 0);
        assert_eq!((d.allowed, d.remaining), (true, 5), "{algorithm:?}");
    }
}

#[test]
fn algorithm_change_starts_afresh() {
    let fixed = policy(Algorithm::FixedWindow, 3, 60_000, None);
    let (_, state) = check(&fixed, None, T0, 3);
    let bucket = policy(Algorithm::TokenBucket, 3, 60_000, None);
    let (d, state) = check(&bucket, Some(&state), T0, 1);
    assert!(d.allowed);
    assert_eq!(state.algorithm(), Algorithm::TokenBucket);
}

#[test]
fn period_change_rescales_the_bucket() {
    let a = policy(Algorithm::TokenBucket, 10, 60_000, None);
    let (_, s) = token_bucket(&a, None, T0, 5);
    let b = policy(Algorithm::TokenBucket, 10, 1_000, None);
    let (d, _) = token_bucket(&b, Some(&s), T0, 1);
    assert_eq!(d.remaining, 4, "five tokens survive the change");
}

#[test]
fn policies_are_validated() {
    assert_eq!(
        Policy::new(Algorithm::Gcra, 0, 1, None),
        Err(PolicyError::ZeroLimit)
    );
    assert_eq!(
        Policy::new(Algorithm::Gcra, 1, 0, None),
        Err(PolicyError::ZeroPeriod)
    );
    assert_eq!(
        Policy::new(Algorithm::Gcra, 1, 1, Some(0)),
        Err(PolicyError::ZeroBurst)
    );
    let p: Policy = serde_json::from_str(
        r#"{"algorithm":"sliding_window","limit":5,"period_ms":1000,"burst":null}"#,
    )
    .unwrap();
    assert_eq!(p.capacity(), 5);
    assert!(
        serde_json::from_str::<Policy>(r#"{"algorithm":"gcra","limit":0,"period_ms":1}"#).is_err()
    );
}
