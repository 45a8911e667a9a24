//! Operating `edgegate serve`: metrics, access log, trace export, hot
//! reload, active health checks and graceful shutdown, against real
//! loopback origins and a real OTLP/HTTP receiver.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgegate_conformance::origin::{Behaviour, Origin};
use support::{Gateway, get};

/// Polls `check` every 50 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn metrics(gw: &Gateway) -> String {
    let reply = get(gw.admin, "/metrics", &[]);
    assert_eq!(reply.status, 200);
    reply.text()
}

/// The value of the series `line` (name and labels, exactly) in `text`.
fn series(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_and_access_log_follow_requests() {
    let origin = Origin::start(Behaviour::Echo);
    let config = format!(
        r#"
[[upstreams]]
name = "svc"
targets = [{{ url = "{}" }}]

[auth.jwt]
keys = [{{ alg = "HS256", secret = "a-secret-of-at-least-32-bytes-long!!" }}]

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "svc"

[[routes]]
name = "secure"
match = {{ path_prefix = "/secure" }}
upstream = "svc"
auth = "jwt"
"#,
        origin.url()
    );
    let gw = Gateway::start(&config);
    for _ in 0..3 {
        assert_eq!(gw.get("/open/x?token=hidden").status, 200);
    }
    assert_eq!(gw.get("/secure").status, 401);
    let bad = gw.get_with("/secure", &[("authorization", "Bearer not.a.jwt")]);
    assert_eq!(bad.status, 401);

    let text = metrics(&gw);
    assert_eq!(
        series(
            &text,
            r#"edgegate_requests_total{route="open",status="200"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            r#"edgegate_requests_total{route="secure",status="401"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        series(
            &text,
            r#"edgegate_auth_failures_total{reason="missing_token"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&text, r#"edgegate_auth_failures_total{reason="malformed"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(
            &text,
            r#"edgegate_request_duration_seconds_count{route="open"}"#
        ),
        Some(3.0)
    );
    assert!(series(&text, "edgegate_instantiation_duration_seconds_count").unwrap() >= 1.0);

    // One JSON line per request on stdout; no query string in it.
    assert!(eventually(Duration::from_secs(2), || {
        gw.output().matches(r#""route":"open""#).count() == 3
    }));
    assert!(!gw.output().contains("hidden"));
}

#[test]
fn metrics_count_even_with_the_access_log_off() {
    let origin = Origin::start(Behaviour::Echo);
    let config =
        support::config_with_upstream(&origin.url(), "") + "\n[gateway]\naccess_log = false\n";
    let gw = Gateway::start(&config);
    assert_eq!(gw.get("/").status, 200);
    let text = metrics(&gw);
    assert_eq!(
        series(
            &text,
            r#"edgegate_requests_total{route="all",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!gw.output().contains(r#""route":"all""#));
}

#[test]
fn a_log_written_to_a_pipe_has_no_colour_codes() {
    let origin = Origin::start(Behaviour::Echo);
    let gw = Gateway::start(&support::config_with_upstream(&origin.url(), ""));
    assert_eq!(gw.get("/").status, 200);
    assert!(
        eventually(Duration::from_secs(5), || gw.output().contains(" ready ")),
        "{}",
        gw.output()
    );
    // Escape codes garble log files and journals.
    assert!(!gw.output().contains('\u{1b}'), "{:?}", gw.output());
}

#[test]
fn the_debug_log_names_each_request_but_not_its_query() {
    let origin = Origin::start(Behaviour::Echo);
    let gw = Gateway::builder(&support::config_with_upstream(&origin.url(), ""))
        .env("EDGEGATE_LOG", "debug")
        .start();
    assert_eq!(gw.get("/orders/7?token=s3cret-value").status, 200);
    assert!(
        eventually(Duration::from_secs(5), || gw.output().lines().any(
            |line| line.contains("request") && line.contains("path=\"/orders/7\"")
        )),
        "{}",
        gw.output()
    );
    // Queries may carry tokens.
    assert!(!gw.output().contains("s3cret-value"), "{}", gw.output());
}

#[test]
fn edge_latency_leaves_out_the_upstream() {
    let origin = Origin::start(Behaviour::Slow(Duration::from_millis(300)));
    let gw = Gateway::start(&support::config_with_upstream(&origin.url(), ""));
    for _ in 0..2 {
        assert_eq!(gw.get("/").status, 200);
    }
    let text = metrics(&gw);
    let total = series(
        &text,
        r#"edgegate_request_duration_seconds_sum{route="all"}"#,
    )
    .unwrap();
    let edge = series(&text, "edgegate_edge_latency_seconds_sum").unwrap();
    assert_eq!(
        series(&text, "edgegate_edge_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert!(total >= 0.6, "{text}");
    // The origin's 300 ms per request are not the gateway's.
    assert!(edge < 0.1, "edge latency {edge} s of {total} s in total");
}

/// Routes `/a` (and `/b` when `with_b`) to `origin`.
fn two_routes(origin: &str, with_b: bool) -> String {
    let mut config = format!(
        r#"
[[upstreams]]
name = "svc"
targets = [{{ url = "{origin}" }}]

[[routes]]
name = "a"
match = {{ path_prefix = "/a" }}
upstream = "svc"
"#
    );
    if with_b {
        config.push_str(
            "\n[[routes]]\nname = \"b\"\nmatch = { path_prefix = \"/b\" }\nupstream = \"svc\"\n",
        );
    }
    config
}

#[test]
fn reload_applies_good_files_and_keeps_serving_on_bad_ones() {
    let origin = Origin::start(Behaviour::Slow(Duration::from_millis(600)));
    let gw = Gateway::start(&two_routes(&origin.url(), false));
    assert_eq!(gw.get("/b").status, 404);

    // A request in flight across the reload completes.
    let listen = gw.listen;
    let in_flight = std::thread::spawn(move || get(listen, "/a/slow", &[]).status);
    std::thread::sleep(Duration::from_millis(100));

    // A changed file is picked up without a signal.
    std::fs::write(&gw.config, two_routes(&origin.url(), true)).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || gw.get("/b").status == 200),
        "{}",
        gw.output()
    );
    assert_eq!(in_flight.join().unwrap(), 200);

    // A bad file is refused, named by key path; the last good one serves on.
    std::fs::write(
        &gw.config,
        two_routes(&origin.url(), true) + "\n[gateway]\nacess_log = true\n",
    )
    .unwrap();
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || gw
            .output()
            .contains("configuration reload rejected")),
        "{}",
        gw.output()
    );
    assert!(gw.output().contains("gateway"), "{}", gw.output());
    assert_eq!(gw.get("/b").status, 200);
    let text = metrics(&gw);
    assert_eq!(
        series(&text, r#"edgegate_config_reloads_total{outcome="applied"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            r#"edgegate_config_reloads_total{outcome="rejected"}"#
        ),
        Some(1.0)
    );

    // SIGHUP with a good file applies it (route b gone again).
    std::fs::write(&gw.config, two_routes(&origin.url(), false)).unwrap();
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || gw.get("/b").status == 404));
}

/// A loopback origin answering `name` on every path but `/healthz`, which
/// answers 200 or 503 as `healthy` says.
struct Toggle {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
}

impl Toggle {
    fn start(name: &'static str) -> Toggle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || answer_toggle(stream, name, &flag));
            }
        });
        Toggle { addr, healthy }
    }
}

fn answer_toggle(stream: TcpStream, name: &str, healthy: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let status = if request_line.starts_with("GET /healthz ") && !healthy.load(Ordering::SeqCst)
        {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{name}",
            name.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn health_checks_steer_traffic_and_show_on_the_admin_listener() {
    let a = Toggle::start("a");
    let b = Toggle::start("b");
    let config = format!(
        r#"
[[upstreams]]
name = "svc"
targets = [{{ url = "http://{}" }}, {{ url = "http://{}" }}]
health_check = {{ path = "/healthz", interval_ms = 100, healthy_threshold = 2, unhealthy_threshold = 2 }}

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "svc"
"#,
        a.addr, b.addr
    );
    let gw = Gateway::start(&config);
    let served_by = |n: usize| -> Vec<String> { (0..n).map(|_| gw.get("/").text()).collect() };
    assert!(served_by(10).contains(&"b".to_string()));

    b.healthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || {
            get(gw.admin, "/upstreams", &[]).json()["upstreams"][0]["healthy_targets"] == 1
        }),
        "{}",
        gw.output()
    );
    let view = get(gw.admin, "/upstreams", &[]).json();
    let target = &view["upstreams"][0]["targets"][1];
    assert_eq!(target["healthy"], false);
    assert!(
        target["last_error"].as_str().unwrap().contains("503"),
        "{view}"
    );
    // Target b still answers normal requests: only the health check keeps
    // traffic off it.
    assert!(served_by(20).iter().all(|s| s == "a"));
    assert_eq!(
        series(
            &metrics(&gw),
            &format!(
                r#"edgegate_upstream_target_healthy{{upstream="svc",target="http://{}"}}"#,
                b.addr
            )
        ),
        Some(0.0)
    );

    b.healthy.store(true, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || {
        served_by(4).contains(&"b".to_string())
    }));
}

#[test]
fn sigterm_finishes_requests_in_flight_and_reports_draining() {
    let origin = Origin::start(Behaviour::Slow(Duration::from_millis(1500)));
    let config = support::config_with_upstream(&origin.url(), "shutdown_grace_s = 10");
    let mut gw = Gateway::start(&config);
    let listen = gw.listen;
    let in_flight = std::thread::spawn(move || get(listen, "/slow", &[]));
    assert!(eventually(Duration::from_secs(5), || origin.hits() == 1));

    gw.signal("TERM");
    assert!(eventually(Duration::from_secs(1), || {
        support::try_get(gw.admin, "/readyz", &[])
            .is_ok_and(|r| r.status == 503 && r.text().contains("shutting down"))
    }));
    // No new connections once draining.
    assert!(eventually(Duration::from_secs(1), || {
        TcpStream::connect(gw.listen).is_err()
    }));
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", gw.output());
    let status = gw.terminate(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}\n{}", gw.output());
}

/// A minimal OTLP/HTTP receiver: keeps the body of every POST /v1/traces.
fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let kept = Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0;
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if request_line.starts_with("POST /v1/traces ") {
                        kept.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                    }
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
                }
            });
        }
    });
    (addr, bodies)
}

#[test]
fn spans_reach_an_otlp_receiver_in_the_callers_trace() {
    let (receiver, bodies) = otlp_receiver();
    let origin = Origin::start(Behaviour::Echo);
    let config = support::config_with_upstream(
        &origin.url(),
        &format!("[server.otlp]\nendpoint = \"http://{receiver}\"\nservice_name = \"edge-test\""),
    );
    let gw = Gateway::start(&config);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let reply = gw.get_with(
        "/traced",
        &[("traceparent", &format!("00-{trace_id}-{parent}-01"))],
    );
    assert_eq!(reply.status, 200);
    let sent = reply.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    let span_id = sent.split('-').nth(2).unwrap().to_string();

    assert!(
        eventually(Duration::from_secs(5), || !bodies
            .lock()
            .unwrap()
            .is_empty()),
        "{}",
        gw.output()
    );
    let body: serde_json::Value =
        serde_json::from_str(&bodies.lock().unwrap()[0]).expect("OTLP JSON");
    let resource = &body["resourceSpans"][0];
    assert_eq!(
        resource["resource"]["attributes"][0]["value"]["stringValue"],
        "edge-test"
    );
    let span = &resource["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], trace_id);
    assert_eq!(span["parentSpanId"], parent);
    assert_eq!(span["spanId"], span_id.as_str());
    assert_eq!(span["name"], "GET all");
}
