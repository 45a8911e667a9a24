//! Responses the host itself produces: RFC 9457 problem bodies and the
//! request id that ties them to logs.

use std::hash::BuildHasher;

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

/// 128 random bits as 32 lowercase hex digits, without a system call: each
/// `RandomState` gets keys that are random per thread and advanced on every
/// call, so hashing under them gives unpredictable, distinct values.
pub fn new_request_id() -> String {
    let keys = std::hash::RandomState::new();
    let (high, low) = (keys.hash_one(0u8), keys.hash_one(1u8));
    format!("{high:016x}{low:016x}")
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
    fn new_ids_are_hex_and_distinct_across_threads() {
        let mine: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        let other = std::thread::spawn(new_request_id).join().unwrap();
        let mut all: std::collections::HashSet<&str> = mine.iter().map(String::as_str).collect();
        assert!(all.insert(&other));
        assert_eq!(all.len(), 1001);
        assert!(all.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
    }

    #[test]
    fn problem_response_has_type_status_and_id() {
        let response = problem(&Problem::new(503, "guest_cpu_limit", "x"), "rid");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(response.headers()[REQUEST_ID], "rid");
    }
}
