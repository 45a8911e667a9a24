//! The object runtime with the embedded objects component, in process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::*;

static COMPONENT: &[u8] = include_bytes!(env!("OBJECTS_COMPONENT_WASM"));

fn component() -> Component {
    static COMPILED: OnceLock<Component> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let engine = crate::engine::new_objects_engine().unwrap();
            crate::engine::start_epoch_ticker(&engine);
            Component::new(&engine, COMPONENT).unwrap()
        })
        .clone()
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "edgegate-objects-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &TempDir, idle: Duration) -> Arc<Objects> {
    Objects::start(
        Prepared::new(&component()).unwrap(),
        Settings {
            dir: dir.0.clone(),
            limits: Limits {
                memory: 64 << 20,
                cpu: Duration::from_secs(1),
            },
            idle_timeout: idle,
            socket_idle_timeout: Duration::from_secs(300),
        },
    )
}

fn check(limit: u64, period_ms: u64) -> Request {
    Request {
        method: "POST".into(),
        path: "/check".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"algorithm":"fixed_window","limit":{limit},"period_ms":{period_ms}}}"#)
            .into_bytes(),
    }
}

async fn decide(objects: &Arc<Objects>, key: &ObjectKey, request: Request) -> bool {
    match objects.fetch(key, request, None).await {
        Ok(FetchReply::Response(r)) => {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let decision: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            decision["allowed"].as_bool().unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_admit_exactly_the_limit_and_survive_eviction() {
    let dir = TempDir::new("exact");
    let objects = start(&dir, Duration::from_millis(200));
    let key = ObjectKey::new("ratelimiter", "per-ip:203.0.113.9");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (objects, key) = (Arc::clone(&objects), key.clone());
            tokio::spawn(async move { decide(&objects, &key, check(7, 86_400_000)).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 7);
    assert_eq!(objects.live(), 1);

    // Evicted when idle, re-created from storage: still refused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(objects.live(), 0);
    assert!(!decide(&objects, &key, check(7, 86_400_000)).await);

    // A new process (same directory) reads the same state.
    drop(objects);
    let again = start(&dir, Duration::from_secs(30));
    assert!(!decide(&again, &key, check(7, 86_400_000)).await);
}

/// A decision's answer does not wait for its write to reach the database
/// (the limiter's writes are unconfirmed), while an event with a confirmed
/// write (a new key's clean-up alarm) still does; every write is kept.
/// (Decisions made while a commit of the key is in flight go out with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_do_not_wait_for_the_disk_but_are_kept() {
    let dir = TempDir::new("unconfirmed");
    let key = |name: &str| ObjectKey::new("ratelimiter", name);
    let limit = || check(3, 86_400_000);
    let objects = start(&dir, Duration::from_millis(200));
    assert!(decide(&objects, &key("hot"), limit()).await);
    // Evicted once idle, so once nothing of it is in flight any more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while objects.live() > 0 {
        assert!(Instant::now() < deadline, "the object was not evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Another connection holds the database's write lock: commits wait.
    let lock = rusqlite::Connection::open(dir.0.join("ratelimiter.sqlite")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let gated = {
        let objects = Arc::clone(&objects);
        tokio::spawn(async move { decide(&objects, &key("new"), limit()).await })
    };
    let started = Instant::now();
    assert!(decide(&objects, &key("hot"), limit()).await);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "the answer waited {waited:?}"
    );
    assert!(!gated.is_finished(), "a confirmed write was not waited for");

    lock.execute_batch("COMMIT").unwrap();
    assert!(gated.await.unwrap());
    assert!(decide(&objects, &key("hot"), limit()).await);
    assert!(!decide(&objects, &key("hot"), limit()).await);
    // Answered after its commit, which follows every earlier one.
    assert!(decide(&objects, &key("last"), limit()).await);
    drop(objects);
    let again = start(&dir, Duration::from_secs(30));
    assert!(!decide(&again, &key("hot"), limit()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_clean_up_idle_keys_even_after_a_restart() {
    let dir = TempDir::new("alarm");
    let key = ObjectKey::new("ratelimiter", "short");
    {
        let objects = start(&dir, Duration::from_secs(30));
        assert!(decide(&objects, &key, check(1, 1_000)).await);
        assert!(!decide(&objects, &key, check(1, 1_000)).await);
        let store = objects.stores.class(&key.class).unwrap();
        assert!(store.get(&key.name, "rl").unwrap().is_some());
        assert!(store.alarm(&key.name).unwrap().is_some());
    }
    // "Restart": the alarm is read back from the database and fires.
    let objects = start(&dir, Duration::from_secs(30));
    let store = objects.stores.class(&key.class).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.alarm(&key.name).unwrap().is_some() || store.get(&key.name, "rl").unwrap().is_some()
    {
        assert!(Instant::now() < deadline, "alarm did not clean up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_classes_and_bad_requests_are_answered() {
    let dir = TempDir::new("unknown");
    let objects = start(&dir, Duration::from_secs(30));
    let key = ObjectKey::new("nosuch", "x");
    match objects.fetch(&key, check(1, 1000), None).await {
        Err(ObjectFailure::UnknownClass(_)) => {}
        other => panic!("{other:?}"),
    }
    let key = ObjectKey::new("ratelimiter", "x");
    let mut bad = check(1, 1000);
    bad.body = b"nope".to_vec();
    match objects.fetch(&key, bad, None).await {
        Ok(FetchReply::Response(r)) => assert_eq!(r.status, 400),
        other => panic!("{other:?}"),
    }
    // An accept without an upgrade is refused by the host.
    let hub = ObjectKey::new("hub", "room");
    let upgrade = Request {
        method: "GET".into(),
        path: "/connect".into(),
        headers: vec![
            ("upgrade".into(), "websocket".into()),
            ("x-user-id".into(), "alice".into()),
        ],
        body: Vec::new(),
    };
    match objects.fetch(&hub, upgrade, None).await {
        Err(ObjectFailure::NotAnUpgrade) => {}
        other => panic!("{other:?}"),
    }
}

/// The process's resident set, as `/proc` shows it.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l[6..].trim().to_string())
        })
        .unwrap_or_default()
}

/// Rate-limit decisions per second straight into the runtime (no HTTP, no
/// edge): `cargo test --release -p runtime-host objects::tests::throughput
/// -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput() {
    let sizes: Vec<usize> = std::env::var("BENCH_KEYS").map_or_else(
        |_| vec![1, 10_000],
        |v| v.split(',').filter_map(|k| k.parse().ok()).collect(),
    );
    for keys in sizes {
        let dir = TempDir::new("bench");
        let objects = start(&dir, Duration::from_secs(30));
        let keys: Vec<ObjectKey> = (0..keys)
            .map(|i| ObjectKey::new("ratelimiter", &format!("bench:{i}")))
            .collect();
        // Warm up: every object instantiated once.
        let warm = Instant::now();
        for key in &keys {
            decide(&objects, key, check(u64::MAX / 2, 60_000)).await;
        }
        let mappings = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
        println!(
            "{} object(s) created in {:?}; process RSS {}, {mappings} memory mappings",
            keys.len(),
            warm.elapsed(),
            rss()
        );
        const CONCURRENCY: usize = 512;
        let total = 400_000usize;
        let started = Instant::now();
        let keys = Arc::new(keys);
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                let (objects, keys) = (Arc::clone(&objects), Arc::clone(&keys));
                tokio::spawn(async move {
                    for i in 0..total / CONCURRENCY {
                        let key = &keys[(t * 7919 + i) % keys.len()];
                        decide(&objects, key, check(u64::MAX / 2, 60_000)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "{} key(s): {} decisions in {elapsed:?}: {:.0}/s",
            keys.len(),
            total,
            total as f64 / elapsed.as_secs_f64()
        );
    }
}
