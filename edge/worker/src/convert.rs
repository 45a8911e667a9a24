//! `worker::Request`/`Response` ⇄ `http::Request`/`Response<WorkerBody>`.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use web_sys::{RequestInit, RequestRedirect};
use worker::worker_sys::ext::ResponseInitExt;

use crate::body::{ResponseBody, WorkerBody, js_message};

/// Why a request or response could not cross between JS and Rust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The URL is not one `http::Uri` accepts.
    #[error("invalid URL: {0}")]
    Url(String),
    /// A method `http::Method` does not accept.
    #[error("invalid method: {0}")]
    Method(String),
    /// A header name or value that is not valid HTTP.
    #[error("invalid header {0}")]
    Header(String),
    /// A status code that cannot be answered with (interim or invalid).
    #[error("unusable status {0}")]
    Status(u16),
    /// The runtime refused to build the object.
    #[error("{0}")]
    Js(String),
}

impl From<JsValue> for ConvertError {
    fn from(e: JsValue) -> Self {
        ConvertError::Js(js_message(&e))
    }
}

/// The client's request, its body left streaming.
pub fn from_worker_request(
    request: &worker::Request,
) -> Result<http::Request<WorkerBody>, ConvertError> {
    let raw = request.inner();
    let url = raw.url();
    let mut out = http::Request::new(WorkerBody::from_stream(raw.body()));
    *out.uri_mut() = url.parse().map_err(|_| ConvertError::Url(url))?;
    let method = raw.method();
    *out.method_mut() = method.parse().map_err(|_| ConvertError::Method(method))?;
    *out.headers_mut() = header_map(&raw.headers())?;
    Ok(out)
}

/// The gateway's answer as the runtime's response (a WebSocket handed over
/// by a Durable Object rides along in the extensions).
pub fn to_web_response(
    response: http::Response<WorkerBody>,
) -> Result<web_sys::Response, ConvertError> {
    let (mut parts, body) = response.into_parts();
    let mut init = web_sys::ResponseInit::new();
    init.set_status(parts.status.as_u16());
    init.set_headers(&js_headers(&parts.headers)?.into());
    if let Some(socket) = parts.extensions.remove::<worker::WebSocket>() {
        init.websocket(socket.as_ref())?;
    }
    Ok(match ResponseBody::from(body) {
        ResponseBody::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        ResponseBody::Bytes(b) => web_sys::Response::new_with_opt_buffer_source_and_init(
            Some(&Uint8Array::from(&b[..])),
            &init,
        )?,
        ResponseBody::Stream(s) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&s), &init)?
        }
    })
}

/// A request for `fetch()` or a stub: absolute URL, redirects passed back
/// to the caller rather than followed.
pub fn to_web_request(
    request: http::Request<WorkerBody>,
) -> Result<web_sys::Request, ConvertError> {
    let (parts, body) = request.into_parts();
    let init = RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_headers(&js_headers(&parts.headers)?.into());
    init.set_redirect(RequestRedirect::Manual);
    if let Some(body) = body.into_js() {
        init.set_body(&body);
    }
    Ok(web_sys::Request::new_with_str_and_init(
        &parts.uri.to_string(),
        &init,
    )?)
}

/// An origin's or object's response, its body left streaming.
pub fn from_worker_response(
    response: worker::Response,
) -> Result<http::Response<WorkerBody>, ConvertError> {
    let stream = match response.body() {
        worker::ResponseBody::Stream(s) => Some(s.clone()),
        worker::ResponseBody::Empty => None,
        worker::ResponseBody::Body(_) => {
            // `worker::Fetch` and stubs always give streams; a fixed body
            // would only come from a response built in Rust.
            return Err(ConvertError::Js("unexpected buffered response".into()));
        }
    };
    let status = response.status_code();
    // workerd hands an interim answer (`100 Continue` to a forwarded
    // `Expect`) to `fetch()` as if it were final; no response can be built
    // from it, so it counts as a failed call.
    if status < 200 && status != 101 {
        return Err(ConvertError::Status(status));
    }
    let mut out = http::Response::new(WorkerBody::from_stream(stream));
    *out.status_mut() =
        http::StatusCode::from_u16(status).map_err(|_| ConvertError::Status(status))?;
    *out.headers_mut() = header_map(&response.headers().0)?;
    if let Some(socket) = response.websocket() {
        out.extensions_mut().insert(socket);
    }
    Ok(out)
}

/// JS headers → `HeaderMap`. JS header values are byte strings (one char
/// per byte), so they are mapped back to bytes, not encoded as UTF-8.
fn header_map(headers: &web_sys::Headers) -> Result<HeaderMap, ConvertError> {
    let mut map = HeaderMap::new();
    for (name, value) in worker::Headers(headers.clone()).entries() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConvertError::Header(name.clone()))?;
        let bytes: Vec<u8> = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect();
        let value =
            HeaderValue::from_bytes(&bytes).map_err(|_| ConvertError::Header(name.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// `HeaderMap` → JS headers (bytes as byte-string chars).
fn js_headers(map: &HeaderMap) -> Result<web_sys::Headers, ConvertError> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in map {
        let value: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
        headers
            .append(name.as_str(), &value)
            .map_err(|_| ConvertError::Header(name.to_string()))?;
    }
    Ok(headers)
}
