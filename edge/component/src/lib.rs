//! The edge function as a WASIp2 `wasi:http/incoming-handler` component:
//! a thin adapter from WASI HTTP to [`edgegate_edge`] (`transport` does the
//! HTTP plumbing, `wstd` the async runtime, clocks and random).
//!
//! Configuration comes from the `EDGEGATE_CONFIG` environment variable (TOML
//! text), else the bundled `gateway.toml`; it is parsed once per instance,
//! so hosts that reuse instances (`edgegate serve`) pay for it once.
#![cfg(target_arch = "wasm32")]

mod transport;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use edgegate_edge::config::{CONFIG_VAR, Config, DEFAULT_CONFIG};
use edgegate_edge::{ClientInfo, EdgeBody, FetchError, FetchOptions, Gateway, Platform};
use transport::Failure;
pub use transport::WasiBody;
use wasip2::http::types::{ErrorCode, IncomingRequest, ResponseOutparam};

/// Header through which Spin and `edgegate serve` pass the peer address.
const CLIENT_ADDR: &str = "spin-client-addr";
/// Targets `edgegate serve`'s active health checks found unhealthy.
const UNHEALTHY_TARGETS: &str = "edgegate-unhealthy-targets";

/// Durable Objects are addressed as `http://<class>.do.edgegate.internal/…`.
const DO_AUTHORITY_SUFFIX: &str = "do.edgegate.internal";

/// Lists what the host offers beyond WASI (`durable-objects`).
const HOST_FEATURES: &str = "EDGEGATE_HOST_FEATURES";

/// Carries the object's name (any text: `per-ip:203.0.113.9`).
const DO_NAME_HEADER: &str = "edgegate-do-name";

static GATEWAY: OnceLock<Result<Gateway, String>> = OnceLock::new();

/// Origin of `Platform::monotonic_ns` for this instance.
static EPOCH: OnceLock<wstd::time::Instant> = OnceLock::new();

fn gateway() -> &'static Result<Gateway, String> {
    GATEWAY.get_or_init(|| {
        let text = std::env::var(CONFIG_VAR).ok();
        let mut config =
            Config::parse(text.as_deref().unwrap_or(DEFAULT_CONFIG)).map_err(|e| e.to_string())?;
        config
            .resolve_secrets(&|name| std::env::var(name).ok())
            .map_err(|e| e.to_string())?;
        Gateway::new(config).map_err(|e| e.to_string())
    })
}

struct Server;

impl wasip2::exports::http::incoming_handler::Guest for Server {
    fn handle(request: IncomingRequest, outparam: ResponseOutparam) {
        wstd::runtime::block_on(async move {
            match transport::request_from_wasi(request) {
                Ok(request) => {
                    transport::respond(outparam, serve(request).await).await;
                    transport::linger().await;
                }
                // What the host passed in is not a request the gateway can
                // read (an authority-form CONNECT, a malformed Host): the
                // client's fault, not the edge's.
                Err(why) => {
                    let detail = format!("the request could not be read: {why}");
                    let problem = Gateway::problem(400, "bad_request", &detail, "-");
                    transport::respond(outparam, problem).await;
                }
            }
        })
    }
}

wasip2::http::proxy::export!(Server with_types_in wasip2);

async fn serve(mut request: http::Request<WasiBody>) -> http::Response<WasiBody> {
    let client = ClientInfo {
        ip: request
            .headers_mut()
            .remove(CLIENT_ADDR)
            .and_then(|v| v.to_str().ok().map(peer_ip)),
        scheme: request.uri().scheme_str().map(str::to_string),
        // Only a host that runs health checks may name unhealthy targets;
        // elsewhere the header is a client's and is dropped.
        unhealthy_targets: request
            .headers_mut()
            .remove(UNHEALTHY_TARGETS)
            .filter(|_| host_feature("health-checks"))
            .and_then(|v| v.to_str().ok().map(str::to_string)),
    };
    match gateway() {
        Ok(gateway) => gateway.handle(&Wasi, request, &client).await,
        Err(e) => Gateway::problem(
            500,
            "config_error",
            &format!("configuration error: {e}"),
            "-",
        ),
    }
}

/// `ip:port` or `[v6]:port` → ip.
fn peer_ip(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => addr.to_string(),
    }
}

/// The component's platform: WASI HTTP, clocks and random.
struct Wasi;

impl EdgeBody for WasiBody {
    fn from_bytes(bytes: Bytes) -> Self {
        WasiBody::full(bytes)
    }

    fn empty() -> Self {
        WasiBody::empty()
    }

    fn limit(self, max: u64, exceeded: Arc<AtomicBool>) -> Self {
        self.limited(max, exceeded)
    }

    async fn read_to_end(self, max: usize) -> Result<Bytes, String> {
        WasiBody::read_to_end(self, max).await
    }
}

impl Platform for Wasi {
    type Body = WasiBody;

    async fn fetch(
        &self,
        request: http::Request<WasiBody>,
        options: FetchOptions,
    ) -> Result<http::Response<WasiBody>, FetchError> {
        let timeouts = transport::Timeouts {
            connect: options.connect_timeout,
            first_byte: options.timeout,
            between_bytes: options.timeout,
        };
        transport::send(request, timeouts).await.map_err(classify)
    }

    async fn durable_object(
        &self,
        class: &str,
        name: &str,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, FetchError> {
        // The host intercepts this reserved authority and dispatches to the
        // live object in-process; hosts without objects refuse it.
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{class}.{DO_AUTHORITY_SUFFIX}{path}")
            .parse()
            .map_err(|_| FetchError::Other("invalid object address".into()))?;
        let name = http::HeaderValue::from_str(name)
            .map_err(|_| FetchError::Other("invalid object name".into()))?;
        parts.headers.insert(DO_NAME_HEADER, name);
        let options = FetchOptions {
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        self.fetch(http::Request::from_parts(parts, body), options)
            .await
    }

    fn has_durable_objects(&self) -> bool {
        // `edgegate serve` runs objects and says so; Spin and `wasmtime
        // serve` do not.
        host_feature("durable-objects")
    }

    fn has_redis(&self) -> bool {
        // `edgegate serve` with a `[redis]` section runs the commands sent
        // to `REDIS_AUTHORITY` on its own Redis connection.
        host_feature("redis")
    }

    fn wants_access_records(&self) -> bool {
        // `edgegate serve` turns them into metrics and trace spans.
        host_feature("access-records")
    }

    async fn sleep(&self, duration: Duration) {
        wstd::task::sleep(duration.into()).await;
    }

    fn now_unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn monotonic_ns(&self) -> u64 {
        wstd::time::Instant::now()
            .duration_since(*EPOCH.get_or_init(wstd::time::Instant::now))
            .as_nanos() as u64
    }

    fn log(&self, line: &str) {
        // Hosts collect the guest's standard output (Spin, wasmtime serve,
        // edgegate serve all pass it through).
        println!("{line}");
    }

    fn fill_random(&self, buf: &mut [u8]) {
        wstd::rand::get_random_bytes(buf);
    }
}

/// Whether the host lists `feature` in `EDGEGATE_HOST_FEATURES` (read once:
/// the environment of an instance does not change).
fn host_feature(feature: &str) -> bool {
    static FEATURES: OnceLock<Option<String>> = OnceLock::new();
    FEATURES
        .get_or_init(|| std::env::var(HOST_FEATURES).ok())
        .as_deref()
        .is_some_and(|f| f.split(',').any(|f| f == feature))
}

fn classify(failure: Failure) -> FetchError {
    let code = match &failure {
        Failure::Code(code) => code,
        Failure::Other(why) => return FetchError::Other(why.clone()),
    };
    match code {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => FetchError::Timeout,
        ErrorCode::ConnectionRefused
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::DnsError(_)
        | ErrorCode::DnsTimeout => FetchError::Connect(failure.to_string()),
        ErrorCode::ConnectionTerminated | ErrorCode::HttpResponseIncomplete => {
            FetchError::Reset(failure.to_string())
        }
        _ => FetchError::Other(failure.to_string()),
    }
}
