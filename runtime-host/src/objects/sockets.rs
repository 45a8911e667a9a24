//! Hibernation-style WebSockets: the host owns the connections, objects
//! address them by id and may be evicted while they stay open.
//!
//! Each object's sockets (with their tags and attachments) and its
//! auto-response live in an [`ObjectSockets`] that outlives the object's
//! instance. A connected socket runs two tasks: the reader turns frames into
//! object events (answering auto-responses itself), the writer drains the
//! socket's bounded outgoing queue. A client too slow to keep that queue
//! from filling is closed with 1008 rather than buffered without bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};

use super::{Event, Message, ObjectKey, Objects};

/// Outgoing frames queued per socket; beyond this the client is too slow.
pub const SEND_QUEUE: usize = 1024;
/// Largest attachment kept per socket.
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024;
/// Per-socket read buffer (tungstenite reads in chunks of this size).
const READ_BUFFER: usize = 4 * 1024;
/// Outgoing bytes buffered before a write is forced.
const WRITE_BUFFER: usize = 16 * 1024;
/// Time the peer gets to answer our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The close frame carried no code.
pub const CLOSE_NO_STATUS: u16 = 1005;
/// The connection failed without a close frame.
pub const CLOSE_ABNORMAL: u16 = 1006;
/// A frame RFC 6455 forbids (unmasked, reserved bits, a fragmented control
/// frame, an unknown opcode).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// A text message that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Policy violation (here: a client too slow to read what it is sent).
pub const CLOSE_POLICY: u16 = 1008;
/// A message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

const OPEN: u8 = 0;
const CLOSING: u8 = 1;

/// A frame for the client.
#[derive(Debug)]
pub enum Outgoing {
    /// A text message (shared, not copied, between the sockets it goes to).
    Text(Utf8Bytes),
    /// A keep-alive ping.
    Ping,
    /// Start the closing handshake.
    Close(u16, String),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The socket is closing or closed.
    #[error("socket is closed")]
    Closed,
    /// The queue was full: the socket is being closed with 1008.
    #[error("the client does not keep up; socket closed")]
    Overflow,
}

/// One WebSocket of an object.
pub struct Socket {
    /// Its id, unique in the process.
    pub id: u64,
    /// The object that accepted it.
    pub owner: ObjectKey,
    /// Tags given at accept time.
    pub tags: Vec<String>,
    /// Largest message accepted from the client.
    pub max_message: usize,
    attachment: Mutex<Vec<u8>>,
    state: AtomicU8,
    out: mpsc::Sender<Outgoing>,
    out_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// A close that must happen now, whatever is queued (first one wins).
    kill: watch::Sender<Option<(u16, String)>>,
    close_delivered: AtomicBool,
}

impl Socket {
    fn new(
        id: u64,
        owner: ObjectKey,
        tags: Vec<String>,
        attachment: Vec<u8>,
        max_message: usize,
    ) -> Socket {
        let (out, out_rx) = mpsc::channel(SEND_QUEUE);
        Socket {
            id,
            owner,
            tags,
            max_message,
            attachment: Mutex::new(attachment),
            state: AtomicU8::new(OPEN),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            kill: watch::Sender::new(None),
            close_delivered: AtomicBool::new(false),
        }
    }

    /// Whether the socket is open (listed by `get-websockets`).
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// The attachment.
    pub fn attachment(&self) -> Vec<u8> {
        lock(&self.attachment).clone()
    }

    /// Replaces the attachment.
    pub fn set_attachment(&self, value: Vec<u8>) {
        *lock(&self.attachment) = value;
    }

    /// Queues a text message.
    pub fn send_text(&self, text: Utf8Bytes) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        self.enqueue(Outgoing::Text(text))
    }

    fn enqueue(&self, frame: Outgoing) -> Result<(), SendError> {
        match self.out.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(socket = self.id, "send queue full; closing the socket");
                self.kill(CLOSE_POLICY, "client too slow");
                Err(SendError::Overflow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// Starts the closing handshake after what is queued.
    pub fn close(&self, code: u16, reason: &str) {
        if self.state.swap(CLOSING, Ordering::AcqRel) == OPEN {
            let _ = self.enqueue(Outgoing::Close(code, truncate_reason(reason)));
        }
    }

    /// Closes now, dropping what is queued.
    pub fn kill(&self, code: u16, reason: &str) {
        self.state.store(CLOSING, Ordering::Release);
        self.kill.send_if_modified(|kill| {
            if kill.is_some() {
                return false;
            }
            *kill = Some((code, truncate_reason(reason)));
            true
        });
    }

    /// The close frame of [`kill`](Self::kill), once there is one.
    fn kill_frame(&self) -> Option<(u16, String)> {
        self.kill.borrow().clone()
    }

    /// `true` the first time only: the object hears of a close once.
    fn take_close_delivery(&self) -> bool {
        !self.close_delivered.swap(true, Ordering::AcqRel)
    }
}

/// Close reasons are limited to 123 bytes (the frame's 125 less the code).
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An object's sockets and auto-response: kept while the object lives or
/// has sockets, across evictions of its instance.
#[derive(Default)]
pub struct ObjectSockets {
    sockets: Mutex<SocketTable>,
    auto_response: RwLock<Option<(String, Utf8Bytes)>>,
}

/// Sockets by id and by tag: a hub asks for the sockets of one tag on most
/// events, which must not cost a walk over thousands of sockets.
#[derive(Default)]
struct SocketTable {
    by_id: BTreeMap<u64, Arc<Socket>>,
    by_tag: HashMap<String, BTreeSet<u64>>,
}

impl SocketTable {
    fn insert(&mut self, socket: Arc<Socket>) {
        for tag in &socket.tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(socket.id);
        }
        self.by_id.insert(socket.id, socket);
    }

    fn remove(&mut self, id: u64) {
        let Some(socket) = self.by_id.remove(&id) else {
            return;
        };
        for tag in &socket.tags {
            if let Some(ids) = self.by_tag.get_mut(tag) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }
}

impl ObjectSockets {
    /// Open sockets, all or those tagged `tag`, by id.
    pub fn open_ids(&self, tag: Option<&str>) -> Vec<u64> {
        let table = lock(&self.sockets);
        let open = |socket: &&Arc<Socket>| socket.is_open();
        match tag {
            None => table.by_id.values().filter(open).map(|s| s.id).collect(),
            Some(tag) => table
                .by_tag
                .get(tag)
                .into_iter()
                .flatten()
                .filter_map(|id| table.by_id.get(id))
                .filter(open)
                .map(|s| s.id)
                .collect(),
        }
    }

    /// The socket `id`, if it belongs to this object.
    pub fn get(&self, id: u64) -> Option<Arc<Socket>> {
        lock(&self.sockets).by_id.get(&id).cloned()
    }

    /// The open sockets among `ids` that belong to this object.
    pub fn open_among(&self, ids: &[u64]) -> Vec<Arc<Socket>> {
        let table = lock(&self.sockets);
        ids.iter()
            .filter_map(|id| table.by_id.get(id))
            .filter(|socket| socket.is_open())
            .cloned()
            .collect()
    }

    /// Sets the text request the host answers by itself.
    pub fn set_auto_response(&self, request: String, response: String) {
        *self
            .auto_response
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some((request, response.into()));
    }

    fn auto_response(&self, text: &str) -> Option<Utf8Bytes> {
        let pair = self.auto_response.read().unwrap_or_else(|e| e.into_inner());
        pair.as_ref()
            .filter(|(request, _)| request == text)
            .map(|(_, response)| response.clone())
    }

    fn is_empty(&self) -> bool {
        lock(&self.sockets).by_id.is_empty()
    }
}

/// Every socket of the process and the upgrades in progress.
pub struct Sockets {
    next_id: AtomicU64,
    objects: Mutex<HashMap<ObjectKey, Arc<ObjectSockets>>>,
    live: Mutex<HashMap<u64, Arc<Socket>>>,
    upgrades: Mutex<HashMap<String, Option<Arc<Socket>>>>,
    pumps: AtomicUsize,
    pumps_done: Notify,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            next_id: AtomicU64::new(1),
            objects: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            upgrades: Mutex::new(HashMap::new()),
            pumps: AtomicUsize::new(0),
            pumps_done: Notify::new(),
        }
    }
}

impl Sockets {
    /// The sockets of `key` (created empty).
    pub fn of(&self, key: &ObjectKey) -> Arc<ObjectSockets> {
        Arc::clone(lock(&self.objects).entry(key.clone()).or_default())
    }

    /// Whether `key` has sockets here (open or closing).
    pub fn has_sockets(&self, key: &ObjectKey) -> bool {
        lock(&self.objects).get(key).is_some_and(|t| !t.is_empty())
    }

    /// The objects that have sockets here.
    pub fn owners(&self) -> Vec<ObjectKey> {
        lock(&self.objects)
            .iter()
            .filter(|(_, table)| !table.is_empty())
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Forgets `key`'s table once nothing refers to it any more.
    pub fn release(&self, key: &ObjectKey) {
        let mut objects = lock(&self.objects);
        if let Some(table) = objects.get(key)
            && Arc::strong_count(table) == 1
            && table.is_empty()
        {
            objects.remove(key);
        }
    }

    /// Registers a client upgrade in progress under a new opaque id.
    pub fn begin_upgrade(&self) -> String {
        let id = crate::respond::new_request_id();
        lock(&self.upgrades).insert(id.clone(), None);
        id
    }

    /// Whether `upgrade` is in progress and not accepted yet.
    pub fn upgrade_pending(&self, upgrade: &str) -> bool {
        lock(&self.upgrades)
            .get(upgrade)
            .is_some_and(|socket| socket.is_none())
    }

    /// Registers the socket `owner` accepted for `upgrade`; `None` when the
    /// upgrade is gone (the client left) or was accepted already.
    pub fn accept(
        &self,
        upgrade: &str,
        owner: &ObjectKey,
        table: &ObjectSockets,
        tags: Vec<String>,
        attachment: Vec<u8>,
        max_message: usize,
    ) -> Option<Arc<Socket>> {
        let mut upgrades = lock(&self.upgrades);
        let slot = upgrades.get_mut(upgrade).filter(|s| s.is_none())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let socket = Arc::new(Socket::new(
            id,
            owner.clone(),
            tags,
            attachment,
            max_message,
        ));
        *slot = Some(Arc::clone(&socket));
        lock(&table.sockets).insert(Arc::clone(&socket));
        lock(&self.live).insert(id, Arc::clone(&socket));
        crate::metrics::get().websocket(true);
        Some(socket)
    }

    /// Ends `upgrade`: the socket accepted for it, if any.
    pub fn finish_upgrade(&self, upgrade: &str) -> Option<Arc<Socket>> {
        lock(&self.upgrades).remove(upgrade).flatten()
    }

    /// Drops a closed socket from its object's table.
    pub fn remove(&self, socket: &Socket) {
        if lock(&self.live).remove(&socket.id).is_some() {
            crate::metrics::get().websocket(false);
        }
        let table = lock(&self.objects).get(&socket.owner).cloned();
        if let Some(table) = table {
            lock(&table.sockets).remove(socket.id);
            drop(table);
            self.release(&socket.owner);
        }
    }

    /// Closes every socket with `code` (shutdown) and waits up to `grace`
    /// for their closing handshakes.
    pub async fn close_all(&self, code: u16, reason: &str, grace: Duration) {
        let sockets: Vec<Arc<Socket>> = lock(&self.live).values().cloned().collect();
        for socket in &sockets {
            socket.kill(code, reason);
        }
        let deadline = Instant::now() + grace;
        loop {
            let done = self.pumps_done.notified();
            if self.pumps.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                tracing::warn!("WebSockets still open after {grace:?} of shutdown");
                return;
            }
        }
    }

    /// Number of connected sockets.
    pub fn connected(&self) -> usize {
        self.pumps.load(Ordering::Acquire)
    }
}

/// Runs a connected socket until it closes, then tells its object.
pub async fn pump(objects: Arc<Objects>, socket: Arc<Socket>, upgraded: Upgraded) {
    let idle_timeout = objects.socket_idle_timeout;
    let sockets_count = &objects.sockets.pumps;
    sockets_count.fetch_add(1, Ordering::AcqRel);
    // Small buffers: an idle socket should cost little (the defaults hold
    // 128 KiB for reads). Reads grow past it for larger messages; writes
    // are flushed whenever the queue runs dry anyway.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(socket.max_message))
        .max_frame_size(Some(socket.max_message));
    let stream =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (writer, reader) = stream.split();
    let out_rx = lock(&socket.out_rx).take();
    let write_task = out_rx.map(|rx| tokio::spawn(write_loop(Arc::clone(&socket), writer, rx)));
    let (code, reason) = read_loop(&objects, &socket, reader, idle_timeout).await;
    if let Some(task) = write_task {
        // The writer ends once it sent a close frame or the peer is gone;
        // bound the wait for a peer that never answers.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, task).await;
    }
    finish(&objects, &socket, code, reason).await;
    if sockets_count.fetch_sub(1, Ordering::AcqRel) == 1 {
        objects.sockets.pumps_done.notify_waiters();
    }
}

/// Tells the object (once) that `socket` closed; the object's actor
/// forgets the socket after that event.
pub async fn finish(objects: &Arc<Objects>, socket: &Arc<Socket>, code: u16, reason: String) {
    socket.state.store(CLOSING, Ordering::Release);
    if socket.take_close_delivery() {
        let event = Event::Close {
            socket: Arc::clone(socket),
            code,
            reason,
        };
        objects.send(&socket.owner, event).await;
    }
}

type Reader = futures_util::stream::SplitStream<WebSocketStream<TokioIo<Upgraded>>>;
type Writer = futures_util::stream::SplitSink<WebSocketStream<TokioIo<Upgraded>>, WsMessage>;

/// Reads until the connection ends; the close code and reason to report.
async fn read_loop(
    objects: &Arc<Objects>,
    socket: &Arc<Socket>,
    mut reader: Reader,
    idle_timeout: Duration,
) -> (u16, String) {
    let table = objects.sockets.of(&socket.owner);
    let mut last_heard = Instant::now();
    let mut pinged = false;
    // Once we started closing, the peer gets CLOSE_TIMEOUT to answer.
    let mut closing_since: Option<Instant> = None;
    let mut reported: Option<(u16, String)> = None;
    let mut killed = socket.kill.subscribe();
    loop {
        let deadline = match closing_since {
            Some(since) => since + CLOSE_TIMEOUT,
            None if pinged => last_heard + idle_timeout,
            None => last_heard + idle_timeout / 2,
        };
        let frame = tokio::select! {
            frame = reader.next() => frame,
            _ = tokio::time::sleep_until(deadline) => {
                if closing_since.is_some() {
                    break;
                }
                if !pinged {
                    pinged = true;
                    let _ = socket.enqueue(Outgoing::Ping);
                } else {
                    socket.close(CLOSE_NORMAL, "idle timeout");
                    reported.get_or_insert((CLOSE_NORMAL, "idle timeout".into()));
                    closing_since = Some(Instant::now());
                }
                continue;
            }
            _ = until_killed(&mut killed), if closing_since.is_none() => {
                // The writer sends the close frame; keep reading for the answer.
                let (code, reason) = socket.kill_frame().unwrap_or((CLOSE_NORMAL, String::new()));
                reported.get_or_insert((code, reason));
                closing_since = Some(Instant::now());
                continue;
            }
        };
        last_heard = Instant::now();
        pinged = false;
        match frame {
            Some(Ok(WsMessage::Text(text))) => {
                if closing_since.is_some() || !socket.is_open() {
                    continue;
                }
                let text = text.as_str();
                if let Some(answer) = table.auto_response(text) {
                    let _ = socket.send_text(answer);
                    continue;
                }
                crate::metrics::get().websocket_message(true);
                let message = Message::Text(text.to_string());
                deliver(objects, socket, message).await;
            }
            Some(Ok(WsMessage::Binary(bytes))) => {
                if closing_since.is_some() || !socket.is_open() {
                    continue;
                }
                crate::metrics::get().websocket_message(true);
                deliver(objects, socket, Message::Binary(bytes.to_vec())).await;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
            Some(Ok(WsMessage::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), f.reason.as_str().to_string()),
                    None => (CLOSE_NO_STATUS, String::new()),
                };
                reported.get_or_insert((code, reason));
                if closing_since.is_none() {
                    // Answer the client's close (tungstenite replies when
                    // the reader is polled on), then stop.
                    socket.state.store(CLOSING, Ordering::Release);
                    closing_since = Some(Instant::now());
                }
            }
            Some(Err(e)) => {
                tracing::debug!(socket = socket.id, "WebSocket failed: {e}");
                match refusal(&e) {
                    // The client broke the protocol: fail the connection
                    // with the code that says how.
                    Some((code, reason)) => {
                        socket.kill(code, reason);
                        reported.get_or_insert((code, reason.into()));
                    }
                    None => {
                        reported.get_or_insert((CLOSE_ABNORMAL, String::new()));
                    }
                }
                break;
            }
            None => break,
        }
    }
    // The writer must stop even if nothing else tells it to.
    socket.kill(CLOSE_NORMAL, "");
    reported.unwrap_or((CLOSE_ABNORMAL, String::new()))
}

/// The close code and reason for a read error the client caused; `None`
/// when the connection itself failed (there is no one to tell).
fn refusal(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((CLOSE_TOO_BIG, "message too big"))
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "text is not UTF-8")),
        _ => None,
    }
}

async fn deliver(objects: &Arc<Objects>, socket: &Socket, message: Message) {
    let event = Event::Message {
        socket: socket.id,
        message,
    };
    objects.send(&socket.owner, event).await;
}

/// Sends queued frames until a close frame went out or the connection
/// broke; once the socket is killed, its close frame goes out at once,
/// whatever is still queued.
async fn write_loop(socket: Arc<Socket>, mut writer: Writer, mut queue: mpsc::Receiver<Outgoing>) {
    let mut killed = socket.kill.subscribe();
    // One wait for the whole loop: a new one per frame was a visible share
    // of a broadcast's cost.
    let kill = until_killed(&mut killed);
    tokio::pin!(kill);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut kill => break,
            frame = queue.recv() => frame,
        };
        let message = match frame {
            Some(Outgoing::Text(text)) => {
                crate::metrics::get().websocket_message(false);
                WsMessage::Text(text)
            }
            Some(Outgoing::Ping) => WsMessage::Ping(Default::default()),
            Some(Outgoing::Close(code, reason)) => close_frame(code, reason),
            None => return,
        };
        let closing = matches!(message, WsMessage::Close(_));
        // Feed queued frames without flushing each: one write per burst.
        let sent = tokio::select! {
            biased;
            _ = &mut kill => break,
            sent = async {
                writer.feed(message).await?;
                if queue.is_empty() || closing {
                    writer.flush().await?;
                }
                Ok::<(), WsError>(())
            } => sent,
        };
        if sent.is_err() || closing {
            return;
        }
    }
    let (code, reason) = socket.kill_frame().unwrap_or((CLOSE_NORMAL, String::new()));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.send(close_frame(code, reason))).await;
}

/// Resolves once the socket is killed (at once if it already is).
async fn until_killed(killed: &mut watch::Receiver<Option<(u16, String)>>) {
    let _ = killed.wait_for(Option::is_some).await;
}

fn close_frame(code: u16, reason: String) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectKey {
        ObjectKey::new("hub", "room")
    }

    #[test]
    fn accept_needs_a_pending_upgrade_and_lists_by_tag() {
        let sockets = Sockets::default();
        let table = sockets.of(&key());
        assert!(
            sockets
                .accept("nope", &key(), &table, vec![], vec![], 10)
                .is_none()
        );
        let upgrade = sockets.begin_upgrade();
        assert!(sockets.upgrade_pending(&upgrade));
        let socket = sockets
            .accept(
                &upgrade,
                &key(),
                &table,
                vec!["user:a".into()],
                b"x".to_vec(),
                10,
            )
            .unwrap();
        assert!(!sockets.upgrade_pending(&upgrade));
        assert!(
            sockets
                .accept(&upgrade, &key(), &table, vec![], vec![], 10)
                .is_none()
        );
        assert_eq!(table.open_ids(None), vec![socket.id]);
        assert_eq!(table.open_ids(Some("user:a")), vec![socket.id]);
        assert!(table.open_ids(Some("user:b")).is_empty());
        assert_eq!(socket.attachment(), b"x");
        socket.close(1000, "bye");
        assert!(table.open_ids(None).is_empty());
        assert_eq!(socket.send_text("late".into()), Err(SendError::Closed));
        assert!(sockets.finish_upgrade(&upgrade).is_some());
        drop(table);
        sockets.remove(&socket);
        assert!(lock(&sockets.objects).is_empty());
    }

    #[test]
    fn sockets_are_listed_by_each_of_their_tags_until_removed() {
        let sockets = Sockets::default();
        let table = sockets.of(&key());
        let accept = |tags: &[&str]| {
            let upgrade = sockets.begin_upgrade();
            let tags = tags.iter().map(|t| t.to_string()).collect();
            sockets
                .accept(&upgrade, &key(), &table, tags, vec![], 10)
                .unwrap()
        };
        let one = accept(&["user:a", "cid:1"]);
        let two = accept(&["user:a", "cid:2"]);
        assert_eq!(table.open_ids(Some("user:a")), vec![one.id, two.id]);
        assert_eq!(table.open_ids(Some("cid:2")), vec![two.id]);
        sockets.remove(&one);
        assert_eq!(table.open_ids(Some("user:a")), vec![two.id]);
        assert!(table.open_ids(Some("cid:1")).is_empty());
        assert!(!lock(&table.sockets).by_tag.contains_key("cid:1"));
    }

    #[test]
    fn a_full_queue_closes_with_policy_violation() {
        let sockets = Sockets::default();
        let table = sockets.of(&key());
        let upgrade = sockets.begin_upgrade();
        let socket = sockets
            .accept(&upgrade, &key(), &table, vec![], vec![], 10)
            .unwrap();
        for _ in 0..SEND_QUEUE {
            socket.send_text("x".into()).unwrap();
        }
        assert_eq!(socket.send_text("x".into()), Err(SendError::Overflow));
        assert_eq!(
            socket.kill_frame(),
            Some((CLOSE_POLICY, "client too slow".into()))
        );
        assert!(!socket.is_open());
    }

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        assert_eq!(truncate_reason(&"é".repeat(100)).len(), 122);
        assert_eq!(truncate_reason("ok"), "ok");
    }
}
