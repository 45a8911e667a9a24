//! A hub that runs on several hosts at once (`edgegate serve` scaled out
//! through Redis): each host's instance serves the sockets connected to it
//! and tells the others, through [`State::publish_to_peers`], what they
//! need for one hub to appear:
//!
//! - `{"t":"msg","topic":…,"m":<message frame>}`: a publish, for their
//!   subscribers of `topic`;
//! - `{"t":"join","u":…}` / `{"t":"leave","u":…}`: a user's first / last
//!   connection on the sender;
//! - `{"t":"roster","users":[…],"ask":bool,"re":bool}`: every user
//!   connected to the sender. Sent when an instance starts or the link
//!   comes back (with `ask`, which the others answer with their own roster,
//!   marked `re`), and every [`ANNOUNCE_MS`] by instances with users, as a
//!   heartbeat.
//!
//! Each instance keeps the users of every other host (by the host's
//! `origin` id) and drops a host it has not heard from for [`PEER_TTL_MS`]
//! (it stopped without saying so). Presence is the union of the local and
//! remote users, and `join`/`leave` go to local clients only when a user's
//! first or last connection anywhere comes or goes. What a new instance
//! learns from the answers to its question is not news to its clients (they
//! either just connected, or knew it before the instance was re-created):
//! for [`QUIET_MS`] such answers announce no joins.
//!
//! Messages between hosts are best effort: lost while the link is down, after
//! which rosters are exchanged again.
//!
//! [`State::publish_to_peers`]: crate::State::publish_to_peers

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Interval of the roster heartbeat of an instance with users.
pub const ANNOUNCE_MS: u64 = 10_000;
/// A host not heard from for this long is forgotten with its users.
pub const PEER_TTL_MS: u64 = 35_000;
/// How long after its start an instance takes answers to its question
/// silently.
pub const QUIET_MS: u64 = 5_000;

/// What one other host said.
#[derive(Debug, Default)]
struct Origin {
    users: BTreeSet<String>,
    heard_ms: u64,
}

/// What a peer message changed about a user's global presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The user is now connected somewhere else (and maybe here too).
    Joined(String),
    /// The user is no longer connected on any other host.
    Left(String),
}

/// A decoded peer message.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// Deliver `frame` to local subscribers of `topic`.
    Message {
        /// Topic.
        topic: Cow<'a, str>,
        /// The frame, as the sender rendered it.
        frame: &'a str,
    },
    /// Presence changed (already applied); `reply` is the roster to send
    /// back, when the sender asked for it.
    Presence { changes: Vec<Change>, reply: bool },
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    m: Option<&'a RawValue>,
    #[serde(borrow, default)]
    u: Option<Cow<'a, str>>,
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    ask: bool,
    #[serde(default)]
    re: bool,
}

#[derive(Serialize)]
struct RosterOut<'a> {
    t: &'static str,
    users: &'a [&'a str],
    ask: bool,
    re: bool,
}

#[derive(Serialize)]
struct UserOut<'a> {
    t: &'static str,
    u: &'a str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    t: &'static str,
    topic: &'a str,
    m: &'a RawValue,
}

/// The other hosts' users, and what this instance has to tell them.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// Whether the platform links this hub to other hosts at all.
    enabled: bool,
    origins: BTreeMap<String, Origin>,
    /// For each remote user, how many hosts list them.
    counts: BTreeMap<String, u32>,
    /// Messages for the other hosts, sent when the event ends.
    outbox: Vec<String>,
    /// Until then, answers from hosts not known yet announce no joins.
    quiet_until_ms: u64,
}

impl Peers {
    /// No other hosts yet, for an instance starting at `now_ms`; `enabled`
    /// when the platform has peers.
    pub(crate) fn new(enabled: bool, now_ms: u64) -> Self {
        Self {
            enabled,
            quiet_until_ms: now_ms.saturating_add(QUIET_MS),
            ..Self::default()
        }
    }

    /// The link came back: what the others answer now may be news.
    pub(crate) fn relinked(&mut self) {
        self.quiet_until_ms = 0;
    }

    /// Whether the platform links this hub to other hosts.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `user` is connected on another host.
    pub(crate) fn has_user(&self, user: &str) -> bool {
        self.counts.contains_key(user)
    }

    /// Users connected on other hosts, sorted.
    pub(crate) fn users(&self) -> impl Iterator<Item = &str> {
        self.counts.keys().map(String::as_str)
    }

    /// Whether any other host has users.
    pub(crate) fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The messages queued for the other hosts.
    pub(crate) fn take_outbox(&mut self) -> Vec<String> {
        std::mem::take(&mut self.outbox)
    }

    fn push<T: Serialize>(&mut self, message: &T) {
        if self.enabled
            && let Ok(text) = serde_json::to_string(message)
        {
            self.outbox.push(text);
        }
    }

    /// Tells the others about a publish (`frame` is the `message` frame).
    pub(crate) fn publish(&mut self, topic: &str, frame: &str) {
        // The frame was rendered by this hub: always valid JSON.
        if let Ok(m) = serde_json::from_str::<&RawValue>(frame) {
            self.push(&MessageOut { t: "msg", topic, m });
        }
    }

    /// Tells the others that `user` has a first connection here.
    pub(crate) fn joined(&mut self, user: &str) {
        self.push(&UserOut { t: "join", u: user });
    }

    /// Tells the others that `user` has no connection left here.
    pub(crate) fn left(&mut self, user: &str) {
        self.push(&UserOut {
            t: "leave",
            u: user,
        });
    }

    /// Sends every local user; with `ask`, the others answer likewise;
    /// `re` marks such an answer.
    pub(crate) fn roster(&mut self, local: &[&str], ask: bool, re: bool) {
        self.push(&RosterOut {
            t: "roster",
            users: local,
            ask,
            re,
        });
    }

    /// Applies a message from `origin` received at `now_ms`; `None` when it
    /// is not one of ours.
    pub(crate) fn receive<'a>(
        &mut self,
        origin: &str,
        text: &'a str,
        now_ms: u64,
    ) -> Option<Incoming<'a>> {
        let wire: Wire<'a> = serde_json::from_str(text).ok()?;
        if let Some(known) = self.origins.get_mut(origin) {
            known.heard_ms = now_ms;
        }
        match wire.t.as_ref() {
            "msg" => Some(Incoming::Message {
                topic: wire.topic?,
                frame: wire.m?.get(),
            }),
            "join" => {
                let user = wire.u?.into_owned();
                let changes = self.add(origin, user, now_ms).into_iter().collect();
                Some(Incoming::Presence {
                    changes,
                    reply: false,
                })
            }
            "leave" => {
                let user = wire.u?;
                let changes = self.remove(origin, &user).into_iter().collect();
                Some(Incoming::Presence {
                    changes,
                    reply: false,
                })
            }
            "roster" => {
                let users: BTreeSet<String> = wire.users?.into_iter().collect();
                let quiet =
                    wire.re && now_ms < self.quiet_until_ms && !self.origins.contains_key(origin);
                let mut changes = self.replace(origin, users, now_ms);
                if quiet {
                    changes.retain(|c| !matches!(c, Change::Joined(_)));
                }
                Some(Incoming::Presence {
                    changes,
                    reply: wire.ask,
                })
            }
            _ => None,
        }
    }

    /// Forgets the hosts not heard from since `now_ms - PEER_TTL_MS`.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Change> {
        let stale: Vec<String> = self
            .origins
            .iter()
            .filter(|(_, o)| now_ms.saturating_sub(o.heard_ms) > PEER_TTL_MS)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changes = Vec::new();
        for origin in stale {
            changes.extend(self.replace(&origin, BTreeSet::new(), now_ms));
        }
        changes
    }

    fn add(&mut self, origin: &str, user: String, now_ms: u64) -> Option<Change> {
        let entry = self.origins.entry(origin.to_string()).or_default();
        entry.heard_ms = now_ms;
        if !entry.users.insert(user.clone()) {
            return None;
        }
        let count = self.counts.entry(user.clone()).or_insert(0);
        *count += 1;
        (*count == 1).then_some(Change::Joined(user))
    }

    fn remove(&mut self, origin: &str, user: &str) -> Option<Change> {
        let entry = self.origins.get_mut(origin)?;
        if !entry.users.remove(user) {
            return None;
        }
        if entry.users.is_empty() {
            self.origins.remove(origin);
        }
        match self.counts.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                None
            }
            _ => {
                self.counts.remove(user);
                Some(Change::Left(user.to_string()))
            }
        }
    }

    fn replace(&mut self, origin: &str, users: BTreeSet<String>, now_ms: u64) -> Vec<Change> {
        let old = self
            .origins
            .get(origin)
            .map(|o| o.users.clone())
            .unwrap_or_default();
        let mut changes = Vec::new();
        for gone in old.difference(&users) {
            changes.extend(self.remove(origin, gone));
        }
        for new in users.difference(&old) {
            changes.extend(self.add(origin, new.clone(), now_ms));
        }
        if let Some(entry) = self.origins.get_mut(origin) {
            entry.heard_ms = now_ms;
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(u: &str) -> Change {
        Change::Joined(u.into())
    }

    fn left(u: &str) -> Change {
        Change::Left(u.into())
    }

    fn presence(incoming: Option<Incoming<'_>>) -> (Vec<Change>, bool) {
        match incoming {
            Some(Incoming::Presence { changes, reply }) => (changes, reply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn users_count_once_across_hosts() {
        let mut peers = Peers::new(true, 0);
        let (c, _) = presence(peers.receive("a", r#"{"t":"join","u":"bob"}"#, 1));
        assert_eq!(c, [joined("bob")]);
        let (c, _) = presence(peers.receive("b", r#"{"t":"join","u":"bob"}"#, 1));
        assert!(c.is_empty());
        let (c, _) = presence(peers.receive("a", r#"{"t":"leave","u":"bob"}"#, 2));
        assert!(c.is_empty());
        assert!(peers.has_user("bob"));
        let (c, _) = presence(peers.receive("b", r#"{"t":"leave","u":"bob"}"#, 2));
        assert_eq!(c, [left("bob")]);
        assert!(peers.is_empty());
    }

    #[test]
    fn rosters_replace_and_ask() {
        let mut peers = Peers::new(true, 0);
        peers.relinked();
        presence(peers.receive("a", r#"{"t":"join","u":"x"}"#, 1));
        let (c, reply) =
            presence(peers.receive("a", r#"{"t":"roster","users":["y","z"],"ask":true}"#, 2));
        assert!(reply);
        assert_eq!(c, [left("x"), joined("y"), joined("z")]);
        assert_eq!(peers.users().collect::<Vec<_>>(), ["y", "z"]);
    }

    #[test]
    fn silent_hosts_expire() {
        let mut peers = Peers::new(true, 0);
        presence(peers.receive("a", r#"{"t":"roster","users":["y"]}"#, 1_000));
        presence(peers.receive("b", r#"{"t":"roster","users":["z"]}"#, 30_000));
        assert!(peers.expire(30_000).is_empty());
        // Any message counts as a sign of life.
        peers.receive("b", r#"{"t":"msg","topic":"t","m":{}}"#, 40_000);
        assert_eq!(peers.expire(1_000 + PEER_TTL_MS + 1), [left("y")]);
        assert_eq!(peers.users().collect::<Vec<_>>(), ["z"]);
    }

    #[test]
    fn messages_carry_the_frame_verbatim() {
        let mut peers = Peers::new(true, 0);
        peers.publish(
            "t",
            r#"{"type":"message","topic":"t","data":[1],"from":"a"}"#,
        );
        let out = peers.take_outbox();
        assert_eq!(
            out,
            [r#"{"t":"msg","topic":"t","m":{"type":"message","topic":"t","data":[1],"from":"a"}}"#]
        );
        match peers.receive("a", &out[0], 1) {
            Some(Incoming::Message { topic, frame }) => {
                assert_eq!(topic, "t");
                assert_eq!(
                    frame,
                    r#"{"type":"message","topic":"t","data":[1],"from":"a"}"#
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(peers.receive("a", "not json", 1).is_none());
        assert!(peers.receive("a", r#"{"t":"other"}"#, 1).is_none());
    }

    #[test]
    fn disabled_peers_send_nothing() {
        let mut peers = Peers::new(false, 0);
        peers.joined("a");
        peers.roster(&["a"], true, false);
        assert!(peers.take_outbox().is_empty());
    }

    #[test]
    fn answers_to_a_new_instance_are_quiet() {
        let mut peers = Peers::new(true, 1_000);
        let answer = r#"{"t":"roster","users":["y"],"re":true}"#;
        let (c, _) = presence(peers.receive("a", answer, 1_001));
        assert!(c.is_empty(), "known before: no join");
        assert!(peers.has_user("y"));
        // Real news is announced, also while quiet.
        let (c, _) = presence(peers.receive("a", r#"{"t":"join","u":"z"}"#, 1_002));
        assert_eq!(c, [joined("z")]);
        // Later answers, or after the link came back, are news.
        let (c, _) =
            presence(peers.receive("b", answer.replace('y', "w").as_str(), 1_000 + QUIET_MS));
        assert_eq!(c, [joined("w")]);
        peers.relinked();
        let (c, _) = presence(peers.receive("c", answer.replace('y', "v").as_str(), 1_003));
        assert_eq!(c, [joined("v")]);
    }
}
