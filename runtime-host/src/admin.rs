//! The admin listener: liveness and readiness probes, never exposed on the
//! public listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::{Request, Response};

use crate::listener::{self, ShutdownSignal};

/// Set once the configuration is loaded and the component compiled.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the gateway ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the gateway is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `/healthz` and `/readyz` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, ready: Readiness, shutdown: ShutdownSignal) {
    listener::serve(
        listener,
        move |request, _peer| {
            let response = respond(&request, &ready);
            async move { response }
        },
        shutdown,
    )
    .await;
}

/// The answer to one admin request.
pub fn respond<B>(request: &Request<B>, ready: &Readiness) -> Response<Full<Bytes>> {
    let probe = matches!(*request.method(), Method::GET | Method::HEAD);
    let (status, body) = match request.uri().path() {
        "/healthz" if probe => (StatusCode::OK, "ok\n"),
        "/readyz" if probe && ready.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" if probe => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
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
    fn probes_and_not_found() {
        let ready = Readiness::default();
        assert_eq!(respond(&get("/healthz"), &ready).status(), 200);
        assert_eq!(respond(&get("/readyz"), &ready).status(), 503);
        ready.set_ready();
        assert_eq!(respond(&get("/readyz"), &ready).status(), 200);
        assert_eq!(respond(&get("/"), &ready).status(), 404);
        let post = Request::post("/healthz").body(()).unwrap();
        assert_eq!(respond(&post, &ready).status(), 404);
    }
}
