//! The public listener: every request goes to the edge component.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use edgegate_problem::Problem;
use http::header::{self, HOST, HeaderValue};
use http::uri::Authority;
use http::{Method, Version};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::health::UNHEALTHY_TARGETS;
use crate::listener::{self, ShutdownSignal};
use crate::objects::Objects;
use crate::objects::upgrade::{self, PendingUpgrade};
use crate::reload::Live;
use crate::respond::{self, Body, REQUEST_ID};

/// Header carrying the client's address to the guest (the name Spin uses).
pub const CLIENT_ADDR: &str = "spin-client-addr";

/// Serves the public listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<Live>,
    objects: Arc<Objects>,
    grace: std::time::Duration,
    shutdown: ShutdownSignal,
) {
    let local = listener.local_addr().ok();
    listener::serve_with_grace(
        listener,
        move |request, peer| handle(live.current(), Arc::clone(&objects), local, request, peer),
        shutdown,
        grace,
    )
    .await;
}

/// Prepares `request` for the guest and runs it; host failures become
/// problem responses. A WebSocket upgrade the edge lets through is
/// completed here.
pub async fn handle(
    current: Arc<crate::reload::Generation>,
    objects: Arc<Objects>,
    local: Option<SocketAddr>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let request_id = respond::request_id(request.headers());
    // For the debug line only, so taken only when it is written. Path
    // only: queries may carry tokens.
    let seen = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        let path = request.uri().path().to_string();
        (Instant::now(), request.method().clone(), path)
    });

    let headers = request.headers_mut();
    // Only the host knows the peer; a client-sent value is a spoof.
    headers.remove(CLIENT_ADDR);
    headers.insert(CLIENT_ADDR, header_value(&peer.to_string()));
    headers.insert(REQUEST_ID, header_value(&request_id));
    // Internal headers come from the host alone.
    upgrade::strip_internal(headers);
    headers.remove(UNHEALTHY_TARGETS);
    if let Some(unhealthy) = current.health.header() {
        headers.insert(UNHEALTHY_TARGETS, unhealthy);
    }

    if let Err(detail) = check_framing(&mut request, local) {
        let mut response = respond::problem(&Problem::new(400, "bad_request", detail), &request_id);
        // What follows such a request on the connection cannot be trusted.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }

    let pending = upgrade::client_upgrade(&request)
        .map(|client| PendingUpgrade::begin(&objects, client, &mut request));
    let response = match current.guests.handle(request).await {
        Ok(response) => response,
        Err(failure) => respond::problem(&failure.problem(), &request_id),
    };
    let response = match pending {
        Some(pending) => pending.complete(response, &request_id),
        None => response,
    };
    if let Some((started, method, path)) = seen {
        tracing::debug!(
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            request_id,
            "request"
        );
    }
    response
}

/// Refuses what RFC 9112 says a server must refuse (hyper itself reads a
/// body with both framings as chunked and drops `Content-Length`), and
/// CONNECT; gives an HTTP/1.0 request without `Host` the listen address
/// (`wasi:http` needs an authority).
fn check_framing<B>(
    request: &mut Request<B>,
    local: Option<SocketAddr>,
) -> Result<(), &'static str> {
    if request.method() == Method::CONNECT {
        return Err("CONNECT is not served: this is not a forward proxy");
    }
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("a request may have only one Host header"),
        (Some(host), None) => {
            let valid = host
                .to_str()
                .ok()
                .filter(|h| !h.contains('@'))
                .is_some_and(|h| h.parse::<Authority>().is_ok_and(|a| a.as_str() == h));
            if !valid {
                return Err("the Host header is not valid");
            }
        }
        (None, _) if request.uri().authority().is_some() => {}
        (None, _) if request.version() >= Version::HTTP_11 => {
            return Err("an HTTP/1.1 request needs a Host header");
        }
        (None, _) => {
            let host = local.map_or_else(|| "localhost".to_string(), |a| a.to_string());
            request.headers_mut().insert(HOST, header_value(&host));
        }
    }
    Ok(())
}

/// Socket addresses and validated request ids are always valid header
/// values; fall back to empty rather than panic.
fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}
