//! The Durable Object classes `RateLimiter` and `Hub` on Cloudflare
//! Workers: `#[durable_object]` wrappers that map the runtime's events onto
//! the platform-free objects of [`edgegate_durable_objects`].
//!
//! This is an rlib: the edge Worker links it (`use … as _`), and
//! wasm-bindgen exports the classes from that Worker's module, where
//! wrangler.toml binds them (`RATE_LIMITER`, `HUB`).
#![cfg(target_arch = "wasm32")]

mod state;

use edgegate_durable_objects as objects;
use edgegate_durable_objects::{DurableObject as _, FetchOutcome, Message};
use http::header::{HeaderName, HeaderValue};
use wasm_bindgen::JsValue;
use worker::{
    DurableObject, Env, Request, Response, ResponseBuilder, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

pub use state::{CfSocket, CfState, CfStorage};

/// Close code reported when the close frame had no code.
const NO_STATUS: u16 = 1005;
/// Close code for a socket the runtime saw fail (no close frame).
const ABNORMAL_CLOSURE: u16 = 1006;
/// Close code reported for a failed TLS handshake.
const TLS_FAILURE: u16 = 1015;

/// The rate-limiter class (binding `RATE_LIMITER`).
#[durable_object]
pub struct RateLimiter {
    state: CfState,
    object: objects::RateLimiter,
}

impl DurableObject for RateLimiter {
    fn new(state: worker::State, _env: Env) -> Self {
        RateLimiter {
            state: CfState::new(state),
            object: objects::RateLimiter::new(),
        }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let request = from_worker_request(request).await?;
        respond(&self.state, self.object.fetch(&self.state, request).await)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        alarm(&self.state, &self.object).await
    }
}

/// The WebSocket hub class (binding `HUB`).
#[durable_object]
pub struct Hub {
    state: CfState,
    object: objects::Hub<CfSocket>,
}

impl DurableObject for Hub {
    fn new(state: worker::State, _env: Env) -> Self {
        Hub {
            state: CfState::new(state),
            object: objects::Hub::new(),
        }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let request = from_worker_request(request).await?;
        respond(&self.state, self.object.fetch(&self.state, request).await)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let message = match message {
            WebSocketIncomingMessage::String(text) => Message::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => Message::Binary(bytes),
        };
        let socket = self.state.socket(ws);
        self.object
            .websocket_message(&self.state, &socket, message)
            .await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        let socket = self.state.socket(ws.clone());
        let code = u16::try_from(code).unwrap_or(ABNORMAL_CLOSURE);
        self.object
            .websocket_close(&self.state, &socket, code, &reason)
            .await;
        // workerd leaves the closing handshake to the object: without a
        // close frame back, the client waits until it times out. Codes that
        // only report (no code given, abnormal, TLS) cannot be sent back;
        // a socket already closed refuses, which is fine.
        let _ = match code {
            NO_STATUS | ABNORMAL_CLOSURE | TLS_FAILURE => ws.close(None, None::<&str>),
            code => ws.close(Some(code), Some(&reason)),
        };
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        let socket = self.state.socket(ws);
        self.object
            .websocket_close(&self.state, &socket, ABNORMAL_CLOSURE, "")
            .await;
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        alarm(&self.state, &self.object).await
    }
}

/// Runs the alarm event; an error makes the runtime retry it.
async fn alarm<O: objects::DurableObject<CfState>>(
    state: &CfState,
    object: &O,
) -> worker::Result<Response> {
    object
        .alarm(state)
        .await
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    Response::empty()
}

/// The stub's request, body read whole: objects take small JSON bodies.
async fn from_worker_request(mut request: Request) -> worker::Result<objects::Request> {
    let raw = request.inner();
    let mut out = http::Request::new(Vec::new());
    *out.method_mut() = raw
        .method()
        .parse()
        .map_err(|_| worker::Error::RustError(format!("invalid method {}", raw.method())))?;
    *out.uri_mut() = raw
        .url()
        .parse()
        .map_err(|_| worker::Error::RustError(format!("invalid URL {}", raw.url())))?;
    for (name, value) in request.headers() {
        // JS header values are byte strings: one char per byte.
        let bytes: Vec<u8> = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&bytes),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    if raw.body().is_some() {
        *out.body_mut() = request.bytes().await?;
    }
    Ok(out)
}

/// Carries out what the object decided: a response, or accepting the
/// WebSocket upgrade as a hibernatable socket.
fn respond(state: &CfState, outcome: FetchOutcome) -> worker::Result<Response> {
    match outcome {
        FetchOutcome::Response(response) => {
            let (parts, body) = response.into_parts();
            let headers = worker::Headers::new();
            for (name, value) in &parts.headers {
                let value: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
                headers.append(name.as_str(), &value)?;
            }
            let builder = ResponseBuilder::new()
                .with_status(parts.status.as_u16())
                .with_headers(headers);
            Ok(if body.is_empty() {
                builder.empty()
            } else {
                builder.fixed(body)
            })
        }
        FetchOutcome::AcceptWebSocket { tags, attachment } => {
            let pair = WebSocketPair::new()?;
            let tags = tags.iter().map(|t| JsValue::from_str(t)).collect();
            // The raw call, so that tags the runtime refuses (too many, too
            // long) fail this request instead of panicking the object.
            state
                .raw()
                .as_raw()
                .accept_websocket_with_tags(pair.server.as_ref(), tags)
                .map_err(|e| worker::Error::RustError(state::js_message(&e)))?;
            // Stored before this event ends, so before any event for the
            // socket is delivered.
            objects::WebSocket::set_attachment(&state.socket(pair.server), attachment)
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            Response::from_websocket(pair.client)
        }
    }
}
