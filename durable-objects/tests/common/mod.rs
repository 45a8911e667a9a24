//! Helpers shared by the integration tests.
#![allow(dead_code)]

use edgegate_durable_objects::testing::{MemoryState, block_on};
use edgegate_durable_objects::{DurableObject, Request};
use http::StatusCode;
use serde_json::Value;

/// A request with a body.
pub fn request(method: &str, path: &str, body: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri(format!("https://do.internal{path}"))
        .body(body.as_bytes().to_vec())
        .unwrap()
}

/// Runs `fetch` and expects a plain response: status and JSON body.
pub fn call<O: DurableObject<MemoryState>>(
    object: &O,
    state: &MemoryState,
    request: Request,
) -> (StatusCode, Value) {
    let response = block_on(object.fetch(state, request))
        .into_response()
        .expect("a response, not an accept");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "JSON content type"
    );
    let body = serde_json::from_slice(response.body()).expect("JSON body");
    (response.status(), body)
}
