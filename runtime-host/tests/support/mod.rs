//! Shared helpers for tests that run the real `edgegate` binary: free
//! ports, a gateway process that is killed on drop, a tiny blocking HTTP/1.1
//! client, loopback origin servers and the test guest component; [`ws`]
//! has the WebSocket hub helpers.
//!
//! Use from a test file with `mod support;`.
#![allow(dead_code)]

pub mod ws;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_edgegate");

/// How long a started gateway gets to become ready (a cold compile of the
/// components under a loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Starts tried when the ports picked for a gateway were taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system temp dir.
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edgegate-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` inside it and returns the path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("writing a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Data directory shared by every gateway of a test run, so the compiled
/// component cache is warm after the first start.
pub fn shared_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("edgegate-test-data")
}

/// A data directory of its own (Durable Object storage starts empty) that
/// shares the compiled-component cache of [`shared_data_dir`], so starts
/// stay fast.
pub fn private_data_dir() -> TempDir {
    let dir = TempDir::new();
    let cache = shared_data_dir().join("cache");
    std::fs::create_dir_all(&cache).expect("creating the shared cache dir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&cache, dir.path().join("cache")).expect("linking the cache");
    dir
}

/// How to start a gateway.
pub struct GatewayBuilder {
    config: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    /// Runs the process on this CPU only (`taskset`).
    cpu: Option<u32>,
}

impl GatewayBuilder {
    /// Adds command-line arguments after `serve`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the gateway process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs `--component path`.
    pub fn component(self, path: &Path) -> Self {
        let path = path.display().to_string();
        self.args(["--component".to_string(), path])
    }

    /// Uses `dir` as `--data-dir` (default: [`shared_data_dir`]).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = dir.to_path_buf();
        self
    }

    /// Runs the process on one CPU (the first this test may use), as a
    /// one-core machine or container would.
    pub fn one_core(mut self) -> Self {
        let status =
            std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
        let cpu = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|list| list.trim().split([',', '-']).next()?.parse().ok())
            .expect("an allowed CPU in /proc/self/status");
        self.cpu = Some(cpu);
        self
    }

    /// Starts the process and waits until `/readyz` answers 200.
    pub fn start(self) -> Gateway {
        // A port that was free when picked may be taken by another test
        // before the process binds it; then the process starts again on
        // other ports.
        let mut attempts = 1;
        loop {
            let mut gateway = self.spawn();
            match gateway.ready_within(READY_TIMEOUT) {
                Ok(()) => return gateway,
                Err(why) if why.contains("Address already in use") && attempts < START_ATTEMPTS => {
                    attempts += 1
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// Starts the process without waiting.
    pub fn spawn(&self) -> Gateway {
        let dir = TempDir::new();
        let config = dir.write("gateway.toml", &self.config);
        let listen = free_port();
        let mut admin = free_port();
        while admin == listen {
            admin = free_port();
        }
        let mut command = match self.cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(BIN);
                taskset
            }
            None => Command::new(BIN),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env_remove("EDGEGATE_CONFIG")
            .env("EDGEGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("starting edgegate");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                }
            }));
        }
        Gateway {
            child,
            config,
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            output,
            readers,
            started,
            _dir: dir,
        }
    }
}

/// A running `edgegate serve`, killed on drop.
pub struct Gateway {
    child: Child,
    /// The `--config` file (tests may rewrite it).
    pub config: PathBuf,
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    output: Arc<Mutex<String>>,
    /// The threads that copy the process' output into `output`.
    readers: Vec<JoinHandle<()>>,
    /// When the process was started.
    pub started: Instant,
    _dir: TempDir,
}

impl Gateway {
    /// A gateway serving `config` (TOML text).
    pub fn builder(config: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            data_dir: shared_data_dir(),
            cpu: None,
        }
    }

    /// Starts a gateway for `config` and waits until it is ready.
    pub fn start(config: &str) -> Gateway {
        Gateway::builder(config).start()
    }

    /// Waits until `/readyz` is 200; panics with the output on timeout or exit.
    pub fn wait_ready(&mut self, timeout: Duration) {
        if let Err(why) = self.ready_within(timeout) {
            panic!("{why}");
        }
    }

    /// Waits until `/readyz` is 200; on timeout or exit, why, with the
    /// whole output.
    fn ready_within(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if try_get(self.admin, "/readyz", &[]).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The output is complete once its readers saw the pipes close.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Err(format!(
                    "gateway exited ({status}) before it was ready; output:\n{}",
                    self.output()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "gateway not ready in {timeout:?}; output:\n{}",
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Whether the process prints `needle` within `timeout` (its output is
    /// read by another thread, so a line may trail what the process sent
    /// over a socket).
    pub async fn printed_within(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(needle) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// GET `path` on the public listener.
    pub fn get(&self, path: &str) -> Reply {
        get(self.listen, path, &[])
    }

    /// GET `path` on the public listener with extra headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(self.listen, path, headers)
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case, repeated values joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// GET `path` from `addr`; panics on I/O errors.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    try_get(addr, path, headers).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// GET `path` from `addr` (one request per connection).
pub fn try_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    raw(addr, head.as_bytes())
}

/// Sends `request` bytes as-is and reads one response until the server
/// closes the connection.
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    parse_response(&bytes).ok_or_else(|| {
        std::io::Error::other(format!(
            "bad response: {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    })
}

/// Reads one response (`content-length` or chunked body) from a connection
/// that stays open (keep-alive).
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str, bytes: &[u8]| {
        std::io::Error::other(format!("{what}: {:?}", String::from_utf8_lossy(bytes)))
    };
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read_until(b'\n', &mut head)? == 0 {
            return Err(bad("connection closed within the head", &head));
        }
    }
    let mut reply = parse_head(&head).ok_or_else(|| bad("bad response head", &head))?;
    if is_chunked(&reply) {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = chunk_size(&line).ok_or_else(|| bad("bad chunk size", line.as_bytes()))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            reply.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = reply.header("content-length") {
        let length = length
            .parse()
            .map_err(|_| bad("bad content-length", length.as_bytes()))?;
        reply.body = vec![0; length];
        reader.read_exact(&mut reply.body)?;
    }
    Ok(reply)
}

/// A whole response as read until the server closed the connection.
fn parse_response(bytes: &[u8]) -> Option<Reply> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut reply = parse_head(&bytes[..split])?;
    reply.body = bytes[split + 4..].to_vec();
    if is_chunked(&reply) {
        reply.body = dechunk(&reply.body)?;
    }
    Some(reply)
}

/// Status line and headers; the body is left empty.
fn parse_head(head: &[u8]) -> Option<Reply> {
    let head = std::str::from_utf8(head).ok()?.trim_end();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        headers
            .entry(k)
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert(v);
    }
    Some(Reply {
        status,
        headers,
        body: Vec::new(),
    })
}

fn is_chunked(reply: &Reply) -> bool {
    reply
        .header("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"))
}

/// The size on a chunk's first line (extensions ignored).
fn chunk_size(line: &str) -> Option<usize> {
    usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = chunk_size(std::str::from_utf8(&data[..line_end]).ok()?)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A loopback HTTP/1.1 origin answering every request with `200` and a
/// fixed body, keeping connections alive; it counts connections and
/// requests.
pub struct Origin {
    /// Its address.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Origin {
    /// Starts an origin answering `body`.
    pub fn start(body: &'static str) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding origin");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                std::thread::spawn(move || serve_keep_alive(stream, body, &r));
            }
        });
        Origin {
            addr,
            connections,
            requests,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve_keep_alive(stream: TcpStream, body: &str, requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("cloning a socket"));
    let mut writer = stream;
    loop {
        // Request head; bodies are not expected (GET).
        let mut saw_line = false;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" && saw_line => break,
                Ok(_) => saw_line = true,
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A loopback server that accepts connections and never answers.
pub fn silent_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding silent origin");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    addr
}

/// The test guest component (`tests/guest`), built once per test run.
pub fn test_guest() -> PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target_dir = manifest_dir
                .parent()
                .expect("workspace")
                .join("target")
                .join("wasm");
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .current_dir(manifest_dir.join("tests").join("guest"))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--target-dir",
                ])
                .arg(&target_dir);
            for (key, _) in std::env::vars() {
                if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
                    cargo.env_remove(key);
                }
            }
            let status = cargo.status().expect("running cargo for the test guest");
            assert!(status.success(), "building tests/guest failed");
            target_dir.join("wasm32-wasip2/release/edgegate_test_guest.wasm")
        })
        .clone()
}

/// The objects component built with its `test-trap` feature (a hub
/// publish to the topic `trap` traps, to `spin` runs forever), built once
/// per test run.
pub fn trapping_objects_component() -> PathBuf {
    static COMPONENT: OnceLock<PathBuf> = OnceLock::new();
    COMPONENT
        .get_or_init(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace");
            let target_dir = workspace.join("target").join("wasm");
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .current_dir(workspace)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "-p",
                    "edgegate-durable-objects-component",
                    "--features",
                    "test-trap",
                    "--target-dir",
                ])
                .arg(&target_dir);
            for (key, _) in std::env::vars() {
                if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
                    cargo.env_remove(key);
                }
            }
            let status = cargo
                .status()
                .expect("running cargo for the objects component");
            assert!(
                status.success(),
                "building the test objects component failed"
            );
            target_dir.join("wasm32-wasip2/release/edgegate_durable_objects_component.wasm")
        })
        .clone()
}

/// A configuration with one open route `/` to `upstream` (an origin URL).
pub fn config_with_upstream(upstream: &str, server: &str) -> String {
    format!(
        r#"
[server]
{server}

[[upstreams]]
name = "origin"
targets = [{{ url = "{upstream}" }}]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
upstream = "origin"
"#
    )
}
