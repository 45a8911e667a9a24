//! The edge function as a Cloudflare Worker: a thin adapter from
//! workers-rs to [`edgegate_edge`], built by `worker-build` and served by
//! workerd (`wrangler dev`, `wrangler deploy`).
//!
//! Configuration comes from the `EDGEGATE_CONFIG` variable (TOML text), else
//! the bundled `gateway.toml`; `env:NAME` secrets resolve from the Worker's
//! vars and secrets. It is parsed once per isolate.
#![cfg(target_arch = "wasm32")]

mod body;
mod convert;
mod platform;

use std::cell::RefCell;
use std::rc::Rc;

use edgegate_edge::config::{CONFIG_VAR, Config, ConfigError, DEFAULT_CONFIG};
use edgegate_edge::{ClientInfo, Gateway};
use worker::{Context, Env, event, web_sys};

// Links the Durable Object classes into this Worker: wasm-bindgen exports
// them from here, and wrangler.toml binds them.
use edgegate_durable_objects_worker as _;

pub use body::WorkerBody;
pub use convert::ConvertError;
pub use platform::Workers;

/// Header through which Cloudflare (and `wrangler dev`) pass the peer address.
const CLIENT_IP: &str = "cf-connecting-ip";

/// The gateway of this isolate and the configuration text it was built from.
type Compiled = (String, Rc<Result<Gateway, ConfigError>>);

thread_local! {
    static GATEWAY: RefCell<Option<Compiled>> = const { RefCell::new(None) };
}

/// The gateway for the configuration `env` carries, compiled on first use.
/// Keyed by the text: a changed variable (a new `wrangler dev --var`) gets a
/// new gateway, the same one costs a string comparison.
fn gateway(env: &Env) -> Rc<Result<Gateway, ConfigError>> {
    let text = env.var(CONFIG_VAR).ok().map(|v| v.to_string());
    let text = text.as_deref().unwrap_or(DEFAULT_CONFIG);
    GATEWAY.with(|cell| {
        if let Some((key, gateway)) = &*cell.borrow()
            && key == text
        {
            return gateway.clone();
        }
        let gateway = Rc::new(compile(text, env));
        *cell.borrow_mut() = Some((text.to_string(), gateway.clone()));
        gateway
    })
}

fn compile(text: &str, env: &Env) -> Result<Gateway, ConfigError> {
    let mut config = Config::parse(text)?;
    // `wrangler secret put` values and `[vars]` are the same kind of string
    // binding, so one lookup finds either.
    config.resolve_secrets(&|name| env.secret(name).ok().map(|s| s.to_string()))?;
    Gateway::new(config)
}

#[event(fetch)]
async fn fetch(
    request: worker::Request,
    env: Env,
    _ctx: Context,
) -> worker::Result<web_sys::Response> {
    let gateway = gateway(&env);
    let gateway = match &*gateway {
        Ok(g) => g,
        Err(e) => {
            let detail = format!("configuration error: {e}");
            return respond(Gateway::problem(500, "config_error", &detail, "-"));
        }
    };
    let client = ClientInfo {
        ip: request.headers().get(CLIENT_IP).ok().flatten(),
        scheme: request.url().ok().map(|u| u.scheme().to_string()),
        // No active health checks on Workers: the circuit breaker alone.
        unhealthy_targets: None,
    };
    let response = match convert::from_worker_request(&request) {
        Ok(request) => gateway.handle(&Workers::new(&env), request, &client).await,
        Err(e) => Gateway::problem(400, "bad_request", &e.to_string(), "-"),
    };
    respond(response)
}

/// The response for the runtime; one the runtime refuses to build becomes
/// a problem document, keeping the request id.
fn respond(response: http::Response<WorkerBody>) -> worker::Result<web_sys::Response> {
    let request_id = response
        .headers()
        .get(edgegate_edge::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    convert::to_web_response(response)
        .or_else(|e| {
            let detail = format!("the response could not be sent: {e}");
            convert::to_web_response(Gateway::problem(
                500,
                "response_error",
                &detail,
                &request_id,
            ))
        })
        .map_err(|e| worker::Error::RustError(e.to_string()))
}
