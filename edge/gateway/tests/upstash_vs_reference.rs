//! The Upstash backend's Lua scripts, run by a real `redis-server`, decide
//! exactly as the Rust reference functions do
//! (`edgegate_durable_objects::algorithms`): same admissions, remaining,
//! reset and retry times, for random policies and random sequences of
//! (advance the clock, cost) — including limits at the configured bound
//! (`max(limit, capacity) × period_ms = 2^51`, where Redis's doubles would
//! lose integers if the scripts formed the reference's u128 products) and
//! policies changed in the middle of a sequence. The scripts' test-only
//! `now_ms` argument makes the sequences deterministic.
//!
//! Needs `redis-server` (`apt-get install redis-server`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgegate_conformance::upstash_rest::RedisServer;
use edgegate_durable_objects::algorithms::{self, Algorithm, Decision, LimiterState, Policy};
use edgegate_edge::config::UPSTASH_MAX_LIMIT_PERIOD_MS;
use edgegate_edge::upstash::{KEY_PREFIX, Script};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// Extra TTL the scripts add when given `now_ms` (see the prelude).
const TEST_TTL_SLACK_MS: i64 = 86_400_000;

struct Redis {
    _server: RedisServer,
    connection: redis::Connection,
}

impl Redis {
    fn start() -> Redis {
        let server = RedisServer::start();
        let mut connection = redis::Client::open(server.url())
            .and_then(|c| c.get_connection())
            .expect("connecting to redis-server");
        for script in Script::ALL {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script.source())
                .query(&mut connection)
                .expect("the script compiles");
            assert_eq!(sha, script.sha1(), "{script:?}: EVALSHA would miss");
        }
        Redis {
            _server: server,
            connection,
        }
    }

    /// One script call; `now_ms` `None` uses the server clock.
    fn check(&mut self, key: &str, policy: &Policy, now_ms: Option<u64>, cost: u64) -> Decision {
        let script = Script::for_algorithm(policy.algorithm());
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.sha1())
            .arg(1)
            .arg(key)
            .arg(policy.limit())
            .arg(policy.period_ms())
            .arg(policy.capacity())
            .arg(cost);
        if let Some(now) = now_ms {
            cmd.arg(now);
        }
        let reply: Vec<u64> = cmd.query(&mut self.connection).expect("script reply");
        assert_eq!(reply.len(), 5, "{reply:?}");
        Decision {
            allowed: reply[0] == 1,
            limit: reply[1],
            remaining: reply[2],
            reset_ms: reply[3],
            retry_after_ms: reply[4],
        }
    }

    /// The state the scripts stored, read in their layout
    /// (`tb:level:updated_ms:scale`, `gc:tat_ms:tat_frac:scale`,
    /// `sw:window_start_ms:previous:current`, `fw:window_start_ms:count`).
    fn state(&mut self, key: &str) -> Option<LimiterState> {
        use algorithms::{FixedWindow, Gcra, SlidingWindow, TokenBucket};
        let text: Option<String> = redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection)
            .expect("GET");
        let text = text?;
        let (tag, rest) = text.split_once(':')?;
        let f: Vec<u64> = rest
            .split(':')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        Some(match (tag, &f[..]) {
            ("tb", &[level, updated_ms, scale]) => LimiterState::TokenBucket(TokenBucket {
                level,
                updated_ms,
                scale,
            }),
            ("gc", &[tat_ms, tat_frac, scale]) => LimiterState::Gcra(Gcra {
                tat_ms,
                tat_frac,
                scale,
            }),
            ("sw", &[window_start_ms, previous, current]) => {
                LimiterState::SlidingWindow(SlidingWindow {
                    window_start_ms,
                    previous,
                    current,
                })
            }
            ("fw", &[window_start_ms, count]) => LimiterState::FixedWindow(FixedWindow {
                window_start_ms,
                count,
            }),
            _ => panic!("unreadable state {text:?}"),
        })
    }

    fn pttl(&mut self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.connection)
            .expect("PTTL")
    }
}

fn unique_key() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{KEY_PREFIX}prop:{}", N.fetch_add(1, Ordering::Relaxed))
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::TokenBucket),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::Gcra),
        Just(Algorithm::FixedWindow),
    ]
}

/// Policies within the Upstash bound: small and odd periods (limits that do
/// not divide them), real ones, and some right at the bound.
fn any_policy() -> impl Strategy<Value = Policy> {
    let ordinary = (
        algorithm(),
        1u64..=50,
        prop_oneof![
            1u64..=7,
            Just(1_000u64),
            999u64..=120_000,
            Just(3_600_000u64),
            Just(86_400_000u64),
        ],
        prop::option::of(1u64..=200),
    );
    // Long periods with large limits, and large limits with short periods:
    // a rescaled state then needs products far beyond 2^53.
    let long_period = (
        algorithm(),
        prop_oneof![Just(1u64 << 21), 1u64..=(1 << 21)],
        Just(1u64 << 30),
        prop::option::of(Just(1u64 << 21)),
    );
    let large_limit = (
        algorithm(),
        prop_oneof![Just(1u64 << 30), (1u64 << 29)..=(1 << 30)],
        Just(1u64 << 21),
        prop::option::of(Just(1u64 << 30)),
    );
    prop_oneof![6 => ordinary, 1 => long_period, 1 => large_limit].prop_filter_map(
        "within the Upstash bound",
        |(algorithm, limit, period_ms, burst)| {
            let policy = Policy::new(algorithm, limit, period_ms, burst).ok()?;
            let widest = u128::from(limit.max(policy.capacity())) * u128::from(period_ms);
            (widest <= u128::from(UPSTASH_MAX_LIMIT_PERIOD_MS)).then_some(policy)
        },
    )
}

/// The same algorithm with a slightly different limit, period or burst: a
/// state written under `policy` is then rescaled rather than dropped.
fn near(policy: Policy) -> impl Strategy<Value = Policy> {
    (0u64..=2, 0u64..=2, 0u64..=2, any::<bool>()).prop_filter_map(
        "a valid policy within the bound",
        move |(limit_less, period_less, burst_less, keep_burst)| {
            let limit = policy.limit().checked_sub(limit_less).filter(|l| *l > 0)?;
            let period_ms = policy
                .period_ms()
                .checked_sub(period_less)
                .filter(|p| *p > 0)?;
            let burst = policy
                .burst()
                .filter(|_| keep_burst)
                .and_then(|b| b.checked_sub(burst_less))
                .filter(|b| *b > 0);
            Policy::new(policy.algorithm(), limit, period_ms, burst).ok()
        },
    )
}

/// One decision: advance the clock by `advance` ms, then ask for `cost`.
#[derive(Debug, Clone, Copy)]
struct Step {
    advance: u64,
    cost: u64,
}

fn steps(policy: Policy) -> impl Strategy<Value = Vec<Step>> {
    let period = policy.period_ms();
    let interval = (period / policy.limit()).max(1);
    let capacity = policy.capacity();
    let step = (
        prop_oneof![
            3 => Just(0u64),
            4 => 0..=interval * 2,
            1 => 0..=period * 3,
        ],
        prop_oneof![
            6 => Just(1u64),
            1 => Just(0u64),
            2 => 0..=capacity + 2,
        ],
    )
        .prop_map(|(advance, cost)| Step { advance, cost });
    prop::collection::vec(step, 1..60)
}

#[derive(Debug, Clone)]
struct Case {
    policy: Policy,
    start_ms: u64,
    steps: Vec<Step>,
    /// From this step on, the key is counted under another policy.
    change: Option<(usize, Policy)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any_policy(),
        prop_oneof![0u64..(1 << 44), 1_600_000_000_000u64..2_000_000_000_000],
    )
        .prop_flat_map(|(policy, start_ms)| {
            (
                Just(policy),
                Just(start_ms),
                steps(policy),
                prop::option::weighted(0.3, (0usize..60, prop_oneof![any_policy(), near(policy)])),
            )
        })
        .prop_map(|(policy, start_ms, steps, change)| Case {
            policy,
            start_ms,
            steps,
            change,
        })
}

/// Runs `case` through Redis and through the reference, which stores its
/// state as every backend does: after admitted requests only (a refusal or
/// a peek never changes what the state means).
fn run_case(redis: &mut Redis, case: &Case) -> Result<(), TestCaseError> {
    let key = unique_key();
    let mut now = case.start_ms;
    let mut stored: Option<LimiterState> = None;
    // The pure function with its state threaded through every decision:
    // the same decisions as long as the policy does not change.
    let mut threaded: Option<LimiterState> = None;
    for (i, step) in case.steps.iter().enumerate() {
        let policy = match case.change {
            Some((at, other)) if i >= at => other,
            _ => case.policy,
        };
        now += step.advance;
        let lua = redis.check(&key, &policy, Some(now), step.cost);
        let (reference, next) = algorithms::check(&policy, stored.as_ref(), now, step.cost);
        prop_assert_eq!(
            lua,
            reference,
            "step {} of {:?} at {} ms (cost {})",
            i,
            policy,
            now,
            step.cost
        );
        if case.change.is_none() {
            let (d, s) = algorithms::check(&policy, threaded.as_ref(), now, step.cost);
            prop_assert_eq!(d, reference, "threaded state, step {}", i);
            threaded = Some(s);
        }
        if reference.allowed && step.cost > 0 {
            stored = Some(next);
            // Decisions round to whole tokens and milliseconds; the state
            // must match to the unit so no error can accumulate.
            prop_assert_eq!(redis.state(&key), stored, "stored state, step {}", i);
            // The key lives exactly until the state means nothing more.
            let ttl = redis.pttl(&key) - TEST_TTL_SLACK_MS;
            let reset = i64::try_from(reference.reset_ms).unwrap_or(i64::MAX);
            prop_assert!(
                ttl <= reset.max(1) && ttl > reset.max(1) - 5_000,
                "TTL {} ms for reset {} ms",
                ttl,
                reset
            );
            let later = now + reference.reset_ms;
            for cost in [1, policy.capacity()] {
                prop_assert_eq!(
                    algorithms::check(&policy, Some(&next), later, cost).0,
                    algorithms::check(&policy, None, later, cost).0,
                    "state still matters after its TTL"
                );
            }
        }
    }
    Ok(())
}

/// States written at the bound and read under a neighbouring policy of
/// another scale (period for token_bucket, limit for gcra): the rescaling
/// products reach 2^80, so the scripts divide them bit by bit.
fn rescale_case() -> impl Strategy<Value = Case> {
    let bucket = prop_oneof![Just(Algorithm::TokenBucket), Just(Algorithm::Gcra)];
    (
        bucket,
        prop_oneof![
            (1u64..=(1 << 21), Just(1u64 << 30)),
            ((1u64 << 29)..=(1 << 30), Just(1u64 << 21)),
        ],
        1u64..=2,
        1_600_000_000_000u64..2_000_000_000_000,
    )
        .prop_filter_map(
            "a valid policy",
            |(algorithm, (limit, period_ms), less, start_ms)| {
                let policy = Policy::new(algorithm, limit, period_ms, None).ok()?;
                let other = match algorithm {
                    Algorithm::TokenBucket => Policy::new(algorithm, limit, period_ms - less, None),
                    _ => Policy::new(algorithm, limit.checked_sub(less)?.max(1), period_ms, None),
                }
                .ok()?;
                (other != policy).then_some((policy, other, start_ms))
            },
        )
        .prop_flat_map(|(policy, other, start_ms)| {
            let capacity = policy.capacity();
            // Short advances leave the bucket partly refilled, so the
            // rescaled level is no multiple of the old period.
            let step = (0..=policy.period_ms() / 64, 0..=capacity)
                .prop_map(|(advance, cost)| Step { advance, cost });
            (
                Just(policy),
                Just(other),
                Just(start_ms),
                prop::collection::vec(step, 2..8),
                1usize..4,
            )
        })
        .prop_map(|(policy, other, start_ms, steps, at)| Case {
            policy,
            start_ms,
            steps,
            change: Some((at, other)),
        })
}

/// The scripts' integer helpers (`idiv`, `ceil_div`, `muldiv_cap`) against
/// u128 arithmetic, over the whole range the scripts use them on.
#[test]
fn integer_helpers_are_exact_beyond_2_pow_53_products() {
    let source = Script::Gcra.source();
    let helpers = &source[..source.find("-- Arguments").expect("helpers end marker")];
    let probe = format!(
        "{helpers}\nlocal a, b, c, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n\
         return {{idiv(a, c), ceil_div(a, c), muldiv_cap(a, b, c, cap)}}"
    );
    let mut redis = Redis::start();
    let below = |bits: u32| 1u64..(1u64 << bits);
    let strategy = (below(52), below(53), below(52), below(52));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let connection = std::cell::RefCell::new(&mut redis.connection);
    runner
        .run(&strategy, |(a, b, c, cap)| {
            let got: Vec<u64> = redis::cmd("EVAL")
                .arg(&probe)
                .arg(0)
                .arg(a)
                .arg(b)
                .arg(c)
                .arg(cap)
                .query(*connection.borrow_mut())
                .expect("probe");
            let (a128, b128, c128) = (u128::from(a), u128::from(b), u128::from(c));
            let muldiv = u64::try_from((a128 * b128 / c128).min(u128::from(cap))).unwrap();
            prop_assert_eq!(got, vec![a / c, a.div_ceil(c), muldiv]);
            Ok(())
        })
        .unwrap();
}

#[test]
fn rescaled_states_decide_exactly_as_the_reference() {
    let redis = std::cell::RefCell::new(Redis::start());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&rescale_case(), |case| {
            run_case(&mut redis.borrow_mut(), &case)
        })
        .unwrap();
}

#[test]
fn lua_scripts_decide_exactly_as_the_reference() {
    let redis = std::cell::RefCell::new(Redis::start());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let started = std::time::Instant::now();
    runner
        .run(&case(), |case| run_case(&mut redis.borrow_mut(), &case))
        .unwrap();
    println!(
        "{cases} random sequences matched in {:?}",
        started.elapsed()
    );
}

/// Sequences a reviewer can read: a burst at one instant, and the retry
/// time being exact to the millisecond.
#[test]
fn bursts_and_retry_times_match_by_hand() {
    let mut redis = Redis::start();
    let now = 1_700_000_000_123;
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
    ] {
        let policy = Policy::new(algorithm, 3, 10_000, None).unwrap();
        let key = unique_key();
        let admitted: Vec<bool> = (0..5)
            .map(|_| redis.check(&key, &policy, Some(now), 1).allowed)
            .collect();
        assert_eq!(admitted, [true, true, true, false, false], "{algorithm:?}");
        let refused = redis.check(&key, &policy, Some(now), 1);
        let retry = refused.retry_after_ms;
        assert!(retry > 0, "{algorithm:?}");
        assert!(
            !redis.check(&key, &policy, Some(now + retry - 1), 1).allowed,
            "{algorithm:?}: admitted 1 ms before retry_after"
        );
        assert!(
            redis.check(&key, &policy, Some(now + retry), 1).allowed,
            "{algorithm:?}: refused at retry_after"
        );
    }
}

/// Without `now_ms` the scripts use Redis's clock, and keys carry the real
/// TTL and vanish when it ends.
#[test]
fn server_clock_and_real_expiry() {
    let mut redis = Redis::start();
    let policy = Policy::new(Algorithm::FixedWindow, 2, 1_000, None).unwrap();
    let key = unique_key();
    let first = redis.check(&key, &policy, None, 1);
    assert!(first.allowed && first.remaining == 1);
    let ttl = redis.pttl(&key);
    assert!(
        ttl > 0 && ttl <= i64::try_from(first.reset_ms).unwrap(),
        "TTL {ttl} for reset {}",
        first.reset_ms
    );
    std::thread::sleep(Duration::from_millis(first.reset_ms + 50));
    assert_eq!(redis.pttl(&key), -2, "the idle key expired");
    let fresh = redis.check(&key, &policy, None, 1);
    assert_eq!(fresh.remaining, 1, "a new window starts afresh");

    // A refusal and a peek write nothing.
    let gcra = Policy::new(Algorithm::Gcra, 1, 60_000, None).unwrap();
    let key = unique_key();
    assert!(redis.check(&key, &gcra, None, 0).allowed);
    assert_eq!(redis.pttl(&key), -2, "a peek stores nothing");
    assert!(redis.check(&key, &gcra, None, 1).allowed);
    let ttl = redis.pttl(&key);
    assert!(ttl > 59_000 && ttl <= 60_000, "{ttl}");
    assert!(!redis.check(&key, &gcra, None, 1).allowed);
}

/// Nonsense arguments are an error, never a decision.
#[test]
fn bad_arguments_are_refused() {
    let mut redis = Redis::start();
    let reply: redis::RedisResult<Vec<u64>> = redis::cmd("EVALSHA")
        .arg(Script::Gcra.sha1())
        .arg(1)
        .arg(unique_key())
        .arg(0)
        .arg(1000)
        .arg(1)
        .arg(1)
        .query(&mut redis.connection);
    let error = reply.unwrap_err();
    assert!(error.to_string().contains("bad arguments"), "{error}");
}
