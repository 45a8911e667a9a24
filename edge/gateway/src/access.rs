//! The access log: one JSON line per request, written by the platform
//! (standard output under WASI hosts, the console on Workers). It carries no
//! secrets: no query strings (tokens travel there), no header values.

/// What one request did; filled in as the pipeline runs.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub target: Option<usize>,
    pub attempts: u32,
    pub upstream_ns: u64,
    pub user: Option<String>,
    pub consumer: Option<String>,
    pub rate_limit: Option<&'static str>,
    pub error: Option<&'static str>,
}

/// The parts of the request and response the line names.
pub(crate) struct Line<'a> {
    pub time_ms: u64,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub target: Option<&'a str>,
    pub total_ns: u64,
    pub client_ip: Option<&'a str>,
}

impl Trace {
    /// The JSON line.
    pub(crate) fn render(&self, line: Line<'_>) -> String {
        let ms = |ns: u64| (ns / 1_000) as f64 / 1_000.0;
        let upstream_ns = self.upstream_ns.min(line.total_ns);
        serde_json::json!({
            "time_ms": line.time_ms,
            "request_id": line.request_id,
            "client_ip": line.client_ip,
            "method": line.method,
            "path": line.path,
            "status": line.status,
            "route": line.route,
            "upstream": line.upstream,
            "target": line.target,
            "attempts": self.attempts,
            "user": self.user,
            "consumer": self.consumer,
            "rate_limit": self.rate_limit,
            "error": self.error,
            "latency_ms": {
                "total": ms(line.total_ns),
                "upstream": ms(upstream_ns),
                "edge": ms(line.total_ns - upstream_ns),
            },
        })
        .to_string()
    }
}
