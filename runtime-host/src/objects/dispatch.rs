//! The edge's requests to objects: `http://<class>.do.edgegate.internal<path>`
//! with the object's name in `edgegate-do-name`, mapped to the world's
//! `request` and answered without any socket.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as ErrorCode, RequestOptions, WasiBody};

use super::{FetchReply, ObjectFailure, ObjectKey, Objects, Request, Upgrade};

/// Names the object.
pub const NAME_HEADER: &str = "edgegate-do-name";
/// Marks a client's WebSocket upgrade (its value is the upgrade's id).
pub const WEBSOCKET_HEADER: &str = "edgegate-websocket";
/// On the 101 to the edge: the socket the object accepted.
pub const SOCKET_HEADER: &str = "edgegate-socket";
/// The route's message size limit, which the edge passes to the hub.
const MAX_MESSAGE_HEADER: &str = "x-hub-max-message-bytes";

/// Largest request body an object takes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest object name.
const MAX_NAME_BYTES: usize = 2048;
/// Message size limit when the edge names none (the configuration's default).
const DEFAULT_MAX_MESSAGE: usize = 65_536;
/// Largest message size limit a route may ask for.
const MAX_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Answers the edge's request to an object; failures of the object become
/// HTTP answers, so that the edge applies its own policy to them.
pub async fn fetch(
    objects: &Arc<Objects>,
    class: &str,
    request: HttpRequest<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<HttpResponse<WasiBody>, ErrorCode> {
    let class = class.to_ascii_lowercase();
    if !super::valid_class(&class) {
        return Ok(error(StatusCode::NOT_FOUND, "no such Durable Object class"));
    }
    let (mut parts, body) = request.into_parts();
    let name = match parts
        .headers
        .remove(NAME_HEADER)
        .map(|v| v.to_str().map(str::to_string))
    {
        Some(Ok(name)) if !name.is_empty() && name.len() <= MAX_NAME_BYTES => name,
        Some(_) => return Ok(error(StatusCode::BAD_REQUEST, "invalid edgegate-do-name")),
        None => return Ok(error(StatusCode::BAD_REQUEST, "missing edgegate-do-name")),
    };
    let upgrade = parts
        .headers
        .remove(WEBSOCKET_HEADER)
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .filter(|id| objects.sockets.upgrade_pending(id))
        .map(|id| Upgrade {
            id,
            max_message: max_message(&parts.headers),
        });

    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large for a Durable Object",
            ));
        }
        Err(_) => return Err(ErrorCode::HttpRequestBodySize(None)),
    };

    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if upgrade.is_some() {
        headers.push(("upgrade".into(), "websocket".into()));
    }
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        headers,
        body: Vec::from(body),
    };

    let key = ObjectKey::new(&class, &name);
    let reply = objects.fetch(&key, request, upgrade);
    let reply = match options.and_then(|o| o.first_byte_timeout) {
        Some(limit) => tokio::time::timeout(limit, reply)
            .await
            .map_err(|_| ErrorCode::ConnectionReadTimeout)?,
        None => reply.await,
    };
    Ok(match reply {
        Ok(FetchReply::Response(response)) => to_http(response),
        Ok(FetchReply::Accepted(socket)) => {
            let mut response = HttpResponse::new(empty());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert(SOCKET_HEADER, HeaderValue::from(socket));
            response
        }
        Err(failure) => failed(&key, &failure),
    })
}

/// The route's limit, within bounds.
fn max_message(headers: &http::HeaderMap) -> usize {
    headers
        .get(MAX_MESSAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_MESSAGE)
        .min(MAX_MAX_MESSAGE)
}

fn to_http(response: super::Response) -> HttpResponse<WasiBody> {
    let mut out = HttpResponse::new(full(Bytes::from(response.body)));
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

fn failed(key: &ObjectKey, failure: &ObjectFailure) -> HttpResponse<WasiBody> {
    match failure {
        ObjectFailure::UnknownClass(_) => {
            tracing::debug!(class = %key.class, "request for an unknown object class");
        }
        _ => {
            tracing::warn!(class = %key.class, name = %key.name, "object request failed: {failure}")
        }
    }
    let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    // The edge shows its own problem; details stay in the log.
    let message = match failure {
        ObjectFailure::UnknownClass(_) => "no such Durable Object class",
        ObjectFailure::Storage => "object storage failed",
        ObjectFailure::CpuLimit | ObjectFailure::Capacity(_) | ObjectFailure::Unavailable => {
            "the object is unavailable"
        }
        _ => "the object failed",
    };
    error(status, message)
}

fn error(status: StatusCode, message: &str) -> HttpResponse<WasiBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = HttpResponse::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> WasiBody {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_limit_defaults_and_bounds() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(max_message(&headers), DEFAULT_MAX_MESSAGE);
        headers.insert(MAX_MESSAGE_HEADER, HeaderValue::from_static("100"));
        assert_eq!(max_message(&headers), 100);
        headers.insert(MAX_MESSAGE_HEADER, HeaderValue::from_static("0"));
        assert_eq!(max_message(&headers), DEFAULT_MAX_MESSAGE);
        headers.insert(MAX_MESSAGE_HEADER, HeaderValue::from_static("999999999999"));
        assert_eq!(max_message(&headers), MAX_MAX_MESSAGE);
    }

    #[test]
    fn object_responses_keep_valid_headers_only() {
        let response = to_http(super::super::Response {
            status: 201,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("bad name".into(), "x".into()),
            ],
            body: b"{}".to_vec(),
        });
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers().len(), 1);
    }
}
