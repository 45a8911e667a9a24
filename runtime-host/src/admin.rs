//! The admin listener, never exposed on the public one: liveness
//! (`/healthz`), readiness (`/readyz`: configuration loaded and component
//! compiled, and not shutting down, so a load balancer stops sending before
//! the listener closes), Prometheus metrics (`/metrics`) and the upstream
//! health view (`/upstreams`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::{Request, Response};

use crate::listener::{self, ShutdownSignal};
use crate::metrics;
use crate::reload::Live;

/// What the admin listener reports on; shared with `serve`.
#[derive(Default)]
pub struct Admin {
    ready: AtomicBool,
    draining: AtomicBool,
    live: OnceLock<Arc<Live>>,
}

impl Admin {
    /// A new, not yet ready, state.
    pub fn new() -> Arc<Admin> {
        Arc::default()
    }

    /// Marks the gateway ready, serving `live`.
    pub fn set_ready(&self, live: Arc<Live>) {
        let _ = self.live.set(live);
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the gateway as shutting down: `/readyz` turns 503.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, admin: Arc<Admin>, shutdown: ShutdownSignal) {
    listener::serve(
        listener,
        move |request, _peer| {
            let response = respond(&request, &admin);
            async move { response }
        },
        shutdown,
    )
    .await;
}

/// The answer to one admin request.
pub fn respond<B>(request: &Request<B>, admin: &Admin) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into());
    }
    match request.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if admin.is_ready() => reply(StatusCode::OK, TEXT, "ready\n".into()),
        "/readyz" if admin.draining.load(Ordering::Acquire) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "shutting down\n".into(),
        ),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into()),
        "/metrics" => reply(StatusCode::OK, metrics::CONTENT_TYPE, metrics::render()),
        "/upstreams" => match admin.live.get() {
            Some(live) => reply(
                StatusCode::OK,
                "application/json",
                live.current().health.report().to_string(),
            ),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into()),
        },
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn probes_metrics_and_not_found() {
        let admin = Admin::default();
        assert_eq!(respond(&get("/healthz"), &admin).status(), 200);
        assert_eq!(respond(&get("/readyz"), &admin).status(), 503);
        assert_eq!(respond(&get("/upstreams"), &admin).status(), 503);
        admin.ready.store(true, Ordering::Release);
        assert_eq!(respond(&get("/readyz"), &admin).status(), 200);
        admin.set_draining();
        assert_eq!(respond(&get("/readyz"), &admin).status(), 503);
        let metrics = respond(&get("/metrics"), &admin);
        assert_eq!(metrics.status(), 200);
        assert!(
            metrics.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(respond(&get("/"), &admin).status(), 404);
        let post = Request::post("/healthz").body(()).unwrap();
        assert_eq!(respond(&post, &admin).status(), 404);
    }
}
