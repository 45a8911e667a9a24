//! Client WebSocket handshakes on the public listener.
//!
//! An upgrade request runs through the edge like any request, marked with
//! `edgegate-websocket: <upgrade id>` (WASI HTTP hides `Upgrade` from the
//! guest). If the edge passes on the object's 101, naming the socket the
//! object accepted for that very upgrade, the host completes the handshake
//! and pumps the socket; any other answer goes to the client as it is.

use std::sync::Arc;

use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, StatusCode};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::Objects;
use super::dispatch::{NAME_HEADER, SOCKET_HEADER, WEBSOCKET_HEADER};
use super::sockets::{self, CLOSE_ABNORMAL, Socket};
use crate::respond::{self, Body};

/// Headers only the host may set on requests to the edge.
const INTERNAL: [&str; 3] = [WEBSOCKET_HEADER, SOCKET_HEADER, NAME_HEADER];

/// Removes client-sent copies of the host's internal headers.
pub fn strip_internal(headers: &mut HeaderMap) {
    for name in INTERNAL {
        headers.remove(name);
    }
}

/// What the handshake needs from a client's upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUpgrade {
    key: String,
    protocols: Vec<String>,
}

/// Whether `request` is a WebSocket upgrade (RFC 6455 §4.2.1): `GET`,
/// `Connection: upgrade`, `Upgrade: websocket`, version 13 and a key.
pub fn client_upgrade<B>(request: &http::Request<B>) -> Option<ClientUpgrade> {
    let headers = request.headers();
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if request.method() != Method::GET
        || !has_token(CONNECTION, "upgrade")
        || !has_token(UPGRADE, "websocket")
        || headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
    {
        return None;
    }
    let key = headers.get(SEC_WEBSOCKET_KEY)?.to_str().ok()?.trim();
    // 16 random bytes, base64: 24 characters.
    if key.len() != 24 {
        return None;
    }
    let protocols = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    Some(ClientUpgrade {
        key: key.to_string(),
        protocols,
    })
}

/// An upgrade between the request and the edge's answer. Dropped without
/// [`complete`](Self::complete) (the client went away), it releases any
/// socket the object accepted, which then sees a 1006 close.
pub struct PendingUpgrade {
    objects: Arc<Objects>,
    id: String,
    client: ClientUpgrade,
    on_upgrade: Option<OnUpgrade>,
}

impl PendingUpgrade {
    /// Registers the upgrade of `request` and marks it for the edge.
    pub fn begin<B>(
        objects: &Arc<Objects>,
        client: ClientUpgrade,
        request: &mut http::Request<B>,
    ) -> PendingUpgrade {
        let id = objects.sockets.begin_upgrade();
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(WEBSOCKET_HEADER, value);
        }
        PendingUpgrade {
            objects: Arc::clone(objects),
            on_upgrade: Some(hyper::upgrade::on(request)),
            id,
            client,
        }
    }

    /// Turns the edge's `response` into the client's: a completed
    /// handshake when the edge passed on the object's accept, else the
    /// response itself.
    pub fn complete(
        mut self,
        response: http::Response<Body>,
        request_id: &str,
    ) -> http::Response<Body> {
        let socket = self.objects.sockets.finish_upgrade(&self.id);
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            if let Some(socket) = socket {
                self.abandon(socket);
            }
            return response;
        }
        let named = response
            .headers()
            .get(SOCKET_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let socket = match socket {
            Some(socket) if named == Some(socket.id) => socket,
            other => {
                if let Some(socket) = other {
                    self.abandon(socket);
                }
                tracing::error!("the edge answered 101 for no socket accepted for this upgrade");
                let problem = edgegate_problem::Problem::new(
                    502,
                    "bad_gateway",
                    "the WebSocket upgrade was not accepted",
                );
                return respond::problem(&problem, request_id);
            }
        };
        let Some(on_upgrade) = self.on_upgrade.take() else {
            self.abandon(socket);
            let problem = edgegate_problem::Problem::new(500, "internal", "upgrade unavailable");
            return respond::problem(&problem, request_id);
        };

        let mut out = http::Response::new(respond::full(bytes::Bytes::new()));
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = out.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.client.key.as_bytes())) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        // A subprotocol only if the edge chose one the client offered.
        if let Some(chosen) = response
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .filter(|p| self.client.protocols.iter().any(|offered| offered == p))
            .and_then(|p| HeaderValue::from_str(p).ok())
        {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, chosen);
        }
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(respond::REQUEST_ID, id);
        }

        let objects = Arc::clone(&self.objects);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => sockets::pump(objects, socket, upgraded).await,
                Err(e) => {
                    tracing::debug!("WebSocket upgrade failed: {e}");
                    sockets::finish(&objects, &socket, CLOSE_ABNORMAL, String::new()).await;
                }
            }
        });
        out
    }

    /// The object accepted a socket that will never connect.
    fn abandon(&self, socket: Arc<Socket>) {
        let objects = Arc::clone(&self.objects);
        tokio::spawn(async move {
            sockets::finish(&objects, &socket, CLOSE_ABNORMAL, String::new()).await;
        });
    }
}

impl Drop for PendingUpgrade {
    fn drop(&mut self) {
        if let Some(socket) = self.objects.sockets.finish_upgrade(&self.id) {
            self.abandon(socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::get("/ws");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn recognises_upgrades() {
        let up = client_upgrade(&request(&GOOD)).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(up.protocols.is_empty());
        assert_eq!(
            derive_accept_key(up.key.as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        for skip in 0..GOOD.len() {
            let partial: Vec<(&str, &str)> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| *h)
                .collect();
            assert!(client_upgrade(&request(&partial)).is_none(), "{skip}");
        }
        let mut old = GOOD;
        old[2] = ("sec-websocket-version", "8");
        assert!(client_upgrade(&request(&old)).is_none());
        let mut post = request(&GOOD);
        *post.method_mut() = Method::POST;
        assert!(client_upgrade(&post).is_none());
    }

    #[test]
    fn internal_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(WEBSOCKET_HEADER, HeaderValue::from_static("forged"));
        headers.insert(SOCKET_HEADER, HeaderValue::from_static("1"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip_internal(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
