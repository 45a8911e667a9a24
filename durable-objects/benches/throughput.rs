//! Throughput of rate-limit decisions and hub broadcasts
//! (`cargo bench -p edgegate-durable-objects`). Targets: ≥ 100k decisions/s
//! through the object, a 10,000-subscriber broadcast well under 50 ms.

use std::hint::black_box;
use std::time::{Duration, Instant};

use edgegate_durable_objects::algorithms::{Algorithm, LimiterState, Policy, check};
use edgegate_durable_objects::hub::Hub;
use edgegate_durable_objects::testing::{MemoryState, block_on};
use edgegate_durable_objects::{DurableObject, Message, RateLimiter};

const T0: u64 = 1_700_000_000_000;

fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn algorithms() {
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
    ] {
        let policy = Policy::new(algorithm, 1_000, 60_000, None).unwrap();
        let mut state: Option<LimiterState> = None;
        let n = 2_000_000u64;
        let started = Instant::now();
        for i in 0..n {
            let (decision, next) = check(&policy, state.as_ref(), T0 + i / 16, 1);
            black_box(decision);
            state = Some(next);
        }
        println!(
            "algorithm {algorithm:?}: {:.0} decisions/s",
            per_second(n, started.elapsed())
        );
    }
}

fn rate_limiter_object() {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    let body =
        br#"{"algorithm":"gcra","limit":1000,"period_ms":60000,"burst":null,"cost":1}"#.to_vec();
    let n = 300_000u64;
    let started = Instant::now();
    for i in 0..n {
        state.set_now(T0 + i);
        let request = http::Request::builder()
            .method("POST")
            .uri("/check")
            .body(body.clone())
            .unwrap();
        black_box(block_on(limiter.fetch(&state, request)));
    }
    println!(
        "rate-limiter object (HTTP + JSON + storage put): {:.0} decisions/s",
        per_second(n, started.elapsed())
    );
}

fn hub_broadcast() {
    let state = MemoryState::new(T0);
    let hub = Hub::new();
    let sockets: Vec<_> = (0..10_000)
        .map(|i| {
            let request = http::Request::builder()
                .header("upgrade", "websocket")
                .header("x-user-id", format!("u{}", i % 100))
                .body(Vec::new())
                .unwrap();
            state
                .accept_outcome(block_on(hub.fetch(&state, request)))
                .unwrap()
        })
        .collect();
    for s in &sockets {
        let subscribe = r#"{"type":"subscribe","topic":"all"}"#.to_string();
        block_on(hub.websocket_message(&state, s, Message::Text(subscribe)));
        s.take_sent();
    }
    let publisher = &sockets[0];
    let mut best = Duration::MAX;
    for round in 0..20 {
        let publish = format!(r#"{{"type":"publish","topic":"all","data":{{"n":{round}}}}}"#);
        state.advance(1_000);
        let started = Instant::now();
        block_on(hub.websocket_message(&state, publisher, Message::Text(publish)));
        best = best.min(started.elapsed());
        for s in &sockets {
            s.take_sent();
        }
    }
    println!("hub publish to 10,000 subscribers: {best:?} (best of 20)");
}

fn main() {
    algorithms();
    rate_limiter_object();
    hub_broadcast();
}
