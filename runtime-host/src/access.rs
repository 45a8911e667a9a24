//! The edge's standard output. Each line it writes is an access record (one
//! JSON object per request); the host turns it into metrics and a trace span,
//! then prints it when `[gateway] access_log` is on: as written (JSON, for
//! log shippers), or one short human line when standard output is a
//! terminal. Anything else the guest prints passes through.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::metrics::{self, RequestFacts};
use crate::otlp::{Span, Spans};

/// A guest line longer than this is passed through unparsed in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Where access records go; shared by every edge instance.
pub struct AccessLog {
    print: AtomicBool,
    human: bool,
    spans: Option<Spans>,
}

impl AccessLog {
    /// Prints records when `print`; exports spans to `spans` when set.
    pub fn new(print: bool, spans: Option<Spans>) -> Arc<AccessLog> {
        Arc::new(AccessLog {
            print: AtomicBool::new(print),
            human: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            spans,
        })
    }

    /// Turns printing on or off (`[gateway] access_log`, on reload).
    pub fn set_print(&self, print: bool) {
        self.print.store(print, Ordering::Relaxed);
    }

    /// The guest's standard output for one new instance.
    pub fn stdout(self: &Arc<Self>) -> GuestStdout {
        GuestStdout {
            log: Arc::clone(self),
            pending: Arc::default(),
        }
    }

    /// Handles one complete line (without its newline).
    fn line(&self, line: &[u8]) {
        let Ok(record) = serde_json::from_slice::<Record<'_>>(line) else {
            write_stdout(line);
            return;
        };
        metrics::get().request(&record.facts());
        if let Some(spans) = &self.spans
            && let Some(span) = record.span()
        {
            spans.export(span);
        }
        if !self.print.load(Ordering::Relaxed) {
            return;
        }
        if self.human {
            write_stdout(record.human().as_bytes());
        } else {
            write_stdout(line);
        }
    }
}

/// One line to the process's standard output, whole.
fn write_stdout(line: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line);
    let _ = out.write_all(b"\n");
}

/// The fields of an access record the host uses (see the edge's
/// `access.rs`); unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(default)]
    time_ms: u64,
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    status: u16,
    #[serde(borrow, default)]
    route: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    upstream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<Cow<'a, str>>,
    #[serde(default)]
    attempts: u32,
    #[serde(borrow, default)]
    rate_limit: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    auth_failure: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parent_span_id: Option<Cow<'a, str>>,
    latency_ms: Latency,
}

#[derive(Debug, Deserialize)]
struct Latency {
    total: f64,
    #[serde(default)]
    upstream: f64,
}

impl Record<'_> {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            route: self.route.as_deref(),
            status: self.status,
            total_s: self.latency_ms.total / 1e3,
            upstream: self.upstream.as_deref(),
            upstream_s: self.latency_ms.upstream / 1e3,
            attempts: self.attempts,
            error: self.error.as_deref(),
            rate_limit: self.rate_limit.as_deref(),
            auth_failure: self.auth_failure.as_deref(),
        }
    }

    /// The gateway's span for the request (absent only from records of an
    /// edge that does not trace).
    fn span(&self) -> Option<Span> {
        let end_ns = self.time_ms.saturating_mul(1_000_000);
        let total_ns = (self.latency_ms.total * 1e6) as u64;
        let mut attributes = vec![
            ("http.request.method", self.method.to_string()),
            ("url.path", self.path.to_string()),
            ("http.response.status_code", self.status.to_string()),
            ("edgegate.request_id", self.request_id.to_string()),
        ];
        for (key, value) in [
            ("http.route", &self.route),
            ("edgegate.upstream", &self.upstream),
            ("server.address", &self.target),
            ("error.type", &self.error),
        ] {
            if let Some(value) = value {
                attributes.push((key, value.to_string()));
            }
        }
        Some(Span {
            trace_id: self.trace_id.as_deref()?.to_string(),
            span_id: self.span_id.as_deref()?.to_string(),
            parent_span_id: self.parent_span_id.as_deref().map(str::to_string),
            name: match &self.route {
                Some(route) => format!("{} {route}", self.method),
                None => self.method.to_string(),
            },
            start_ns: end_ns.saturating_sub(total_ns),
            end_ns,
            error: self.status >= 500,
            attributes,
        })
    }

    /// `GET /api/users 200 1.24 ms route=users upstream=users id=…`.
    fn human(&self) -> String {
        let mut line = format!(
            "{} {} {} {:.2} ms",
            self.method, self.path, self.status, self.latency_ms.total
        );
        for (key, value) in [
            ("route", &self.route),
            ("upstream", &self.upstream),
            ("error", &self.error),
            ("rate_limit", &self.rate_limit),
        ] {
            if let Some(value) = value {
                line.push_str(&format!(" {key}={value}"));
            }
        }
        line.push_str(&format!(" id={}", self.request_id));
        line
    }
}

/// The standard output of one edge instance: bytes are gathered into lines,
/// whichever WASI stream handle wrote them.
#[derive(Clone)]
pub struct GuestStdout {
    log: Arc<AccessLog>,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestStdout {
    fn write(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            self.log.line(&pending[start..start + end]);
            start += end + 1;
        }
        pending.drain(..start);
        if pending.len() > MAX_LINE {
            write_stdout(&pending);
            pending.clear();
        }
    }
}

impl IsTerminal for GuestStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStdout {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStdout {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestStdout::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for GuestStdout {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        GuestStdout::write(&self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"time_ms":1700000000123,"request_id":"abc","client_ip":"127.0.0.1","method":"GET","path":"/api/users","status":200,"route":"users","upstream":"users","target":"http://127.0.0.1:9001","attempts":1,"user":"alice","consumer":null,"rate_limit":"admitted","error":null,"auth_failure":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"0101010101010101","parent_span_id":"00f067aa0ba902b7","latency_ms":{"total":2.5,"upstream":2.0,"edge":0.5}}"#;

    #[test]
    fn record_gives_span_and_human_line() {
        let record: Record<'_> = serde_json::from_str(RECORD).unwrap();
        let span = record.span().unwrap();
        assert_eq!(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(span.end_ns - span.start_ns, 2_500_000);
        assert_eq!(span.name, "GET users");
        assert_eq!(
            record.human(),
            "GET /api/users 200 2.50 ms route=users upstream=users rate_limit=admitted id=abc"
        );
    }

    #[test]
    fn lines_are_reassembled_across_writes() {
        let log = AccessLog::new(false, None);
        let out = log.stdout();
        let (a, b) = RECORD.split_at(40);
        out.write(a.as_bytes());
        assert_eq!(out.pending.lock().unwrap().len(), 40);
        out.write(format!("{b}\n").as_bytes());
        assert!(out.pending.lock().unwrap().is_empty());
    }
}
