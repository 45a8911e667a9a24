//! The events a Durable Object handles, and what `fetch` tells the adapter.

use crate::state::{Message, State, StorageError};

/// HTTP request given to [`DurableObject::fetch`].
pub type Request = http::Request<Vec<u8>>;
/// HTTP response produced by an object.
pub type Response = http::Response<Vec<u8>>;

/// What the adapter does with the answer of [`DurableObject::fetch`].
#[derive(Debug)]
pub enum FetchOutcome {
    /// Send this response.
    Response(Response),
    /// Accept the WebSocket upgrade: register the socket with the platform's
    /// hibernation API under `tags`, store `attachment` on it before any event
    /// for it is delivered, and complete the handshake (101).
    AcceptWebSocket {
        /// Tags for [`State::get_websockets`].
        tags: Vec<String>,
        /// Initial per-socket state.
        attachment: Vec<u8>,
    },
}

impl FetchOutcome {
    /// The response, if this is not an accept.
    pub fn into_response(self) -> Option<Response> {
        match self {
            FetchOutcome::Response(r) => Some(r),
            FetchOutcome::AcceptWebSocket { .. } => None,
        }
    }
}

/// An object's event handlers. One instance handles one event at a time; it
/// may keep in-memory caches, but whatever must survive eviction goes to
/// storage or to socket attachments before the handler returns.
#[allow(async_fn_in_trait)]
pub trait DurableObject<S: State> {
    /// An HTTP request (including WebSocket upgrades).
    async fn fetch(&self, state: &S, request: Request) -> FetchOutcome;

    /// A frame from a socket this object accepted.
    async fn websocket_message(&self, state: &S, socket: &S::Socket, message: Message) {
        let _ = (state, socket, message);
    }

    /// The client closed `socket` (or the platform saw it fail: adapters map
    /// errors here with code 1006).
    async fn websocket_close(&self, state: &S, socket: &S::Socket, code: u16, reason: &str) {
        let _ = (state, socket, code, reason);
    }

    /// The alarm set with [`State::set_alarm`] fired. An error asks the
    /// platform to retry it.
    async fn alarm(&self, state: &S) -> Result<(), StorageError> {
        let _ = state;
        Ok(())
    }

    /// A message that this object's instance on the host `origin` sent with
    /// [`State::publish_to_peers`].
    async fn peer_message(&self, state: &S, origin: &str, message: &str) {
        let _ = (state, origin, message);
    }

    /// The link to the other hosts is up (again): anything published
    /// meanwhile, by either side, was lost.
    async fn peers_linked(&self, state: &S) {
        let _ = state;
    }
}
