//! Helpers for tests that talk to WebSocket hubs through the gateway: HS256
//! tokens minted with the `jsonwebtoken` crate, hub connections, JSON
//! messages, and JSON posts to the backend publish route.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::{Reply, raw};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// An HS256 token signed with `secret` under key id `k`, issued by `issuer`
/// for audience `api` to `sub` with `roles`, valid for an hour from now.
pub fn token(secret: &str, issuer: &str, sub: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "sub": sub, "iss": issuer, "aud": "api", "roles": roles,
        "iat": now, "exp": now + 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Connects to `ws://{addr}/ws/rooms/{room}`, sending `token` as a bearer
/// token when given.
pub async fn connect_room(
    addr: SocketAddr,
    room: &str,
    token: Option<&str>,
) -> Result<Ws, WsError> {
    let mut request = format!("ws://{addr}/ws/rooms/{room}")
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    connect_async(request).await.map(|(ws, _)| ws)
}

/// Sends `value` as a text message.
pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message of `kind` within `wait` (others are skipped);
/// `None` when none arrives in time. Panics when the socket closes first.
pub async fn expect_within(ws: &mut Ws, kind: &str, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next()).await.ok()?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == kind {
                    return Some(value);
                }
            }
            Some(Ok(Message::Close(frame))) => panic!("closed while waiting for {kind}: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended while waiting for {kind}: {other:?}"),
        }
    }
}

/// The next JSON message of `kind` (others are skipped), within [`WAIT`].
pub async fn expect(ws: &mut Ws, kind: &str) -> Value {
    expect_within(ws, kind, WAIT)
        .await
        .unwrap_or_else(|| panic!("no {kind} message in {WAIT:?}"))
}

/// Fails on any JSON message of one of `kinds` arriving within `quiet`.
pub async fn none_of(ws: &mut Ws, kinds: &[&str], quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while let Ok(frame) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        if let Some(Ok(Message::Text(text))) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            assert!(
                !kinds.iter().any(|kind| value["type"] == *kind),
                "unexpected {value}"
            );
        }
    }
}

/// Subscribes to `topic` (with `topic` as the request id) and waits for
/// the ack.
pub async fn subscribe(ws: &mut Ws, topic: &str) {
    send(
        ws,
        json!({"type": "subscribe", "topic": topic, "id": topic}),
    )
    .await;
    assert_eq!(expect(ws, "ack").await["id"], topic);
}

/// POSTs `body` as JSON to `path` on `addr` with a bearer `token`; panics
/// on I/O errors.
pub fn post(addr: SocketAddr, path: &str, token: &str, body: &Value) -> Reply {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(addr, request.as_bytes()).unwrap()
}

/// [`super::get`] on a blocking thread.
pub async fn get_async(addr: SocketAddr, path: &str) -> Reply {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || super::get(addr, &path, &[]))
        .await
        .unwrap()
}
