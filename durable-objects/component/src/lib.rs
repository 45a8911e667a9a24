//! The Durable Object classes of [`edgegate_durable_objects`] as a component
//! of the `edgegate:durable-object` world (`wit/durable-object.wit`), which
//! `edgegate serve` instantiates once per live object.
//!
//! A thin adapter: `init` picks the class, the events are forwarded, and the
//! library's `State` traits map onto the world's imports (see [`state`]).
//! The imports are synchronous, so every future the objects create is ready
//! on its first poll and a trivial executor runs them.
#![cfg(target_arch = "wasm32")]

mod state;

use std::cell::RefCell;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use edgegate_durable_objects::{self as objects, DurableObject as _, FetchOutcome, Message};
use http::header::{HeaderName, HeaderValue};

use crate::bindings::edgegate::durable_object::types;
use crate::bindings::exports::edgegate::durable_object::object::Guest;
use crate::state::{HostSocket, HostState};

mod bindings {
    wit_bindgen::generate!({
        world: "durable-object",
        path: "../../wit",
    });

    use super::Component;
    export!(Component);
}

/// Class name of the rate limiter (as the edge addresses it).
const RATE_LIMITER: &str = "ratelimiter";
/// Class name of the WebSocket hub.
const HUB: &str = "hub";

/// The object this instance runs.
enum Object {
    RateLimiter(objects::RateLimiter),
    Hub(objects::Hub<HostSocket>),
}

struct Instance {
    state: HostState,
    object: Object,
}

thread_local! {
    /// Set by `init`; an instance hosts exactly one object.
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

struct Component;

impl Guest for Component {
    fn init(class: String, _name: String) -> Result<(), String> {
        let object = match class.as_str() {
            RATE_LIMITER => Object::RateLimiter(objects::RateLimiter::new()),
            HUB => Object::Hub(objects::Hub::new()),
            other => return Err(format!("unknown Durable Object class {other:?}")),
        };
        INSTANCE.with(|slot| {
            *slot.borrow_mut() = Some(Instance {
                state: HostState,
                object,
            })
        });
        Ok(())
    }

    fn fetch(request: types::Request) -> types::FetchOutcome {
        #[cfg(feature = "test-trap")]
        if request.path == "/publish" {
            if contains(&request.body, br#""topic":"trap""#) {
                std::process::abort();
            }
            if contains(&request.body, br#""topic":"spin""#) {
                loop {
                    std::hint::black_box(());
                }
            }
        }
        let request = match to_http(request) {
            Ok(request) => request,
            Err(why) => return types::FetchOutcome::Response(error(400, &why)),
        };
        let outcome = with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.fetch(&i.state, request)),
            Object::Hub(o) => block_on(o.fetch(&i.state, request)),
        });
        match outcome {
            None => types::FetchOutcome::Response(error(500, "object not initialised")),
            Some(FetchOutcome::Response(response)) => {
                types::FetchOutcome::Response(from_http(response))
            }
            Some(FetchOutcome::AcceptWebSocket { tags, attachment }) => {
                types::FetchOutcome::AcceptWebsocket(types::Accept { tags, attachment })
            }
        }
    }

    fn websocket_message(socket: types::SocketId, message: types::Message) {
        let message = match message {
            types::Message::Text(text) => Message::Text(text),
            types::Message::Binary(bytes) => Message::Binary(bytes),
        };
        let socket = HostSocket(socket);
        with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.websocket_message(&i.state, &socket, message)),
            Object::Hub(o) => block_on(o.websocket_message(&i.state, &socket, message)),
        });
    }

    fn websocket_close(socket: types::SocketId, code: u16, reason: String) {
        let socket = HostSocket(socket);
        with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.websocket_close(&i.state, &socket, code, &reason)),
            Object::Hub(o) => block_on(o.websocket_close(&i.state, &socket, code, &reason)),
        });
    }

    fn peer_message(origin: String, message: String) {
        with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.peer_message(&i.state, &origin, &message)),
            Object::Hub(o) => block_on(o.peer_message(&i.state, &origin, &message)),
        });
    }

    fn peers_linked() {
        with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.peers_linked(&i.state)),
            Object::Hub(o) => block_on(o.peers_linked(&i.state)),
        });
    }

    fn alarm() -> Result<(), String> {
        let result = with_instance(|i| match &i.object {
            Object::RateLimiter(o) => block_on(o.alarm(&i.state)),
            Object::Hub(o) => block_on(o.alarm(&i.state)),
        });
        match result {
            Some(result) => result.map_err(|e| e.to_string()),
            None => Err("object not initialised".into()),
        }
    }
}

fn with_instance<T>(f: impl FnOnce(&Instance) -> T) -> Option<T> {
    INSTANCE.with(|slot| slot.borrow().as_ref().map(f))
}

/// Runs a future that cannot wait: the imports it may call all return at
/// once. A pending future would be a bug in this adapter; trapping resets
/// the object rather than spinning forever.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("a Durable Object future waited on nothing"),
    }
}

#[cfg(feature = "test-trap")]
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn to_http(request: types::Request) -> Result<objects::Request, String> {
    let mut out = http::Request::new(request.body);
    *out.method_mut() = request
        .method
        .parse()
        .map_err(|_| format!("invalid method {:?}", request.method))?;
    *out.uri_mut() = request
        .path
        .parse()
        .map_err(|_| format!("invalid path {:?}", request.path))?;
    for (name, value) in request.headers {
        // The host only passes headers that were valid HTTP already.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    Ok(out)
}

fn from_http(response: objects::Response) -> types::Response {
    let (parts, body) = response.into_parts();
    types::Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    }
}

fn error(status: u16, message: &str) -> types::Response {
    let body = format!("{{\"error\":{}}}", json_string(message));
    types::Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

/// `s` as a JSON string literal (the adapter has no JSON dependency).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
