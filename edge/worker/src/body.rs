//! Bodies as the gateway sees them on Workers.
//!
//! A body that comes from the runtime (a client request, an origin response)
//! stays a native `ReadableStream` and is handed back to the runtime as is:
//! its bytes never enter Wasm memory, and workerd can pump it from socket to
//! socket by itself after the handler returns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use edgegate_edge::EdgeBody;
use futures_util::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortController, ReadableStream};

/// A request or response body on Workers.
#[derive(Debug)]
pub struct WorkerBody {
    repr: Repr,
    /// Set on bodies wrapped by [`EdgeBody::limit`].
    watch: Option<Rc<Watch>>,
}

#[derive(Debug)]
enum Repr {
    Empty,
    Bytes(Bytes),
    Stream(ReadableStream),
}

/// Tells a `fetch()` that its request body failed, and aborts it.
///
/// workerd ends an upload whose JS stream errors as if the body were
/// complete (a chunked body gets its final empty chunk) and then resolves
/// `fetch()` with the origin's answer to the truncated request. So the
/// stream aborts the call before it reports the error, and the caller
/// treats the call as failed whatever the origin answered.
#[derive(Debug, Default)]
pub struct Watch {
    failed: Cell<bool>,
    abort: RefCell<Option<AbortController>>,
}

impl Watch {
    /// Aborts `controller`'s call if the body fails.
    pub fn abort_on_failure(&self, controller: AbortController) {
        *self.abort.borrow_mut() = Some(controller);
    }

    /// Whether the body failed.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    fn fail(&self) {
        self.failed.set(true);
        if let Some(controller) = self.abort.borrow_mut().take() {
            controller.abort();
        }
    }
}

impl WorkerBody {
    fn new(repr: Repr) -> Self {
        WorkerBody { repr, watch: None }
    }

    /// A body streamed by the runtime (absent: empty).
    pub fn from_stream(stream: Option<ReadableStream>) -> Self {
        WorkerBody::new(stream.map_or(Repr::Empty, Repr::Stream))
    }

    /// Whether the body is known to carry no bytes.
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Empty => true,
            Repr::Bytes(b) => b.is_empty(),
            Repr::Stream(_) => false,
        }
    }

    /// The failure watch of a limited body.
    pub fn watch(&self) -> Option<Rc<Watch>> {
        self.watch.clone()
    }

    /// What `new Request(…, { body })` takes.
    pub fn into_js(self) -> Option<JsValue> {
        match self.repr {
            Repr::Empty => None,
            Repr::Bytes(b) => Some(Uint8Array::from(&b[..]).into()),
            Repr::Stream(s) => Some(s.into()),
        }
    }

    /// A stream of this body (native streams are returned as they are).
    fn into_stream(self) -> ReadableStream {
        match self.repr {
            Repr::Stream(s) => s,
            Repr::Empty => js_stream(futures_util::stream::empty()),
            Repr::Bytes(b) => {
                let chunk: JsValue = Uint8Array::from(&b[..]).into();
                js_stream(futures_util::stream::once(async move { Ok(chunk) }))
            }
        }
    }
}

impl EdgeBody for WorkerBody {
    fn from_bytes(bytes: Bytes) -> Self {
        WorkerBody::new(if bytes.is_empty() {
            Repr::Empty
        } else {
            Repr::Bytes(bytes)
        })
    }

    fn limit(self, max: u64, exceeded: Arc<AtomicBool>) -> Self {
        if self.is_empty() {
            return self;
        }
        let watch = Rc::new(Watch::default());
        let on_chunk = watch.clone();
        let mut remaining = max;
        // Chunks stay JS values: only their lengths are read, so the bytes
        // are not copied into Wasm memory and back.
        let chunks = wasm_streams::ReadableStream::from_raw(self.into_stream())
            .into_stream()
            .map(move |chunk| {
                let chunk = chunk.inspect_err(|_| on_chunk.fail())?;
                let len = byte_length(&chunk);
                if len > remaining {
                    exceeded.store(true, Ordering::Relaxed);
                    on_chunk.fail();
                    return Err(js_sys::Error::new("request body too large").into());
                }
                remaining -= len;
                Ok(chunk)
            });
        WorkerBody {
            repr: Repr::Stream(js_stream(chunks)),
            watch: Some(watch),
        }
    }

    async fn read_to_end(self, max: usize) -> Result<Bytes, String> {
        let stream = match self.repr {
            Repr::Empty => return Ok(Bytes::new()),
            Repr::Bytes(b) if b.len() > max => return Err(too_large(max)),
            Repr::Bytes(b) => return Ok(b),
            Repr::Stream(s) => s,
        };
        let mut chunks = wasm_streams::ReadableStream::from_raw(stream).into_stream();
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| js_message(&e))?;
            let array = match chunk.dyn_into::<Uint8Array>() {
                Ok(a) => a,
                Err(other) => Uint8Array::new(&other),
            };
            if out.len() + array.length() as usize > max {
                return Err(too_large(max));
            }
            let start = out.len();
            out.resize(start + array.length() as usize, 0);
            array.copy_to(&mut out[start..]);
        }
        Ok(Bytes::from(out))
    }
}

/// What the response constructor takes: nothing, bytes or a stream.
pub enum ResponseBody {
    /// No body.
    Empty,
    /// Bytes produced by the gateway (problem documents).
    Bytes(Bytes),
    /// A stream, usually an origin's native one.
    Stream(ReadableStream),
}

impl From<WorkerBody> for ResponseBody {
    fn from(body: WorkerBody) -> Self {
        match body.repr {
            Repr::Empty => ResponseBody::Empty,
            Repr::Bytes(b) => ResponseBody::Bytes(b),
            Repr::Stream(s) => ResponseBody::Stream(s),
        }
    }
}

/// A JS `ReadableStream` pulling from a Rust stream of JS chunks.
fn js_stream(
    chunks: impl futures_util::Stream<Item = Result<JsValue, JsValue>> + 'static,
) -> ReadableStream {
    wasm_streams::ReadableStream::from_stream(chunks).into_raw()
}

/// Byte length of a stream chunk (a typed array or view, or an `ArrayBuffer`).
fn byte_length(chunk: &JsValue) -> u64 {
    if let Some(view) = chunk.dyn_ref::<Uint8Array>() {
        return view.byte_length().into();
    }
    if let Some(buffer) = chunk.dyn_ref::<ArrayBuffer>() {
        return buffer.byte_length().into();
    }
    js_sys::Reflect::get(chunk, &JsValue::from_str("byteLength"))
        .ok()
        .and_then(|v| v.as_f64())
        .map_or(0, |n| n as u64)
}

fn too_large(max: usize) -> String {
    format!("body larger than {max} bytes")
}

/// The message of a thrown JS value.
pub(crate) fn js_message(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}
