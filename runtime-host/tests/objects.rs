//! Durable Objects in `edgegate serve`: WebSocket hubs through the edge
//! with real WebSocket clients, rate-limit storage and alarms across
//! restarts, eviction, and per-object failure isolation. Tokens are minted
//! with the `jsonwebtoken` crate.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::ws::{WAIT, Ws, connect_room, expect, get_async, none_of, post, send, subscribe};
use support::{Gateway, GatewayBuilder, Origin, Reply, TempDir, private_data_dir};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const SECRET: &str = "objects-test-secret-0123456789";

fn token(sub: &str, roles: &[&str]) -> String {
    support::ws::token(SECRET, "objects-test", sub, roles)
}

/// Hub routes (`/ws/rooms/{room}`, max 1024 bytes, 2 messages/s), the
/// backend publish route, and rate-limited routes in front of `origin`.
fn config(origin: SocketAddr, server: &str) -> String {
    format!(
        r#"
[server]
{server}

[auth.jwt]
issuer = "objects-test"
audience = "api"
keys = [{{ kid = "k", alg = "HS256", secret = "{SECRET}" }}]

[[upstreams]]
name = "origin"
targets = [{{ url = "http://{origin}" }}]

[[rate_limits]]
name = "long"
algorithm = "fixed_window"
key = "ip"
limit = 2
period_s = 86400
backend = "durable-object"

[[rate_limits]]
name = "short"
algorithm = "token_bucket"
key = "ip"
limit = 1
period_s = 2
backend = "durable-object"

[[routes]]
name = "long"
match = {{ path_prefix = "/long" }}
upstream = "origin"
rate_limits = ["long"]

[[routes]]
name = "short"
match = {{ path_prefix = "/short" }}
upstream = "origin"
rate_limits = ["short"]

[[routes]]
name = "rooms"
match = {{ path = "/ws/rooms/{{room}}" }}
websocket = {{ hub = "room-{{room}}", max_message_bytes = 1024, messages_per_second = 2 }}
auth = "jwt"

[[routes]]
name = "push"
match = {{ path = "/rooms/{{room}}/publish", methods = ["POST"] }}
hub = "room-{{room}}"
auth = "jwt"
roles = ["admin"]
"#
    )
}

/// A gateway with its own object storage.
struct Running {
    gateway: Gateway,
    _origin: Origin,
    _dir: Option<TempDir>,
}

fn gateway(server: &str, customize: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Running {
    let origin = Origin::start("ok");
    let dir = private_data_dir();
    let builder = Gateway::builder(&config(origin.addr, server))
        .data_dir(dir.path())
        .env("EDGEGATE_LOG", "info,edgegate::objects=debug");
    Running {
        gateway: customize(builder).start(),
        _origin: origin,
        _dir: Some(dir),
    }
}

/// A gateway whose objects trap on the topic `trap` and spin on `spin`.
fn misbehaving_gateway(server: &str) -> Running {
    let component = support::trapping_objects_component();
    gateway(server, |b| {
        b.args([
            "--objects-component".to_string(),
            component.display().to_string(),
        ])
    })
}

async fn connect(gateway: &Gateway, room: &str, user: &str) -> Result<Ws, WsError> {
    connect_room(gateway.listen, room, Some(&token(user, &["user"]))).await
}

/// The close frame the server sends.
async fn expect_close(ws: &mut Ws) -> Option<CloseFrame> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("no close in {WAIT:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => return frame,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("socket ended without a close frame: {other:?}"),
        }
    }
}

async fn post_async(addr: SocketAddr, path: &str, token: String, body: Value) -> Reply {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || post(addr, &path, &token, &body))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_checked_before_the_upgrade() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    match connect_room(gw.listen, "r1", None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match connect_room(gw.listen, "r1", Some("not-a-token")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // A forged upgrade marker on a plain request is removed by the host, so
    // the edge refuses the request itself (426, which the edge component
    // currently turns into a trap under WASI: `Upgrade` is a forbidden
    // response header there) instead of handing it to the hub (404).
    let auth = format!("Bearer {}", token("mallory", &["user"]));
    let reply = tokio::task::spawn_blocking({
        let addr = gw.listen;
        move || {
            support::get(
                addr,
                "/ws/rooms/r1",
                &[("authorization", &auth), ("edgegate-websocket", "forged")],
            )
        }
    })
    .await
    .unwrap();
    assert!(matches!(reply.status, 426 | 500), "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.text()
    );
    // A real client gets in.
    let mut ws = connect(gw, "r1", "alice").await.unwrap();
    subscribe(&mut ws, "chat").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_subscribers_and_the_sender_only_if_subscribed() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut alice = connect(gw, "r1", "alice").await.unwrap();
    let mut bob = connect(gw, "r1", "bob").await.unwrap();
    let mut carol = connect(gw, "r1", "carol").await.unwrap();
    let mut other_room = connect(gw, "r2", "dave").await.unwrap();
    subscribe(&mut alice, "chat").await;
    subscribe(&mut bob, "chat").await;
    subscribe(&mut other_room, "chat").await;

    send(
        &mut carol,
        json!({"type": "publish", "topic": "chat", "data": {"n": 1}, "id": "p1"}),
    )
    .await;
    assert_eq!(expect(&mut carol, "ack").await["id"], "p1");
    for ws in [&mut alice, &mut bob] {
        let message = expect(ws, "message").await;
        assert_eq!(message["data"], json!({"n": 1}));
        assert_eq!(message["from"], "carol");
        assert_eq!(message["topic"], "chat");
    }
    none_of(&mut carol, &["message"], Duration::from_millis(300)).await;
    none_of(&mut other_room, &["message"], Duration::from_millis(100)).await;

    // A subscribed sender gets its own message.
    send(
        &mut alice,
        json!({"type": "publish", "topic": "chat", "data": "hi"}),
    )
    .await;
    assert_eq!(expect(&mut alice, "message").await["data"], "hi");
    assert_eq!(expect(&mut bob, "message").await["from"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_joins_and_leaves() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut alice = connect(gw, "lobby", "alice").await.unwrap();
    let mut bob = connect(gw, "lobby", "bob").await.unwrap();
    assert_eq!(expect(&mut alice, "join").await["user"], "bob");
    send(&mut bob, json!({"type": "presence", "id": 7})).await;
    let presence = expect(&mut bob, "presence").await;
    assert_eq!(presence["users"], json!(["alice", "bob"]));
    assert_eq!(presence["id"], 7);
    bob.close(None).await.unwrap();
    assert_eq!(expect(&mut alice, "leave").await["user"], "bob");
    send(&mut alice, json!({"type": "presence"})).await;
    assert_eq!(
        expect(&mut alice, "presence").await["users"],
        json!(["alice"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut watcher = connect(gw, "big", "watcher").await.unwrap();
    let mut ws = connect(gw, "big", "alice").await.unwrap();
    assert_eq!(expect(&mut watcher, "join").await["user"], "alice");
    let big = json!({"type": "publish", "topic": "t", "data": "x".repeat(2000)});
    ws.send(Message::Text(big.to_string().into()))
        .await
        .unwrap();
    let frame = expect_close(&mut ws).await.expect("a close code");
    assert_eq!(u16::from(frame.code), 1009);
    // The hub counted the departure.
    assert_eq!(expect(&mut watcher, "leave").await["user"], "alice");
}

/// Frames no client may send, written under the client library: the
/// server fails the connection with the code RFC 6455 names, and the hub
/// hears that the user left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_with_1002_or_1007() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::MaybeTlsStream;

    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut watcher = connect(gw, "bad", "watcher").await.unwrap();
    // A masked text frame of `payload`, with `first` as its first byte.
    let masked = |first: u8, payload: &[u8]| {
        let mask = [0x5a, 0x13, 0xc7, 0x02];
        let mut frame = vec![first, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    };
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("an unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bits set", masked(0xf1, b"hi"), 1002),
        ("a fragmented ping", masked(0x09, b""), 1002),
        ("text that is not UTF-8", masked(0x81, &[0xc3, 0x28]), 1007),
    ];
    for (what, bytes, code) in cases {
        let mut ws = connect(gw, "bad", "mallory").await.unwrap();
        assert_eq!(expect(&mut watcher, "join").await["user"], "mallory");
        let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
            panic!("plain TCP")
        };
        tcp.write_all(&bytes).await.unwrap();
        let frame = expect_close(&mut ws).await.expect("a close code");
        assert_eq!(u16::from(frame.code), code, "{what}");
        assert_eq!(
            expect(&mut watcher, "leave").await["user"],
            "mallory",
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_connection_is_rate_limited() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut ws = connect(gw, "flood", "alice").await.unwrap();
    // 2 messages/s with bursts of 4: ten at once must be refused in part.
    for i in 0..10 {
        send(&mut ws, json!({"type": "presence", "id": i})).await;
    }
    let error = expect(&mut ws, "error").await;
    assert_eq!(error["code"], "RATE_LIMITED");
    // Pings are answered by the host without waking the hub, unlimited.
    for _ in 0..20 {
        ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
    }
    for _ in 0..20 {
        expect(&mut ws, "pong").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_publish_route_reaches_subscribers() {
    let running = gateway("", |b| b);
    let gw = &running.gateway;
    let mut ws = connect(gw, "news", "alice").await.unwrap();
    subscribe(&mut ws, "headlines").await;
    let body = json!({"topic": "headlines", "data": {"title": "hello"}});
    let reply = post_async(
        gw.listen,
        "/rooms/news/publish",
        token("svc", &["admin"]),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"delivered": 1}));
    let message = expect(&mut ws, "message").await;
    assert_eq!(message["data"], json!({"title": "hello"}));
    assert_eq!(message["from"], "system");
    // Without the admin role the edge refuses before the hub.
    let reply = post_async(
        gw.listen,
        "/rooms/news/publish",
        token("eve", &["user"]),
        body,
    )
    .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_hub_wakes_up_with_its_subscriptions() {
    let running = gateway("object_idle_timeout_s = 1", |b| b);
    let gw = &running.gateway;
    let mut alice = connect(gw, "sleepy", "alice").await.unwrap();
    let mut bob = connect(gw, "sleepy", "bob").await.unwrap();
    assert_eq!(expect(&mut alice, "join").await["user"], "bob");
    subscribe(&mut alice, "chat").await;

    // Idle for longer than the timeout: the hub instance goes away while
    // the sockets stay open.
    assert!(
        gw.printed_within("object evicted", WAIT).await,
        "no eviction: {}",
        gw.output()
    );

    // A client message wakes a new instance, rebuilt from the sockets.
    send(
        &mut bob,
        json!({"type": "publish", "topic": "chat", "data": 1}),
    )
    .await;
    assert_eq!(expect(&mut alice, "message").await["from"], "bob");

    // Evicted again, then woken by the backend route.
    let evictions = gw.output().matches("object evicted").count();
    let deadline = Instant::now() + WAIT;
    while gw.output().matches("object evicted").count() == evictions {
        assert!(Instant::now() < deadline, "no second eviction");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = json!({"topic": "chat", "data": 2});
    let reply = post_async(
        gw.listen,
        "/rooms/sleepy/publish",
        token("svc", &["admin"]),
        body,
    )
    .await;
    assert_eq!(reply.json(), json!({"delivered": 1}));
    assert_eq!(expect(&mut alice, "message").await["data"], 2);
    send(&mut alice, json!({"type": "presence"})).await;
    assert_eq!(
        expect(&mut alice, "presence").await["users"],
        json!(["alice", "bob"])
    );
}

/// Rows of `object` in the rate limiter's database: (entries, alarms).
fn limiter_rows(dir: &Path, object: &str) -> (i64, i64) {
    let db = rusqlite::Connection::open(dir.join("objects/ratelimiter.sqlite")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [object], |row| row.get(0)).unwrap() };
    (
        count("SELECT count(*) FROM kv WHERE object = ?1"),
        count("SELECT count(*) FROM alarms WHERE object = ?1"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_alarms_survive_a_restart() {
    let origin = Origin::start("ok");
    let dir = private_data_dir();
    let start = || {
        Gateway::builder(&config(origin.addr, ""))
            .data_dir(dir.path())
            .start()
    };
    let mut first = start();
    assert_eq!(get_async(first.listen, "/long").await.status, 200);
    assert_eq!(get_async(first.listen, "/long").await.status, 200);
    assert_eq!(get_async(first.listen, "/long").await.status, 429);
    assert_eq!(get_async(first.listen, "/short").await.status, 200);
    assert_eq!(get_async(first.listen, "/short").await.status, 429);
    assert_eq!(limiter_rows(dir.path(), "short:127.0.0.1"), (1, 1));
    assert!(first.terminate(WAIT).is_some_and(|s| s.success()));

    let second = start();
    // The count is where it was.
    assert_eq!(get_async(second.listen, "/long").await.status, 429);
    // The short policy's alarm, scheduled by the first process, fires in
    // the second and deletes the idle counter.
    let deadline = Instant::now() + WAIT;
    while limiter_rows(dir.path(), "short:127.0.0.1") != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the alarm did not fire: {}",
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        second.output().contains("alarms rescheduled"),
        "{}",
        second.output()
    );
    assert_eq!(get_async(second.listen, "/short").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_object_does_not_take_others_down() {
    let running = misbehaving_gateway("");
    let gw = &running.gateway;
    let admin = token("svc", &["admin"]);
    let mut alice = connect(gw, "a", "alice").await.unwrap();
    let mut bob = connect(gw, "b", "bob").await.unwrap();
    subscribe(&mut alice, "news").await;
    subscribe(&mut bob, "news").await;

    let trap = json!({"topic": "trap", "data": 0});
    let reply = post_async(gw.listen, "/rooms/a/publish", admin.clone(), trap).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        gw.printed_within("resetting it", WAIT).await,
        "{}",
        gw.output()
    );

    // The other hub never noticed.
    let news = json!({"topic": "news", "data": "b"});
    let reply = post_async(gw.listen, "/rooms/b/publish", admin.clone(), news).await;
    assert_eq!(reply.json(), json!({"delivered": 1}));
    assert_eq!(expect(&mut bob, "message").await["data"], "b");
    // The one that trapped starts over with its sockets and subscriptions.
    let news = json!({"topic": "news", "data": "a"});
    let reply = post_async(gw.listen, "/rooms/a/publish", admin, news).await;
    assert_eq!(reply.json(), json!({"delivered": 1}));
    assert_eq!(expect(&mut alice, "message").await["data"], "a");
    // Rate limiting (another class) is unaffected.
    assert_eq!(get_async(gw.listen, "/long").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_past_the_cpu_limit_is_stopped_and_starts_over() {
    let running = misbehaving_gateway("cpu_limit_ms = 200");
    let gw = &running.gateway;
    let admin = token("svc", &["admin"]);
    let mut alice = connect(gw, "a", "alice").await.unwrap();
    subscribe(&mut alice, "news").await;

    let started = Instant::now();
    let spin = json!({"topic": "spin", "data": 0});
    let reply = post_async(gw.listen, "/rooms/a/publish", admin.clone(), spin).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        started.elapsed() < WAIT,
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(
        gw.printed_within("resetting it", WAIT).await,
        "{}",
        gw.output()
    );
    // The same object serves again, its sockets and subscriptions kept.
    let news = json!({"topic": "news", "data": "after"});
    let reply = post_async(gw.listen, "/rooms/a/publish", admin, news).await;
    assert_eq!(reply.json(), json!({"delivered": 1}));
    assert_eq!(expect(&mut alice, "message").await["data"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001() {
    let mut running = gateway("", |b| b);
    let mut ws = connect(&running.gateway, "bye", "alice").await.unwrap();
    subscribe(&mut ws, "chat").await;
    let stopper = tokio::task::spawn_blocking(move || {
        let status = running.gateway.terminate(WAIT);
        (status, running)
    });
    let frame = expect_close(&mut ws).await.expect("a close code");
    assert_eq!(u16::from(frame.code), 1001);
    let (status, _running) = stopper.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
