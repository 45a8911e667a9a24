//! Trace spans exported over OTLP/HTTP (JSON encoding, `POST /v1/traces`)
//! when `[server.otlp] endpoint` is set. One span per request, carrying the
//! trace id and parent the client sent and, for a proxied request, the span
//! id the upstream saw as its parent, so the gateway appears in the caller's
//! trace.
//!
//! Export never slows requests: spans go through a bounded queue (full →
//! dropped and counted in the log), are batched, and a failed export is
//! dropped after logging.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

type ExportClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Spans waiting for export; more are dropped.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest a span waits before export.
const INTERVAL: Duration = Duration::from_secs(1);

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The caller's span, 16 hex digits.
    pub parent_span_id: Option<String>,
    /// `GET users` (method and route).
    pub name: String,
    /// Unix time, nanoseconds.
    pub start_ns: u64,
    /// Unix time, nanoseconds.
    pub end_ns: u64,
    /// The request failed on the server side (5xx).
    pub error: bool,
    /// String attributes (OpenTelemetry semantic conventions).
    pub attributes: Vec<(&'static str, String)>,
}

enum Message {
    Span(Span),
    Flush(oneshot::Sender<()>),
}

/// The exporter's queue.
#[derive(Clone)]
pub struct Spans {
    tx: mpsc::Sender<Message>,
}

impl Spans {
    /// Starts exporting to `endpoint` (`http://collector:4318`) as
    /// `service_name`. Needs a Tokio runtime.
    pub fn start(endpoint: &str, service_name: &str, timeout: Duration) -> Spans {
        let (tx, rx) = mpsc::channel(QUEUE);
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        tokio::spawn(run(rx, url, service_name.to_string(), timeout));
        Spans { tx }
    }

    /// Queues `span`; drops it when the queue is full.
    pub fn export(&self, span: Span) {
        if self.tx.try_send(Message::Span(span)).is_err() {
            tracing::debug!("span dropped: export queue full");
        }
    }

    /// Exports everything queued so far (at shutdown), waiting at most
    /// `deadline`.
    pub async fn flush(&self, deadline: Duration) {
        let (done, finished) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = finished.await;
            }
        };
        let _ = tokio::time::timeout(deadline, flushed).await;
    }
}

async fn run(mut rx: mpsc::Receiver<Message>, url: String, service: String, timeout: Duration) {
    let connector = match crate::outbound::connector(timeout) {
        Ok(connector) => connector,
        Err(e) => {
            tracing::error!("span export disabled: TLS set-up failed: {e}");
            return;
        }
    };
    let client: ExportClient = Client::builder(TokioExecutor::new()).build(connector);
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        let mut flushed = None;
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Span(span)) => {
                    batch.push(span);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                Some(Message::Flush(done)) => flushed = Some(done),
                None => {
                    send(&client, &url, &service, &mut batch, timeout).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        send(&client, &url, &service, &mut batch, timeout).await;
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

async fn send(
    client: &ExportClient,
    url: &str,
    service: &str,
    batch: &mut Vec<Span>,
    timeout: Duration,
) {
    if batch.is_empty() {
        return;
    }
    let body = encode(service, batch);
    let count = batch.len();
    batch.clear();
    let request = match http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!("OTLP endpoint unusable: {e}");
            return;
        }
    };
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => {}
        Ok(Ok(response)) => {
            tracing::warn!(count, status = %response.status(), "OTLP export refused")
        }
        Ok(Err(e)) => tracing::warn!(count, "OTLP export failed: {e}"),
        Err(_) => tracing::warn!(count, "OTLP export timed out"),
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids as hex,
/// 64-bit integers as strings).
fn encode(service: &str, spans: &[Span]) -> Vec<u8> {
    let string = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| string(k, v)).collect::<Vec<_>>(),
                "status": {"code": if s.error { 2 } else { 0 }},
            });
            if let Some(parent) = &s.parent_span_id {
                span["parentSpanId"] = json!(parent);
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [string("service.name", service)]},
            "scopeSpans": [{
                "scope": {"name": "edgegate", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_otlp_json() {
        let span = Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "0101010101010101".into(),
            parent_span_id: Some("00f067aa0ba902b7".into()),
            name: "GET users".into(),
            start_ns: 1,
            end_ns: 2,
            error: false,
            attributes: vec![("http.route", "users".into())],
        };
        let body: Value = serde_json::from_slice(&encode("edgegate", &[span])).unwrap();
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "edgegate"
        );
        let span = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["endTimeUnixNano"], "2");
        assert_eq!(span["attributes"][0]["key"], "http.route");
    }
}
