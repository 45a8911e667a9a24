//! The rate-limiter object over the in-memory state.

mod common;

use common::{call, request};
use edgegate_durable_objects::testing::MemoryState;
use edgegate_durable_objects::{RateLimiter, State, ratelimiter::STATE_KEY};
use http::StatusCode;
use serde_json::{Value, json};

const T0: u64 = 1_700_000_040_000;

fn check(limiter: &RateLimiter, state: &MemoryState, body: &Value) -> (StatusCode, Value) {
    call(limiter, state, request("POST", "/check", &body.to_string()))
}

fn policy(algorithm: &str, limit: u64) -> Value {
    json!({"algorithm": algorithm, "limit": limit, "period_ms": 60_000, "burst": null, "cost": 1})
}

#[test]
fn answers_decisions_as_json() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    let (status, body) = check(&limiter, &state, &policy("token_bucket", 100));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"allowed": true, "limit": 100, "remaining": 99, "reset_ms": 600, "retry_after_ms": 0})
    );
}

#[test]
fn admits_exactly_the_limit_for_every_algorithm() {
    for algorithm in ["token_bucket", "sliding_window", "gcra", "fixed_window"] {
        let state = MemoryState::new(T0);
        let limiter = RateLimiter::new();
        let allowed = (0..25)
            .filter(|_| check(&limiter, &state, &policy(algorithm, 10)).1["allowed"] == true)
            .count();
        assert_eq!(allowed, 10, "{algorithm}");
        let (_, refused) = check(&limiter, &state, &policy(algorithm, 10));
        assert_eq!(refused["remaining"], 0);
        assert!(refused["retry_after_ms"].as_u64().unwrap() > 0);
    }
}

#[test]
fn state_survives_eviction() {
    for algorithm in ["token_bucket", "sliding_window", "gcra", "fixed_window"] {
        let state = MemoryState::new(T0);
        {
            // The first instance is evicted at the end of this block.
            let first = RateLimiter::new();
            for _ in 0..6 {
                assert_eq!(
                    check(&first, &state, &policy(algorithm, 10)).1["allowed"],
                    true
                );
            }
        }
        let second = RateLimiter::new();
        let allowed = (0..10)
            .filter(|_| check(&second, &state, &policy(algorithm, 10)).1["allowed"] == true)
            .count();
        assert_eq!(
            allowed, 4,
            "{algorithm}: the evicted instance's 6 still count"
        );
    }
}

#[test]
fn writes_once_per_admission_and_never_for_refusals() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    for _ in 0..5 {
        check(&limiter, &state, &policy("gcra", 3));
    }
    assert_eq!(state.storage().writes(), 3);
    assert!(state.storage().entries().contains_key(STATE_KEY));
    // A peek (cost 0) writes nothing either.
    let mut peek = policy("gcra", 3);
    peek["cost"] = json!(0);
    let (_, body) = check(&limiter, &state, &peek);
    assert_eq!(
        (body["allowed"].clone(), body["remaining"].clone()),
        (json!(true), json!(0))
    );
    assert_eq!(state.storage().writes(), 3);
}

#[test]
fn follows_policy_changes() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    for _ in 0..3 {
        check(&limiter, &state, &policy("fixed_window", 3));
    }
    assert_eq!(
        check(&limiter, &state, &policy("fixed_window", 3)).1["allowed"],
        false
    );
    assert_eq!(
        check(&limiter, &state, &policy("fixed_window", 5)).1["allowed"],
        true
    );
    assert_eq!(
        check(&limiter, &state, &policy("token_bucket", 5)).1["remaining"],
        4
    );
}

#[test]
fn clock_going_backwards() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    for _ in 0..2 {
        check(&limiter, &state, &policy("sliding_window", 2));
    }
    state.set_now(T0 - 3_600_000);
    let (status, body) = check(&limiter, &state, &policy("sliding_window", 2));
    assert_eq!(
        (status, body["allowed"].clone()),
        (StatusCode::OK, json!(false))
    );
}

#[test]
fn rejects_bad_requests() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    let (status, body) = call(&limiter, &state, request("POST", "/check", "{not json"));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("invalid check"));
    let (status, _) = check(
        &limiter,
        &state,
        &json!({"algorithm": "leaky", "limit": 1, "period_ms": 1}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = check(&limiter, &state, &policy("gcra", 0));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "limit must be at least 1");
    let (status, _) = call(&limiter, &state, request("GET", "/check", ""));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(&limiter, &state, request("POST", "/other", ""));
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Defaults: cost 1, no burst.
    let (status, body) = check(
        &limiter,
        &state,
        &json!({"algorithm": "gcra", "limit": 2, "period_ms": 1000}),
    );
    assert_eq!(
        (status, body["remaining"].clone()),
        (StatusCode::OK, json!(1))
    );
}

#[test]
fn storage_failure_is_503() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    state.storage().set_failing(true);
    let (status, body) = check(&limiter, &state, &policy("gcra", 2));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("unavailable"));
    state.storage().set_failing(false);
    assert_eq!(
        check(&limiter, &state, &policy("gcra", 2)).0,
        StatusCode::OK
    );
}

#[test]
fn alarm_deletes_idle_state() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    check(&limiter, &state, &policy("token_bucket", 10));
    assert_eq!(state.alarm(), Some(T0 + 6_000));
    // More traffic moves the idle time, not the alarm (one write saved per call).
    state.advance(1_000);
    check(&limiter, &state, &policy("token_bucket", 10));
    assert_eq!(state.alarm(), Some(T0 + 6_000));

    state.set_now(T0 + 5_999);
    assert_eq!(state.fire_alarm(&limiter), Ok(false));
    state.set_now(T0 + 6_000);
    assert_eq!(state.fire_alarm(&limiter), Ok(true));
    // 8⅙ tokens left at T0 + 1 s, full again 11 s later.
    assert_eq!(
        state.alarm(),
        Some(T0 + 12_000),
        "not idle yet: looks again"
    );
    assert!(state.storage().entries().contains_key(STATE_KEY));

    state.set_now(T0 + 12_000);
    assert_eq!(state.fire_alarm(&limiter), Ok(true));
    assert_eq!(state.alarm(), None);
    assert!(state.storage().entries().is_empty());
    // A fresh instance after the deletion starts with a full bucket.
    let fresh = RateLimiter::new();
    assert_eq!(
        check(&fresh, &state, &policy("token_bucket", 10)).1["remaining"],
        9
    );
    // And re-arms the alarm.
    assert_eq!(state.alarm(), Some(T0 + 18_000));
}
