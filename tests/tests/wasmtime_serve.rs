//! The conformance scenarios on plain `wasmtime serve`, running the very
//! edge component that `edgegate serve` embeds and `spin.toml` deploys.
//!
//! Needs a `wasmtime` CLI on PATH (`cargo install wasmtime-cli --version
//! 48.0.8 --locked`) and the built component (any `cargo build --release`
//! builds it). Without them the scenarios are skipped with the reason
//! printed, unless `EDGEGATE_REQUIRE_WASMTIME=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use edgegate_conformance::{Running, Target};

struct WasmtimeServe {
    component: PathBuf,
}

impl WasmtimeServe {
    fn new() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        WasmtimeServe {
            component: root
                .join("target/wasm/wasm32-wasip2/wasm-release/edgegate_edge_component.wasm"),
        }
    }
}

struct Served {
    child: Child,
    port: u16,
}

impl Running for Served {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target for WasmtimeServe {
    fn name(&self) -> &'static str {
        "wasmtime serve"
    }

    fn unavailable(&self) -> Option<String> {
        let missing = if Command::new("wasmtime").arg("--version").output().is_err() {
            Some(
                "no `wasmtime` on PATH (cargo install wasmtime-cli --version 48.0.8 --locked)"
                    .to_string(),
            )
        } else if !self.component.exists() {
            Some(format!(
                "{} is missing (cargo build --release)",
                self.component.display()
            ))
        } else {
            None
        };
        edgegate_conformance::skip_unless_required("EDGEGATE_REQUIRE_WASMTIME", missing)
    }

    fn keeps_instance_state(&self) -> bool {
        // `wasmtime serve` instantiates the component for every request.
        false
    }

    fn knows_client_address(&self) -> bool {
        // wasi:http gives a guest no peer address, and `wasmtime serve`
        // adds no header for it (Spin and `edgegate serve` do).
        false
    }

    fn start(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running> {
        // Port 0, and the port read from what `wasmtime serve` prints: a
        // port picked free beforehand may be taken by a parallel test's
        // server before this one binds it, and then this test would talk to
        // that server.
        let mut command = Command::new("wasmtime");
        command
            .args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
            .arg("--env")
            .arg(format!("EDGEGATE_CONFIG={config}"));
        for (name, value) in env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        let mut child = command
            .arg(&self.component)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasmtime serve");
        let stderr = child.stderr.take().expect("piped");
        let (port_tx, port_rx) = mpsc::channel();
        // Reads the address, then passes the rest on (guest traps, errors)
        // to this test's output.
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("Serving HTTP on http://127.0.0.1:")
                    .and_then(|rest| rest.trim_end_matches('/').parse::<u16>().ok())
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                } else {
                    eprintln!("wasmtime serve: {line}");
                }
            }
        });
        let mut served = Served { child, port: 0 };
        served.port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("wasmtime serve printed the address it serves on");
        Box::new(served)
    }
}

edgegate_conformance::conformance!(WasmtimeServe::new());
