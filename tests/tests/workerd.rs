//! The conformance scenarios on workerd: the Worker built by
//! `edge/worker/build.sh` (target/edgegate-worker/), served by `wrangler dev`
//! from node_modules on a loopback port.
//!
//! Each gateway gets a generated wrangler config in a temporary directory
//! that points at the built output, has no build command, and carries the
//! configuration and secrets as `[vars]`; so starting one does not rebuild.
//!
//! Without node_modules/.bin/wrangler or the built Worker the scenarios are
//! skipped with the reason printed, unless `EDGEGATE_REQUIRE_WORKERD=1`
//! (CI), where that is a failure.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgegate_conformance::{Running, Target};

/// Matches the workerd that wrangler 4.86.0 brings (compatibility dates up
/// to its release are accepted).
const COMPATIBILITY_DATE: &str = "2026-04-20";

/// How long `wrangler dev` may take to answer its first request.
const STARTUP: Duration = Duration::from_secs(90);
/// How long the port may answer as something other than the gateway before
/// the start counts as failed.
const FOREIGN_ANSWERS: Duration = Duration::from_secs(10);

/// workerd through `wrangler dev`.
struct Workerd {
    root: PathBuf,
}

impl Workerd {
    fn new() -> Self {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
        Workerd {
            root: tests.parent().unwrap_or(tests).to_path_buf(),
        }
    }

    fn wrangler(&self) -> PathBuf {
        self.root.join("node_modules/.bin/wrangler")
    }

    fn built(&self) -> PathBuf {
        self.root.join("target/edgegate-worker/index.js")
    }
}

impl Target for Workerd {
    fn name(&self) -> &'static str {
        "workerd"
    }

    fn unavailable(&self) -> Option<String> {
        let missing = if !self.wrangler().exists() {
            Some(format!(
                "{} is missing (run `npm ci`)",
                self.wrangler().display()
            ))
        } else if !self.built().exists() {
            Some(format!(
                "{} is missing (run `bash edge/worker/build.sh`)",
                self.built().display()
            ))
        } else {
            None
        };
        edgegate_conformance::skip_unless_required("EDGEGATE_REQUIRE_WORKERD", missing)
    }

    fn supports_durable_objects(&self) -> bool {
        true
    }

    fn start(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running> {
        // The free port can be taken by a concurrently starting test before
        // wrangler binds it: try again on a new port.
        for _ in 0..2 {
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.start_once(config, env)
            }));
            if let Ok(running) = attempt {
                return running;
            }
        }
        self.start_once(config, env)
    }
}

impl Workerd {
    fn start_once(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut vars = serde_json::Map::new();
        vars.insert("EDGEGATE_CONFIG".into(), config.into());
        for (k, v) in env {
            vars.insert((*k).into(), (*v).into());
        }
        let wrangler_config = serde_json::json!({
            "name": format!("edgegate-conformance-{port}"),
            "main": self.built(),
            "compatibility_date": COMPATIBILITY_DATE,
            "send_metrics": false,
            "vars": vars,
            "durable_objects": { "bindings": [
                { "name": "RATE_LIMITER", "class_name": "RateLimiter" },
                { "name": "HUB", "class_name": "Hub" },
            ]},
            "migrations": [{ "tag": "v1", "new_sqlite_classes": ["RateLimiter", "Hub"] }],
        });
        let config_path = dir.path().join("wrangler.json");
        std::fs::write(&config_path, wrangler_config.to_string()).expect("write wrangler.json");
        let log_path = dir.path().join("wrangler.log");
        let log = File::create(&log_path).expect("log file");
        let mut command = Command::new(self.wrangler());
        command
            .args(["dev", "--config"])
            .arg(&config_path)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", "0", "--log-level", "warn"])
            .arg("--show-interactive-dev-session=false")
            .arg("--persist-to")
            .arg(dir.path().join("state"))
            .current_dir(dir.path())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("WRANGLER_LOG_PATH", dir.path().join("logs"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // Its own process group, so that stopping it also stops workerd.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start wrangler dev");
        let mut running = WorkerdGateway {
            child,
            port,
            log_path,
            _dir: dir,
        };
        running.wait_ready();
        Box::new(running)
    }
}

/// A `wrangler dev` process; stopped (with its workerd) when dropped.
struct WorkerdGateway {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkerdGateway {
    fn wait_ready(&mut self) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let started = Instant::now();
        let mut foreign_since = None;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wrangler dev exited ({status}):\n{}", self.log());
            }
            // Any answer from the Worker means it is up. The path is one the
            // gateway refuses before routing (an encoded backslash), so the
            // probe never reaches a scenario's origins. The gateway marks
            // every answer with a request id; an answer without one comes
            // from another process that took the port meanwhile (the caller
            // then starts again on a new one).
            match client.get(format!("{}/%5Cready", self.base_url())).send() {
                Ok(r) if r.headers().contains_key("x-request-id") => return,
                Ok(r) => {
                    let since = *foreign_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > FOREIGN_ANSWERS {
                        panic!(
                            "port {} answers without the gateway's request id ({}):\n{}",
                            self.port,
                            r.status(),
                            self.log()
                        );
                    }
                }
                Err(_) => foreign_since = None,
            }
            if started.elapsed() > STARTUP {
                panic!(
                    "wrangler dev did not answer within {STARTUP:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Running for WorkerdGateway {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for WorkerdGateway {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // wrangler is gone; make sure workerd is too.
                self.signal_group("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

edgegate_conformance::conformance!(Workerd::new());
