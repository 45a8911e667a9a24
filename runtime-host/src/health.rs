//! Active health checks of upstream targets (`[[upstreams]] health_check`).
//!
//! The host probes each target in the background and tells the edge which
//! targets are unhealthy on every request (a header only the host can set,
//! see [`UNHEALTHY_TARGETS`]); the edge's balancer then avoids them while
//! any other target is left, beside its own passive circuit breaker. The
//! state lives in this process: each `edgegate serve` probes on its own.
//! The admin listener shows it at `/upstreams`.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edgegate_config::{Config, HealthCheck};
use http::HeaderValue;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::listener::{self, ShutdownSignal};
use crate::metrics;

/// The request header naming unhealthy targets: `upstream=i,j;other=k`.
pub const UNHEALTHY_TARGETS: &str = "edgegate-unhealthy-targets";

type ProbeClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Health of every upstream target, for one configuration.
pub struct Health {
    upstreams: Vec<UpstreamHealth>,
    /// The header value for the current state; `None` while all are healthy.
    header: RwLock<Option<HeaderValue>>,
}

struct UpstreamHealth {
    name: String,
    check: Option<HealthCheck>,
    targets: Vec<TargetHealth>,
}

struct TargetHealth {
    url: String,
    state: Mutex<TargetState>,
}

#[derive(Debug, Clone)]
struct TargetState {
    healthy: bool,
    successes: u32,
    failures: u32,
    last_check_ms: Option<u64>,
    last_error: Option<String>,
}

impl Default for TargetState {
    fn default() -> Self {
        // Healthy until proven otherwise: a restart must not take every
        // target out before the first probe.
        TargetState {
            healthy: true,
            successes: 0,
            failures: 0,
            last_check_ms: None,
            last_error: None,
        }
    }
}

impl Health {
    /// Starts probing the targets of every upstream with a `health_check`.
    /// Probes stop at `shutdown` or when the returned value is dropped (a
    /// reload replaces it).
    pub fn start(config: &Config, shutdown: ShutdownSignal) -> Arc<Health> {
        let health = Health::new(config);
        // Each probe is bounded by its own timeout; connecting never needs
        // longer than the longest of them.
        let Some(longest) = health
            .upstreams
            .iter()
            .filter_map(|u| u.check.as_ref().map(|c| c.timeout_ms))
            .max()
        else {
            return health;
        };
        let Some(client) = probe_client(Duration::from_millis(longest)) else {
            return health;
        };
        for (u, upstream) in health.upstreams.iter().enumerate() {
            let Some(check) = &upstream.check else {
                continue;
            };
            for (t, target) in upstream.targets.iter().enumerate() {
                metrics::get().target_health(&upstream.name, &target.url, true);
                let url = format!("{}{}", target.url.trim_end_matches('/'), check.path);
                tokio::spawn(probe_loop(
                    Arc::downgrade(&health),
                    (u, t),
                    url,
                    check.clone(),
                    client.clone(),
                    shutdown.clone(),
                ));
            }
        }
        health
    }

    /// The state of `config`'s targets, all healthy, nothing probing.
    fn new(config: &Config) -> Arc<Health> {
        Arc::new(Health {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| UpstreamHealth {
                    name: u.name.clone(),
                    check: u.health_check.clone(),
                    targets: u
                        .targets
                        .iter()
                        .map(|t| TargetHealth {
                            url: t.url.clone(),
                            state: Mutex::default(),
                        })
                        .collect(),
                })
                .collect(),
            header: RwLock::new(None),
        })
    }

    /// The value of [`UNHEALTHY_TARGETS`] for the next request, if any target
    /// is unhealthy.
    pub fn header(&self) -> Option<HeaderValue> {
        self.header
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The aggregated view for the admin listener.
    pub fn report(&self) -> Value {
        let upstreams: Vec<Value> = self
            .upstreams
            .iter()
            .map(|u| {
                let targets: Vec<Value> = u
                    .targets
                    .iter()
                    .map(|t| {
                        let s = t.state();
                        json!({
                            "url": t.url,
                            "healthy": s.healthy,
                            "consecutive_successes": s.successes,
                            "consecutive_failures": s.failures,
                            "last_check_unix_ms": s.last_check_ms,
                            "last_error": s.last_error,
                        })
                    })
                    .collect();
                let healthy = u.targets.iter().filter(|t| t.state().healthy).count();
                json!({
                    "name": u.name,
                    "checked": u.check.is_some(),
                    "healthy_targets": healthy,
                    "targets": targets,
                })
            })
            .collect();
        json!({ "upstreams": upstreams })
    }

    /// Applies one probe result; returns whether the target changed state.
    fn record(&self, (u, t): (usize, usize), result: Result<(), String>) -> bool {
        let upstream = &self.upstreams[u];
        let Some(check) = &upstream.check else {
            return false;
        };
        let target = &upstream.targets[t];
        let changed = {
            let mut s = target.state.lock().unwrap_or_else(|e| e.into_inner());
            s.last_check_ms = Some(unix_ms());
            match result {
                Ok(()) => {
                    s.successes += 1;
                    s.failures = 0;
                    s.last_error = None;
                }
                Err(e) => {
                    s.failures += 1;
                    s.successes = 0;
                    s.last_error = Some(e);
                }
            }
            let flip = if s.healthy {
                s.failures >= check.unhealthy_threshold
            } else {
                s.successes >= check.healthy_threshold
            };
            if flip {
                s.healthy = !s.healthy;
                if s.healthy {
                    tracing::info!(
                        upstream = upstream.name,
                        target = target.url,
                        "target healthy again"
                    );
                } else {
                    tracing::warn!(
                        upstream = upstream.name,
                        target = target.url,
                        error = s.last_error.as_deref().unwrap_or(""),
                        "target unhealthy"
                    );
                }
                metrics::get().target_health(&upstream.name, &target.url, s.healthy);
            }
            flip
        };
        if changed {
            let value = self.unhealthy_list();
            *self.header.write().unwrap_or_else(|e| e.into_inner()) =
                value.and_then(|v| HeaderValue::from_str(&v).ok());
        }
        changed
    }

    /// `upstream=i,j;…` over the unhealthy targets, or `None`.
    fn unhealthy_list(&self) -> Option<String> {
        let entries: Vec<String> = self
            .upstreams
            .iter()
            .filter_map(|u| {
                let down: Vec<String> = u
                    .targets
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| !t.state().healthy)
                    .map(|(i, _)| i.to_string())
                    .collect();
                (!down.is_empty()).then(|| format!("{}={}", u.name, down.join(",")))
            })
            .collect();
        (!entries.is_empty()).then(|| entries.join(";"))
    }
}

impl TargetHealth {
    fn state(&self) -> TargetState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn probe_client(connect_timeout: Duration) -> Option<ProbeClient> {
    let connector = crate::outbound::connector(connect_timeout)
        .inspect_err(|e| tracing::error!("health checks disabled: TLS set-up failed: {e}"))
        .ok()?;
    Some(Client::builder(TokioExecutor::new()).build(connector))
}

async fn probe_loop(
    health: Weak<Health>,
    target: (usize, usize),
    url: String,
    check: HealthCheck,
    client: ProbeClient,
    mut shutdown: ShutdownSignal,
) {
    let interval = Duration::from_millis(check.interval_ms);
    let timeout = Duration::from_millis(check.timeout_ms);
    loop {
        let result = probe(&client, &url, timeout).await;
        match health.upgrade() {
            Some(health) => {
                health.record(target, result);
            }
            None => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = listener::stopped(&mut shutdown) => return,
        }
    }
}

/// One `GET`: 2xx and 3xx are healthy.
async fn probe(client: &ProbeClient, url: &str, timeout: Duration) -> Result<(), String> {
    let request = http::Request::get(url)
        .header(http::header::USER_AGENT, "edgegate-health-check")
        .body(Empty::new())
        .map_err(|e| format!("bad probe URL: {e}"))?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        }
        Ok(Err(e)) => Err(format!("request failed: {e}")),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
[[upstreams]]
name = "users"
targets = [{ url = "http://127.0.0.1:9" }, { url = "http://127.0.0.1:10" }]
health_check = { path = "/healthz", healthy_threshold = 2, unhealthy_threshold = 2 }

[[upstreams]]
name = "plain"
targets = [{ url = "http://127.0.0.1:11" }]
"#,
        )
        .unwrap()
    }

    #[test]
    fn thresholds_flip_state_and_header() {
        let health = Health::new(&config());
        assert!(health.header().is_none());
        assert!(!health.record((0, 1), Err("refused".into())));
        assert!(health.record((0, 1), Err("refused".into())));
        assert_eq!(health.header().unwrap(), "users=1");
        let report = health.report();
        assert_eq!(report["upstreams"][0]["healthy_targets"], 1);
        assert_eq!(
            report["upstreams"][0]["targets"][1]["last_error"],
            "refused"
        );
        assert_eq!(report["upstreams"][1]["checked"], false);
        assert!(!health.record((0, 1), Ok(())));
        assert!(health.record((0, 1), Ok(())));
        assert!(health.header().is_none());
    }
}
