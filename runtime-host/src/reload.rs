//! Configuration hot reload: on SIGHUP and when the `--config` file changes.
//!
//! A new configuration is validated completely first (the same checks as
//! `edgegate check`); a bad one is logged with its key path, counted, and
//! the running one stays. A good one becomes a new [`Generation`]: new edge
//! instances (the guest reads its configuration at start) and new health
//! checks. Requests in flight finish on the generation they started on, and
//! no connection is touched. `[server]` settings (listeners, limits, data
//! directory, OTLP) are read at start only; a change there is logged as
//! needing a restart.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::access::AccessLog;
use crate::health::Health;
use crate::listener::{self, ShutdownSignal};
use crate::metrics;
use crate::pool::Guests;
use crate::settings::{HOST_FEATURES, HOST_FEATURES_VAR, Loaded};

/// How often the configuration file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What one configuration serves with.
pub struct Generation {
    /// Edge instances with this configuration.
    pub guests: Arc<Guests>,
    /// Active health of its upstream targets.
    pub health: Arc<Health>,
}

/// The generation new requests get.
pub struct Live(RwLock<Arc<Generation>>);

impl Live {
    /// Starts with `generation`.
    pub fn new(generation: Generation) -> Arc<Live> {
        Arc::new(Live(RwLock::new(Arc::new(generation))))
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, generation: Generation) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(generation);
    }
}

/// The environment every edge instance of `loaded` gets.
pub fn guest_env(loaded: &Loaded) -> Vec<(String, String)> {
    let mut env = loaded.guest_env();
    env.push((
        HOST_FEATURES_VAR.to_string(),
        crate::redis_link::host_features(HOST_FEATURES),
    ));
    env
}

/// Reloads `path` into `live` on SIGHUP or when its contents change, until
/// `shutdown`. `current` is the configuration being served.
pub async fn watch(
    path: Option<PathBuf>,
    mut current: Loaded,
    live: Arc<Live>,
    access: Arc<AccessLog>,
    mut shutdown: ShutdownSignal,
) {
    let mut hangup = hangup_signal();
    // The text last looked at, applied or not: a bad file is reported once,
    // not every poll.
    let mut seen = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let mut poll = tokio::time::interval(POLL);
    loop {
        let signalled = tokio::select! {
            _ = listener::stopped(&mut shutdown) => return,
            _ = recv(&mut hangup) => true,
            _ = poll.tick() => false,
        };
        let Some(path) = &path else {
            if signalled {
                tracing::warn!(
                    "SIGHUP: nothing to reload, the configuration comes from \
                     EDGEGATE_CONFIG or is the built-in one (use --config FILE)"
                );
            }
            continue;
        };
        let text = std::fs::read_to_string(path).ok();
        if !signalled && text == seen {
            continue;
        }
        seen.clone_from(&text);
        match Loaded::from_file(path) {
            Ok(loaded) => {
                apply(&current, &loaded, &live, &access, &shutdown);
                current = loaded;
            }
            Err(e) => {
                metrics::get().reload(false);
                tracing::error!(
                    "configuration reload rejected, still serving the previous one: {e}"
                );
            }
        }
    }
}

fn apply(old: &Loaded, new: &Loaded, live: &Live, access: &AccessLog, shutdown: &ShutdownSignal) {
    if old.config.server != new.config.server {
        tracing::warn!("[server] changed: listeners, limits and storage change on restart only");
    }
    let guests = Arc::new(live.current().guests.with_env(guest_env(new)));
    let health = Health::start(&new.config, shutdown.clone());
    access.set_print(new.config.gateway.access_log);
    live.replace(Generation { guests, health });
    metrics::get().reload(true);
    tracing::info!(
        routes = new.config.routes.len(),
        upstreams = new.config.upstreams.len(),
        "configuration reloaded"
    );
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!("SIGHUP reload unavailable: {e}"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn recv(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv(_: &mut Hangup) {
    std::future::pending().await
}
