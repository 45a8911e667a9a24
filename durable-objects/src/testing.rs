//! An in-memory [`State`] for tests (this crate's and the adapters'): a
//! clock the test sets, a `BTreeMap` store that can be made to fail, and
//! sockets that record what the object sent and how it closed them.
//!
//! Nothing here ever waits, so [`block_on`] runs any of the objects'
//! futures to completion.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::object::{DurableObject, FetchOutcome};
use crate::state::{Op, SocketError, State, Storage, StorageError, WebSocket};

/// Runs a future that never waits (everything over [`MemoryState`]).
///
/// # Panics
///
/// When the future is not ready after one poll.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("block_on: the future waited, which MemoryState never does"),
    }
}

/// The in-memory store. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    entries: Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
    failing: Rc<Cell<bool>>,
    writes: Rc<Cell<u64>>,
}

impl MemoryStorage {
    /// Makes every call fail with [`StorageError::Unavailable`] (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.set(failing);
    }

    /// Writes (puts, deletes, transactions) that succeeded so far.
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// A copy of everything stored.
    pub fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        self.entries.borrow().clone()
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.failing.get() {
            Err(StorageError::Unavailable("storage set to fail".into()))
        } else {
            Ok(())
        }
    }

    fn wrote(&self) {
        self.writes.set(self.writes.get() + 1);
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check()?;
        Ok(self.entries.borrow().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.check()?;
        self.entries.borrow_mut().insert(key.to_string(), value);
        self.wrote();
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        self.check()?;
        let existed = self.entries.borrow_mut().remove(key).is_some();
        self.wrote();
        Ok(existed)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.check()?;
        Ok(self
            .entries
            .borrow()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        self.check()?;
        let mut entries = self.entries.borrow_mut();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    entries.insert(key, value);
                }
                Op::Delete { key } => {
                    entries.remove(&key);
                }
            }
        }
        self.wrote();
        Ok(())
    }
}

#[derive(Debug)]
struct SocketInner {
    id: u64,
    tags: Vec<String>,
    attachment: RefCell<Option<Vec<u8>>>,
    sent: RefCell<Vec<String>>,
    closed: RefCell<Option<(u16, String)>>,
}

/// An accepted in-memory socket. Clones are handles on the same socket.
#[derive(Debug, Clone)]
pub struct MemorySocket {
    inner: Rc<SocketInner>,
}

impl PartialEq for MemorySocket {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl MemorySocket {
    /// Order of acceptance, from 0.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Every frame the object sent, oldest first.
    pub fn sent(&self) -> Vec<String> {
        self.inner.sent.borrow().clone()
    }

    /// The frames sent since the last call, oldest first.
    pub fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.sent.borrow_mut())
    }

    /// The frames sent since the last call, parsed.
    pub fn take_json(&self) -> Vec<serde_json::Value> {
        self.take_sent()
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    /// How the socket was closed, by either side.
    pub fn closed(&self) -> Option<(u16, String)> {
        self.inner.closed.borrow().clone()
    }

    /// Whether the socket is still open.
    pub fn is_open(&self) -> bool {
        self.inner.closed.borrow().is_none()
    }

    /// Simulates the client closing: the socket leaves
    /// [`State::get_websockets`]; the test then delivers `websocket_close`.
    pub fn client_close(&self, code: u16, reason: &str) {
        let mut closed = self.inner.closed.borrow_mut();
        if closed.is_none() {
            *closed = Some((code, reason.to_string()));
        }
    }
}

impl WebSocket for MemorySocket {
    fn send_text(&self, text: &str) -> Result<(), SocketError> {
        if !self.is_open() {
            return Err(SocketError::Closed);
        }
        self.inner.sent.borrow_mut().push(text.to_string());
        Ok(())
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), SocketError> {
        if !self.is_open() {
            return Err(SocketError::Closed);
        }
        *self.inner.closed.borrow_mut() = Some((code, reason.to_string()));
        Ok(())
    }

    fn tags(&self) -> Vec<String> {
        self.inner.tags.clone()
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        self.inner.attachment.borrow().clone()
    }

    fn set_attachment(&self, value: Vec<u8>) -> Result<(), SocketError> {
        if value.len() > crate::hub::MAX_ATTACHMENT_BYTES {
            return Err(SocketError::AttachmentTooLarge { size: value.len() });
        }
        *self.inner.attachment.borrow_mut() = Some(value);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Inner {
    now_ms: Cell<u64>,
    storage: MemoryStorage,
    alarm: Cell<Option<u64>>,
    sockets: RefCell<Vec<MemorySocket>>,
    /// Sockets by tag, so that tag look-ups stay cheap with many sockets.
    tagged: RefCell<BTreeMap<String, Vec<MemorySocket>>>,
    auto_response: RefCell<Option<(String, String)>>,
    /// Whether the object has peers; what it published to them.
    peers: Cell<bool>,
    published: RefCell<Vec<String>>,
}

/// The in-memory state. Clones share everything, so a test can drop an
/// object, create a new one over the same state, and see what survives
/// eviction.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    inner: Rc<Inner>,
}

impl MemoryState {
    /// A state whose clock reads `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        let state = Self::default();
        state.set_now(now_ms);
        state
    }

    /// Sets the clock (it may go backwards).
    pub fn set_now(&self, now_ms: u64) {
        self.inner.now_ms.set(now_ms);
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.set_now(self.inner.now_ms.get().saturating_add(ms));
    }

    /// The scheduled alarm.
    pub fn alarm(&self) -> Option<u64> {
        self.inner.alarm.get()
    }

    /// Delivers the alarm to `object` as a platform does: only when it is
    /// due, clearing it first. `Ok(false)` when no alarm was due.
    pub fn fire_alarm<O: DurableObject<Self>>(&self, object: &O) -> Result<bool, StorageError> {
        match self.inner.alarm.get() {
            Some(at) if at <= self.now_ms() => {
                self.inner.alarm.set(None);
                block_on(object.alarm(self)).map(|()| true)
            }
            _ => Ok(false),
        }
    }

    /// The registered auto-response, `(request, response)`.
    pub fn auto_response(&self) -> Option<(String, String)> {
        self.inner.auto_response.borrow().clone()
    }

    /// Does what an adapter does with [`FetchOutcome::AcceptWebSocket`].
    pub fn accept(&self, tags: Vec<String>, attachment: Vec<u8>) -> MemorySocket {
        let mut sockets = self.inner.sockets.borrow_mut();
        let socket = MemorySocket {
            inner: Rc::new(SocketInner {
                id: sockets.len() as u64,
                tags,
                attachment: RefCell::new(Some(attachment)),
                sent: RefCell::new(Vec::new()),
                closed: RefCell::new(None),
            }),
        };
        sockets.push(socket.clone());
        let mut tagged = self.inner.tagged.borrow_mut();
        for tag in &socket.inner.tags {
            tagged.entry(tag.clone()).or_default().push(socket.clone());
        }
        socket
    }

    /// Accepts the socket if `outcome` says so; else gives the response back.
    pub fn accept_outcome(
        &self,
        outcome: FetchOutcome,
    ) -> Result<MemorySocket, Box<http::Response<Vec<u8>>>> {
        match outcome {
            FetchOutcome::AcceptWebSocket { tags, attachment } => Ok(self.accept(tags, attachment)),
            FetchOutcome::Response(response) => Err(Box::new(response)),
        }
    }

    /// Every socket ever accepted, open or closed.
    pub fn all_sockets(&self) -> Vec<MemorySocket> {
        self.inner.sockets.borrow().clone()
    }

    /// Makes [`State::has_peers`] answer `true`: the object runs on other
    /// hosts too, and the test carries its messages there.
    pub fn enable_peers(&self) {
        self.inner.peers.set(true);
    }

    /// What the object published to its peers since the last call.
    pub fn take_published(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.published.borrow_mut())
    }
}

impl State for MemoryState {
    type Storage = MemoryStorage;
    type Socket = MemorySocket;

    fn storage(&self) -> &MemoryStorage {
        &self.inner.storage
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms.get()
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StorageError> {
        self.inner.storage.check()?;
        self.inner.alarm.set(Some(at_ms));
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<u64>, StorageError> {
        self.inner.storage.check()?;
        Ok(self.inner.alarm.get())
    }

    async fn delete_alarm(&self) -> Result<(), StorageError> {
        self.inner.storage.check()?;
        self.inner.alarm.set(None);
        Ok(())
    }

    fn get_websockets(&self, tag: Option<&str>) -> Vec<MemorySocket> {
        let open = |sockets: &[MemorySocket]| -> Vec<MemorySocket> {
            sockets.iter().filter(|s| s.is_open()).cloned().collect()
        };
        match tag {
            None => open(&self.inner.sockets.borrow()),
            Some(tag) => self
                .inner
                .tagged
                .borrow()
                .get(tag)
                .map(|s| open(s))
                .unwrap_or_default(),
        }
    }

    fn set_auto_response(&self, request: &str, response: &str) {
        *self.inner.auto_response.borrow_mut() = Some((request.to_string(), response.to_string()));
    }

    fn has_peers(&self) -> bool {
        self.inner.peers.get()
    }

    fn publish_to_peers(&self, message: &str) {
        if self.inner.peers.get() {
            self.inner.published.borrow_mut().push(message.to_string());
        }
    }
}
