//! Host behaviour seen from a test guest (`tests/guest`): CPU limit, traps,
//! the guest's environment and headers, instance reuse, outbound HTTP,
//! header limits and streaming.

mod support;

use std::time::{Duration, Instant};

use support::{Gateway, Origin, free_port, raw, silent_origin, test_guest};

fn start(server: &str) -> Gateway {
    start_with(server, &[])
}

fn start_with(server: &str, env: &[(&str, &str)]) -> Gateway {
    let config = format!("[server]\n{server}\n");
    let mut builder = Gateway::builder(&config).component(&test_guest());
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

fn assert_problem(reply: &support::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"].as_str(),
        reply.header("x-request-id"),
        "{reply:?}"
    );
}

#[test]
fn a_guest_that_never_yields_gets_503_and_the_host_keeps_serving() {
    let gateway = start("cpu_limit_ms = 200");
    let started = Instant::now();
    let reply = gateway.get_with("/loop", &[("x-request-id", "loop-1")]);
    let took = started.elapsed();
    assert_problem(&reply, 503, "guest_cpu_limit");
    assert_eq!(reply.header("x-request-id"), Some("loop-1"));
    assert!(
        took < Duration::from_secs(3),
        "limit enforced after {took:?}"
    );
    assert_eq!(gateway.get("/ok").text(), "ok");
    // Work below the limit, and waiting on the host beyond it, are fine.
    assert_eq!(gateway.get("/busy?ms=50").status, 200);
    assert_eq!(gateway.get("/sleep?ms=400").text(), "slept");
}

#[test]
fn a_trap_is_a_500_and_the_next_request_succeeds() {
    let gateway = start("");
    let reply = gateway.get_with("/trap", &[("x-request-id", "bad id!")]);
    assert_problem(&reply, 500, "guest_error");
    let id = reply.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32, "invalid client ids are replaced: {id}");
    assert_eq!(gateway.get("/ok").text(), "ok");
}

#[test]
fn the_guest_sees_only_its_config_and_named_secrets() {
    let config = "[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"env:EDGEGATE_TEST_JWT\" }]\n";
    let gateway = Gateway::builder(config)
        .component(&test_guest())
        .env("EDGEGATE_TEST_JWT", "s")
        .env("EDGEGATE_TEST_UNRELATED", "x")
        .start();
    let names = gateway.get("/env").text();
    assert_eq!(
        names,
        "EDGEGATE_CONFIG\nEDGEGATE_HOST_FEATURES\nEDGEGATE_TEST_JWT"
    );
}

#[test]
fn the_host_sets_client_address_and_request_id() {
    let gateway = start("");
    let reply = gateway.get_with(
        "/headers",
        &[
            ("spin-client-addr", "203.0.113.9:1"),
            ("x-request-id", "abc.1"),
        ],
    );
    let headers = reply.text();
    let addr: Vec<&str> = headers
        .lines()
        .filter_map(|l| l.strip_prefix("spin-client-addr: "))
        .collect();
    assert_eq!(addr.len(), 1, "{headers}");
    assert!(addr[0].starts_with("127.0.0.1:"), "{headers}");
    assert!(headers.contains("x-request-id: abc.1"), "{headers}");
}

#[test]
fn instances_are_reused_and_recycled() {
    let gateway = start("");
    let counts: Vec<String> = (0..4).map(|_| gateway.get("/count").text()).collect();
    assert_eq!(counts, ["1", "2", "3", "4"]);

    let recycled = start("instance_max_requests = 2");
    let counts: Vec<String> = (0..4).map(|_| recycled.get("/count").text()).collect();
    assert_eq!(counts, ["1", "2", "1", "2"]);
}

#[test]
fn outbound_requests_use_pooled_connections() {
    let origin = Origin::start("from origin");
    let gateway = start("");
    for _ in 0..5 {
        let reply = gateway.get(&format!("/fetch?url=http://{}/x", origin.addr));
        assert_eq!(reply.text(), "200 from origin");
    }
    assert_eq!(origin.requests(), 5);
    assert_eq!(origin.connections(), 1, "keep-alive connection reused");
}

#[test]
fn outbound_failures_reach_the_guest_as_error_codes() {
    let gateway = start("");
    let closed = free_port();
    let refused = gateway.get(&format!("/fetch?url=http://127.0.0.1:{closed}/"));
    assert_eq!(refused.status, 502);
    assert!(
        refused.text().contains("ConnectionRefused"),
        "{}",
        refused.text()
    );

    let silent = silent_origin();
    let started = Instant::now();
    let timeout = gateway.get(&format!("/fetch?url=http://{silent}/"));
    assert!(
        timeout.text().contains("ConnectionReadTimeout"),
        "{}",
        timeout.text()
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // TCP connects but the TLS handshake never completes: still "connect".
    let handshake = gateway.get(&format!("/fetch?url=https://{silent}/"));
    assert!(
        handshake.text().contains("ConnectionTimeout"),
        "{}",
        handshake.text()
    );

    // Objects are served in-process; without a name there is none to reach.
    let object = gateway.get("/fetch?url=http://counter.do.edgegate.internal/x");
    assert!(
        object.text().starts_with("400 ") && object.text().contains("edgegate-do-name"),
        "{}",
        object.text()
    );
}

#[test]
fn oversized_request_heads_get_431() {
    let gateway = start("");
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET /ok HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{many}\r\n");
    assert_eq!(raw(gateway.listen, request.as_bytes()).unwrap().status, 431);

    let big = "v".repeat(17 * 1024);
    let request =
        format!("GET /ok HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-big: {big}\r\n\r\n");
    assert_eq!(raw(gateway.listen, request.as_bytes()).unwrap().status, 431);

    assert_eq!(gateway.get("/ok").status, 200);
}

#[test]
fn large_responses_stream_through() {
    let gateway = start("");
    let reply = gateway.get("/big?kib=4096");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 4096 * 1024);
    assert!(reply.body.iter().all(|&b| b == b'x'));
}

#[test]
fn http_1_0_requests_without_host_are_served() {
    let gateway = start("");
    let reply = raw(gateway.listen, b"GET /ok HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
}

/// What RFC 9112 says a server must refuse is answered 400 by the host and
/// the connection closed; the guest never sees it.
#[test]
fn a_missing_or_malformed_host_and_connect_get_400() {
    let gateway = start("");
    for (what, request) in [
        ("no Host in HTTP/1.1", "GET /ok HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            "GET /ok HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        ),
        (
            "a Host that is no authority",
            "GET /ok HTTP/1.1\r\nhost: a b\r\n\r\n",
        ),
        (
            "a Host with user info",
            "GET /ok HTTP/1.1\r\nhost: u@a\r\n\r\n",
        ),
        (
            "CONNECT",
            "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
        ),
    ] {
        let reply = raw(gateway.listen, request.as_bytes()).unwrap();
        assert_problem(&reply, 400, "bad_request");
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
    }
    // The same requests, well formed, are served.
    let reply = raw(
        gateway.listen,
        b"GET /ok HTTP/1.1\r\nhost: a:8080\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    let reply = raw(
        gateway.listen,
        b"POST /len HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(reply.text(), "3");
    // With both framings, the body is read as chunked, never by its
    // declared length, so nothing of it can pass for a next request.
    let reply = raw(
        gateway.listen,
        b"POST /len HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(reply.text(), "0");
}

#[test]
fn memory_beyond_the_instance_cap_fails_only_that_request() {
    let gateway = start("max_instance_memory_mib = 16");
    assert_eq!(gateway.get("/alloc?mib=4").status, 200);
    assert_problem(&gateway.get("/alloc?mib=32"), 500, "guest_error");
    assert_eq!(gateway.get("/ok").text(), "ok");
}

#[test]
fn request_bodies_stream_to_the_guest() {
    let gateway = start("");
    let chunk = "y".repeat(64 * 1024);
    let mut request =
        b"POST /len HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..32 {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = raw(gateway.listen, &request).unwrap();
    assert_eq!(reply.text(), (32 * 64 * 1024).to_string());
}

#[test]
fn outbound_requests_do_not_wear_out_a_reused_instance() {
    // Each outgoing request hands the host a `request-options` resource;
    // if the host kept them, the instance would be retired for leaking.
    let origin = Origin::start("o");
    let gateway = start("");
    for _ in 0..80 {
        let reply = gateway.get(&format!("/fetch?url=http://{}/", origin.addr));
        assert_eq!(reply.text(), "200 o");
    }
    // A client may send its next request before the instance that answered
    // the last one is back in the pool (a second instance is then made), so
    // count instances rather than expect exactly one.
    let metrics = support::get(gateway.admin, "/metrics", &[]).text();
    let instances: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edgegate_instantiation_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("instantiation count");
    assert!(instances <= 4.0, "{instances} instances for 80 requests");
    assert!(!gateway.output().contains("leaks host resources"));
}

#[test]
fn a_get_body_finished_after_the_response_head_is_accepted() {
    // The request goes out without a body (a GET), but the guest still owns
    // its body stream: a guest that writes and finishes it late (wstd does so
    // right after sending, racing the origin) must not find it closed.
    let origin = Origin::start("o");
    let gateway = start("");
    for _ in 0..3 {
        let reply = gateway.get(&format!("/fetch-late?url=http://{}/", origin.addr));
        assert_eq!(reply.text(), "200");
    }
}

#[test]
fn https_to_a_plain_http_server_is_a_tls_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let gateway = start("");
    let reply = gateway.get(&format!("/fetch?url=https://{addr}/"));
    assert_eq!(reply.status, 502);
    assert!(
        reply.text().contains("TlsProtocolError"),
        "{}",
        reply.text()
    );
}
