//! Rate-limit decisions (the bare algorithms and the limiter object with its
//! JSON and storage) and a hub publish to 10,000 subscribers:
//! `cargo bench -p edgegate-bench --bench objects`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edgegate_durable_objects::algorithms::{Algorithm, LimiterState, Policy, check};
use edgegate_durable_objects::hub::Hub;
use edgegate_durable_objects::testing::{MemorySocket, MemoryState, block_on};
use edgegate_durable_objects::{DurableObject, Message, RateLimiter};

const T0: u64 = 1_700_000_000_000;

fn algorithms(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_algorithm");
    group.throughput(Throughput::Elements(1));
    for algorithm in [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
        Algorithm::FixedWindow,
    ] {
        let policy = Policy::new(algorithm, 1_000, 60_000, None).expect("policy");
        let mut state: Option<LimiterState> = None;
        let mut now = T0;
        group.bench_function(format!("{algorithm:?}"), |b| {
            b.iter(|| {
                now += 1;
                let (decision, next) = check(&policy, state.as_ref(), now, 1);
                state = Some(next);
                black_box(decision)
            })
        });
    }
    group.finish();
}

fn limiter_object(c: &mut Criterion) {
    let state = MemoryState::new(T0);
    let limiter = RateLimiter::new();
    let body = br#"{"algorithm":"gcra","limit":1000,"period_ms":60000,"cost":1}"#.to_vec();
    let mut now = T0;
    let mut group = c.benchmark_group("ratelimiter_object");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_one_hot_key", |b| {
        b.iter(|| {
            now += 1;
            state.set_now(now);
            let request = http::Request::builder()
                .method("POST")
                .uri("/check")
                .body(body.clone())
                .expect("request");
            black_box(block_on(limiter.fetch(&state, request)))
        })
    });
    group.finish();
}

fn hub_broadcast(c: &mut Criterion) {
    let state = MemoryState::new(T0);
    let hub = Hub::<MemorySocket>::new();
    let sockets: Vec<MemorySocket> = (0..10_000)
        .map(|i| {
            let request = http::Request::builder()
                .header("upgrade", "websocket")
                .header("x-user-id", format!("u{}", i % 100))
                .body(Vec::new())
                .expect("request");
            state
                .accept_outcome(block_on(hub.fetch(&state, request)))
                .expect("accepted")
        })
        .collect();
    for s in &sockets {
        let subscribe = r#"{"type":"subscribe","topic":"all"}"#.to_string();
        block_on(hub.websocket_message(&state, s, Message::Text(subscribe)));
        s.take_sent();
    }
    let mut round = 0u64;
    let mut group = c.benchmark_group("hub");
    group.sample_size(20);
    group.bench_function("publish_to_10000_subscribers", |b| {
        b.iter_batched(
            || {
                for s in &sockets {
                    s.take_sent();
                }
                round += 1;
                state.advance(1_000);
                format!(r#"{{"type":"publish","topic":"all","data":{{"n":{round}}}}}"#)
            },
            |publish| block_on(hub.websocket_message(&state, &sockets[0], Message::Text(publish))),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, algorithms, limiter_object, hub_broadcast);
criterion_main!(benches);
