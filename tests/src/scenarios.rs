//! The scenarios. Each starts real loopback origins, a gateway on the
//! target, and talks to it with a real HTTP client.

use std::time::Duration;

use reqwest::blocking::Response;
use serde_json::Value;

use crate::origin::{Behaviour, Origin};
use crate::upstash_rest::{Mode, RedisServer, UpstashRest};
use crate::{Target, client, tokens};

const SECRET: &str = "conformance-secret";

fn json(r: Response) -> Value {
    let text = r.text().expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = json(r);
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

fn upstream(name: &str, origins: &[&Origin], extra: &str) -> String {
    let targets: Vec<String> = origins
        .iter()
        .map(|o| format!("{{ url = \"{}\" }}", o.url()))
        .collect();
    format!(
        "[[upstreams]]\nname = \"{name}\"\ntargets = [{}]\n{extra}\n",
        targets.join(", ")
    )
}

/// Exact path beats template beats prefix; host-specific routes beat
/// host-less ones.
pub fn routing_most_specific_wins(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let mut config = upstream("o", &[&origin], "");
    for (name, m, rewrite) in [
        ("prefix", r#"{ path_prefix = "/users" }"#, ""),
        (
            "template",
            r#"{ path = "/users/{id}" }"#,
            "rewrite = \"/template/{id}\"\n",
        ),
        (
            "exact",
            r#"{ path = "/users/me" }"#,
            "rewrite = \"/exact\"\n",
        ),
        (
            "hosted",
            r#"{ host = "api.test", path_prefix = "/users" }"#,
            "rewrite = \"/hosted\"\n",
        ),
    ] {
        config +=
            &format!("[[routes]]\nname = \"{name}\"\nmatch = {m}\nupstream = \"o\"\n{rewrite}");
    }
    let gw = t.start(&config, &[]);
    let c = client();
    let path_seen = |path: &str, host: Option<&str>| {
        let mut req = c.get(format!("{}{path}", gw.base_url()));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let r = req.send().expect("request");
        assert_eq!(r.status(), 200, "{path}");
        json(r)["path"].as_str().unwrap().to_string()
    };
    assert_eq!(path_seen("/users/me", None), "/exact");
    assert_eq!(path_seen("/users/42", None), "/template/42");
    assert_eq!(path_seen("/users/42/posts", None), "/users/42/posts");
    assert_eq!(path_seen("/users", None), "/users");
    assert_eq!(path_seen("/users/me", Some("api.test")), "/hosted");
    assert_eq!(path_seen("/users/me", Some("API.test:8080")), "/hosted");
    assert_eq!(origin.hits(), 6);
    let r = c.get(format!("{}/usersx", gw.base_url())).send().unwrap();
    assert_problem(r, 404, "route_not_found");
}

/// Unknown paths are 404 and wrong methods 405 with `Allow`, as problem+json.
pub fn unknown_route_and_method(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let config = upstream("o", &[&origin], "")
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/a\", methods = [\"GET\"] }\nupstream = \"o\"\n";
    let gw = t.start(&config, &[]);
    let c = client();
    assert_problem(
        c.get(format!("{}/b", gw.base_url())).send().unwrap(),
        404,
        "route_not_found",
    );
    let r = c.delete(format!("{}/a", gw.base_url())).send().unwrap();
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    assert_problem(r, 405, "method_not_allowed");
    assert_eq!(origin.hits(), 0, "refused requests never reach the origin");
}

/// `strip_prefix` and `rewrite` with template parameters; the query is kept.
pub fn strip_prefix_and_rewrite(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let config = upstream("o", &[&origin], "")
        + "[[routes]]\nname = \"strip\"\nmatch = { path_prefix = \"/api/v1\" }\nupstream = \"o\"\nstrip_prefix = \"/api\"\n"
        + "[[routes]]\nname = \"rw\"\nmatch = { path = \"/people/{id}/card\" }\nupstream = \"o\"\nrewrite = \"/v2/users/{id}\"\n";
    let gw = t.start(&config, &[]);
    let c = client();
    let body = json(
        c.get(format!("{}/api/v1/items?x=1&y=2", gw.base_url()))
            .send()
            .unwrap(),
    );
    assert_eq!(body["path"], "/v1/items");
    assert_eq!(body["query"], "x=1&y=2");
    let body = json(
        c.get(format!("{}/people/7/card", gw.base_url()))
            .send()
            .unwrap(),
    );
    assert_eq!(body["path"], "/v2/users/7");
}

/// Weights 3:1 split 80 requests about 60/20.
pub fn weighted_balancing(t: &dyn Target) {
    let heavy = Origin::start(Behaviour::Echo);
    let light = Origin::start(Behaviour::Echo);
    let config = format!(
        "[[upstreams]]\nname = \"o\"\ntargets = [{{ url = \"{}\", weight = 3 }}, {{ url = \"{}\", weight = 1 }}]\n",
        heavy.url(),
        light.url()
    ) + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"o\"\n";
    let gw = t.start(&config, &[]);
    let c = client();
    for _ in 0..80 {
        let status = c
            .get(format!("{}/x", gw.base_url()))
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // Hosts that run several edge instances keep one balancer per instance
    // (as nginx keeps one per worker), so the split is exact per instance
    // and within a few requests overall.
    assert_eq!(heavy.hits() + light.hits(), 80);
    // Without instance state every pick is weighted-random: 60 ± 4σ.
    let expected = if t.keeps_instance_state() {
        54..=66
    } else {
        44..=76
    };
    assert!(
        expected.contains(&heavy.hits()),
        "heavy {} of 80",
        heavy.hits()
    );
}

/// An origin slower than `timeout_ms` gives 504 in about that time.
pub fn upstream_timeout_is_504(t: &dyn Target) {
    let slow = Origin::start(Behaviour::Slow(Duration::from_secs(3)));
    let config = upstream("o", &[&slow], "timeout_ms = 300")
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"o\"\n";
    let gw = t.start(&config, &[]);
    let started = std::time::Instant::now();
    let r = client()
        .post(format!("{}/slow", gw.base_url()))
        .send()
        .unwrap();
    assert_problem(r, 504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A dead target answers 502; GETs retry on the live target, POSTs do not.
pub fn refused_is_502_and_idempotent_retries_use_another_target(t: &dyn Target) {
    let live = Origin::start(Behaviour::Echo);
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = format!(
        "[[upstreams]]\nname = \"both\"\ntargets = [{{ url = \"http://127.0.0.1:{dead_port}\" }}, {{ url = \"{}\" }}]\nretries = 1\n\
         [[upstreams]]\nname = \"dead\"\ntargets = [{{ url = \"http://127.0.0.1:{dead_port}\" }}]\n",
        live.url()
    ) + "[[routes]]\nname = \"both\"\nmatch = { path_prefix = \"/both\" }\nupstream = \"both\"\n"
        + "[[routes]]\nname = \"dead\"\nmatch = { path_prefix = \"/dead\" }\nupstream = \"dead\"\n";
    let gw = t.start(&config, &[]);
    let c = client();
    for _ in 0..6 {
        assert_eq!(
            c.get(format!("{}/both", gw.base_url()))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(live.hits(), 6);
    assert_problem(
        c.get(format!("{}/dead", gw.base_url())).send().unwrap(),
        502,
        "upstream_unavailable",
    );
    // POSTs that land on the dead target first are not retried. Where the
    // rotation lives in the instance, every other one does; where each
    // request starts it at a random target, two in a row may not: send
    // until both outcomes were seen (40 in a row alike: odds 2^-39).
    let mut statuses = Vec::new();
    while !(statuses.contains(&502) && statuses.contains(&200)) && statuses.len() < 40 {
        let status = c
            .post(format!("{}/both", gw.base_url()))
            .body("x")
            .send()
            .unwrap()
            .status()
            .as_u16();
        statuses.push(status);
    }
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 502].contains(s)),
        "{statuses:?}"
    );
}

/// 8 MiB streams through both ways; bodies over the limit get 413 whether
/// declared or chunked.
pub fn bodies_stream_and_limits_answer_413(t: &dyn Target) {
    let big = Origin::start(Behaviour::Large(8 << 20));
    let echo = Origin::start(Behaviour::Echo);
    let config = upstream("big", &[&big], "")
        + &upstream("echo", &[&echo], "")
        + "[[routes]]\nname = \"down\"\nmatch = { path_prefix = \"/download\" }\nupstream = \"big\"\n"
        + "[[routes]]\nname = \"up\"\nmatch = { path_prefix = \"/upload\" }\nupstream = \"echo\"\nmax_body_bytes = 1048576\n";
    let gw = t.start(&config, &[]);
    let c = client();
    let r = c.get(format!("{}/download", gw.base_url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), 8 << 20);
    let r = c
        .post(format!("{}/upload", gw.base_url()))
        .body(vec![1u8; 1 << 20])
        .send()
        .unwrap();
    assert_eq!(json(r)["body_len"], 1 << 20);
    let r = c
        .post(format!("{}/upload", gw.base_url()))
        .body(vec![1u8; (1 << 20) + 1])
        .send()
        .unwrap();
    assert_problem(r, 413, "body_too_large");
    // Declared well over the limit: answered before the body is read, and
    // the rest is read after the answer, so the client still sending it
    // gets the 413 rather than a reset.
    for _ in 0..5 {
        let r = c
            .post(format!("{}/upload", gw.base_url()))
            .body(vec![1u8; 3 << 20])
            .send()
            .unwrap();
        assert_problem(r, 413, "body_too_large");
    }
    // Just over the limit: a gateway that answers before reading the rest
    // may close the connection while the client still sends, so keep the
    // unread tail small enough for the socket buffers.
    let chunks: Vec<Vec<u8>> = (0..17).map(|_| vec![0u8; 64 * 1024]).collect();
    let stream = reqwest::blocking::Body::new(ChunkReader(chunks));
    let r = c
        .post(format!("{}/upload", gw.base_url()))
        .body(stream)
        .send()
        .unwrap();
    assert_problem(r, 413, "body_too_large");
    // Bodies stream: the origin may see an oversize upload start, but
    // never receives it whole.
    assert_eq!(
        echo.complete(),
        1,
        "only the body within the limit was forwarded"
    );
}

/// A reader of unknown length, so the client sends a chunked body.
struct ChunkReader(Vec<Vec<u8>>);

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(chunk) = self.0.first_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        chunk.drain(..n);
        if chunk.is_empty() {
            self.0.remove(0);
        }
        Ok(n)
    }
}

fn jwt_config(origin: &Origin, keys: &str) -> String {
    upstream("o", &[origin], "")
        + &format!(
            "[auth.jwt]\nissuer = \"https://issuer.test\"\naudience = \"api\"\nleeway_s = 5\nkeys = [{keys}]\n"
        )
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/api\" }\nupstream = \"o\"\nauth = \"jwt\"\nroles = [\"user\"]\n"
}

/// HS256 tokens: identity headers upstream; missing, expired, wrong
/// audience, `alg: none` are 401 with a Bearer challenge; wrong role is 403.
pub fn jwt_hs256_identity_and_failures(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let config = jwt_config(
        &origin,
        "{ kid = \"h\", alg = \"HS256\", secret = \"env:TEST_JWT_SECRET\" }",
    );
    let gw = t.start(&config, &[("TEST_JWT_SECRET", SECRET)]);
    let c = client();
    let url = format!("{}/api/me", gw.base_url());
    let get = |token: &str| c.get(&url).bearer_auth(token).send().unwrap();

    let good = tokens::hs256(
        SECRET,
        Some("h"),
        &tokens::claims("alice", &["user", "ops"]),
    );
    let body = json(get(&good));
    assert_eq!(body["headers"]["x-user-id"], "alice");
    assert_eq!(body["headers"]["x-user-roles"], "user,ops");

    let r = c.get(&url).send().unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"edgegate\"");
    assert_problem(r, 401, "unauthorized");

    let mut expired = tokens::claims("alice", &["user"]);
    expired["exp"] = (tokens::now() - 60).into();
    let r = get(&tokens::hs256(SECRET, Some("h"), &expired));
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_problem(r, 401, "invalid_token");

    let mut wrong_aud = tokens::claims("alice", &["user"]);
    wrong_aud["aud"] = "other".into();
    assert_eq!(
        get(&tokens::hs256(SECRET, Some("h"), &wrong_aud)).status(),
        401
    );
    assert_eq!(
        get(&tokens::hs256(
            "not-the-secret",
            Some("h"),
            &tokens::claims("a", &["user"])
        ))
        .status(),
        401
    );
    assert_eq!(
        get(&tokens::unsigned(&tokens::claims("alice", &["user"]))).status(),
        401
    );
    assert_eq!(get("not.a.jwt").status(), 401);

    let r = get(&tokens::hs256(
        SECRET,
        Some("h"),
        &tokens::claims("bob", &["guest"]),
    ));
    assert_problem(r, 403, "forbidden");
    assert_eq!(origin.hits(), 1, "only the good token reached the origin");
}

/// ES256 from an inline PEM and RS256 from a JWKS served over HTTP; an
/// altered RS256 token, or an HS256 token against the RS256-pinned key, is
/// refused.
pub fn jwt_asymmetric_keys_and_jwks(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let jwks = Origin::start(Behaviour::Fixed(
        200,
        "application/json",
        tokens::RS256_JWKS.to_string(),
    ));
    let keys = format!(
        "{{ kid = \"ec\", alg = \"ES256\", pem = \"\"\"{}\"\"\" }}, {{ alg = \"RS256\", jwks_url = \"{}/jwks.json\" }}",
        tokens::ES256_PUBLIC.trim(),
        jwks.url()
    );
    let gw = t.start(&jwt_config(&origin, &keys), &[]);
    let c = client();
    let url = format!("{}/api/x", gw.base_url());
    let claims = tokens::claims("carol", &["user"]);
    let r = c
        .get(&url)
        .bearer_auth(tokens::es256("ec", &claims))
        .send()
        .unwrap();
    assert_eq!(json(r)["headers"]["x-user-id"], "carol");
    for _ in 0..3 {
        let r = c
            .get(&url)
            .bearer_auth(tokens::rs256("rsa-1", &claims))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        jwks.hits() >= 1 && jwks.hits() <= 3,
        "JWKS fetched {} times",
        jwks.hits()
    );
    // One changed character in the RSA signature, or in the claims it
    // signs, and the token is refused.
    let good = tokens::rs256("rsa-1", &claims);
    let signature_at = good.rfind('.').unwrap() + 1;
    for at in [signature_at + 20, good.find('.').unwrap() + 5] {
        let mut forged = good.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let r = c.get(&url).bearer_auth(&forged).send().unwrap();
        assert_eq!(r.status(), 401, "a token changed at byte {at}");
    }
    // The RSA public key used as an HMAC secret must not verify.
    let confused = tokens::hs256(tokens::RS256_JWKS, Some("rsa-1"), &claims);
    assert_eq!(
        c.get(&url).bearer_auth(confused).send().unwrap().status(),
        401
    );
}

/// A known API key gives the consumer identity; unknown or missing keys 401.
pub fn api_keys(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    // sha256("k-123")
    let config = upstream("o", &[&origin], "")
        + "[[auth.api_keys]]\nconsumer = \"billing\"\nkey_sha256 = \"2e8d3c8f1df2ef1c4ba2a4a5cc80b4a2b5ba2b3b9b4e7aa1d3ad2bd3dce0ddad\"\nroles = [\"service\"]\n"
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/svc\" }\nupstream = \"o\"\nauth = \"api_key\"\nroles = [\"service\"]\n";
    let config = config.replace(
        "2e8d3c8f1df2ef1c4ba2a4a5cc80b4a2b5ba2b3b9b4e7aa1d3ad2bd3dce0ddad",
        &sha256_hex(b"k-123"),
    );
    let gw = t.start(&config, &[]);
    let c = client();
    let url = format!("{}/svc/x", gw.base_url());
    let body = json(c.get(&url).header("x-api-key", "k-123").send().unwrap());
    assert_eq!(body["headers"]["x-consumer"], "billing");
    assert_eq!(body["headers"]["x-user-roles"], "service");
    assert!(
        body["headers"].get("x-api-key").is_none(),
        "the key is not forwarded"
    );
    assert_problem(
        c.get(&url).header("x-api-key", "nope").send().unwrap(),
        401,
        "unauthorized",
    );
    assert_problem(c.get(&url).send().unwrap(), 401, "unauthorized");
}

/// Spoofed identity is removed, request ids kept when valid, trace context
/// continued, forwarded headers set, security headers added.
pub fn header_hygiene(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let config = upstream("o", &[&origin], "")
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"o\"\n";
    let gw = t.start(&config, &[]);
    let c = client();
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c
        .get(format!("{}/h", gw.base_url()))
        .header("x-user-id", "admin")
        .header("x-consumer", "root")
        .header("x-request-id", "req-123")
        .header("traceparent", trace)
        .header("x-forwarded-for", "203.0.113.66")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let h = json(r)["headers"].clone();
    assert!(
        h.get("x-user-id").is_none() && h.get("x-consumer").is_none(),
        "{h}"
    );
    assert_eq!(h["x-request-id"], "req-123");
    let tp = h["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !tp.contains("00f067aa0ba902b7"),
        "{tp}"
    );
    if t.knows_client_address() {
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    } else {
        // Unknown address: the client's unverifiable chain is still dropped.
        assert!(h.get("x-forwarded-for").is_none(), "{h}");
    }
    assert_eq!(h["x-forwarded-proto"], "http");

    let r = c
        .get(format!("{}/h", gw.base_url()))
        .header("x-request-id", "bad id!")
        .send()
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() >= 16 && id != "bad id!");
    assert_eq!(json(r)["headers"]["x-request-id"], id.as_str());
}

/// Preflights are answered at the edge; actual requests get CORS headers
/// only for allowed origins.
pub fn cors_preflight_and_actual(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let config = upstream("o", &[&origin], "")
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/c\", methods = [\"GET\", \"PUT\"] }\nupstream = \"o\"\n"
        + "cors = { allow_origins = [\"https://app.test\"], allow_headers = [\"authorization\"], allow_credentials = true, max_age_s = 60 }\n";
    let gw = t.start(&config, &[]);
    let c = client();
    let url = format!("{}/c/1", gw.base_url());
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.test")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-max-age"], "60");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "GET")
        .send()
        .unwrap();
    assert_problem(r, 403, "cors_refused");
    assert_eq!(origin.hits(), 0, "preflights never reach the origin");
    let r = c
        .get(&url)
        .header("origin", "https://app.test")
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    let r = c
        .get(&url)
        .header("origin", "https://evil.test")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

/// Errors from the origin are not rewritten into problem+json.
pub fn upstream_errors_pass_through(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Fixed(
        500,
        "text/html",
        "<h1>origin broke</h1>".into(),
    ));
    let config = upstream("o", &[&origin], "")
        + "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"o\"\n";
    let gw = t.start(&config, &[]);
    let r = client().get(format!("{}/x", gw.base_url())).send().unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.text().unwrap();
    let seen = format!("{status} {headers:?} {body}");
    assert_eq!(status, 500, "{seen}");
    assert_eq!(headers["content-type"], "text/html", "{seen}");
    assert_eq!(headers["x-origin"], "fixed", "{seen}");
    assert!(headers.contains_key("x-request-id"), "{seen}");
    assert_eq!(body, "<h1>origin broke</h1>");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Token of the test Upstash endpoints.
const UPSTASH_TOKEN: &str = "conformance-upstash-token";
/// Variable that carries [`UPSTASH_TOKEN`] into the gateway (`env:` secret).
const UPSTASH_TOKEN_VAR: &str = "EDGEGATE_TEST_UPSTASH_TOKEN";
const ALGORITHMS: [&str; 4] = ["token_bucket", "sliding_window", "gcra", "fixed_window"];

/// A suffix that makes policy names, hence counters, unique to one run (a
/// target may keep Durable Object storage between runs).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos % (1 << 40))
}

/// Waits until the next boundary of `period_s`-aligned windows is more than
/// `margin` away, so a window algorithm's count cannot restart mid-test.
fn clear_of_window_boundary(period_s: u64, margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let into = now.as_millis() as u64 % (period_s * 1000);
    let left = Duration::from_millis(period_s * 1000 - into);
    if left < margin {
        std::thread::sleep(left + Duration::from_millis(100));
    }
}

/// `r=` of a `RateLimit` field value such as `"name";r=4;t=86400`.
fn remaining_of(ratelimit: &str) -> u64 {
    ratelimit
        .split(';')
        .find_map(|p| p.strip_prefix("r="))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no r= in {ratelimit:?}"))
}

/// Limit L and N > L concurrent requests on one counter: exactly L are
/// admitted, for every algorithm, on each rate-limit backend the target
/// has: Upstash (a real Redis behind an Upstash-compatible endpoint)
/// everywhere, Durable Objects where [`Target::supports_durable_objects`].
pub fn rate_limit_exact_under_concurrency(t: &dyn Target) {
    let mut backends = vec!["upstash"];
    if t.supports_durable_objects() {
        backends.push("durable-object");
    }
    for backend in backends {
        exact_under_concurrency(t, backend);
    }
}

fn exact_under_concurrency(t: &dyn Target, backend: &str) {
    const LIMIT: usize = 5;
    const CONCURRENT: usize = 24;
    const PERIOD_S: u64 = 86_400;
    let origin = Origin::start(Behaviour::Echo);
    let redis = (backend == "upstash").then(RedisServer::start);
    let rest = redis.as_ref().map(|r| UpstashRest::start(r, UPSTASH_TOKEN));
    let run = run_id();
    let mut config = upstream("o", &[&origin], "");
    if let Some(rest) = &rest {
        config += &format!(
            "[upstash]\nurl = \"{}\"\ntoken = \"env:{UPSTASH_TOKEN_VAR}\"\n",
            rest.url()
        );
    }
    for algorithm in ALGORITHMS {
        config += &format!(
            "[[rate_limits]]\nname = \"{algorithm}-{run}\"\nalgorithm = \"{algorithm}\"\nkey = \"global\"\n\
             limit = {LIMIT}\nperiod_s = {PERIOD_S}\nbackend = \"{backend}\"\n\
             [[routes]]\nname = \"{algorithm}\"\nmatch = {{ path_prefix = \"/{algorithm}\" }}\nupstream = \"o\"\n\
             rate_limits = [\"{algorithm}-{run}\"]\n"
        );
    }
    let gw = t.start(&config, &[(UPSTASH_TOKEN_VAR, UPSTASH_TOKEN)]);
    clear_of_window_boundary(PERIOD_S, Duration::from_secs(60));
    let c = client();
    for algorithm in ALGORITHMS {
        let url = format!("{}/{algorithm}", gw.base_url());
        let start = std::sync::Arc::new(std::sync::Barrier::new(CONCURRENT));
        let outcomes: Vec<(u16, Option<String>)> = (0..CONCURRENT)
            .map(|_| {
                let (c, url, start) = (c.clone(), url.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let r = c.get(&url).send().expect("request");
                    let ratelimit = r
                        .headers()
                        .get("ratelimit")
                        .map(|v| v.to_str().unwrap().to_string());
                    (r.status().as_u16(), ratelimit)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        let admitted: Vec<&(u16, Option<String>)> =
            outcomes.iter().filter(|(s, _)| *s == 200).collect();
        let refused = outcomes.iter().filter(|(s, _)| *s == 429).count();
        assert_eq!(
            (admitted.len(), refused),
            (LIMIT, CONCURRENT - LIMIT),
            "{backend} {algorithm}: {outcomes:?}"
        );
        // Each admitted request saw its own count: r=4, 3, 2, 1, 0.
        let mut remaining: Vec<u64> = admitted
            .iter()
            .map(|(_, r)| remaining_of(r.as_deref().expect("RateLimit on a 200")))
            .collect();
        remaining.sort_unstable();
        assert_eq!(remaining, [0, 1, 2, 3, 4], "{backend} {algorithm}");
    }
    assert_eq!(origin.hits(), ALGORITHMS.len() * LIMIT);
    if let Some(rest) = &rest {
        // One EVALSHA per request and policy; EVAL only while Redis did not
        // know a script yet.
        let commands = rest.commands();
        let evalsha = commands.iter().filter(|c| *c == "EVALSHA").count();
        let eval = commands.iter().filter(|c| *c == "EVAL").count();
        assert_eq!(evalsha, ALGORITHMS.len() * CONCURRENT, "{commands:?}");
        assert!((ALGORITHMS.len()..=evalsha).contains(&eval), "{commands:?}");
        let before = rest.requests();
        let r = c.get(format!("{}/gcra", gw.base_url())).send().unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(rest.requests(), before + 1, "one round trip per check");
    }
}

/// A refused request is 429 problem+json with `Retry-After` and the
/// `RateLimit-Policy`/`RateLimit` fields; admitted ones carry the fields
/// too. When Upstash is unreachable, slow, refuses the token or answers
/// garbage, a policy fails closed (503) unless it says `on_failure =
/// "open"`; the token never shows in an answer.
pub fn rate_limit_refusals_and_failure_modes(t: &dyn Target) {
    let origin = Origin::start(Behaviour::Echo);
    let redis = RedisServer::start();
    let rest = UpstashRest::start(&redis, UPSTASH_TOKEN);
    let stalled = UpstashRest::start(&redis, UPSTASH_TOKEN);
    stalled.set_mode(Mode::Stall);
    let broken = UpstashRest::start(&redis, UPSTASH_TOKEN);
    broken.set_mode(Mode::Status(502));
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let wrong_token = "not-the-token-1f2e3d";
    let run = run_id();
    let pair = format!("pair-{run}");
    let mut config = upstream("o", &[&origin], "")
        + &format!(
            "[upstash]\nurl = \"{}\"\ntoken = \"env:{UPSTASH_TOKEN_VAR}\"\n",
            rest.url()
        );
    for (name, algorithm, extra) in [
        (pair.as_str(), "fixed_window", String::new()),
        (
            "down-closed",
            "gcra",
            format!("upstash = {{ url = \"http://127.0.0.1:{dead_port}\", token = \"t\" }}\n"),
        ),
        (
            "down-open",
            "gcra",
            format!(
                "upstash = {{ url = \"http://127.0.0.1:{dead_port}\", token = \"t\" }}\non_failure = \"open\"\n"
            ),
        ),
        (
            "slow",
            "token_bucket",
            format!(
                "upstash = {{ url = \"{}\", token = \"env:{UPSTASH_TOKEN_VAR}\", timeout_ms = 300 }}\n",
                stalled.url()
            ),
        ),
        (
            "bad-token",
            "sliding_window",
            format!(
                "upstash = {{ url = \"{}\", token = \"{wrong_token}\" }}\n",
                rest.url()
            ),
        ),
        (
            "broken",
            "fixed_window",
            format!(
                "upstash = {{ url = \"{}\", token = \"env:{UPSTASH_TOKEN_VAR}\" }}\n",
                broken.url()
            ),
        ),
    ] {
        config += &format!(
            "[[rate_limits]]\nname = \"{name}\"\nalgorithm = \"{algorithm}\"\nkey = \"ip\"\nlimit = 2\nperiod_s = 60\n\
             backend = \"upstash\"\n{extra}\
             [[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\nupstream = \"o\"\n\
             rate_limits = [\"{name}\"]\n"
        );
    }
    let gw = t.start(&config, &[(UPSTASH_TOKEN_VAR, UPSTASH_TOKEN)]);
    let c = client();
    let get = |path: &str| c.get(format!("{}/{path}", gw.base_url())).send().unwrap();

    clear_of_window_boundary(60, Duration::from_secs(10));
    let policy = format!("\"{pair}\";q=2;w=60");
    for expected in [1, 0] {
        let r = get(&pair);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], policy.as_str());
        let ratelimit = r.headers()["ratelimit"].to_str().unwrap().to_string();
        assert_eq!(remaining_of(&ratelimit), expected, "{ratelimit}");
        assert!(r.headers().get("retry-after").is_none());
    }
    let r = get(&pair);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(r.headers()["ratelimit-policy"], policy.as_str());
    let ratelimit = r.headers()["ratelimit"].to_str().unwrap().to_string();
    assert_eq!(remaining_of(&ratelimit), 0);
    let reset: u64 = ratelimit.rsplit("t=").next().unwrap().parse().unwrap();
    assert_eq!(
        reset, retry_after,
        "a fixed window resets when it admits again"
    );
    assert_problem(r, 429, "rate_limited");
    assert_eq!(origin.hits(), 2, "refused requests never reach the origin");

    let started = std::time::Instant::now();
    assert_problem(get("down-closed"), 503, "rate_limiter_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let r = get("down-open");
    assert_eq!(r.status(), 200, "fail-open lets the request through");
    assert!(r.headers().get("ratelimit").is_none());
    assert_eq!(origin.hits(), 3);

    let started = std::time::Instant::now();
    assert_problem(get("slow"), 503, "rate_limiter_unavailable");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "timeout_ms = 300 took {waited:?}"
    );

    let r = get("bad-token");
    let body = assert_problem(r, 503, "rate_limiter_unavailable");
    assert!(!body.to_string().contains(wrong_token), "{body}");
    assert_problem(get("broken"), 503, "rate_limiter_unavailable");
    assert_eq!(origin.hits(), 3, "closed policies let nothing through");
    assert!(stalled.requests() >= 1 && broken.requests() >= 1);
}

/// The WebSocket hub protocol end to end: handshake auth, subscribe and
/// publish across clients, presence, join/leave, ping, errors, the backend
/// publish route and the size limit. Targets without Durable Objects
/// answer the hub routes with 501.
pub fn websocket_hub_protocol(t: &dyn Target) {
    use tungstenite::Message;
    use tungstenite::client::IntoClientRequest;

    let config = format!(
        "[auth.jwt]\nkeys = [{{ alg = \"HS256\", secret = \"{SECRET}\" }}]\n\
         [[auth.api_keys]]\nconsumer = \"backend\"\nkey_sha256 = \"{}\"\nroles = [\"service\"]\n\
         [[routes]]\nname = \"rooms\"\nmatch = {{ path = \"/ws/rooms/{{room}}\" }}\n\
         websocket = {{ hub = \"room-{{room}}\", max_message_bytes = 1024 }}\nauth = \"jwt\"\n\
         [[routes]]\nname = \"push\"\nmatch = {{ path = \"/rooms/{{room}}/publish\", methods = [\"POST\"] }}\n\
         hub = \"room-{{room}}\"\nauth = \"api_key\"\nroles = [\"service\"]\n",
        sha256_hex(b"svc-key")
    );
    let gw = t.start(&config, &[]);
    let base = gw.base_url();
    let ws_url = format!("{}/ws/rooms/lobby", base.replacen("http", "ws", 1));
    let publish = |body: &str| {
        client()
            .post(format!("{base}/rooms/lobby/publish"))
            .header("x-api-key", "svc-key")
            .body(body.to_string())
            .send()
            .unwrap()
    };

    if !t.supports_durable_objects() {
        let r = client()
            .get(format!("{base}/ws/rooms/lobby"))
            .bearer_auth(tokens::hs256(SECRET, None, &tokens::claims("a", &[])))
            .send()
            .unwrap();
        assert_problem(r, 501, "hubs_unavailable");
        assert_problem(
            publish(r#"{"topic":"t","data":1}"#),
            501,
            "hubs_unavailable",
        );
        return;
    }

    let connect = |user: &str| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        let token = tokens::hs256(SECRET, None, &tokens::claims(user, &["user"]));
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let stream =
            std::net::TcpStream::connect(gw.base_url().trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (socket, response) = tungstenite::client(request, stream).expect("handshake");
        assert_eq!(response.status(), 101);
        socket
    };
    let recv = |s: &mut tungstenite::WebSocket<std::net::TcpStream>| -> Value {
        loop {
            match s.read().expect("a message") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let send = |s: &mut tungstenite::WebSocket<std::net::TcpStream>, v: &str| {
        s.send(Message::text(v)).unwrap();
    };

    // No token: refused at the handshake, before any upgrade.
    let stream = std::net::TcpStream::connect(gw.base_url().trim_start_matches("http://")).unwrap();
    match tungstenite::client(ws_url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 401)
        }
        other => panic!("expected 401, got {:?}", other.map(|(_, r)| r.status())),
    }

    let mut alice = connect("alice");
    let mut bob = connect("bob");
    assert_eq!(
        recv(&mut alice),
        serde_json::json!({"type":"join","user":"bob"})
    );

    send(
        &mut alice,
        r#"{"type":"subscribe","topic":"news","id":"1"}"#,
    );
    assert_eq!(recv(&mut alice), serde_json::json!({"type":"ack","id":"1"}));
    send(&mut bob, r#"{"type":"subscribe","topic":"news","id":"2"}"#);
    assert_eq!(recv(&mut bob), serde_json::json!({"type":"ack","id":"2"}));

    send(
        &mut bob,
        r#"{"type":"publish","topic":"news","data":{"x":1},"id":"3"}"#,
    );
    let message = serde_json::json!({"type":"message","topic":"news","data":{"x":1},"from":"bob"});
    assert_eq!(recv(&mut alice), message);
    let mut bob_got = vec![recv(&mut bob), recv(&mut bob)];
    bob_got.sort_by_key(|v| v.to_string());
    assert!(
        bob_got.contains(&message) && bob_got.contains(&serde_json::json!({"type":"ack","id":"3"})),
        "{bob_got:?}"
    );

    send(&mut alice, r#"{"type":"presence","id":"4"}"#);
    assert_eq!(
        recv(&mut alice),
        serde_json::json!({"type":"presence","id":"4","users":["alice","bob"]})
    );
    send(&mut alice, r#"{"type":"ping"}"#);
    assert_eq!(recv(&mut alice), serde_json::json!({"type":"pong"}));
    send(&mut alice, "not json");
    assert_eq!(recv(&mut alice)["code"], "BAD_MESSAGE");

    // A backend publishes through the HTTP route.
    let r = publish(r#"{"topic":"news","data":"hello"}"#);
    assert_eq!(r.status(), 200);
    assert_eq!(json(r)["delivered"], 2);
    assert_eq!(recv(&mut alice)["data"], "hello");
    assert_eq!(recv(&mut bob)["data"], "hello");

    // Over max_message_bytes: closed with 1009.
    send(
        &mut bob,
        &format!(
            r#"{{"type":"publish","topic":"news","data":"{}"}}"#,
            "x".repeat(2048)
        ),
    );
    let closed = loop {
        match bob.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(closed, Some(1009));
    assert_eq!(
        recv(&mut alice),
        serde_json::json!({"type":"leave","user":"bob"})
    );

    // The next publish reaches the one subscriber left, and says so.
    let r = publish(r#"{"topic":"news","data":"again"}"#);
    assert_eq!(json(r)["delivered"], 1);
    assert_eq!(recv(&mut alice)["data"], "again");
}
