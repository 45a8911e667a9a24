//! The access log: one JSON line per request, written by the platform
//! (standard output under WASI hosts, the console on Workers). It carries no
//! secrets: no query strings (tokens travel there), no header values.
//! `edgegate serve` also derives its metrics and trace spans from it.

use serde::Serialize;

use crate::headers::TraceContext;

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
    pub auth_failure: Option<&'static str>,
    pub context: Option<TraceContext>,
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
    /// The JSON line: keys in alphabetical order, absent values `null`.
    pub(crate) fn render(&self, line: Line<'_>) -> String {
        let ms = |ns: u64| (ns / 1_000) as f64 / 1_000.0;
        let upstream_ns = self.upstream_ns.min(line.total_ns);
        // A struct serialises straight into the string; building a
        // `serde_json::Value` first cost a map allocation per field on
        // every request.
        let record = Record {
            attempts: self.attempts,
            auth_failure: self.auth_failure,
            client_ip: line.client_ip,
            consumer: self.consumer.as_deref(),
            error: self.error,
            latency_ms: Latency {
                edge: ms(line.total_ns - upstream_ns),
                total: ms(line.total_ns),
                upstream: ms(upstream_ns),
            },
            method: line.method,
            parent_span_id: self.context.as_ref().and_then(|c| c.parent_id.as_deref()),
            path: line.path,
            rate_limit: self.rate_limit,
            request_id: line.request_id,
            route: line.route,
            span_id: self.context.as_ref().map(|c| c.span_id.as_str()),
            status: line.status,
            target: line.target,
            time_ms: line.time_ms,
            trace_id: self.context.as_ref().map(|c| c.trace_id.as_str()),
            upstream: line.upstream,
            user: self.user.as_deref(),
        };
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// The line as written; fields in alphabetical order (the order the line
/// has always had).
#[derive(Serialize)]
struct Record<'a> {
    attempts: u32,
    auth_failure: Option<&'a str>,
    client_ip: Option<&'a str>,
    consumer: Option<&'a str>,
    error: Option<&'a str>,
    latency_ms: Latency,
    method: &'a str,
    parent_span_id: Option<&'a str>,
    path: &'a str,
    rate_limit: Option<&'a str>,
    request_id: &'a str,
    route: Option<&'a str>,
    span_id: Option<&'a str>,
    status: u16,
    target: Option<&'a str>,
    time_ms: u64,
    trace_id: Option<&'a str>,
    upstream: Option<&'a str>,
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct Latency {
    edge: f64,
    total: f64,
    upstream: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line is byte for byte what a `serde_json::Value` renders.
    #[test]
    fn render_matches_a_json_value() {
        let trace = Trace {
            route: Some(0),
            upstream: Some(0),
            target: Some(1),
            attempts: 2,
            upstream_ns: 1_234_567,
            user: Some("al\"ice".into()),
            consumer: None,
            rate_limit: Some("admitted"),
            error: None,
            auth_failure: None,
            context: Some(TraceContext {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
                parent_id: Some("00f067aa0ba902b7".into()),
                flags: "01".into(),
            }),
        };
        let line = || Line {
            time_ms: 1_700_000_000_123,
            request_id: "rid",
            method: "GET",
            path: "/api/\u{e9}",
            status: 200,
            route: Some("api"),
            upstream: Some("origin"),
            target: Some("http://127.0.0.1:9001"),
            total_ns: 2_500_000,
            client_ip: Some("203.0.113.9"),
        };
        let ms = |ns: u64| (ns / 1_000) as f64 / 1_000.0;
        let expected = serde_json::json!({
            "time_ms": 1_700_000_000_123u64,
            "request_id": "rid",
            "client_ip": "203.0.113.9",
            "method": "GET",
            "path": "/api/\u{e9}",
            "status": 200,
            "route": "api",
            "upstream": "origin",
            "target": "http://127.0.0.1:9001",
            "attempts": 2,
            "user": "al\"ice",
            "consumer": null,
            "rate_limit": "admitted",
            "error": null,
            "auth_failure": null,
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
            "parent_span_id": "00f067aa0ba902b7",
            "latency_ms": {
                "total": ms(2_500_000),
                "upstream": ms(1_234_567),
                "edge": ms(2_500_000 - 1_234_567),
            },
        })
        .to_string();
        assert_eq!(trace.render(line()), expected);

        let bare = Trace::default();
        let text = bare.render(line());
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["trace_id"], serde_json::Value::Null);
        assert_eq!(value["attempts"], 0);
    }
}
