//! `edgegate serve` with the embedded edge component: admin probes, routing
//! through the component, the demo upstream, start-up time and shutdown.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Gateway, Origin, config_with_upstream, free_port, get, read_response, try_get};

#[test]
fn admin_probes_answer_and_stay_off_the_public_listener() {
    let origin = Origin::start("origin");
    let gateway = Gateway::start(&config_with_upstream(
        &format!("http://{}", origin.addr),
        "",
    ));

    let health = get(gateway.admin, "/healthz", &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(get(gateway.admin, "/readyz", &[]).status, 200);
    assert_eq!(get(gateway.admin, "/public/hello", &[]).status, 404);
    assert_eq!(get(gateway.admin, "/", &[]).status, 404);

    // On the public listener `/healthz` is just another path for the edge.
    let public = gateway.get("/healthz");
    assert_ne!(public.text(), "ok\n");
}

#[test]
fn requests_reach_the_component_and_its_upstream() {
    let origin = Origin::start("hello from origin");
    let gateway = Gateway::start(&config_with_upstream(
        &format!("http://{}", origin.addr),
        "",
    ));
    let reply = gateway.get("/anything");
    assert_eq!(reply.status, 200, "{reply:?}\n{}", gateway.output());
    assert_eq!(reply.text(), "hello from origin");
    assert_eq!(origin.requests(), 1);
}

#[test]
fn demo_upstream_echoes_what_it_received() {
    let demo_port = free_port();
    let config = format!(
        r#"
[[upstreams]]
name = "demo"
targets = [{{ url = "http://127.0.0.1:{demo_port}" }}]

[[routes]]
name = "public"
match = {{ path_prefix = "/public" }}
upstream = "demo"
"#
    );
    let gateway = Gateway::builder(&config).args(["--demo"]).start();
    let direct = get(
        ([127, 0, 0, 1], demo_port).into(),
        "/x/y?a=1",
        &[("X-Custom", "v")],
    );
    let echo = direct.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/x/y");
    assert_eq!(echo["query"], "a=1");
    assert_eq!(echo["headers"]["x-custom"], "v");

    let through = gateway.get("/public/hello");
    assert_eq!(through.status, 200, "{through:?}\n{}", gateway.output());
    assert_eq!(through.json()["path"], "/public/hello");
    assert!(
        gateway
            .output()
            .contains(&format!("demo upstream: http://127.0.0.1:{demo_port}"))
    );
}

#[test]
fn start_to_first_proxied_200_with_a_warm_cache() {
    let origin = Origin::start("ok");
    let config = config_with_upstream(&format!("http://{}", origin.addr), "");
    // The first start fills the compiled-component cache.
    drop(Gateway::start(&config));

    let gateway = Gateway::builder(&config).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    let elapsed = loop {
        if let Ok(reply) = try_get(gateway.listen, "/warm", &[]) {
            assert_eq!(reply.status, 200, "{reply:?}");
            break gateway.started.elapsed();
        }
        assert!(Instant::now() < deadline, "{}", gateway.output());
        std::thread::sleep(Duration::from_millis(2));
    };
    println!("process start to first proxied 200 (warm cache): {elapsed:?}");
    assert!(
        gateway.output().contains("loaded from cache"),
        "{}",
        gateway.output()
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn start_up_prints_addresses_and_a_dev_token() {
    let origin = Origin::start("ok");
    let mut config = config_with_upstream(&format!("http://{}", origin.addr), "");
    config.push_str(
        "\n[auth.jwt]\nissuer = \"dev\"\naudience = \"api\"\nkeys = [{ kid = \"k\", alg = \"HS256\", secret = \"very-secret-value\" }]\n",
    );
    let gateway = Gateway::start(&config);
    std::thread::sleep(Duration::from_millis(100));
    let output = gateway.output();
    assert!(
        output.contains(&format!("http://{}", gateway.listen)),
        "{output}"
    );
    assert!(
        output.contains(&format!("http://{}/healthz", gateway.admin)),
        "{output}"
    );
    let token = output
        .lines()
        .skip_while(|line| !line.contains("dev token"))
        .nth(1)
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        token.starts_with("ey") && token.split('.').count() == 3,
        "{output}"
    );
    // The commands to try are the default configuration's routes.
    assert!(!output.contains("curl "), "{output}");
    assert!(!output.contains("very-secret-value"), "{output}");
}

#[test]
fn sigterm_stops_the_gateway_with_exit_0() {
    let origin = Origin::start("ok");
    let mut gateway = Gateway::start(&config_with_upstream(
        &format!("http://{}", origin.addr),
        "",
    ));
    assert_eq!(gateway.get("/").status, 200);
    let status = gateway
        .terminate(Duration::from_secs(10))
        .expect("exited in time");
    assert!(status.success(), "{status:?}\n{}", gateway.output());
}

/// A client that reads the answer while still uploading (curl, browsers)
/// gets a 413 past `max_body_bytes` before it has sent everything; it may
/// then finish sending and use the connection again, as with nginx.
#[test]
fn an_upload_refused_early_is_answered_and_the_connection_stays_open() {
    let origin = Origin::start("after the refusal");
    let config = config_with_upstream(&format!("http://{}", origin.addr), "").replace(
        "upstream = \"origin\"",
        "upstream = \"origin\"\nmax_body_bytes = 1024",
    );
    let gateway = Gateway::start(&config);
    let chunks = |n: usize| {
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend_from_slice(b"1000\r\n");
            bytes.extend_from_slice(&[b'a'; 4096]);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes
    };
    let connect = || {
        let stream = TcpStream::connect(gateway.listen).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    };
    let (mut stream, mut reader) = connect();
    // Sends the head and the start of the body, reads the refusal, then
    // sends the rest.
    let mut refused = |head: &str, body: &[u8], start: usize| {
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body[..start]).unwrap();
        let sent = Instant::now();
        let reply = read_response(&mut reader).expect("the refusal");
        assert_eq!(reply.status, 413, "{}", reply.text());
        // Nothing waits for the rest first (other hosts give the edge up
        // to 500 ms to skip some of it).
        assert!(
            sent.elapsed() < Duration::from_millis(400),
            "{:?}",
            sent.elapsed()
        );
        stream.write_all(&body[start..]).unwrap();
    };

    // Chunked: refused once past the limit, 192 KiB still to come.
    refused(
        "POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunks(48),
        8 * 1024,
    );
    // Declared too long: refused from the head alone.
    refused(
        "POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 200000\r\n\r\n",
        &[b'a'; 200_000],
        0,
    );
    stream
        .write_all(b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let next = read_response(&mut reader).expect("an answer on the same connection");
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "after the refusal")
    );

    // A client that waits for `100 Continue` is not invited to send a body
    // that was refused.
    let (mut stream, mut reader) = connect();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 200000\r\nexpect: 100-continue\r\n\r\n")
        .unwrap();
    let reply = read_response(&mut reader).expect("the refusal");
    assert_eq!(reply.status, 413, "{}", reply.text());
    let mut more = [0u8; 64];
    let extra = std::io::Read::read(&mut reader, &mut more).unwrap_or(0);
    assert_eq!(
        String::from_utf8_lossy(&more[..extra]),
        "",
        "nothing after the refusal"
    );
}
