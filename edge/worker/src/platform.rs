//! [`Platform`] over the Workers runtime: `fetch()`, Durable Object stubs,
//! timers, `Date.now()` and `crypto.getRandomValues()`.

use std::pin::pin;
use std::time::Duration;

use edgegate_edge::{FetchError, FetchOptions, Platform};
use futures_util::future::{Either, select};
use http::HeaderValue;
use worker::{AbortSignal, Delay, Env, Fetch, web_sys};

use crate::body::{WorkerBody, js_message};
use crate::convert::{ConvertError, from_worker_response, to_web_request};

/// Durable Objects are addressed as `http://<class>.do.edgegate.internal/…`,
/// as on the wasmtime host, so objects see the same requests everywhere.
const DO_AUTHORITY_SUFFIX: &str = "do.edgegate.internal";

/// Carries the object's name (any text: `per-ip:203.0.113.9`).
const DO_NAME_HEADER: &str = "edgegate-do-name";

/// How long an object may take to answer, as on the wasmtime host.
const DO_TIMEOUT: Duration = Duration::from_secs(5);

/// The class whose binding tells whether this deployment has objects.
const HUB_CLASS: &str = "hub";

/// The gateway's platform inside one `fetch` event.
#[derive(Debug)]
pub struct Workers<'a> {
    env: &'a Env,
}

impl<'a> Workers<'a> {
    /// The platform for an event with these bindings.
    pub fn new(env: &'a Env) -> Self {
        Workers { env }
    }
}

impl Platform for Workers<'_> {
    type Body = WorkerBody;

    async fn fetch(
        &self,
        request: http::Request<WorkerBody>,
        options: FetchOptions,
    ) -> Result<http::Response<WorkerBody>, FetchError> {
        let watch = request.body().watch();
        let request = to_web_request(request).map_err(|e| FetchError::Other(e.to_string()))?;
        let controller =
            web_sys::AbortController::new().map_err(|e| FetchError::Other(js_message(&e)))?;
        if let Some(watch) = &watch {
            watch.abort_on_failure(controller.clone());
        }
        let fetch = Fetch::Request(request.into());
        // workerd connects inside `fetch()` and does not say when the
        // connection is up, so `timeout` bounds the whole wait for the
        // response head. Bodies are not watched between chunks: they stay
        // native streams that workerd pumps without this isolate.
        let signal = AbortSignal::from(controller.signal());
        let sent = pin!(fetch.send_with_signal(&signal));
        let deadline = pin!(Delay::from(options.timeout));
        let result = match select(sent, deadline).await {
            Either::Left((Ok(response), _)) => {
                from_worker_response(response).map_err(|e| FetchError::Other(e.to_string()))
            }
            Either::Left((Err(e), _)) => Err(classify(&e.to_string())),
            Either::Right(_) => {
                controller.abort();
                Err(FetchError::Timeout)
            }
        };
        // An answer to a request whose body failed is an answer to a
        // truncated request.
        if watch.is_some_and(|w| w.failed()) {
            return Err(FetchError::Other("the request body failed".into()));
        }
        result
    }

    async fn durable_object(
        &self,
        class: &str,
        name: &str,
        request: http::Request<WorkerBody>,
    ) -> Result<http::Response<WorkerBody>, FetchError> {
        let binding = binding_name(class)
            .ok_or_else(|| FetchError::Connect(format!("no Durable Object class {class}")))?;
        let stub = self
            .env
            .durable_object(binding)
            .and_then(|ns| ns.id_from_name(name)?.get_stub())
            .map_err(|e| FetchError::Connect(format!("Durable Object binding {binding}: {e}")))?;
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{class}.{DO_AUTHORITY_SUFFIX}{path}")
            .parse()
            .map_err(|_| FetchError::Other("invalid object address".into()))?;
        let name = HeaderValue::from_str(name)
            .map_err(|_| FetchError::Other("invalid object name".into()))?;
        parts.headers.insert(DO_NAME_HEADER, name);
        let request = to_web_request(http::Request::from_parts(parts, body))
            .map_err(|e| FetchError::Other(e.to_string()))?;
        let sent = pin!(stub.fetch_with_request(request.into()));
        let deadline = pin!(Delay::from(DO_TIMEOUT));
        match select(sent, deadline).await {
            Either::Left((Ok(response), _)) => from_worker_response(response)
                .map_err(|e: ConvertError| FetchError::Other(e.to_string())),
            Either::Left((Err(e), _)) => Err(classify(&e.to_string())),
            Either::Right(_) => Err(FetchError::Timeout),
        }
    }

    fn has_durable_objects(&self) -> bool {
        // The classes are always in this Worker; whether the deployment
        // binds them is up to its wrangler config.
        binding_name(HUB_CLASS).is_some_and(|b| self.env.durable_object(b).is_ok())
    }

    async fn sleep(&self, duration: Duration) {
        Delay::from(duration).await;
    }

    fn now_unix_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    fn monotonic_ns(&self) -> u64 {
        // Workers advance their clock only across I/O (a timing-attack
        // guard), which is exactly what latencies here measure.
        worker::Date::now().as_millis().saturating_mul(1_000_000)
    }

    fn log(&self, line: &str) {
        worker::console_log!("{line}");
    }

    fn fill_random(&self, buf: &mut [u8]) {
        // crypto.getRandomValues is present in every Workers isolate and
        // only refuses at global scope, which no event handler runs in.
        getrandom::fill(buf).expect("crypto.getRandomValues");
    }
}

/// Durable Object bindings (wrangler.toml) by class, the class written
/// in lower case without separators (`hub`, `ratelimiter`).
const BINDINGS: &[(&str, &str)] = &[("hub", "HUB"), ("ratelimiter", "RATE_LIMITER")];

/// The binding of a Durable Object class, however the class is spelled
/// (`RateLimiter`, `rate_limiter`, `ratelimiter`).
fn binding_name(class: &str) -> Option<&'static str> {
    let key: String = class
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    BINDINGS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, binding)| *binding)
}

/// Sorts a rejected `fetch()` by workerd's message, the only thing it
/// gives. workerd says "Network connection lost." both for a refused
/// connection and for one that broke before the response head; both are
/// worth another attempt, so the distinction does not matter here.
fn classify(message: &str) -> FetchError {
    let m = message.to_ascii_lowercase();
    if m.contains("connection lost") || m.contains("reset") || m.contains("disconnected") {
        FetchError::Reset(message.to_string())
    } else if m.contains("connect") || m.contains("dns") || m.contains("unreachable") {
        FetchError::Connect(message.to_string())
    } else {
        FetchError::Other(message.to_string())
    }
}
