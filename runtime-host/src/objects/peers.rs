//! The objects' side of scale-out: what objects publish to their peers
//! (the same object on other hosts) leaves through a [`PeerLink`], and what
//! the link receives becomes object events.
//!
//! The host only carries messages; what they mean (who is subscribed, who
//! is present) is the objects' business. A message for an object is
//! delivered only when that object has sockets here or is live: an object
//! with neither has no one to tell, and asks its peers when it starts.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Event, ObjectKey, Objects};

/// Where objects' messages to their peers go.
pub trait PeerLink: Send + Sync {
    /// Sends `message` from the object `key` to the same object on every
    /// other host; never waits (dropped when the link cannot take it).
    fn publish(&self, key: &ObjectKey, message: String);
}

impl Objects {
    /// Links the objects to their peers on other hosts (once, at start).
    pub fn link_peers(&self, link: Arc<dyn PeerLink>) {
        if self.peers.set(link).is_err() {
            tracing::warn!("the objects are already linked to their peers");
        }
    }

    /// Whether objects have peers on other hosts.
    pub fn has_peers(&self) -> bool {
        self.peers.get().is_some()
    }

    /// Sends an object's message to its peers.
    pub(super) fn publish_to_peers(&self, key: &ObjectKey, message: String) {
        if let Some(link) = self.peers.get() {
            link.publish(key, message);
        }
    }

    /// Delivers `message` from the host `origin` to the object `key`, if it
    /// is here (sockets or live).
    pub fn peer_message(self: &Arc<Self>, key: &ObjectKey, origin: &Arc<str>, message: String) {
        self.deliver_if_present(
            key,
            Event::Peer {
                origin: Arc::clone(origin),
                message,
            },
        );
    }

    /// Tells every object with sockets here that the link is up (again).
    pub fn peers_linked(self: &Arc<Self>) {
        for key in self.sockets.owners() {
            self.deliver_if_present(&key, Event::PeersLinked);
        }
    }

    /// Queues `event` without waiting: in order for a live object, dropped
    /// when its queue is full (peer delivery is best effort, and one slow
    /// object must not hold up the link).
    fn deliver_if_present(self: &Arc<Self>, key: &ObjectKey, event: Event) {
        let sender = self.lock_actors().get(key).cloned();
        let event = match sender {
            Some(sender) => match sender.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(class = %key.class, name = %key.name, "object busy; peer message dropped");
                    return;
                }
                // Retiring: the next actor takes it.
                Err(mpsc::error::TrySendError::Closed(event)) => event,
            },
            None if self.sockets.has_sockets(key) => event,
            None => return,
        };
        let objects = Arc::clone(self);
        let key = key.clone();
        tokio::spawn(async move { objects.send(&key, event).await });
    }
}
