//! The library's [`State`], [`Storage`] and [`WebSocket`] over the world's
//! imports: storage and alarms persist in the host's SQLite, sockets are
//! the host's (they outlive this instance).

use edgegate_durable_objects::{Op, SocketError, State, Storage, StorageError, WebSocket};

use crate::bindings::edgegate::durable_object::{alarms, peers, storage, websockets};

/// Prefix of the host's error for oversized keys and values
/// (`too large: <key>`).
const TOO_LARGE: &str = "too large: ";

/// The object's platform: every call goes to the host.
pub struct HostState;

/// The object's storage.
pub struct HostStorage;

/// A socket the host holds for this object, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSocket(pub u64);

static STORAGE: HostStorage = HostStorage;

impl State for HostState {
    type Storage = HostStorage;
    type Socket = HostSocket;

    fn storage(&self) -> &HostStorage {
        &STORAGE
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    async fn set_alarm(&self, at_ms: u64) -> Result<(), StorageError> {
        alarms::set_alarm(at_ms);
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<u64>, StorageError> {
        Ok(alarms::get_alarm())
    }

    async fn delete_alarm(&self) -> Result<(), StorageError> {
        alarms::delete_alarm();
        Ok(())
    }

    fn get_websockets(&self, tag: Option<&str>) -> Vec<HostSocket> {
        websockets::get_websockets(tag)
            .into_iter()
            .map(HostSocket)
            .collect()
    }

    fn set_auto_response(&self, request: &str, response: &str) {
        websockets::set_auto_response(request, response);
    }

    fn has_peers(&self) -> bool {
        peers::enabled()
    }

    fn publish_to_peers(&self, message: &str) {
        peers::publish(message);
    }
}

impl Storage for HostStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        storage::get(key).map_err(storage_error)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        storage::put(key, &value).map_err(storage_error)
    }

    async fn put_unconfirmed(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        storage::put_unconfirmed(key, &value).map_err(storage_error)
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        storage::delete(key).map_err(storage_error)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        storage::list(prefix).map_err(storage_error)
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let ops: Vec<storage::Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => storage::Op::Put((key, value)),
                Op::Delete { key } => storage::Op::Delete(key),
            })
            .collect();
        storage::transaction(&ops).map_err(|e| match storage_error(e) {
            StorageError::Unavailable(m) => StorageError::Aborted(m),
            other => other,
        })
    }
}

fn storage_error(message: String) -> StorageError {
    match message.strip_prefix(TOO_LARGE) {
        Some(key) => StorageError::TooLarge {
            key: key.to_string(),
        },
        None => StorageError::Unavailable(message),
    }
}

impl WebSocket for HostSocket {
    fn send_text(&self, text: &str) -> Result<(), SocketError> {
        websockets::send_text(self.0, text).map_err(|_| SocketError::Closed)
    }

    fn send_text_many<'a>(sockets: impl IntoIterator<Item = &'a Self>, text: &str) -> usize {
        let ids: Vec<u64> = sockets.into_iter().map(|socket| socket.0).collect();
        websockets::send_text_many(&ids, text) as usize
    }

    fn close(&self, code: u16, reason: &str) -> Result<(), SocketError> {
        websockets::close(self.0, code, reason);
        Ok(())
    }

    fn tags(&self) -> Vec<String> {
        websockets::tags(self.0)
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        websockets::attachment(self.0)
    }

    fn set_attachment(&self, value: Vec<u8>) -> Result<(), SocketError> {
        let size = value.len();
        websockets::set_attachment(self.0, &value).map_err(|message| {
            if message.starts_with(TOO_LARGE) {
                SocketError::AttachmentTooLarge { size }
            } else {
                SocketError::Other(message)
            }
        })
    }
}
