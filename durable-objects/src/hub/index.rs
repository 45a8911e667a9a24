//! The hub's in-memory index: connections by id, subscribers by topic,
//! socket counts by user. It is a cache of the attachments: built from them
//! after eviction, and written back to them when a connection changes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use crate::algorithms::{Algorithm, Policy, TokenBucket, token_bucket};
use crate::hub::attachment::{self, HEADER_LEN, Header, MAX_ATTACHMENT_BYTES, Meta};
use crate::hub::peers::{Change, Peers};
use crate::hub::protocol::ServerMessage;
use crate::hub::upgrade::Identity;
use crate::state::{State, WebSocket};

/// How long an accepted connection may stay invisible to
/// [`State::get_websockets`] before the hub assumes the adapter never
/// completed the accept.
pub(crate) const ACCEPT_GRACE_MS: u64 = 10_000;

/// Connection ids are `now_ms × 1024 + n`, so they keep increasing across
/// evictions without any stored counter.
const IDS_PER_MS: u64 = 1024;

/// The rate-limit bucket counts tokens per second, in thousandths.
const BUCKET_PERIOD_MS: u64 = 1000;

/// Tag every socket of `user` carries.
pub(crate) fn user_tag(user: &str) -> String {
    format!("user:{user}")
}

/// Tag of the one socket of connection `cid`: finding a just-accepted
/// socket must not read the attachment of every socket of its user.
pub(crate) fn connection_tag(cid: u64) -> String {
    format!("cid:{cid}")
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn<W> {
    /// `None` until the platform shows the socket accepted by `fetch`.
    pub socket: Option<W>,
    pub accepted_ms: u64,
    pub user: Rc<str>,
    pub admin: bool,
    pub header: Header,
    pub meta: Meta,
    /// `meta`, encoded: rewritten only when `meta` changes.
    pub tail: Vec<u8>,
}

impl<W: WebSocket> Conn<W> {
    /// A connection being accepted now, with a full bucket.
    pub(crate) fn new(cid: u64, identity: Identity, now_ms: u64) -> Self {
        let meta = Meta {
            user: identity.user,
            roles: identity.roles,
            subscriptions: Vec::new(),
            max_message_bytes: identity.max_message_bytes,
            messages_per_second: identity.messages_per_second,
        };
        let (_, bucket) = token_bucket(&rate_policy(meta.messages_per_second), None, now_ms, 0);
        let header = Header {
            cid,
            closed: false,
            level: bucket.level,
            updated_ms: bucket.updated_ms,
            strikes: 0,
        };
        Self::restore(None, header, meta, now_ms)
    }

    /// A connection read back from its attachment.
    pub(crate) fn restore(socket: Option<W>, header: Header, meta: Meta, now_ms: u64) -> Self {
        Self {
            socket,
            accepted_ms: now_ms,
            user: Rc::from(meta.user.as_str()),
            admin: meta.roles.iter().any(|r| r == "admin"),
            tail: meta.encode(),
            header,
            meta,
        }
    }

    pub(crate) fn attachment(&self) -> Vec<u8> {
        attachment::join(&self.header, &self.tail)
    }

    /// Writes the attachment back to the socket.
    pub(crate) fn persist(&self) {
        if let Some(socket) = &self.socket {
            // A failure means the socket is going away; its close event follows.
            let _ = socket.set_attachment(self.attachment());
        }
    }

    /// Sends one frame; `false` when it could not be sent.
    pub(crate) fn send(&self, text: &str) -> bool {
        self.socket
            .as_ref()
            .is_some_and(|s| s.send_text(text).is_ok())
    }

    /// Takes one token for an incoming message; `false` when over the rate.
    pub(crate) fn take_token(&mut self, now_ms: u64) -> bool {
        let policy = rate_policy(self.meta.messages_per_second);
        let bucket = TokenBucket {
            level: self.header.level,
            updated_ms: self.header.updated_ms,
            scale: BUCKET_PERIOD_MS,
        };
        let (decision, bucket) = token_bucket(&policy, Some(&bucket), now_ms, 1);
        self.header.level = bucket.level;
        self.header.updated_ms = bucket.updated_ms;
        self.header.strikes = if decision.allowed {
            self.header.strikes.saturating_sub(1)
        } else {
            self.header.strikes.saturating_add(1)
        };
        decision.allowed
    }

    /// Refused messages after which the connection is closed: three bursts.
    pub(crate) fn strike_limit(&self) -> u64 {
        rate_policy(self.meta.messages_per_second)
            .capacity()
            .saturating_mul(3)
    }
}

/// `rate` messages per second, bursts of twice that.
fn rate_policy(rate: u64) -> Policy {
    let rate = rate.max(1);
    Policy::new(
        Algorithm::TokenBucket,
        rate,
        BUCKET_PERIOD_MS,
        Some(rate.saturating_mul(2)),
    )
    .expect("no field of this policy is zero")
}

/// Why a subscription was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttachmentFull;

type ConnMap<W> = HashMap<u64, Conn<W>, BuildHasherDefault<DefaultHasher>>;

/// The index.
#[derive(Debug)]
pub(crate) struct Index<W> {
    conns: ConnMap<W>,
    /// Topic names come from clients: a B-tree cannot be made to degrade.
    topics: BTreeMap<String, BTreeSet<u64>>,
    users: BTreeMap<Rc<str>, u32>,
    /// Accepted connections whose socket handle is not known yet.
    pending: Vec<u64>,
    next_cid: u64,
    /// The same hub's users on other hosts.
    pub peers: Peers,
}

impl<W: WebSocket> Index<W> {
    /// The index of the sockets the platform holds (after eviction, or for a
    /// new instance).
    pub(crate) fn rebuild<S: State<Socket = W>>(state: &S) -> Self {
        let now = state.now_ms();
        let mut index = Self {
            conns: ConnMap::default(),
            topics: BTreeMap::new(),
            users: BTreeMap::new(),
            pending: Vec::new(),
            next_cid: now.saturating_mul(IDS_PER_MS),
            peers: Peers::new(state.has_peers(), now),
        };
        for socket in state.get_websockets(None) {
            let Some((header, meta)) = socket.attachment().as_deref().and_then(attachment::decode)
            else {
                continue;
            };
            if header.closed || index.conns.contains_key(&header.cid) {
                continue;
            }
            index.next_cid = index.next_cid.max(header.cid.saturating_add(1));
            index.insert(Conn::restore(Some(socket), header, meta, now));
        }
        index
    }

    /// A fresh connection id.
    pub(crate) fn allocate_cid(&mut self, now_ms: u64) -> u64 {
        let cid = self.next_cid.max(now_ms.saturating_mul(IDS_PER_MS));
        self.next_cid = cid.saturating_add(1);
        cid
    }

    /// Adds a connection; `true` when it is its user's first.
    pub(crate) fn insert(&mut self, conn: Conn<W>) -> bool {
        let cid = conn.header.cid;
        for topic in &conn.meta.subscriptions {
            self.topics.entry(topic.clone()).or_default().insert(cid);
        }
        let count = self.users.entry(conn.user.clone()).or_insert(0);
        *count += 1;
        let first = *count == 1;
        if conn.socket.is_none() {
            self.pending.push(cid);
        }
        self.conns.insert(cid, conn);
        first
    }

    /// Drops a connection; its user and whether that was the user's last.
    pub(crate) fn remove(&mut self, cid: u64) -> Option<(Rc<str>, bool)> {
        let conn = self.conns.remove(&cid)?;
        for topic in &conn.meta.subscriptions {
            if let Some(subscribers) = self.topics.get_mut(topic.as_str()) {
                subscribers.remove(&cid);
                if subscribers.is_empty() {
                    self.topics.remove(topic.as_str());
                }
            }
        }
        self.pending.retain(|&p| p != cid);
        let last = match self.users.get_mut(&conn.user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                self.users.remove(&conn.user);
                true
            }
        };
        Some((conn.user, last))
    }

    pub(crate) fn get(&self, cid: u64) -> Option<&Conn<W>> {
        self.conns.get(&cid)
    }

    pub(crate) fn get_mut(&mut self, cid: u64) -> Option<&mut Conn<W>> {
        self.conns.get_mut(&cid)
    }

    /// The connection `socket` belongs to, and whether it was just added
    /// (its user's first: a join to announce). Reads the attachment's fixed
    /// header only, unless the connection is not indexed yet. `None` for
    /// sockets the hub closed or did not accept.
    pub(crate) fn identify(&mut self, socket: &W, now_ms: u64) -> Option<(u64, bool)> {
        let bytes = socket.attachment()?;
        let header = Header::decode(&bytes)?;
        if header.closed {
            return None;
        }
        if let Some(conn) = self.conns.get_mut(&header.cid) {
            if conn.socket.is_none() {
                conn.socket = Some(socket.clone());
                self.pending.retain(|&p| p != header.cid);
            }
            return Some((header.cid, false));
        }
        // Accepted after its pending entry expired: index it now.
        let (header, meta) = attachment::decode(&bytes)?;
        let first = self.insert(Conn::restore(Some(socket.clone()), header, meta, now_ms));
        Some((header.cid, first))
    }

    /// Finds the sockets of pending connections (by their connection tag,
    /// so one attachment is read per connection) and forgets those the platform
    /// still does not show after [`ACCEPT_GRACE_MS`]; returns the users who
    /// thereby left.
    pub(crate) fn resolve_pending<S: State<Socket = W>>(
        &mut self,
        state: &S,
        now_ms: u64,
    ) -> Vec<Rc<str>> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let mut expired = Vec::new();
        for cid in std::mem::take(&mut self.pending) {
            let Some(conn) = self.conns.get_mut(&cid) else {
                continue;
            };
            let found = state
                .get_websockets(Some(&connection_tag(cid)))
                .into_iter()
                .find(|s| {
                    s.attachment()
                        .as_deref()
                        .and_then(Header::decode)
                        .is_some_and(|h| h.cid == cid && !h.closed)
                });
            match found {
                Some(socket) => conn.socket = Some(socket),
                None if now_ms.saturating_sub(conn.accepted_ms) > ACCEPT_GRACE_MS => {
                    expired.push(cid)
                }
                None => self.pending.push(cid),
            }
        }
        expired
            .into_iter()
            .filter_map(|cid| self.remove(cid))
            .filter_map(|(user, last)| last.then_some(user))
            .collect()
    }

    /// Subscribes `cid` to `topic`; `Ok(false)` when it already was.
    pub(crate) fn subscribe(&mut self, cid: u64, topic: &str) -> Result<bool, AttachmentFull> {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return Ok(false);
        };
        if conn.meta.subscriptions.iter().any(|t| t == topic) {
            return Ok(false);
        }
        conn.meta.subscriptions.push(topic.to_string());
        let tail = conn.meta.encode();
        if HEADER_LEN + tail.len() > MAX_ATTACHMENT_BYTES {
            conn.meta.subscriptions.pop();
            return Err(AttachmentFull);
        }
        conn.tail = tail;
        self.topics
            .entry(topic.to_string())
            .or_default()
            .insert(cid);
        Ok(true)
    }

    /// Unsubscribes `cid` from `topic` (no-op when it was not subscribed).
    pub(crate) fn unsubscribe(&mut self, cid: u64, topic: &str) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        let Some(at) = conn.meta.subscriptions.iter().position(|t| t == topic) else {
            return;
        };
        conn.meta.subscriptions.remove(at);
        conn.tail = conn.meta.encode();
        if let Some(subscribers) = self.topics.get_mut(topic) {
            subscribers.remove(&cid);
            if subscribers.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Sends `text` to every subscriber of `topic`; how many got it.
    pub(crate) fn deliver(&self, topic: &str, text: &str) -> usize {
        let Some(subscribers) = self.topics.get(topic) else {
            return 0;
        };
        let sockets = subscribers
            .iter()
            .filter_map(|cid| self.conns.get(cid)?.socket.as_ref());
        W::send_text_many(sockets, text)
    }

    /// Sends `message` to every connection but `except`.
    pub(crate) fn broadcast(&self, message: &ServerMessage<'_>, except: Option<u64>) {
        let sockets = self
            .conns
            .iter()
            .filter(|(cid, _)| Some(**cid) != except)
            .filter_map(|(_, conn)| conn.socket.as_ref());
        W::send_text_many(sockets, &message.to_json());
    }

    /// Whether `user` has a connection here.
    pub(crate) fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether anyone is connected here.
    pub(crate) fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Users connected here or on another host, sorted.
    pub(crate) fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.users.keys().map(|u| &**u).collect();
        if !self.peers.is_empty() {
            users.extend(self.peers.users());
            users.sort_unstable();
            users.dedup();
        }
        users
    }

    /// `user`'s first connection here: the other hosts hear of it, and
    /// local clients (but `except`) unless the user is connected elsewhere.
    pub(crate) fn user_joined(&mut self, user: &str, except: Option<u64>) {
        self.peers.joined(user);
        if !self.peers.has_user(user) {
            self.broadcast(&ServerMessage::Join { user }, except);
        }
    }

    /// `user`'s last connection here went away.
    pub(crate) fn user_left(&mut self, user: &str) {
        self.peers.left(user);
        if !self.peers.has_user(user) {
            self.broadcast(&ServerMessage::Leave { user }, None);
        }
    }

    /// Announces what changed on other hosts, for users not connected here.
    pub(crate) fn apply(&self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Joined(user) if !self.has_user(user) => {
                    self.broadcast(&ServerMessage::Join { user }, None);
                }
                Change::Left(user) if !self.has_user(user) => {
                    self.broadcast(&ServerMessage::Leave { user }, None);
                }
                _ => {}
            }
        }
    }

    /// Sends the local users to the other hosts; with `ask`, they answer
    /// with theirs; `re` marks such an answer.
    pub(crate) fn send_roster(&mut self, ask: bool, re: bool) {
        let local: Vec<&str> = self.users.keys().map(|u| &**u).collect();
        self.peers.roster(&local, ask, re);
    }
}
