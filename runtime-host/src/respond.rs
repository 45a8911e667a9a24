//! Responses the host itself produces: RFC 9457 problem bodies and the
//! request id that ties them to logs.

use bytes::Bytes;
use edgegate_problem::{CONTENT_TYPE, Problem};
use http::header::{CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Body type of every public-listener response (guest bodies stream through).
pub type Body = HyperOutgoingBody;

/// Header carrying the request id on requests and host responses.
pub const REQUEST_ID: &str = "x-request-id";

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An `application/problem+json` response for `problem`.
pub fn problem(problem: &Problem, request_id: &str) -> http::Response<Body> {
    let mut response = http::Response::new(full(problem.to_json(request_id)));
    *response.status_mut() = http::StatusCode::from_u16(problem.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    response
}

/// The client's `x-request-id` when it is a plain token
/// (`[A-Za-z0-9._-]{1,128}`), else a new random id. Anything else is
/// replaced so ids are safe to log and to echo.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// Whether `id` is an acceptable client-supplied request id.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 128 random bits as 32 lowercase hex digits.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // The OS generator failing is near impossible; a time-based id still
        // correlates logs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_client_ids_and_replaces_others() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-1.2_3"));
        assert_eq!(request_id(&headers), "abc-1.2_3");

        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id"));
        let id = request_id(&headers);
        assert_eq!(id.len(), 32);
        assert!(is_valid_request_id(&id));

        headers.insert(REQUEST_ID, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_ne!(request_id(&headers).len(), 129);
        assert!(!is_valid_request_id(""));
    }

    #[test]
    fn problem_response_has_type_status_and_id() {
        let response = problem(&Problem::new(503, "guest_cpu_limit", "x"), "rid");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(response.headers()[REQUEST_ID], "rid");
    }
}
