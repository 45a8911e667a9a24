//! The hub object: WebSocket publish/subscribe sessions, one instance per
//! hub name (a chat room, a document…).
//!
//! - A WebSocket upgrade is accepted with the tag `user:<id>` and an
//!   attachment holding the user, roles, limits, subscriptions and
//!   rate-limit bucket (see the `attachment` module for the layout), so the hub can be evicted
//!   while clients stay connected; the in-memory index is rebuilt from
//!   the attachments on the first event after that.
//! - `POST /publish` `{"topic","data","from"?}` delivers like a client
//!   publish and answers `{"delivered":N}`; `GET /presence` answers
//!   `{"users":[…]}` (the edge authenticates services before forwarding).
//!
//! The client protocol is in [`protocol`]; connection parameters come from
//! the headers in [`upgrade`]. Where the platform runs the same hub on
//! several hosts, [`peers`] makes them one hub: publishes and presence
//! cross hosts.

mod attachment;
mod index;
pub mod peers;
pub mod protocol;
pub mod upgrade;

use std::borrow::Cow;
use std::cell::{Cell, RefCell, RefMut};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::object::{DurableObject, FetchOutcome, Request};
use crate::response;
use crate::state::{Message, State, StorageError, WebSocket};

pub use attachment::MAX_ATTACHMENT_BYTES;
use index::{Conn, Index, connection_tag, user_tag};
use peers::{ANNOUNCE_MS, Incoming};
use protocol::{ClientMessage, ErrorCode, PING, PONG, ServerMessage};
pub use upgrade::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MESSAGES_PER_SECOND, MAX_MESSAGE_BYTES_HEADER,
    MAX_USER_ID_BYTES, MESSAGES_PER_SECOND_HEADER, USER_ID_HEADER, USER_ROLES_HEADER,
};

/// Role allowed to publish to `system/…` topics.
pub const ADMIN_ROLE: &str = "admin";
/// Prefix of topics only admins (and backends) publish to.
pub const SYSTEM_TOPIC_PREFIX: &str = "system/";
/// `from` of a backend publish that names no sender.
pub const DEFAULT_BACKEND_SENDER: &str = "system";

/// Close code for binary frames (unsupported data).
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code for clients that keep flooding (policy violation).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for frames over the size limit (message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Body of `POST /publish`.
#[derive(Debug, Deserialize)]
struct BackendPublish<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow, default)]
    from: Option<Cow<'a, str>>,
}

/// Answer of `POST /publish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Sockets the message was sent to.
    pub delivered: usize,
}

/// Answer of `GET /presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Connected user ids, sorted.
    pub users: Vec<String>,
}

/// The hub Durable Object, over socket handles of type `W`.
#[derive(Debug)]
pub struct Hub<W> {
    /// Built on the first event of this instance.
    index: RefCell<Option<Index<W>>>,
    auto_response_set: Cell<bool>,
    /// Whether this instance scheduled the peers' heartbeat alarm.
    alarm_set: Cell<bool>,
}

impl<W: WebSocket> Default for Hub<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: WebSocket> Hub<W> {
    /// A fresh instance; connections are picked up from the platform lazily.
    pub fn new() -> Self {
        Self {
            index: RefCell::new(None),
            auto_response_set: Cell::new(false),
            alarm_set: Cell::new(false),
        }
    }

    /// The index, built if needed, with pending accepts resolved. Handlers
    /// hold it for their whole (synchronous) run.
    fn enter<S: State<Socket = W>>(&self, state: &S, now_ms: u64) -> RefMut<'_, Index<W>> {
        if !self.auto_response_set.replace(true) {
            // Pings are answered by the platform, so they do not wake a
            // hibernating hub.
            state.set_auto_response(PING, PONG);
        }
        let mut index = RefMut::map(self.index.borrow_mut(), |slot| {
            slot.get_or_insert_with(|| {
                let mut index = Index::rebuild(state);
                // A new instance knows nothing of the other hosts: ask them.
                if index.peers.enabled() {
                    index.send_roster(true, false);
                }
                index
            })
        });
        for user in index.resolve_pending(state, now_ms) {
            index.user_left(&user);
        }
        index
    }

    /// Ends an event: the messages for the other hosts leave; `true` when
    /// the heartbeat alarm is needed.
    fn flush<S: State<Socket = W>>(state: &S, index: &mut Index<W>) -> bool {
        for message in index.peers.take_outbox() {
            state.publish_to_peers(&message);
        }
        index.peers.enabled() && (index.has_users() || !index.peers.is_empty())
    }

    /// Schedules the heartbeat alarm when it is `needed` and not set yet.
    async fn schedule<S: State<Socket = W>>(&self, state: &S, needed: bool, now_ms: u64) {
        if needed
            && !self.alarm_set.get()
            && state
                .set_alarm(now_ms.saturating_add(ANNOUNCE_MS))
                .await
                .is_ok()
        {
            self.alarm_set.set(true);
        }
    }

    fn connect(index: &mut Index<W>, request: &Request, now_ms: u64) -> FetchOutcome {
        let identity = match upgrade::identity(request.headers()) {
            Ok(identity) => identity,
            Err(refusal) => {
                return FetchOutcome::Response(response::error(
                    refusal.status(),
                    &refusal.to_string(),
                ));
            }
        };
        let cid = index.allocate_cid(now_ms);
        let conn: Conn<W> = Conn::new(cid, identity, now_ms);
        let attachment = conn.attachment();
        if attachment.len() > MAX_ATTACHMENT_BYTES {
            return FetchOutcome::Response(response::error(
                StatusCode::BAD_REQUEST,
                "identity headers too large",
            ));
        }
        let user = conn.user.clone();
        if index.insert(conn) {
            // The new socket is not accepted yet, so this reaches the others.
            index.user_joined(&user, Some(cid));
        }
        FetchOutcome::AcceptWebSocket {
            tags: vec![user_tag(&user), connection_tag(cid)],
            attachment,
        }
    }

    fn backend_publish(index: &mut Index<W>, body: &[u8]) -> http::Response<Vec<u8>> {
        let push: BackendPublish<'_> = match serde_json::from_slice(body) {
            Ok(push) => push,
            Err(e) => {
                return response::error(StatusCode::BAD_REQUEST, &format!("invalid publish: {e}"));
            }
        };
        if !protocol::valid_topic(&push.topic) {
            return response::error(
                StatusCode::BAD_REQUEST,
                "topic must be 1 to 128 characters of A-Z a-z 0-9 . _ : / -",
            );
        }
        let from = push.from.as_deref().unwrap_or(DEFAULT_BACKEND_SENDER);
        let text = ServerMessage::Message {
            topic: &push.topic,
            data: push.data,
            from,
        }
        .to_json();
        let delivered = index.deliver(&push.topic, &text);
        index.peers.publish(&push.topic, &text);
        response::json(StatusCode::OK, &Delivered { delivered })
    }

    /// Closes a connection on the hub's initiative and announces the leave.
    fn close(index: &mut Index<W>, cid: u64, code: u16, reason: &str) {
        if let Some(conn) = index.get_mut(cid) {
            // Marked first, so events already queued for it are ignored,
            // even by a re-created instance.
            conn.header.closed = true;
            conn.persist();
            if let Some(socket) = &conn.socket {
                let _ = socket.close(code, reason);
            }
        }
        Self::depart(index, cid);
    }

    fn depart(index: &mut Index<W>, cid: u64) {
        if let Some((user, true)) = index.remove(cid) {
            index.user_left(&user);
        }
    }

    fn on_text(index: &mut Index<W>, cid: u64, text: &str, now_ms: u64) {
        let Some(conn) = index.get_mut(cid) else {
            return;
        };
        if text.len() as u64 > conn.meta.max_message_bytes {
            conn.send(
                &ServerMessage::Error {
                    code: ErrorCode::TooLarge,
                    id: None,
                    message: "message too large",
                }
                .to_json(),
            );
            Self::close(index, cid, CLOSE_TOO_BIG, "message too large");
            return;
        }
        let parsed = protocol::parse_client(text);
        if !conn.take_token(now_ms) {
            if u64::from(conn.header.strikes) >= conn.strike_limit() {
                Self::close(index, cid, CLOSE_POLICY, "rate limit exceeded");
                return;
            }
            let id = match &parsed {
                Ok(m) => message_id(m),
                Err(bad) => bad.id,
            };
            conn.send(&error(ErrorCode::RateLimited, id, "too many messages"));
            conn.persist();
            return;
        }
        match parsed {
            Err(bad) => {
                conn.send(&error(ErrorCode::BadMessage, bad.id, bad.reason));
            }
            Ok(message) => Self::handle(index, cid, message),
        }
        if let Some(conn) = index.get(cid) {
            conn.persist();
        }
    }

    fn handle(index: &mut Index<W>, cid: u64, message: ClientMessage<'_>) {
        let reply = match message {
            ClientMessage::Subscribe { topic, id } => match index.subscribe(cid, &topic) {
                Ok(_) => id.map(|id| ServerMessage::Ack { id }.to_json()),
                Err(_) => Some(error(
                    ErrorCode::TooLarge,
                    id,
                    "too many subscriptions on this connection",
                )),
            },
            ClientMessage::Unsubscribe { topic, id } => {
                index.unsubscribe(cid, &topic);
                id.map(|id| ServerMessage::Ack { id }.to_json())
            }
            ClientMessage::Publish { topic, data, id } => {
                let Some(conn) = index.get(cid) else {
                    return;
                };
                if topic.starts_with(SYSTEM_TOPIC_PREFIX) && !conn.admin {
                    Some(error(
                        ErrorCode::Forbidden,
                        id,
                        "publishing to system/ topics needs the admin role",
                    ))
                } else {
                    let text = ServerMessage::Message {
                        topic: &topic,
                        data,
                        from: &conn.user,
                    }
                    .to_json();
                    index.deliver(&topic, &text);
                    index.peers.publish(&topic, &text);
                    id.map(|id| ServerMessage::Ack { id }.to_json())
                }
            }
            ClientMessage::Presence { id } => Some(
                ServerMessage::Presence {
                    id,
                    users: index.users(),
                }
                .to_json(),
            ),
            ClientMessage::Ping => Some(ServerMessage::Pong.to_json()),
        };
        if let (Some(reply), Some(conn)) = (reply, index.get(cid)) {
            conn.send(&reply);
        }
    }
}

fn message_id<'a>(message: &ClientMessage<'a>) -> Option<&'a RawValue> {
    match message {
        ClientMessage::Subscribe { id, .. }
        | ClientMessage::Unsubscribe { id, .. }
        | ClientMessage::Publish { id, .. }
        | ClientMessage::Presence { id } => *id,
        ClientMessage::Ping => None,
    }
}

fn error(code: ErrorCode, id: Option<&RawValue>, message: &str) -> String {
    ServerMessage::Error { code, id, message }.to_json()
}

impl<S: State> DurableObject<S> for Hub<S::Socket> {
    async fn fetch(&self, state: &S, request: Request) -> FetchOutcome {
        let now = state.now_ms();
        let (outcome, alarm) = {
            let mut index = self.enter(state, now);
            let outcome = if upgrade::is_upgrade(&request) {
                Self::connect(&mut index, &request, now)
            } else {
                FetchOutcome::Response(match (request.method(), request.uri().path()) {
                    (&Method::POST, "/publish") => {
                        Self::backend_publish(&mut index, request.body())
                    }
                    (&Method::GET, "/presence") => {
                        let users = index.users().into_iter().map(String::from).collect();
                        response::json(StatusCode::OK, &Presence { users })
                    }
                    (_, "/publish" | "/presence") => {
                        response::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                    }
                    _ => response::error(StatusCode::NOT_FOUND, "not found"),
                })
            };
            (outcome, Self::flush(state, &mut index))
        };
        self.schedule(state, alarm, now).await;
        outcome
    }

    async fn websocket_message(&self, state: &S, socket: &S::Socket, message: Message) {
        let now = state.now_ms();
        let alarm = {
            let mut index = self.enter(state, now);
            let Some((cid, joined)) = index.identify(socket, now) else {
                return;
            };
            if joined && let Some(conn) = index.get(cid) {
                let user = conn.user.clone();
                index.user_joined(&user, Some(cid));
            }
            match message {
                Message::Binary(_) => Self::close(
                    &mut index,
                    cid,
                    CLOSE_UNSUPPORTED,
                    "binary frames are not supported",
                ),
                Message::Text(text) => Self::on_text(&mut index, cid, &text, now),
            }
            Self::flush(state, &mut index)
        };
        self.schedule(state, alarm, now).await;
    }

    async fn websocket_close(&self, state: &S, socket: &S::Socket, _code: u16, _reason: &str) {
        let now = state.now_ms();
        let alarm = {
            let mut index = self.enter(state, now);
            let Some(bytes) = socket.attachment() else {
                return;
            };
            let Some(mut header) = attachment::Header::decode(&bytes) else {
                return;
            };
            // A socket the hub closed itself, or a repeated event: already
            // counted out.
            if header.closed {
                return;
            }
            header.closed = true;
            let mut marked = header.encode().to_vec();
            marked.extend_from_slice(&bytes[marked.len()..]);
            let _ = socket.set_attachment(marked);

            if index.get(header.cid).is_some() {
                Self::depart(&mut index, header.cid);
            } else if let Some((_, meta)) = attachment::decode(&bytes) {
                // Rebuilt after eviction without this socket (the platform no
                // longer lists closing sockets): its user left if no other
                // socket of theirs is indexed.
                if !index.has_user(&meta.user) {
                    index.user_left(&meta.user);
                }
            }
            Self::flush(state, &mut index)
        };
        self.schedule(state, alarm, now).await;
    }

    /// The peers' heartbeat: hosts gone silent are forgotten, and this
    /// host's users are announced again.
    async fn alarm(&self, state: &S) -> Result<(), StorageError> {
        let now = state.now_ms();
        self.alarm_set.set(false);
        let alarm = {
            let mut index = self.enter(state, now);
            if !index.peers.enabled() {
                return Ok(());
            }
            let changes = index.peers.expire(now);
            index.apply(&changes);
            if index.has_users() {
                index.send_roster(false, false);
            }
            Self::flush(state, &mut index)
        };
        self.schedule(state, alarm, now).await;
        Ok(())
    }

    async fn peer_message(&self, state: &S, origin: &str, message: &str) {
        let now = state.now_ms();
        let alarm = {
            let mut index = self.enter(state, now);
            match index.peers.receive(origin, message, now) {
                Some(Incoming::Message { topic, frame }) => {
                    index.deliver(&topic, frame);
                }
                Some(Incoming::Presence { changes, reply }) => {
                    index.apply(&changes);
                    if reply {
                        index.send_roster(false, true);
                    }
                }
                None => {}
            }
            Self::flush(state, &mut index)
        };
        self.schedule(state, alarm, now).await;
    }

    async fn peers_linked(&self, state: &S) {
        let now = state.now_ms();
        // A new instance asks when it is built.
        let known = self.index.borrow().is_some();
        let alarm = {
            let mut index = self.enter(state, now);
            index.peers.relinked();
            if known {
                index.send_roster(true, false);
            }
            Self::flush(state, &mut index)
        };
        self.schedule(state, alarm, now).await;
    }
}
