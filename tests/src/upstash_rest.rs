//! A real `redis-server` for tests, and an Upstash-compatible REST endpoint
//! in front of it, so the gateway's Upstash backend runs against real Redis
//! (real Lua, real `EVALSHA`/`NOSCRIPT`, real key expiry) on loopback.
//!
//! The endpoint speaks the part of Upstash's REST API the gateway uses, as
//! Upstash documents it: `POST /` with a command as a JSON array
//! (`["SET","k","v"]`) answers `{"result": …}`, or `{"error": "…"}` with
//! status 400; `POST /pipeline` with an array of commands answers an array
//! of those objects with status 200; a missing or wrong
//! `Authorization: Bearer <token>` answers 401 `{"error":"Unauthorized"}`.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

/// The server binary; `apt-get install redis-server` provides it.
pub const REDIS_SERVER: &str = "redis-server";

/// A `redis-server` on a free loopback port, without persistence; killed on
/// drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    tls: Option<Tls>,
}

/// What a server that speaks only TLS is started with.
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM certificate of the authority that signed it.
    pub ca: PathBuf,
    /// The password clients must give (`requirepass`).
    pub password: String,
}

impl RedisServer {
    /// Why no server can be started here (`redis-server` is not installed),
    /// if that is so.
    pub fn unavailable() -> Option<String> {
        match Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => None,
            _ => Some(format!(
                "`{REDIS_SERVER}` is not installed (apt-get install redis-server)"
            )),
        }
    }

    /// Starts a server and waits until it answers `PING`. Panics, naming
    /// the package to install, when `redis-server` is missing.
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// Starts a server that speaks only TLS, with `tls`'s certificate and
    /// password (clients need no certificate of their own).
    pub fn start_tls(tls: Tls) -> RedisServer {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<Tls>) -> RedisServer {
        if let Some(why) = Self::unavailable() {
            panic!("{why}");
        }
        // A port found free can be taken before the server binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(tls.clone()) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn try_start(tls: Option<Tls>) -> Result<RedisServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Self::spawn(port, dir.path(), tls.as_ref())?;
        let mut server = RedisServer {
            child,
            port,
            dir,
            tls,
        };
        server.wait_up()?;
        Ok(server)
    }

    fn spawn(port: u16, dir: &std::path::Path, tls: Option<&Tls>) -> Result<Child, String> {
        let mut command = Command::new(REDIS_SERVER);
        match tls {
            None => command.args(["--port", &port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())
    }

    /// Waits until the server answers `PING`.
    fn wait_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(format!("exited with {status}: {stderr}"));
            }
            if Instant::now() > deadline {
                return Err("no PONG within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers `PING` (a TLS server: whether it accepts
    /// connections, as it listens only once it is ready).
    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Kills the server (as a crash would: no shutdown, no save).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty server on the same port after [`kill`](Self::kill)
    /// (clients reconnect to the address they know). Panics when it does not
    /// come up within a few seconds.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger for a moment after the kill.
            let started =
                Self::spawn(self.port, self.dir.path(), self.tls.as_ref()).and_then(|child| {
                    self.child = child;
                    self.wait_up()
                });
            match started {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {why}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/`, or `rediss://:password@127.0.0.1:port/`
    /// for a TLS server.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}/", self.port),
            Some(tls) => format!("rediss://:{}@127.0.0.1:{}/", tls.password, self.port),
        }
    }

    /// Its (empty) working directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the REST endpoint treats requests (to test the gateway's failure
/// handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs the commands.
    Serve,
    /// Accepts the request and answers nothing for 10 s.
    Stall,
    /// Answers this status with a non-JSON body.
    Status(u16),
}

struct Shared {
    token: String,
    connection: redis::aio::MultiplexedConnection,
    /// 0 = serve, 1 = stall, else the status to answer.
    mode: AtomicU16,
    requests: AtomicUsize,
    commands: Mutex<Vec<String>>,
}

/// An Upstash-compatible REST endpoint over a [`RedisServer`]; stops when
/// dropped.
pub struct UpstashRest {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl UpstashRest {
    /// Serves `redis` on a free loopback port, accepting only `token`.
    pub fn start(redis: &RedisServer, token: &str) -> UpstashRest {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = redis::Client::open(redis.url()).expect("redis URL");
        let connection = runtime
            .block_on(client.get_multiplexed_async_connection())
            .expect("connecting to redis-server");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the REST endpoint");
        let addr = listener.local_addr().expect("REST endpoint address");
        let shared = Arc::new(Shared {
            token: token.to_string(),
            connection,
            mode: AtomicU16::new(0),
            requests: AtomicUsize::new(0),
            commands: Mutex::new(Vec::new()),
        });
        let state = Arc::clone(&shared);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        UpstashRest {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:port`, the value of `[upstash] url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how later requests are treated.
    pub fn set_mode(&self, mode: Mode) {
        let code = match mode {
            Mode::Serve => 0,
            Mode::Stall => 1,
            Mode::Status(s) => s,
        };
        self.shared.mode.store(code, Ordering::SeqCst);
    }

    /// HTTP requests received so far (authorised or not).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Names of the commands run so far, upper case, in order.
    pub fn commands(&self) -> Vec<String> {
        self.shared.commands.lock().expect("command log").clone()
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: &Json) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

async fn handle(state: &Shared, req: Request<Incoming>) -> Response<Body> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!("Bearer {}", state.token);
    let authorised = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorised {
        return reply(StatusCode::UNAUTHORIZED, &json!({"error": "Unauthorized"}));
    }
    match state.mode.load(Ordering::SeqCst) {
        0 => {}
        1 => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "stalled"}),
            );
        }
        status => {
            return Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"<html>unavailable</html>")))
                .expect("response");
        }
    }
    if req.method() != hyper::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "only POST with a JSON command is supported here"}),
        );
    }
    let pipeline = match req.uri().path() {
        "/" => false,
        "/pipeline" => true,
        other => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("ERR unsupported path {other}")}),
            );
        }
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(parsed) = serde_json::from_slice::<Json>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "ERR the body is not JSON"}),
        );
    };
    let mut connection = state.connection.clone();
    if pipeline {
        let Json::Array(commands) = parsed else {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "ERR a pipeline is an array of commands"}),
            );
        };
        let mut results = Vec::with_capacity(commands.len());
        for command in &commands {
            results.push(match run(state, &mut connection, command).await {
                Ok(result) => json!({ "result": result }),
                Err(error) => json!({ "error": error }),
            });
        }
        return reply(StatusCode::OK, &Json::Array(results));
    }
    match run(state, &mut connection, &parsed).await {
        Ok(result) => reply(StatusCode::OK, &json!({ "result": result })),
        Err(error) => reply(StatusCode::BAD_REQUEST, &json!({ "error": error })),
    }
}

/// Runs one JSON command; the error is Redis's own text (`NOSCRIPT No
/// matching script. Please use EVAL.`).
async fn run(
    state: &Shared,
    connection: &mut redis::aio::MultiplexedConnection,
    command: &Json,
) -> Result<Json, String> {
    let (name, cmd) = edgegate_upstash_wire::command(command).map_err(|e| e.to_string())?;
    state
        .commands
        .lock()
        .expect("command log")
        .push(name.to_ascii_uppercase());
    match cmd.query_async::<redis::Value>(connection).await {
        Ok(value) => Ok(edgegate_upstash_wire::reply(value)),
        Err(e) => Err(match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url: &str, token: &str, body: &str) -> (u16, Json) {
        let r = crate::client()
            .post(url)
            .header("authorization", format!("Bearer {token}"))
            .body(body.to_string())
            .send()
            .expect("request");
        let status = r.status().as_u16();
        (status, serde_json::from_str(&r.text().unwrap()).unwrap())
    }

    #[test]
    fn speaks_upstash_rest_over_real_redis() {
        let redis = RedisServer::start();
        let rest = UpstashRest::start(&redis, "tok");
        let url = rest.url();
        assert_eq!(
            post(&format!("{url}/"), "tok", r#"["SET","k","v","PX",60000]"#),
            (200, json!({"result": "OK"}))
        );
        assert_eq!(
            post(&format!("{url}/"), "tok", r#"["GET","k"]"#),
            (200, json!({"result": "v"}))
        );
        assert_eq!(
            post(&format!("{url}/"), "tok", r#"["EVAL","return {1,2}","0"]"#),
            (200, json!({"result": [1, 2]}))
        );
        let (status, body) = post(
            &format!("{url}/"),
            "tok",
            r#"["EVALSHA","0000000000000000000000000000000000000000","0"]"#,
        );
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().starts_with("NOSCRIPT"),
            "{body}"
        );
        assert_eq!(
            post(
                &format!("{url}/pipeline"),
                "tok",
                r#"[["INCR","n"],["INCR","k"],["GET","missing"]]"#
            ),
            (
                200,
                json!([
                    {"result": 1},
                    {"error": "ERR value is not an integer or out of range"},
                    {"result": null}
                ])
            )
        );
        assert_eq!(
            post(&format!("{url}/"), "wrong", r#"["GET","k"]"#),
            (401, json!({"error": "Unauthorized"}))
        );
        assert_eq!(
            rest.commands(),
            ["SET", "GET", "EVAL", "EVALSHA", "INCR", "INCR", "GET"]
        );
        assert_eq!(rest.requests(), 6);
        let dir = redis.dir().to_path_buf();
        drop(rest);
        drop(redis);
        assert!(!dir.exists(), "the server's directory is removed");
    }
}
