//! The library's [`State`], [`Storage`] and [`WebSocket`] traits over
//! Cloudflare's Durable Object state, storage and hibernatable sockets.

use std::rc::Rc;

use edgegate_durable_objects::{Op, SocketError, State, Storage, StorageError, WebSocket};
use js_sys::{Map, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::WebSocketExt;
use worker::worker_sys::{DurableObjectStorage, WebSocketRequestResponsePair};

/// A Durable Object's state on Workers.
pub struct CfState {
    state: Rc<worker::State>,
    storage: CfStorage,
}

impl CfState {
    /// Wraps the state the runtime gives the object's constructor.
    pub fn new(state: worker::State) -> Self {
        let storage = CfStorage(state.storage());
        CfState {
            state: Rc::new(state),
            storage,
        }
    }

    /// The runtime's state (to accept sockets).
    pub fn raw(&self) -> &worker::State {
        &self.state
    }

    /// A handle on `socket` with access to its tags.
    pub fn socket(&self, socket: worker::WebSocket) -> CfSocket {
        CfSocket {
            socket,
            state: self.state.clone(),
        }
    }
}

impl State for CfState {
    type Storage = CfStorage;
    type Socket = CfSocket;

    fn storage(&self) -> &CfStorage {
        &self.storage
    }

    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StorageError> {
        let at = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
        await_promise(self.storage.raw().set_alarm(at, Object::new())).await?;
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<u64>, StorageError> {
        let at = await_promise(self.storage.raw().get_alarm(Object::new())).await?;
        Ok(at.as_f64().map(|ms| ms as u64))
    }

    async fn delete_alarm(&self) -> Result<(), StorageError> {
        await_promise(self.storage.raw().delete_alarm(Object::new())).await?;
        Ok(())
    }

    fn get_websockets(&self, tag: Option<&str>) -> Vec<CfSocket> {
        let sockets = match tag {
            Some(tag) => self.state.get_websockets_with_tag(tag),
            None => self.state.get_websockets(),
        };
        sockets.into_iter().map(|s| self.socket(s)).collect()
    }

    fn set_auto_response(&self, request: &str, response: &str) {
        // Both are short constant strings: the runtime accepts them.
        if let Ok(pair) = WebSocketRequestResponsePair::new(request, response) {
            self.state.set_websocket_auto_response(&pair);
        }
    }
}

/// Largest key the runtime stores (2 KiB).
const MAX_KEY_BYTES: usize = 2048;
/// Largest value of a SQLite-backed object (2 MB).
const MAX_VALUE_BYTES: usize = 2_000_000;

/// The object's transactional storage; values are stored as `Uint8Array`s
/// (structured clone keeps the bytes as they are).
pub struct CfStorage(worker::Storage);

impl CfStorage {
    fn raw(&self) -> &DurableObjectStorage {
        self.0.as_raw()
    }
}

impl Storage for CfStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = await_promise(self.raw().get(key)).await?;
        Ok((!value.is_undefined()).then(|| bytes_of(&value)))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let promise = self.raw().put(key, Uint8Array::from(&value[..]).into());
        await_promise(promise)
            .await
            .map_err(|e| too_large_for(e, key))?;
        Ok(())
    }

    async fn put_unconfirmed(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let options = Object::new();
        Reflect::set(&options, &"allowUnconfirmed".into(), &JsValue::TRUE)
            .map_err(storage_error)?;
        let promise = self.raw().unchecked_ref::<PutWithOptions>().put(
            key,
            Uint8Array::from(&value[..]).into(),
            &options,
        );
        await_promise(promise)
            .await
            .map_err(|e| too_large_for(e, key))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let existed = await_promise(self.raw().delete(key)).await?;
        Ok(existed.as_bool().unwrap_or(false))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let options = Object::new();
        Reflect::set(&options, &"prefix".into(), &prefix.into()).map_err(storage_error)?;
        let map: Map = await_promise(self.raw().list_with_options(options))
            .await?
            .unchecked_into();
        let mut out = Vec::with_capacity(map.size() as usize);
        // The runtime returns keys in ascending order, as the trait promises.
        map.for_each(&mut |value, key| {
            out.push((key.as_string().unwrap_or_default(), bytes_of(&value)));
        });
        Ok(out)
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        // Writes issued with no `await` between them are committed as one
        // atomic batch (Cloudflare's write coalescing), so every call is
        // made first and the promises awaited after.
        // What the runtime would refuse is refused before anything is
        // written, so that a batch is never cut short.
        for op in &ops {
            let (key, size) = match op {
                Op::Put { key, value } => (key, value.len()),
                Op::Delete { key } => (key, 0),
            };
            if key.len() > MAX_KEY_BYTES || size > MAX_VALUE_BYTES {
                return Err(StorageError::TooLarge { key: key.clone() });
            }
        }
        let mut pending = Vec::with_capacity(ops.len());
        for op in &ops {
            let (key, promise) = match op {
                Op::Put { key, value } => (
                    key,
                    self.raw().put(key, Uint8Array::from(&value[..]).into()),
                ),
                Op::Delete { key } => (key, self.raw().delete(key)),
            };
            pending.push((key, promise));
        }
        let mut first_error = None;
        for (key, promise) in pending {
            if let Err(e) = await_promise(promise).await {
                first_error.get_or_insert(too_large_for(e, key));
            }
        }
        match first_error {
            None => Ok(()),
            Some(StorageError::TooLarge { key }) => Err(StorageError::TooLarge { key }),
            Some(e) => Err(StorageError::Aborted(e.to_string())),
        }
    }
}

/// A hibernatable WebSocket accepted by this object.
#[derive(Clone)]
pub struct CfSocket {
    socket: worker::WebSocket,
    state: Rc<worker::State>,
}

impl WebSocket for CfSocket {
    fn send_text(&self, text: &str) -> Result<(), SocketError> {
        self.socket
            .send_with_str(text)
            .map_err(|_| SocketError::Closed)
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), SocketError> {
        self.socket
            .close(Some(code), Some(reason))
            .map_err(|_| SocketError::Closed)
    }

    fn tags(&self) -> Vec<String> {
        self.state.get_tags(&self.socket)
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        let value = self.socket.as_ref().deserialize_attachment().ok()?;
        (!value.is_null() && !value.is_undefined()).then(|| bytes_of(&value))
    }

    fn set_attachment(&self, value: Vec<u8>) -> Result<(), SocketError> {
        let size = value.len();
        self.socket
            .as_ref()
            .serialize_attachment(Uint8Array::from(&value[..]).into())
            .map_err(|e| {
                let message = js_message(&e);
                if message.contains("exceed") || message.contains("too large") {
                    SocketError::AttachmentTooLarge { size }
                } else {
                    SocketError::Other(message)
                }
            })
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// The storage seen through `put(key, value, options)`, which
    /// worker-sys does not bind.
    #[wasm_bindgen(extends = Object)]
    type PutWithOptions;

    #[wasm_bindgen(method, catch)]
    fn put(
        this: &PutWithOptions,
        key: &str,
        value: JsValue,
        options: &Object,
    ) -> Result<Promise, JsValue>;
}

/// Awaits a storage call, which may also throw before giving a promise.
async fn await_promise(promise: Result<Promise, JsValue>) -> Result<JsValue, StorageError> {
    JsFuture::from(promise.map_err(storage_error)?)
        .await
        .map_err(storage_error)
}

fn storage_error(e: JsValue) -> StorageError {
    StorageError::Unavailable(js_message(&e))
}

/// The runtime refuses oversized keys and values with a message saying so.
fn too_large_for(e: StorageError, key: &str) -> StorageError {
    match &e {
        StorageError::Unavailable(m) if m.contains("exceed") || m.contains("too large") => {
            StorageError::TooLarge {
                key: key.to_string(),
            }
        }
        _ => e,
    }
}

fn bytes_of(value: &JsValue) -> Vec<u8> {
    match value.dyn_ref::<Uint8Array>() {
        Some(array) => array.to_vec(),
        None => Uint8Array::new(value).to_vec(),
    }
}

pub(crate) fn js_message(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}
