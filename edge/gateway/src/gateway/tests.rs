//! Pipeline tests over an in-memory platform whose "upstreams" record what
//! they receive. The real component and host are covered by the integration
//! tests in `runtime-host/tests` and `tests/`.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use edgegate_durable_objects::testing::{MemorySocket, MemoryState};
use edgegate_durable_objects::{DurableObject, FetchOutcome, Hub, RateLimiter};

use super::*;

#[derive(Debug, Default)]
struct TestBody {
    bytes: Vec<u8>,
    limit: Option<(u64, Arc<AtomicBool>)>,
}

impl EdgeBody for TestBody {
    fn from_bytes(bytes: Bytes) -> Self {
        TestBody {
            bytes: bytes.to_vec(),
            limit: None,
        }
    }
    fn limit(mut self, max: u64, exceeded: Arc<AtomicBool>) -> Self {
        self.limit = Some((max, exceeded));
        self
    }
    async fn read_to_end(self, _max: usize) -> Result<Bytes, String> {
        Ok(Bytes::from(self.bytes))
    }
}

/// What an upstream target does with one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    Refused,
    Timeout,
}

struct TestPlatform {
    /// An authority whose every call is refused, whatever `replies` says.
    refused_authority: RefCell<Option<&'static str>>,
    logged: RefCell<Vec<String>>,
    /// Live rate-limiter objects by name, as a host would keep them.
    limiters: RefCell<std::collections::HashMap<String, (MemoryState, RateLimiter)>>,
    replies: RefCell<Vec<Reply>>,
    seen: RefCell<Vec<http::request::Parts>>,
    slept: RefCell<Vec<Duration>>,
}

impl TestPlatform {
    fn new(replies: &[Reply]) -> Self {
        TestPlatform {
            refused_authority: RefCell::new(None),
            logged: RefCell::new(Vec::new()),
            limiters: RefCell::new(Default::default()),
            replies: RefCell::new(replies.to_vec()),
            seen: RefCell::new(Vec::new()),
            slept: RefCell::new(Vec::new()),
        }
    }
}

impl TestPlatform {
    /// One hub object for every name: enough to see what the edge sends it.
    async fn hub(&self, request: Request<TestBody>) -> Response<TestBody> {
        let mut request = request.map(|b| b.bytes);
        // What a host does for guests that cannot see `Upgrade`.
        if request
            .headers_mut()
            .remove(headers::WEBSOCKET_UPGRADE)
            .is_some()
        {
            request
                .headers_mut()
                .insert("upgrade", HeaderValue::from_static("websocket"));
        }
        self.seen.borrow_mut().push(request.clone().into_parts().0);
        let state = MemoryState::new(self.now_unix_ms());
        match Hub::<MemorySocket>::new().fetch(&state, request).await {
            FetchOutcome::AcceptWebSocket { .. } => {
                let mut r = Response::new(TestBody::default());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                r
            }
            FetchOutcome::Response(r) => r.map(|b| TestBody::from_bytes(Bytes::from(b))),
        }
    }
}

impl Platform for TestPlatform {
    type Body = TestBody;

    async fn fetch(
        &self,
        request: Request<TestBody>,
        _options: FetchOptions,
    ) -> Result<Response<TestBody>, FetchError> {
        let (parts, body) = request.into_parts();
        if let Some((max, flag)) = &body.limit
            && body.bytes.len() as u64 > *max
        {
            flag.store(true, Ordering::Relaxed);
            return Err(FetchError::Other("body too large".into()));
        }
        let refused = *self.refused_authority.borrow() == parts.uri.authority().map(|a| a.as_str());
        self.seen.borrow_mut().push(parts);
        if refused {
            return Err(FetchError::Connect("refused".into()));
        }
        let reply = {
            let mut r = self.replies.borrow_mut();
            if r.is_empty() { Reply::Ok } else { r.remove(0) }
        };
        match reply {
            Reply::Ok => {
                let mut resp = Response::new(TestBody::from_bytes(Bytes::from_static(b"hello")));
                resp.headers_mut()
                    .insert("connection", HeaderValue::from_static("close"));
                Ok(resp)
            }
            Reply::Refused => Err(FetchError::Connect("refused".into())),
            Reply::Timeout => Err(FetchError::Timeout),
        }
    }

    async fn durable_object(
        &self,
        class: &str,
        name: &str,
        request: Request<TestBody>,
    ) -> Result<Response<TestBody>, FetchError> {
        if class == "hub" {
            return Ok(self.hub(request).await);
        }
        if class != "ratelimiter" || name.starts_with("down:") {
            return Err(FetchError::Connect("no such object".into()));
        }
        // Take the object out while it runs: no borrow across the await.
        let taken = self.limiters.borrow_mut().remove(name);
        let (state, limiter) =
            taken.unwrap_or_else(|| (MemoryState::new(self.now_unix_ms()), RateLimiter::new()));
        let response = limiter
            .fetch(&state, request.map(|b| b.bytes))
            .await
            .into_response()
            .expect("a limiter answers with a response");
        self.limiters
            .borrow_mut()
            .insert(name.to_string(), (state, limiter));
        Ok(response.map(|b| TestBody::from_bytes(Bytes::from(b))))
    }

    fn has_durable_objects(&self) -> bool {
        true
    }

    async fn sleep(&self, duration: Duration) {
        self.slept.borrow_mut().push(duration);
    }

    fn now_unix_ms(&self) -> u64 {
        1_700_000_000_000
    }

    fn monotonic_ns(&self) -> u64 {
        // Every call is 1 ms later: latencies come out as whole numbers.
        let n = self.logged.borrow().len() as u64;
        let ticks = self.seen.borrow().len() as u64 * 2 + n;
        ticks * 1_000_000
    }

    fn log(&self, line: &str) {
        self.logged.borrow_mut().push(line.to_string());
    }

    fn fill_random(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
}

const SECRET: &str = "unit-test-secret";

fn gateway(extra: &str) -> Gateway {
    let text = format!(
        r#"
[[upstreams]]
name = "u"
targets = [{{ url = "http://a.internal:1" }}, {{ url = "http://b.internal:2/base" }}]
retries = 2

[auth.jwt]
issuer = "iss"
audience = "api"
keys = [{{ kid = "k", alg = "HS256", secret = "{SECRET}" }}]

[[routes]]
name = "open"
match = {{ path_prefix = "/open", methods = ["GET", "POST"] }}
upstream = "u"
max_body_bytes = 8
cors = {{ allow_origins = ["https://app.example"], allow_headers = ["authorization"] }}

[[routes]]
name = "secure"
match = {{ path_prefix = "/api" }}
upstream = "u"
strip_prefix = "/api"
auth = "jwt"
roles = ["admin"]
{extra}
"#
    );
    Gateway::new(Config::parse(&text).unwrap()).unwrap()
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request<TestBody> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(TestBody::from_bytes(Bytes::copy_from_slice(body)))
        .unwrap()
}

fn run(gw: &Gateway, p: &TestPlatform, req: Request<TestBody>) -> Response<TestBody> {
    let client = ClientInfo {
        ip: Some("192.0.2.7".into()),
        scheme: Some("http".into()),
        unhealthy_targets: None,
    };
    futures_lite::future::block_on(gw.handle(p, req, &client))
}

fn problem(resp: &Response<TestBody>) -> serde_json::Value {
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    serde_json::from_slice(&resp.body().bytes).unwrap()
}

fn token(roles: &[&str]) -> String {
    // Minted by an independent implementation, not edgegate-auth.
    let claims = serde_json::json!({
        "sub": "alice", "iss": "iss", "aud": "api", "roles": roles, "exp": 1_700_000_600
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn unknown_route_is_404_problem_with_request_id() {
    let p = TestPlatform::new(&[]);
    let resp = run(
        &gateway(""),
        &p,
        request("GET", "http://gw/nope", &[("x-request-id", "abc")], b""),
    );
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "abc");
    assert_eq!(problem(&resp)["request_id"], "abc");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let p = TestPlatform::new(&[]);
    let resp = run(
        &gateway(""),
        &p,
        request("DELETE", "http://gw/open/x", &[], b""),
    );
    assert_eq!(resp.status(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[test]
fn spoofed_identity_and_hop_headers_never_reach_upstream() {
    let p = TestPlatform::new(&[]);
    let resp = run(
        &gateway(""),
        &p,
        request(
            "GET",
            "http://gw/open/x?q=1",
            &[
                ("x-user-id", "mallory"),
                ("x-consumer", "root"),
                ("keep-alive", "1"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
            b"",
        ),
    );
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("connection"));
    let seen = p.seen.borrow();
    let h = &seen[0].headers;
    assert!(
        !h.contains_key("x-user-id")
            && !h.contains_key("x-consumer")
            && !h.contains_key("keep-alive")
    );
    assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    assert_eq!(h["x-forwarded-host"], "gw");
    assert!(h["traceparent"].to_str().unwrap().starts_with("00-"));
    assert_eq!(seen[0].uri.query(), Some("q=1"));
}

#[test]
fn jwt_route_sets_identity_and_strips_prefix() {
    let p = TestPlatform::new(&[]);
    let auth = format!("Bearer {}", token(&["admin"]));
    let resp = run(
        &gateway(""),
        &p,
        request(
            "GET",
            "http://gw/api/users/1",
            &[("authorization", &auth)],
            b"",
        ),
    );
    assert_eq!(resp.status(), 200);
    let seen = p.seen.borrow();
    assert_eq!(seen[0].headers["x-user-id"], "alice");
    assert_eq!(seen[0].headers["x-user-roles"], "admin");
    assert_eq!(seen[0].uri.path().trim_start_matches("/base"), "/users/1");
}

#[test]
fn missing_bad_and_underprivileged_tokens() {
    let gw = gateway("");
    let p = TestPlatform::new(&[]);
    let resp = run(&gw, &p, request("GET", "http://gw/api/x", &[], b""));
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"edgegate\""
    );
    let resp = run(
        &gw,
        &p,
        request(
            "GET",
            "http://gw/api/x",
            &[("authorization", "Bearer a.b.c")],
            b"",
        ),
    );
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let auth = format!("Bearer {}", token(&["user"]));
    let resp = run(
        &gw,
        &p,
        request("GET", "http://gw/api/x", &[("authorization", &auth)], b""),
    );
    assert_eq!(resp.status(), 403);
    assert!(p.seen.borrow().is_empty());
}

#[test]
fn idempotent_request_retries_on_the_other_target_with_backoff() {
    let p = TestPlatform::new(&[Reply::Refused, Reply::Ok]);
    let resp = run(
        &gateway(""),
        &p,
        request("GET", "http://gw/open/x", &[], b""),
    );
    assert_eq!(resp.status(), 200);
    let seen = p.seen.borrow();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].uri.authority(), seen[1].uri.authority());
    assert_eq!(*p.slept.borrow(), vec![Duration::from_millis(25)]);
}

#[test]
fn post_is_not_retried_and_errors_map_to_502_and_504() {
    let p = TestPlatform::new(&[Reply::Refused, Reply::Ok]);
    let resp = run(
        &gateway(""),
        &p,
        request(
            "POST",
            "http://gw/open/x",
            &[("content-length", "2")],
            b"hi",
        ),
    );
    assert_eq!(resp.status(), 502);
    assert_eq!(p.seen.borrow().len(), 1);
    let p = TestPlatform::new(&[Reply::Timeout, Reply::Timeout, Reply::Timeout]);
    let resp = run(
        &gateway(""),
        &p,
        request("GET", "http://gw/open/x", &[], b""),
    );
    assert_eq!(resp.status(), 504);
    assert_eq!(p.seen.borrow().len(), 3);
}

#[test]
fn large_bodies_get_413_declared_or_streamed() {
    let p = TestPlatform::new(&[]);
    let resp = run(
        &gateway(""),
        &p,
        request(
            "POST",
            "http://gw/open/x",
            &[("content-length", "9")],
            b"123456789",
        ),
    );
    assert_eq!(resp.status(), 413);
    let resp = run(
        &gateway(""),
        &p,
        request("POST", "http://gw/open/x", &[], b"123456789"),
    );
    assert_eq!(resp.status(), 413);
    assert_eq!(problem(&resp)["code"], "body_too_large");
}

#[test]
fn cors_preflight_is_answered_at_the_edge() {
    let p = TestPlatform::new(&[]);
    let headers = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "authorization"),
    ];
    let resp = run(
        &gateway(""),
        &p,
        request("OPTIONS", "http://gw/open/x", &headers, b""),
    );
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(p.seen.borrow().is_empty());
    let resp = run(
        &gateway(""),
        &p,
        request(
            "GET",
            "http://gw/open/x",
            &[("origin", "https://app.example")],
            b"",
        ),
    );
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let resp = run(
        &gateway(""),
        &p,
        request(
            "OPTIONS",
            "http://gw/open/x",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            b"",
        ),
    );
    assert_eq!(resp.status(), 403);
}

fn limited(extra_policy: &str) -> Gateway {
    gateway(&format!(
        "rate_limits = [\"p\", \"down\"]\n\n[[rate_limits]]\nname = \"p\"\nalgorithm = \"fixed_window\"\nkey = \"ip\"\nlimit = 2\nperiod_s = 60\n\n[[rate_limits]]\nname = \"down\"\nalgorithm = \"gcra\"\nkey = \"ip\"\nlimit = 9\nperiod_s = 1\n{extra_policy}"
    ))
}

#[test]
fn rate_limited_route_admits_the_limit_then_429s_with_headers() {
    let gw = limited("on_failure = \"open\"\n");
    let p = TestPlatform::new(&[]);
    let auth = format!("Bearer {}", token(&["admin"]));
    for remaining in ["1", "0"] {
        let resp = run(
            &gw,
            &p,
            request("GET", "http://gw/api/x", &[("authorization", &auth)], b""),
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"p\";q=2;w=60");
        let rl = resp.headers()["ratelimit"].to_str().unwrap();
        assert!(rl.starts_with(&format!("\"p\";r={remaining};t=")), "{rl}");
    }
    let resp = run(
        &gw,
        &p,
        request("GET", "http://gw/api/x", &[("authorization", &auth)], b""),
    );
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(problem(&resp)["code"], "rate_limited");
    assert_eq!(
        p.seen.borrow().len(),
        2,
        "the refused request never reached the upstream"
    );
}

#[test]
fn unreachable_limiter_fails_closed_by_default() {
    // The "down" policy's object cannot be reached (see TestPlatform).
    let gw = gateway(
        "rate_limits = [\"down\"]\n\n[[rate_limits]]\nname = \"down\"\nalgorithm = \"gcra\"\nkey = \"ip\"\nlimit = 1\nperiod_s = 1\n",
    );
    let p = TestPlatform::new(&[]);
    let auth = format!("Bearer {}", token(&["admin"]));
    let resp = run(
        &gw,
        &p,
        request("GET", "http://gw/api/x", &[("authorization", &auth)], b""),
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(problem(&resp)["code"], "rate_limiter_unavailable");
}

fn hub_gateway() -> Gateway {
    gateway(
        "\n[[routes]]\nname = \"rooms\"\nmatch = { path = \"/ws/rooms/{room}\" }\nwebsocket = { hub = \"room-{room}\" }\nauth = \"jwt\"\ncors = { allow_origins = [\"https://app.example\"] }\n\n[[routes]]\nname = \"push\"\nmatch = { path = \"/rooms/{room}/publish\", methods = [\"POST\"] }\nhub = \"room-{room}\"\nauth = \"jwt\"\nroles = [\"admin\"]\n",
    )
}

#[test]
fn websocket_upgrade_is_authenticated_and_handed_to_the_hub() {
    let gw = hub_gateway();
    let p = TestPlatform::new(&[]);
    let upgrade = (headers::WEBSOCKET_UPGRADE, "1");
    let resp = run(
        &gw,
        &p,
        request("GET", "http://gw/ws/rooms/r1", &[upgrade], b""),
    );
    assert_eq!(resp.status(), 401);
    let auth = format!("Bearer {}", token(&["user"]));
    let resp = run(
        &gw,
        &p,
        request(
            "GET",
            "http://gw/ws/rooms/r1",
            &[("authorization", &auth)],
            b"",
        ),
    );
    assert_eq!(resp.status(), 426);
    let resp = run(
        &gw,
        &p,
        request(
            "GET",
            "http://gw/ws/rooms/r1",
            &[
                ("authorization", &auth),
                upgrade,
                ("origin", "https://evil.example"),
            ],
            b"",
        ),
    );
    assert_eq!(resp.status(), 403);
    assert!(p.seen.borrow().is_empty());
    let resp = run(
        &gw,
        &p,
        request(
            "GET",
            "http://gw/ws/rooms/r1",
            &[("authorization", &auth), upgrade, ("x-user-id", "mallory")],
            b"",
        ),
    );
    assert_eq!(resp.status(), 101);
    let seen = p.seen.borrow();
    assert_eq!(seen[0].headers["x-user-id"], "alice");
    assert_eq!(seen[0].headers["x-user-roles"], "user");
    assert_eq!(seen[0].headers["x-hub-max-message-bytes"], "65536");
}

#[test]
fn backends_publish_into_a_hub_over_http() {
    let gw = hub_gateway();
    let p = TestPlatform::new(&[]);
    let auth = format!("Bearer {}", token(&["admin"]));
    let body = br#"{"topic":"news","data":{"x":1}}"#;
    let resp = run(
        &gw,
        &p,
        request(
            "POST",
            "http://gw/rooms/r1/publish",
            &[("authorization", &auth)],
            body,
        ),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().bytes, br#"{"delivered":0}"#);
    assert_eq!(p.seen.borrow()[0].uri.path(), "/publish");
}

#[test]
fn every_request_gets_one_access_log_line_without_secrets() {
    let p = TestPlatform::new(&[Reply::Refused, Reply::Ok]);
    let auth = format!("Bearer {}", token(&["admin"]));
    run(
        &gateway(""),
        &p,
        request(
            "GET",
            "http://gw/api/users?access_token=secret",
            &[("authorization", &auth)],
            b"",
        ),
    );
    run(
        &gateway(""),
        &p,
        request("GET", "http://gw/missing", &[], b""),
    );
    let logged = p.logged.borrow();
    assert_eq!(logged.len(), 2);
    let first: serde_json::Value = serde_json::from_str(&logged[0]).unwrap();
    assert_eq!(first["route"], "secure");
    assert_eq!(first["upstream"], "u");
    assert_eq!(first["status"], 200);
    assert_eq!(first["attempts"], 2);
    assert_eq!(first["user"], "alice");
    assert_eq!(first["path"], "/api/users");
    assert_eq!(first["client_ip"], "192.0.2.7");
    assert!(
        first["latency_ms"]["total"].as_f64().unwrap()
            >= first["latency_ms"]["upstream"].as_f64().unwrap()
    );
    assert!(!logged[0].contains("secret") && !logged[0].contains(&token(&["admin"])));
    let second: serde_json::Value = serde_json::from_str(&logged[1]).unwrap();
    assert_eq!(second["status"], 404);
    assert_eq!(second["error"], "route_not_found");
    // A request the edge answers itself is traced too.
    assert_eq!(second["span_id"], "0707070707070707");
    assert_eq!(second["trace_id"].as_str().map(str::len), Some(32));
}

#[test]
fn a_target_that_keeps_failing_is_left_out() {
    // Every call to the first target is refused: retries hide it from
    // clients, and after five failures it is ejected, so later requests go
    // straight to the second target without a failed attempt first.
    let p = TestPlatform::new(&[]);
    *p.refused_authority.borrow_mut() = Some("a.internal:1");
    let gw = gateway("");
    for _ in 0..12 {
        assert_eq!(
            run(&gw, &p, request("GET", "http://gw/open/x", &[], b"")).status(),
            200
        );
    }
    let before = p.seen.borrow().len();
    for _ in 0..4 {
        run(&gw, &p, request("GET", "http://gw/open/x", &[], b""));
    }
    let seen = p.seen.borrow();
    assert_eq!(seen.len() - before, 4, "no failed attempts once ejected");
    assert!(
        seen[before..]
            .iter()
            .all(|s| s.uri.authority().unwrap().as_str() == "b.internal:2")
    );
}

/// Configured numbers at their extremes: the configuration is refused with
/// the key named, or the gateway serves every request with a deliberate
/// answer. It never panics and never answers 500.
mod extreme_numbers {
    use proptest::prelude::*;

    use super::*;

    /// Values each key should take, at their extremes.
    const WIDE: [i64; 7] = [1, 2, 999, 1 << 32, 1 << 53, i64::MAX / 1000 + 1, i64::MAX];
    /// The same for the keys that are 32-bit counts.
    const NARROW: [i64; 5] = [1, 2, 10, 999, u32::MAX as i64];
    /// Values no key takes, now and then, so that refusals are covered too.
    const INVALID: [i64; 3] = [0, -1, u32::MAX as i64 + 1];

    fn number(valid: &'static [i64]) -> impl Strategy<Value = i64> {
        prop_oneof![
            12 => prop::sample::select(valid),
            1 => prop::sample::select(&INVALID[..]),
        ]
    }

    /// The keys `config` sets, in its order; `true` for the 32-bit ones.
    const KEYS: [(&str, bool); 14] = [
        ("weight", true),
        ("weight", true),
        ("timeout_ms", false),
        ("connect_timeout_ms", false),
        ("retries", true),
        ("retry_backoff_ms", false),
        ("max_failures", true),
        ("ejection_ms", false),
        ("leeway_s", false),
        ("limit", false),
        ("period_s", false),
        ("burst", false),
        ("max_body_bytes", false),
        ("timeout_ms", false),
    ];

    fn numbers() -> impl Strategy<Value = Vec<i64>> {
        KEYS.iter()
            .map(|&(_, narrow)| number(if narrow { &NARROW } else { &WIDE }))
            .collect::<Vec<_>>()
    }

    fn config(n: &[i64]) -> String {
        format!(
            r#"
[[upstreams]]
name = "u"
targets = [{{ url = "http://a.internal:1", weight = {} }}, {{ url = "http://b.internal:2", weight = {} }}]
timeout_ms = {}
connect_timeout_ms = {}
retries = {}
retry_backoff_ms = {}
max_failures = {}
ejection_ms = {}

[auth.jwt]
issuer = "iss"
audience = "api"
leeway_s = {}
keys = [{{ kid = "k", alg = "HS256", secret = "{SECRET}" }}]

[[rate_limits]]
name = "p"
algorithm = "token_bucket"
key = "ip"
limit = {}
period_s = {}
burst = {}

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
upstream = "u"
auth = "jwt"
rate_limits = ["p"]
max_body_bytes = {}
timeout_ms = {}
cors = {{ allow_origins = ["https://app.example"], max_age_s = 600 }}
"#,
            n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], n[11], n[12], n[13]
        )
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![Just(Reply::Ok), Just(Reply::Refused), Just(Reply::Timeout)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_config_is_refused_by_key_or_every_request_is_answered(
            n in numbers(),
            replies in prop::collection::vec(reply(), 0..30),
        ) {
            let text = config(&n);
            let config = match Config::parse(&text) {
                Ok(config) => config,
                Err(e) => {
                    // The key whose number is wrong, by its full path.
                    let key = e.path.rsplit('.').next().unwrap_or_default();
                    prop_assert!(
                        KEYS.iter().any(|(name, _)| *name == key) && !e.reason.is_empty(),
                        "{:?}",
                        e
                    );
                    return Ok(());
                }
            };
            let gw = match Gateway::new(config) {
                Ok(gw) => gw,
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    return Ok(());
                }
            };
            let p = TestPlatform::new(&replies);
            let auth = format!("Bearer {}", token(&["admin"]));
            for (method, headers, body) in [
                ("GET", vec![("authorization", auth.as_str())], &b""[..]),
                ("POST", vec![("authorization", auth.as_str())], &b"0123456789"[..]),
                ("GET", vec![("authorization", auth.as_str())], &b""[..]),
                ("OPTIONS", vec![
                    ("origin", "https://app.example"),
                    ("access-control-request-method", "GET"),
                ], &b""[..]),
            ] {
                let resp = run(&gw, &p, request(method, "http://gw/api/x", &headers, body));
                let status = resp.status().as_u16();
                prop_assert!(
                    [200, 204, 413, 429, 502, 503, 504].contains(&status),
                    "{} answered {} under {:?}", method, status, n
                );
            }
        }
    }
}
