//! Durable Objects: the classes of the objects component
//! (`durable-objects/component`, world `edgegate:durable-object`) served
//! in-process.
//!
//! - Exactly one live instance per (class, name): an [`actor`] task owns it
//!   and takes events one at a time from a bounded queue.
//! - Storage is SQLite, one WAL database per class under the data
//!   directory, written by a group-committing thread ([`store`]); an
//!   event's response and messages leave only after its writes are
//!   committed.
//! - Alarms are stored with the data and fired by a [`alarms`] scheduler,
//!   also after a restart.
//! - Idle objects are evicted and re-created from storage on their next
//!   event; a trap resets only the object that trapped.
//! - WebSockets belong to the host ([`sockets`]), so objects can be evicted
//!   while clients stay connected; [`upgrade`] completes client handshakes
//!   the edge and the object accepted.
//!
//! The edge reaches objects through `outbound`, which hands requests for
//! `http://<class>.do.edgegate.internal/…` to [`dispatch`]. Objects reach
//! the same object on other hosts through a [`PeerLink`] ([`peers`]).

mod actor;
mod alarms;
pub mod dispatch;
mod host;
pub mod peers;
mod sockets;
mod store;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Component;

use self::actor::Actor;
use self::alarms::Scheduler;
use self::host::{DurableObjectPre, ObjectCtx};
pub use self::host::{Message, Request, Response};
pub use self::peers::PeerLink;
use self::sockets::{Socket, Sockets};
use self::store::Stores;

/// Events queued per object before senders wait (the input gate's depth).
const QUEUE_DEPTH: usize = 1024;

/// Identifies an object: its class and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Class (`ratelimiter`, `hub`).
    pub class: Arc<str>,
    /// Name within the class (any text).
    pub name: Arc<str>,
}

impl ObjectKey {
    /// The object `name` of `class`.
    pub fn new(class: &str, name: &str) -> ObjectKey {
        ObjectKey {
            class: Arc::from(class),
            name: Arc::from(name),
        }
    }
}

/// Class names become file names: 1 to 64 of `[a-z0-9_-]`.
pub fn valid_class(class: &str) -> bool {
    (1..=64).contains(&class.len())
        && class
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Wall-clock milliseconds since the Unix epoch (the objects' clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A WebSocket upgrade the request carries.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The id the listener gave the client's upgrade.
    pub id: String,
    /// Largest message the socket will accept from the client.
    pub max_message: usize,
}

/// Something that happens to an object.
pub enum Event {
    /// An HTTP request.
    Fetch {
        /// The request.
        request: Request,
        /// Set when the request is a client's WebSocket upgrade.
        upgrade: Option<Upgrade>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<FetchReply, ObjectFailure>>,
    },
    /// A message on one of its sockets.
    Message {
        /// The socket.
        socket: u64,
        /// The message.
        message: Message,
    },
    /// One of its sockets closed.
    Close {
        /// The socket (forgotten after this event).
        socket: Arc<Socket>,
        /// Close code (1006 when the connection failed).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Its alarm is due.
    Alarm,
    /// A message from the same object on another host.
    Peer {
        /// The sending host.
        origin: Arc<str>,
        /// What it published.
        message: String,
    },
    /// The link to the other hosts is up (again).
    PeersLinked,
}

/// The object's answer to a fetch.
#[derive(Debug)]
pub enum FetchReply {
    /// An HTTP response.
    Response(Response),
    /// It accepted the WebSocket upgrade: this socket is registered.
    Accepted(u64),
}

/// Why an event got no answer from its object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectFailure {
    /// The object ran past the CPU limit (it is reset).
    #[error("the object exceeded its CPU time limit")]
    CpuLimit,
    /// The object trapped (it is reset).
    #[error("the object failed: {0}")]
    Trap(String),
    /// No instance could be created.
    #[error("no object instance could be created: {0}")]
    Capacity(String),
    /// The component has no such class.
    #[error("{0}")]
    UnknownClass(String),
    /// Its writes could not be committed.
    #[error("object storage failed")]
    Storage,
    /// The object accepted a WebSocket for a request that is no upgrade.
    #[error("the object accepted a WebSocket without an upgrade")]
    NotAnUpgrade,
    /// The client's upgrade ended before the object accepted it.
    #[error("the WebSocket upgrade is gone")]
    UpgradeGone,
    /// The alarm handler asked for a retry.
    #[error("alarm failed: {0}")]
    Alarm(String),
    /// The object's task is gone (shutdown).
    #[error("the object is unavailable")]
    Unavailable,
}

impl ObjectFailure {
    /// The HTTP status the edge sees.
    pub fn status(&self) -> u16 {
        match self {
            ObjectFailure::Trap(_) | ObjectFailure::NotAnUpgrade | ObjectFailure::Alarm(_) => 500,
            ObjectFailure::UnknownClass(_) => 404,
            ObjectFailure::UpgradeGone => 410,
            ObjectFailure::CpuLimit
            | ObjectFailure::Capacity(_)
            | ObjectFailure::Storage
            | ObjectFailure::Unavailable => 503,
        }
    }
}

/// Limits of every object instance (as for edge instances).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear-memory cap in bytes.
    pub memory: u64,
    /// Longest continuous guest run.
    pub cpu: Duration,
}

/// How objects are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the class databases live.
    pub dir: std::path::PathBuf,
    /// Instance limits.
    pub limits: Limits,
    /// Idle objects are evicted after this long.
    pub idle_timeout: Duration,
    /// Sockets without traffic for this long are closed.
    pub socket_idle_timeout: Duration,
}

/// The objects component could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("the objects component cannot run (needs the edgegate:durable-object world): {0}")]
pub struct LinkError(String);

/// The objects component, linked and ready to instantiate.
pub struct Prepared(DurableObjectPre<ObjectCtx>);

impl Prepared {
    /// Links `component` against WASI and the world's imports.
    pub fn new(component: &Component) -> Result<Prepared, LinkError> {
        host::pre(component)
            .map(Prepared)
            .map_err(|e| LinkError(format!("{e:#}")))
    }
}

/// Every live object, socket and alarm of the process.
pub struct Objects {
    pre: DurableObjectPre<ObjectCtx>,
    limits: Limits,
    idle_timeout: Duration,
    socket_idle_timeout: Duration,
    stores: Arc<Stores>,
    sockets: Sockets,
    alarms: Scheduler,
    actors: Mutex<HashMap<ObjectKey, mpsc::Sender<Event>>>,
    /// Set when the host is linked to others (scale-out).
    peers: OnceLock<Arc<dyn PeerLink>>,
}

impl Objects {
    /// Serves objects of `prepared`; schedules the stored alarms.
    pub fn start(prepared: Prepared, settings: Settings) -> Arc<Objects> {
        let objects = Arc::new(Objects {
            pre: prepared.0,
            limits: settings.limits,
            idle_timeout: settings.idle_timeout,
            socket_idle_timeout: settings.socket_idle_timeout,
            stores: Arc::new(Stores::new(settings.dir)),
            sockets: Sockets::default(),
            alarms: Scheduler::default(),
            actors: Mutex::new(HashMap::new()),
            peers: OnceLock::new(),
        });
        objects.reschedule_alarms();
        let runner = Arc::clone(&objects);
        tokio::spawn(async move {
            let fire = |key: ObjectKey, _at: u64| {
                let objects = Arc::clone(&runner);
                tokio::spawn(async move { objects.send(&key, Event::Alarm).await });
            };
            runner.alarms.run(fire).await;
        });
        objects
    }

    /// Loads the alarms of every class database there is.
    fn reschedule_alarms(&self) {
        for class in self.stores.existing_classes() {
            let class: Arc<str> = Arc::from(class.as_str());
            let alarms = self.stores.class(&class).and_then(|s| s.alarms());
            match alarms {
                Ok(alarms) => {
                    for (name, at) in alarms {
                        let key = ObjectKey {
                            class: Arc::clone(&class),
                            name: Arc::from(name.as_str()),
                        };
                        self.alarms.set(key, Some(at));
                    }
                }
                Err(e) => tracing::error!(%class, "cannot read the stored alarms: {e}"),
            }
        }
        let scheduled = self.alarms.len();
        if scheduled > 0 {
            tracing::info!(scheduled, "Durable Object alarms rescheduled");
        }
    }

    /// Runs `request` on the object `key`.
    pub async fn fetch(
        self: &Arc<Self>,
        key: &ObjectKey,
        request: Request,
        upgrade: Option<Upgrade>,
    ) -> Result<FetchReply, ObjectFailure> {
        let (reply, answer) = oneshot::channel();
        self.send(
            key,
            Event::Fetch {
                request,
                upgrade,
                reply,
            },
        )
        .await;
        answer.await.unwrap_or(Err(ObjectFailure::Unavailable))
    }

    /// Queues `event` for `key`'s actor, starting one if needed; waits while
    /// its queue is full.
    pub async fn send(self: &Arc<Self>, key: &ObjectKey, mut event: Event) {
        loop {
            let sender = {
                let mut actors = self.lock_actors();
                match actors.get(key) {
                    Some(sender) => sender.clone(),
                    None => {
                        let (sender, events) = mpsc::channel(QUEUE_DEPTH);
                        actors.insert(key.clone(), sender.clone());
                        Actor::spawn(Arc::clone(self), key.clone(), events);
                        sender
                    }
                }
            };
            match sender.send(event).await {
                Ok(()) => return,
                // The actor retired meanwhile: the next one takes it.
                Err(mpsc::error::SendError(returned)) => {
                    event = returned;
                    let mut actors = self.lock_actors();
                    if actors.get(key).is_some_and(|s| s.same_channel(&sender)) {
                        actors.remove(key);
                    }
                }
            }
        }
    }

    /// Unregisters `key`'s actor if nothing is queued for it; `true` when
    /// it may stop.
    fn retire(&self, key: &ObjectKey, events: &mpsc::Receiver<Event>) -> bool {
        let mut actors = self.lock_actors();
        if !events.is_empty() {
            return false;
        }
        actors.remove(key);
        true
    }

    /// Number of live objects.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.lock_actors().len()
    }

    /// Closes every WebSocket with 1001 and waits (bounded) for them.
    pub async fn shutdown(&self, grace: Duration) {
        let open = self.sockets.connected();
        if open > 0 {
            tracing::info!(open, "closing WebSockets");
        }
        self.sockets
            .close_all(sockets::CLOSE_GOING_AWAY, "server shutting down", grace)
            .await;
    }

    fn lock_actors(&self) -> MutexGuard<'_, HashMap<ObjectKey, mpsc::Sender<Event>>> {
        self.actors.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
