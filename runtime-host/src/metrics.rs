//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! One process-wide registry: the request path, the object host and the
//! reloader each record into it without threading a handle through every
//! layer. Request metrics come from the edge's access records (see
//! `access.rs`), so they carry the route and upstream names the edge knows.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamError {
    upstream: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to ~3.3 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Everything `/metrics` reports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_duration: Histograms<RouteLabel>,
    upstream_duration: Histograms<UpstreamLabel>,
    upstream_errors: Family<UpstreamError, Counter>,
    upstream_retries: Family<UpstreamLabel, Counter>,
    rate_limits: Family<Outcome, Counter>,
    auth_failures: Family<Reason, Counter>,
    guest_failures: Family<Kind, Counter>,
    websockets: Gauge,
    websocket_messages: Family<Direction, Counter>,
    objects_live: Gauge,
    object_evictions: Counter,
    object_start: Histogram,
    instantiation: Histogram,
    edge_latency: Histogram,
    reloads: Family<Outcome, Counter>,
    upstream_health: Family<TargetLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    upstream: String,
    target: String,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The exposition text of every metric.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &get().registry);
    out
}

/// What one request did, as the edge recorded it.
#[derive(Debug, Default)]
pub struct RequestFacts<'a> {
    /// Matched route, if any.
    pub route: Option<&'a str>,
    /// Response status.
    pub status: u16,
    /// End to end, seconds.
    pub total_s: f64,
    /// Upstream called, if any.
    pub upstream: Option<&'a str>,
    /// Time spent waiting on the upstream, seconds.
    pub upstream_s: f64,
    /// Upstream calls made (retries are the ones after the first).
    pub attempts: u32,
    /// The problem code of a refused or failed request.
    pub error: Option<&'a str>,
    /// `admitted`, `refused` or `unavailable` when a rate limit applied.
    pub rate_limit: Option<&'a str>,
    /// Why authentication failed.
    pub auth_failure: Option<&'a str>,
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("edgegate"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            upstream_duration: Family::new_with_constructor(latency),
            upstream_errors: Family::default(),
            upstream_retries: Family::default(),
            rate_limits: Family::default(),
            auth_failures: Family::default(),
            guest_failures: Family::default(),
            websockets: Gauge::default(),
            websocket_messages: Family::default(),
            objects_live: Gauge::default(),
            object_evictions: Counter::default(),
            object_start: Histogram::new(exponential_buckets(0.00001, 2.0, 16)),
            instantiation: latency(),
            // 5 µs to ~60 ms in steps of 25%, fine enough to read a median.
            edge_latency: Histogram::new(exponential_buckets(0.000005, 1.25, 43)),
            reloads: Family::default(),
            upstream_health: Family::default(),
        };
        let mut registry = m.registry;
        registry.register(
            "requests",
            "Requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "End-to-end request latency by route",
            m.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time waiting on the upstream, by upstream",
            m.upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests that failed upstream (timeout, unavailable, error), by upstream",
            m.upstream_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Upstream calls retried on another target",
            m.upstream_retries.clone(),
        );
        registry.register(
            "rate_limit_decisions",
            "Rate-limit outcomes: admitted, refused, unavailable",
            m.rate_limits.clone(),
        );
        registry.register(
            "auth_failures",
            "Authentication failures by reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "guest_failures",
            "Requests the edge function did not answer: cpu_limit, trap, capacity",
            m.guest_failures.clone(),
        );
        registry.register(
            "websocket_connections",
            "Open WebSocket connections",
            m.websockets.clone(),
        );
        registry.register(
            "websocket_messages",
            "WebSocket messages by direction (in: from clients, out: to clients)",
            m.websocket_messages.clone(),
        );
        registry.register(
            "durable_objects_live",
            "Durable Object instances in memory",
            m.objects_live.clone(),
        );
        registry.register(
            "durable_object_evictions",
            "Idle Durable Object instances evicted",
            m.object_evictions.clone(),
        );
        registry.register(
            "durable_object_start_duration_seconds",
            "Time to create a Durable Object instance (instantiate and init)",
            m.object_start.clone(),
        );
        registry.register(
            "instantiation_duration_seconds",
            "Time to create an edge instance",
            m.instantiation.clone(),
        );
        registry.register(
            "edge_latency_seconds",
            "Time the gateway itself spends on a request before calling its upstream \
             (or answering itself): instance checkout, authentication, rate limits, routing",
            m.edge_latency.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome: applied, rejected",
            m.reloads.clone(),
        );
        registry.register(
            "upstream_target_healthy",
            "Active health check state per target: 1 healthy, 0 unhealthy",
            m.upstream_health.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records one request the edge served.
    pub fn request(&self, facts: &RequestFacts<'_>) {
        let route = facts.route.unwrap_or("").to_string();
        self.requests
            .get_or_create(&RouteStatus {
                route: route.clone(),
                status: facts.status.to_string(),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabel { route })
            .observe(facts.total_s);
        if let Some(upstream) = facts.upstream {
            let upstream = upstream.to_string();
            if facts.attempts > 0 {
                self.upstream_duration
                    .get_or_create(&UpstreamLabel {
                        upstream: upstream.clone(),
                    })
                    .observe(facts.upstream_s);
            }
            if facts.attempts > 1 {
                self.upstream_retries
                    .get_or_create(&UpstreamLabel {
                        upstream: upstream.clone(),
                    })
                    .inc_by(u64::from(facts.attempts - 1));
            }
            if let Some(kind) = facts.error.filter(|e| e.starts_with("upstream_")) {
                self.upstream_errors
                    .get_or_create(&UpstreamError {
                        upstream,
                        kind: kind.to_string(),
                    })
                    .inc();
            }
        }
        if let Some(outcome) = facts.rate_limit {
            self.rate_limits
                .get_or_create(&Outcome {
                    outcome: outcome.to_string(),
                })
                .inc();
        }
        if let Some(reason) = facts.auth_failure {
            self.auth_failures
                .get_or_create(&Reason {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// A request the edge function did not answer.
    pub fn guest_failure(&self, kind: &'static str) {
        self.guest_failures.get_or_create(&Kind { kind }).inc();
    }

    /// A WebSocket opened (`true`) or closed.
    pub fn websocket(&self, opened: bool) {
        if opened {
            self.websockets.inc();
        } else {
            self.websockets.dec();
        }
    }

    /// A WebSocket message from a client (`inbound`) or to one.
    pub fn websocket_message(&self, inbound: bool) {
        let direction = if inbound { "in" } else { "out" };
        self.websocket_messages
            .get_or_create(&Direction { direction })
            .inc();
    }

    /// A Durable Object instance was created (instantiated and
    /// initialised) in `took`.
    pub fn object_created(&self, took: Duration) {
        self.objects_live.inc();
        self.object_start.observe(took.as_secs_f64());
    }

    /// A Durable Object instance was dropped (evicted or reset).
    pub fn object_dropped(&self) {
        self.objects_live.dec();
    }

    /// An idle Durable Object was evicted.
    pub fn object_evicted(&self) {
        self.object_evictions.inc();
    }

    /// An edge instance was created in `took`.
    pub fn instantiated(&self, took: Duration) {
        self.instantiation.observe(took.as_secs_f64());
    }

    /// The edge took `took` to decide a request (see [`crate::pool::EdgeClock`]).
    pub fn edge_latency(&self, took: Duration) {
        self.edge_latency.observe(took.as_secs_f64());
    }

    /// A configuration reload was applied (`true`) or rejected.
    pub fn reload(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.reloads
            .get_or_create(&Outcome {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The active health state of one upstream target.
    pub fn target_health(&self, upstream: &str, target: &str, healthy: bool) {
        self.upstream_health
            .get_or_create(&TargetLabel {
                upstream: upstream.to_string(),
                target: target.to_string(),
            })
            .set(i64::from(healthy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_facts_become_series() {
        let m = Metrics::new();
        m.request(&RequestFacts {
            route: Some("users"),
            status: 504,
            total_s: 0.2,
            upstream: Some("users-svc"),
            upstream_s: 0.19,
            attempts: 3,
            error: Some("upstream_timeout"),
            rate_limit: Some("admitted"),
            auth_failure: None,
        });
        m.request(&RequestFacts {
            route: Some("users"),
            status: 401,
            auth_failure: Some("expired"),
            ..Default::default()
        });
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        for line in [
            r#"edgegate_requests_total{route="users",status="504"} 1"#,
            r#"edgegate_requests_total{route="users",status="401"} 1"#,
            r#"edgegate_upstream_retries_total{upstream="users-svc"} 2"#,
            r#"edgegate_upstream_errors_total{upstream="users-svc",kind="upstream_timeout"} 1"#,
            r#"edgegate_rate_limit_decisions_total{outcome="admitted"} 1"#,
            r#"edgegate_auth_failures_total{reason="expired"} 1"#,
            r#"edgegate_request_duration_seconds_count{route="users"} 2"#,
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
    }
}
