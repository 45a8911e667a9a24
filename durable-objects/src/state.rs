//! What an object needs from its platform: durable storage, a clock, alarms
//! and hibernatable WebSockets. The shape follows Cloudflare's Durable Object
//! API so that the Workers adapter is a thin mapping; the wasmtime host
//! implements the same calls over its own store and socket table.
//!
//! The futures are not `Send`: an object runs on one thread and sees one
//! event at a time.

use thiserror::Error;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The store could not be reached or refused the call; may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A key or value is larger than the platform accepts.
    #[error("storage entry {key:?} is too large")]
    TooLarge {
        /// The offending key.
        key: String,
    },
    /// A transaction was rolled back; none of its operations took effect.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// Anything else the platform reported.
    #[error("storage failed: {0}")]
    Other(String),
}

/// Why a WebSocket call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SocketError {
    /// The socket is closing or closed; nothing more can be sent.
    #[error("socket is closed")]
    Closed,
    /// The attachment is larger than the platform keeps.
    #[error("attachment of {size} bytes is too large")]
    AttachmentTooLarge {
        /// Size that was refused.
        size: usize,
    },
    /// Anything else the platform reported.
    #[error("socket failed: {0}")]
    Other(String),
}

/// One write of an atomic [`Storage::transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store `value` under `key`.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key` (no error when absent).
    Delete {
        /// Key.
        key: String,
    },
}

/// The object's private, strongly consistent key-value store.
#[allow(async_fn_in_trait)]
pub trait Storage {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores `value` under `key`.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;
    /// Stores `value` under `key`, letting the event's response and
    /// messages leave before the write is durable (Cloudflare's
    /// `allowUnconfirmed`). Reads see it at once, and it is committed in
    /// order with the other writes; a crash may lose it after the answer
    /// left. For state whose last updates may be lost (counters). Platforms
    /// without the option store it as [`put`](Self::put) does.
    async fn put_unconfirmed(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.put(key, value).await
    }
    /// Removes `key`; `true` when it existed.
    async fn delete(&self, key: &str) -> Result<bool, StorageError>;
    /// Every entry whose key starts with `prefix`, in ascending key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Applies all `ops` in order, atomically: all or none take effect.
    async fn transaction(&self, ops: Vec<Op>) -> Result<(), StorageError>;
}

/// A WebSocket frame received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// A handle on an accepted WebSocket. The platform owns the connection, so a
/// handle stays valid while the object is evicted and re-created; handles
/// returned by different calls may refer to the same socket.
pub trait WebSocket: Clone {
    /// Sends one text frame.
    fn send_text(&self, text: &str) -> Result<(), SocketError>;
    /// Sends `text` to each of `sockets`; how many took it. Platforms that
    /// can hand one copy of the text to all of them at once override it.
    fn send_text_many<'a>(sockets: impl IntoIterator<Item = &'a Self>, text: &str) -> usize
    where
        Self: 'a,
    {
        sockets
            .into_iter()
            .filter(|socket| socket.send_text(text).is_ok())
            .count()
    }
    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes).
    fn close(&self, code: u16, reason: &str) -> Result<(), SocketError>;
    /// Tags given when the socket was accepted.
    fn tags(&self) -> Vec<String>;
    /// The bytes last stored with [`set_attachment`](Self::set_attachment)
    /// (or given at accept time).
    fn attachment(&self) -> Option<Vec<u8>>;
    /// Replaces the small per-socket state that survives eviction. Keep it
    /// under 2 KiB: that is what every platform is known to accept.
    fn set_attachment(&self, value: Vec<u8>) -> Result<(), SocketError>;
}

/// Everything an object gets from its platform besides the events.
#[allow(async_fn_in_trait)]
pub trait State {
    /// The durable store.
    type Storage: Storage;
    /// Socket handles.
    type Socket: WebSocket;

    /// The object's durable store.
    fn storage(&self) -> &Self::Storage;
    /// Wall-clock time in milliseconds since the Unix epoch. It may stand
    /// still during an event (Workers) and may go backwards between events.
    fn now_ms(&self) -> u64;
    /// Schedules the `alarm` event at `at_ms` (replaces any earlier alarm).
    async fn set_alarm(&self, at_ms: u64) -> Result<(), StorageError>;
    /// The scheduled alarm, if any.
    async fn get_alarm(&self) -> Result<Option<u64>, StorageError>;
    /// Cancels the scheduled alarm.
    async fn delete_alarm(&self) -> Result<(), StorageError>;
    /// Accepted, still open sockets, all or those carrying `tag`.
    fn get_websockets(&self, tag: Option<&str>) -> Vec<Self::Socket>;
    /// Makes the platform answer the text frame `request` with `response` by
    /// itself, without waking the object.
    fn set_auto_response(&self, request: &str, response: &str);

    /// Whether this object may also run on other hosts ("peers", scale-out
    /// of `edgegate serve` through Redis), so that what one instance hears
    /// must reach the others. `false` where a name has one instance
    /// worldwide (Workers) and on a single host.
    fn has_peers(&self) -> bool {
        false
    }

    /// Sends `message` to this object's instances on every other host,
    /// after the running event's writes are committed. Best effort: while
    /// the link to the peers is down messages are dropped, and
    /// [`DurableObject::peers_linked`](crate::DurableObject::peers_linked)
    /// follows its return.
    fn publish_to_peers(&self, message: &str) {
        let _ = message;
    }
}
