//! The whole edge pipeline on one request, natively, over an in-memory
//! platform whose origin answers at once: request id, routing, JWT (HS256)
//! verification, role check, header hygiene, the upstream call's request and
//! response, the access record — with and without a per-user rate limit
//! decided by a real limiter object. What is left of a proxied request's
//! cost under `edgegate serve` beyond this is the WebAssembly boundary, the
//! HTTP server and client, and the kernel:
//! `cargo bench -p edgegate-bench --bench gateway`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgegate_durable_objects::testing::{MemoryState, block_on};
use edgegate_durable_objects::{DurableObject, FetchOutcome, RateLimiter};
use edgegate_edge::config::Config;
use edgegate_edge::{ClientInfo, EdgeBody, FetchError, FetchOptions, Gateway, Platform};
use jsonwebtoken::{EncodingKey, Header, encode};

const SECRET: &str = "bench-secret-0123456789abcdef";
const T0: u64 = 1_700_000_000_000;

/// The configuration of bench/proxy.sh: a JWT route and the same route with
/// a per-user sliding-window limit that never refuses.
const CONFIG: &str = r#"
[[upstreams]]
name = "origin"
targets = [{ url = "http://127.0.0.1:19001" }]

[auth.jwt]
keys = [{ alg = "HS256", secret = "bench-secret-0123456789abcdef" }]

[[rate_limits]]
name = "per-user"
algorithm = "sliding_window"
key = "user"
limit = 1000000000000
period_s = 60

[[routes]]
name = "api"
match = { path_prefix = "/api" }
upstream = "origin"
auth = "jwt"
roles = ["user"]

[[routes]]
name = "limited"
match = { path_prefix = "/limited" }
upstream = "origin"
auth = "jwt"
roles = ["user"]
rate_limits = ["per-user"]
"#;

/// A body held in memory.
struct MemoryBody(Bytes);

impl EdgeBody for MemoryBody {
    fn from_bytes(bytes: Bytes) -> Self {
        MemoryBody(bytes)
    }
    fn limit(self, _max: u64, _exceeded: Arc<AtomicBool>) -> Self {
        self
    }
    async fn read_to_end(self, _max: usize) -> Result<Bytes, String> {
        Ok(self.0)
    }
}

/// An origin that answers what `bench-origin` answers, and limiter objects
/// kept live by name as a host keeps them.
struct MemoryPlatform {
    limiters: RefCell<HashMap<String, (MemoryState, RateLimiter)>>,
    records: bool,
}

impl Platform for MemoryPlatform {
    type Body = MemoryBody;

    async fn fetch(
        &self,
        request: http::Request<MemoryBody>,
        _options: FetchOptions,
    ) -> Result<http::Response<MemoryBody>, FetchError> {
        black_box(request);
        Ok(http::Response::builder()
            .header("content-type", "text/plain")
            .header("content-length", "2")
            .header("date", "Sat, 21 Nov 2026 10:00:00 GMT")
            .body(MemoryBody(Bytes::from_static(b"ok")))
            .expect("response"))
    }

    async fn durable_object(
        &self,
        _class: &str,
        name: &str,
        request: http::Request<MemoryBody>,
    ) -> Result<http::Response<MemoryBody>, FetchError> {
        let request = request.map(|b| b.0.to_vec());
        // Out of the map while it runs: one event at a time per object.
        let live = self.limiters.borrow_mut().remove(name);
        let (state, limiter) = live.unwrap_or_else(|| (MemoryState::new(T0), RateLimiter::new()));
        let outcome = limiter.fetch(&state, request).await;
        self.limiters
            .borrow_mut()
            .insert(name.to_string(), (state, limiter));
        match outcome {
            FetchOutcome::Response(r) => Ok(r.map(|b| MemoryBody(Bytes::from(b)))),
            FetchOutcome::AcceptWebSocket { .. } => Err(FetchError::Other("not a hub".into())),
        }
    }

    fn has_durable_objects(&self) -> bool {
        true
    }

    async fn sleep(&self, _duration: Duration) {}

    fn now_unix_ms(&self) -> u64 {
        T0
    }

    fn monotonic_ns(&self) -> u64 {
        0
    }

    fn log(&self, line: &str) {
        black_box(line);
    }

    fn wants_access_records(&self) -> bool {
        self.records
    }

    fn fill_random(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
}

fn pipeline(c: &mut Criterion) {
    let gateway = Gateway::new(Config::parse(CONFIG).expect("bench config")).expect("gateway");
    let claims = serde_json::json!({ "sub": "bench", "roles": ["user"], "exp": T0 / 1000 + 3600 });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    let authorization = format!("Bearer {token}");
    let client = ClientInfo {
        ip: Some("127.0.0.1".into()),
        scheme: Some("http".into()),
        unhealthy_targets: None,
    };
    let mut group = c.benchmark_group("gateway_pipeline");
    group.throughput(Throughput::Elements(1));
    for (name, path, records) in [
        ("jwt_route", "/api/x", false),
        ("jwt_route_access_record", "/api/x", true),
        ("jwt_rate_limited_route", "/limited/x", true),
    ] {
        let platform = MemoryPlatform {
            limiters: RefCell::default(),
            records,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                // What wrk sends.
                let request = http::Request::builder()
                    .uri(format!("http://127.0.0.1:19013{path}"))
                    .header("host", "127.0.0.1:19013")
                    .header("authorization", &authorization)
                    .body(MemoryBody(Bytes::new()))
                    .expect("request");
                let response = block_on(gateway.handle(&platform, request, &client));
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
