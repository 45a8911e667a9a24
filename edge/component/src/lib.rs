//! The edge function as a WASIp2 `wasi:http/incoming-handler` component:
//! a thin adapter from WASI HTTP (through `wstd`) to [`edgegate_edge`].
//!
//! Configuration comes from the `EDGEGATE_CONFIG` environment variable (TOML
//! text), else the bundled `gateway.toml`; it is parsed once per instance,
//! so hosts that reuse instances (`edgegate serve`) pay for it once.
#![cfg(target_arch = "wasm32")]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use edgegate_edge::config::{CONFIG_VAR, Config, DEFAULT_CONFIG};
use edgegate_edge::{ClientInfo, EdgeBody, FetchError, FetchOptions, Gateway, Platform};
use http_body::Frame;
use wstd::http::error::ErrorCode;
use wstd::http::{Body, Client, Request, Response};

/// Header through which Spin and `edgegate serve` pass the peer address.
const CLIENT_ADDR: &str = "spin-client-addr";

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

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> wstd::http::Result<Response<WasiBody>> {
    let client = ClientInfo {
        ip: request
            .headers_mut()
            .remove(CLIENT_ADDR)
            .and_then(|v| v.to_str().ok().map(peer_ip)),
        scheme: request.uri().scheme_str().map(str::to_string),
    };
    let request = request.map(WasiBody);
    Ok(match gateway() {
        Ok(gateway) => gateway.handle(&Wasi, request, &client).await,
        Err(e) => Gateway::problem(
            500,
            "config_error",
            &format!("configuration error: {e}"),
            "-",
        ),
    })
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

/// A WASI HTTP body as the gateway sees it.
pub struct WasiBody(Body);

impl From<WasiBody> for Body {
    fn from(b: WasiBody) -> Body {
        b.0
    }
}

impl EdgeBody for WasiBody {
    fn from_bytes(bytes: Bytes) -> Self {
        WasiBody(Body::from(bytes))
    }

    fn limit(self, max: u64, exceeded: Arc<AtomicBool>) -> Self {
        WasiBody(Body::from_http_body(Limited {
            inner: self.0.into_boxed_body(),
            remaining: max,
            exceeded,
        }))
    }

    async fn read_to_end(mut self, max: usize) -> Result<Bytes, String> {
        let bytes = self.0.bytes_contents().await.map_err(|e| e.to_string())?;
        if bytes.len() > max {
            return Err(format!("body larger than {max} bytes"));
        }
        Ok(bytes)
    }
}

/// Fails the stream once more than `remaining` bytes went through.
struct Limited<B> {
    inner: B,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> http_body::Body for Limited<B>
where
    B: http_body::Body<Data = Bytes, Error = anyhow::Error> + Unpin,
{
    type Data = Bytes;
    type Error = anyhow::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, anyhow::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
            let len = data.map_or(0, |d| d.len() as u64);
            if len > self.remaining {
                self.exceeded.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(anyhow::anyhow!("request body too large"))));
            }
            self.remaining -= len;
        }
        Poll::Ready(frame)
    }
}

impl Platform for Wasi {
    type Body = WasiBody;

    async fn fetch(
        &self,
        request: http::Request<WasiBody>,
        options: FetchOptions,
    ) -> Result<http::Response<WasiBody>, FetchError> {
        let mut client = Client::new();
        client.set_connect_timeout(options.connect_timeout);
        client.set_first_byte_timeout(options.timeout);
        client.set_between_bytes_timeout(options.timeout);
        match client.send(request.map(|b| b.0)).await {
            Ok(response) => Ok(response.map(WasiBody)),
            Err(e) => Err(classify(&e)),
        }
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
        std::env::var(HOST_FEATURES).is_ok_and(|f| f.split(',').any(|f| f == "durable-objects"))
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

fn classify(e: &anyhow::Error) -> FetchError {
    match e.downcast_ref::<ErrorCode>() {
        Some(ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout) => {
            FetchError::Timeout
        }
        Some(
            ErrorCode::ConnectionRefused
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::DnsError(_)
            | ErrorCode::DnsTimeout,
        ) => FetchError::Connect(e.to_string()),
        Some(ErrorCode::ConnectionTerminated | ErrorCode::HttpResponseIncomplete) => {
            FetchError::Reset(e.to_string())
        }
        _ => FetchError::Other(e.to_string()),
    }
}
