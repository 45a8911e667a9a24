//! Several `edgegate serve` processes sharing one real `redis-server` on
//! loopback: `backend = "redis"` limits are exact across them, WebSocket
//! hubs fan out and share presence across them, and Redis killed and
//! restarted mid-test is survived (limits follow `on_failure`, hubs keep
//! serving their local clients, fan-out resumes). The link also runs over
//! TLS (`rediss://`), trusting a private authority through `ca_file`, and
//! refuses a server no trusted authority vouches for. Tokens are minted
//! with the `jsonwebtoken` crate.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgegate_conformance::upstash_rest::{RedisServer, Tls};
use serde_json::{Value, json};
use support::ws::{
    WAIT, Ws, connect_room, expect, expect_within, get_async, none_of, post, send, subscribe,
};
use support::{Gateway, Origin, Reply, TempDir, private_data_dir};

const SECRET: &str = "scaleout-test-secret-0123456789";
/// How long recovery after Redis comes back may take (reconnect backoff is
/// at most 5 s).
const RECOVERY: Duration = Duration::from_secs(30);
/// The limit of every shared policy.
const LIMIT: usize = 20;
const ALGORITHMS: [&str; 4] = ["token_bucket", "sliding_window", "gcra", "fixed_window"];

/// The tests start several processes each; one at a time keeps the two
/// cores of a build machine from being oversubscribed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn token(sub: &str, roles: &[&str]) -> String {
    support::ws::token(SECRET, "scaleout-test", sub, roles)
}

/// One `global` redis-backed policy per algorithm (`/limited/<algorithm>`),
/// a closed and an open one for failures, hub routes.
/// `ca_file`: the authorities a `rediss://` server's certificate must
/// chain to.
fn config(origin: SocketAddr, redis: &str, ca_file: Option<&Path>) -> String {
    let ca_file = ca_file
        .map(|path| format!("ca_file = {:?}", path.display().to_string()))
        .unwrap_or_default();
    let mut text = format!(
        r#"
[gateway]
access_log = false

[auth.jwt]
issuer = "scaleout-test"
audience = "api"
keys = [{{ kid = "k", alg = "HS256", secret = "{SECRET}" }}]

[[upstreams]]
name = "origin"
targets = [{{ url = "http://{origin}" }}]

[redis]
url = "{redis}"
timeout_ms = 500
{ca_file}

[[rate_limits]]
name = "closed"
algorithm = "fixed_window"
key = "global"
limit = 100000
period_s = 60
backend = "redis"
on_failure = "closed"

[[rate_limits]]
name = "open"
algorithm = "fixed_window"
key = "global"
limit = 100000
period_s = 60
backend = "redis"
on_failure = "open"

[[routes]]
name = "closed"
match = {{ path_prefix = "/closed" }}
upstream = "origin"
rate_limits = ["closed"]

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
upstream = "origin"
rate_limits = ["open"]

[[routes]]
name = "rooms"
match = {{ path = "/ws/rooms/{{room}}" }}
websocket = {{ hub = "room-{{room}}", messages_per_second = 50 }}
auth = "jwt"

[[routes]]
name = "push"
match = {{ path = "/rooms/{{room}}/publish", methods = ["POST"] }}
hub = "room-{{room}}"
auth = "jwt"
roles = ["admin"]
"#
    );
    for algorithm in ALGORITHMS {
        // A day-long period: nothing refills while the test runs.
        text.push_str(&format!(
            r#"
[[rate_limits]]
name = "{algorithm}"
algorithm = "{algorithm}"
key = "global"
limit = {LIMIT}
period_s = 86400
backend = "redis"

[[routes]]
name = "{algorithm}"
match = {{ path_prefix = "/limited/{algorithm}" }}
upstream = "origin"
rate_limits = ["{algorithm}"]
"#
        ));
    }
    text
}

/// Redis, an origin and `n` gateways, each with its own ports and storage.
struct Cluster {
    redis: RedisServer,
    gateways: Vec<Gateway>,
    _origin: Origin,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, RedisServer::start(), None)
    }

    /// `n` gateways on `redis`, trusting `ca_file`'s authorities for TLS.
    fn start_with(n: usize, redis: RedisServer, ca_file: Option<&Path>) -> Cluster {
        let origin = Origin::start("ok");
        let text = config(origin.addr, &redis.url(), ca_file);
        let dirs: Vec<TempDir> = (0..n).map(|_| private_data_dir()).collect();
        let mut gateways: Vec<Gateway> = dirs
            .iter()
            .map(|dir| {
                Gateway::builder(&text)
                    .data_dir(dir.path())
                    .env("EDGEGATE_LOG", "info,edgegate::redis_link=debug")
                    .spawn()
            })
            .collect();
        for gateway in &mut gateways {
            gateway.wait_ready(Duration::from_secs(120));
        }
        Cluster {
            redis,
            gateways,
            _origin: origin,
            _dirs: dirs,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.gateways[i].listen
    }

    /// Every process is alive, answers its health check and never panicked.
    fn assert_healthy(&self) {
        for (i, gateway) in self.gateways.iter().enumerate() {
            let health = support::try_get(gateway.admin, "/healthz", &[]);
            assert!(
                health.as_ref().is_ok_and(|r| r.status == 200),
                "gateway {i} is not healthy: {health:?}\n{}",
                gateway.output()
            );
            assert!(
                !gateway.output().contains("panicked"),
                "gateway {i} panicked:\n{}",
                gateway.output()
            );
        }
    }
}

async fn connect(addr: SocketAddr, room: &str, user: &str) -> Ws {
    connect_room(addr, room, Some(&token(user, &["user"])))
        .await
        .unwrap()
}

/// Asks for presence until it lists `users` (another host's roster may
/// still be on its way), within [`WAIT`].
/// Waits for the `join` of `user`, skipping joins of others: an instance
/// announces users it hears of from its peers after a socket joined it (Bob,
/// first on instance B, may hear of Alice on A that way).
async fn expect_join(ws: &mut Ws, user: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let join = expect_within(ws, "join", left)
            .await
            .unwrap_or_else(|| panic!("no join of {user} within {WAIT:?}"));
        if join["user"] == user {
            return;
        }
    }
}

async fn presence_becomes(ws: &mut Ws, users: &[&str]) {
    let deadline = Instant::now() + WAIT;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        send(ws, json!({"type": "presence", "id": "p"})).await;
        last = expect(ws, "presence").await["users"].clone();
        if last == json!(users) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("presence is {last}, expected {users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_limits_are_exact_across_instances() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| cluster.addr(i)).collect();
    for algorithm in ALGORITHMS {
        // Three times the limit, at once, spread over the instances.
        let requests = (0..LIMIT * 3).map(|i| {
            let addr = addrs[i % addrs.len()];
            let path = format!("/limited/{algorithm}/{i}");
            tokio::task::spawn_blocking(move || support::get(addr, &path, &[]))
        });
        let replies: Vec<Reply> = futures_util::future::join_all(requests)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let admitted = replies.iter().filter(|r| r.status == 200).count();
        let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
        assert_eq!(
            (admitted, refused.len()),
            (LIMIT, LIMIT * 2),
            "{algorithm}: {:?}",
            replies
                .iter()
                .filter(|r| r.status != 200 && r.status != 429)
                .map(Reply::text)
                .collect::<Vec<_>>()
        );
        for reply in refused {
            assert!(reply.header("retry-after").is_some(), "{algorithm}");
            assert!(
                reply
                    .header("ratelimit-policy")
                    .is_some_and(|p| p.contains(&format!("q={LIMIT}"))),
                "{algorithm}: {:?}",
                reply.headers
            );
        }
        // And the counter stays shared afterwards, on every instance.
        for addr in &addrs {
            assert_eq!(
                get_async(*addr, &format!("/limited/{algorithm}/again"))
                    .await
                    .status,
                429,
                "{algorithm}"
            );
        }
    }
    cluster.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_cross_instances_and_presence_is_global() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.addr(0), cluster.addr(1), cluster.addr(2));

    let mut alice = connect(a, "lobby", "alice").await;
    let mut bob = connect(b, "lobby", "bob").await;
    // Bob's first connection anywhere reaches Alice on another instance.
    expect_join(&mut alice, "bob").await;
    let mut carol = connect(c, "lobby", "carol").await;
    expect_join(&mut alice, "carol").await;
    expect_join(&mut bob, "carol").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        presence_becomes(ws, &["alice", "bob", "carol"]).await;
    }

    // A second connection of Bob elsewhere: no second join; its close: no
    // leave, since Bob is still connected on instance B.
    let mut bob_on_c = connect(c, "lobby", "bob").await;
    send(&mut bob_on_c, json!({"type": "ping"})).await;
    expect(&mut bob_on_c, "pong").await;
    bob_on_c.close(None).await.unwrap();
    for ws in [&mut alice, &mut carol] {
        none_of(ws, &["join", "leave"], Duration::from_millis(500)).await;
    }

    // Publishes cross instances: to subscribers only, sender included only
    // when subscribed.
    subscribe(&mut alice, "chat").await;
    subscribe(&mut carol, "chat").await;
    send(
        &mut bob,
        json!({"type": "publish", "topic": "chat", "data": {"n": 1}, "id": "m1"}),
    )
    .await;
    assert_eq!(expect(&mut bob, "ack").await["id"], "m1");
    for ws in [&mut alice, &mut carol] {
        let message = expect(ws, "message").await;
        assert_eq!(
            (&message["data"], &message["from"], &message["topic"]),
            (&json!({"n": 1}), &json!("bob"), &json!("chat"))
        );
    }
    assert!(
        expect_within(&mut bob, "message", Duration::from_millis(300))
            .await
            .is_none()
    );

    // A backend publish through instance B reaches both other instances.
    let admin = token("backend", &["admin"]);
    let reply = tokio::task::spawn_blocking(move || {
        post(
            b,
            "/rooms/lobby/publish",
            &admin,
            &json!({"topic": "chat", "data": "from the backend"}),
        )
    })
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    for ws in [&mut alice, &mut carol] {
        assert_eq!(expect(ws, "message").await["data"], "from the backend");
    }

    // Bob leaves: everyone else hears it, on every instance.
    bob.close(None).await.unwrap();
    assert_eq!(expect(&mut alice, "leave").await["user"], "bob");
    assert_eq!(expect(&mut carol, "leave").await["user"], "bob");
    presence_becomes(&mut alice, &["alice", "carol"]).await;
    cluster.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_then_back() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(2);
    let (a, b) = (cluster.addr(0), cluster.addr(1));

    let mut alice = connect(a, "room", "alice").await;
    let mut carol = connect(a, "room", "carol").await;
    let mut bob = connect(b, "room", "bob").await;
    presence_becomes(&mut alice, &["alice", "bob", "carol"]).await;
    subscribe(&mut alice, "chat").await;
    subscribe(&mut carol, "chat").await;
    assert_eq!(get_async(a, "/closed/x").await.status, 200);

    cluster.redis.kill();

    // Limits follow on_failure: closed refuses with 503, open lets through.
    for addr in [a, b] {
        let reply = get_async(addr, "/closed/x").await;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.json()["code"], "rate_limiter_unavailable");
        assert_eq!(get_async(addr, "/open/x").await.status, 200);
    }
    // Hubs keep serving their local clients.
    send(
        &mut carol,
        json!({"type": "publish", "topic": "chat", "data": "local", "id": "l"}),
    )
    .await;
    assert_eq!(expect(&mut carol, "ack").await["id"], "l");
    assert_eq!(expect(&mut alice, "message").await["data"], "local");
    send(&mut bob, json!({"type": "presence", "id": "p"})).await;
    expect(&mut bob, "presence").await;
    cluster.assert_healthy();

    // Redis comes back (empty, on the same port).
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.redis.restart();
        cluster
    })
    .await
    .unwrap();

    // Limits: checked again.
    let deadline = Instant::now() + RECOVERY;
    for addr in [a, b] {
        loop {
            let status = get_async(addr, "/closed/x").await.status;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "closed limit still {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Fan-out: a publish on B reaches A again.
    let mut n = 0;
    loop {
        n += 1;
        send(
            &mut bob,
            json!({"type": "publish", "topic": "chat", "data": n}),
        )
        .await;
        if let Some(message) =
            expect_within(&mut alice, "message", Duration::from_millis(500)).await
        {
            assert_eq!(message["from"], "bob");
            break;
        }
        assert!(Instant::now() < deadline, "fan-out did not resume");
    }
    // Presence: still global, and new departures cross again.
    presence_becomes(&mut bob, &["alice", "bob", "carol"]).await;
    carol.close(None).await.unwrap();
    assert_eq!(expect(&mut bob, "leave").await["user"], "carol");
    cluster.assert_healthy();
}

/// The password of the TLS server; it must never show in the gateways' output.
const TLS_PASSWORD: &str = "tls-redis-password-0123456789";

fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/redis-tls")
        .join(name)
}

/// A Redis that speaks only TLS, with a certificate from a private
/// authority (`ca.pem`) for 127.0.0.1, and a password.
fn tls_redis() -> RedisServer {
    RedisServer::start_tls(Tls {
        cert: tls_fixture("server.pem"),
        key: tls_fixture("server.key"),
        ca: tls_fixture("ca.pem"),
        password: TLS_PASSWORD.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_are_shared_over_tls_with_a_private_authority() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_with(2, tls_redis(), Some(&tls_fixture("ca.pem")));
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    // The link connects in the background: the closed policy answers 503
    // until it is up.
    let deadline = Instant::now() + RECOVERY;
    while get_async(a, "/closed/x").await.status != 200
        || get_async(b, "/closed/x").await.status != 200
    {
        assert!(
            Instant::now() < deadline,
            "no TLS link to Redis:\n{}\n{}",
            cluster.gateways[0].output(),
            cluster.gateways[1].output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One limit, counted in the TLS Redis, across both.
    let mut statuses = Vec::new();
    for i in 0..LIMIT * 2 {
        let addr = if i % 2 == 0 { a } else { b };
        statuses.push(
            get_async(addr, &format!("/limited/fixed_window/{i}"))
                .await
                .status,
        );
    }
    assert_eq!(
        (
            statuses.iter().filter(|s| **s == 200).count(),
            statuses.iter().filter(|s| **s == 429).count()
        ),
        (LIMIT, LIMIT),
        "{statuses:?}"
    );
    cluster.assert_healthy();
    for gateway in &cluster.gateways {
        assert!(
            !gateway.output().contains(TLS_PASSWORD),
            "{}",
            gateway.output()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_certificate_no_trusted_authority_signed_is_refused() {
    let _serial = SERIAL.lock().await;
    // No ca_file: only the public authorities are trusted.
    let cluster = Cluster::start_with(1, tls_redis(), None);
    let gateway = &cluster.gateways[0];
    let deadline = Instant::now() + RECOVERY;
    while !gateway
        .output()
        .contains("invalid peer certificate: UnknownIssuer")
    {
        assert!(
            Instant::now() < deadline,
            "no certificate failure logged:\n{}",
            gateway.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !gateway.output().contains("redis connected"),
        "{}",
        gateway.output()
    );
    // The policies' on_failure decides, as with Redis down.
    assert_eq!(get_async(cluster.addr(0), "/closed/x").await.status, 503);
    assert_eq!(get_async(cluster.addr(0), "/open/x").await.status, 200);
    assert!(
        !gateway.output().contains(TLS_PASSWORD),
        "{}",
        gateway.output()
    );
    cluster.assert_healthy();
}
