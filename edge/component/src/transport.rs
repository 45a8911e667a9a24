//! WASI HTTP plumbing of the component: the incoming request, outgoing
//! requests and the response.
//!
//! Bodies that only pass through (a request body on its way upstream, an
//! upstream response on its way to the client) are spliced from one host
//! stream to the other: their bytes never enter guest memory, and an empty
//! body costs one host call instead of a read, wait and write loop. Header
//! lists cross the boundary in one call each (`fields.from-list`,
//! `fields.entries`), not one call per header.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, StatusCode};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureTrailers, IncomingBody, IncomingRequest, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, OutgoingResponse, RequestOptions,
    ResponseOutparam, Scheme as WasiScheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wstd::io::AsyncPollable;

/// Largest chunk read into guest memory at once (bodies read to the end).
const READ_CHUNK: u64 = 64 * 1024;

/// Most of a client's body read and thrown away after the answer (see
/// [`linger`]): enough for uploads somewhat over a route's
/// `max_body_bytes`. The same bounds as `edgegate serve`'s own.
const CLIENT_REST_MAX: u64 = 4 * 1024 * 1024;
/// How long a client gets to send that rest.
const CLIENT_REST_TIME: Duration = Duration::from_secs(10);

thread_local! {
    /// The client's body, when it was let go of before its end (see
    /// [`linger`]). An instance serves one request at a time.
    static UNREAD: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

/// Why a transfer failed.
#[derive(Debug)]
pub enum Failure {
    /// The host answered with a `wasi:http` error code.
    Code(ErrorCode),
    /// Anything else (a stream error, a limit, a rejected value).
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Code(code) => write!(f, "{code:?}"),
            Failure::Other(why) => f.write_str(why),
        }
    }
}

/// A request or response body.
pub struct WasiBody {
    kind: Kind,
    /// Set by `EdgeBody::limit`: sending fails past this many bytes.
    limit: Option<Limit>,
}

enum Kind {
    Empty,
    Full(Bytes),
    Incoming(Incoming),
}

struct Limit {
    max: u64,
    exceeded: Arc<AtomicBool>,
}

/// An incoming body not read yet. Field order matters: the stream, a child
/// of the body, must be dropped first.
struct Incoming {
    stream: Option<InputStream>,
    /// `None` once finished (its trailers taken).
    body: Option<IncomingBody>,
    /// The client's body, whose rest [`linger`] reads if it is dropped
    /// before its end.
    linger: bool,
}

impl WasiBody {
    /// No bytes.
    pub fn empty() -> WasiBody {
        WasiBody {
            kind: Kind::Empty,
            limit: None,
        }
    }

    /// These bytes.
    pub fn full(bytes: Bytes) -> WasiBody {
        let kind = if bytes.is_empty() {
            Kind::Empty
        } else {
            Kind::Full(bytes)
        };
        WasiBody { kind, limit: None }
    }

    fn incoming(body: IncomingBody, linger: bool) -> WasiBody {
        WasiBody {
            kind: Kind::Incoming(Incoming {
                stream: None,
                body: Some(body),
                linger,
            }),
            limit: None,
        }
    }

    /// The same body, failing once more than `max` bytes went through.
    pub fn limited(mut self, max: u64, exceeded: Arc<AtomicBool>) -> WasiBody {
        self.limit = Some(Limit { max, exceeded });
        self
    }

    /// The whole body, failing beyond `max` bytes.
    pub async fn read_to_end(self, max: usize) -> Result<Bytes, String> {
        let too_large = || format!("body larger than {max} bytes");
        let bytes = match self.kind {
            Kind::Empty => Bytes::new(),
            Kind::Full(bytes) => bytes,
            Kind::Incoming(mut incoming) => {
                let stream = incoming.stream()?;
                let mut ready: Option<AsyncPollable> = None;
                let mut out = Vec::new();
                loop {
                    match stream.read(READ_CHUNK) {
                        Ok(chunk) if chunk.is_empty() => {
                            ready
                                .get_or_insert_with(|| AsyncPollable::new(stream.subscribe()))
                                .wait_for()
                                .await;
                        }
                        Ok(chunk) => {
                            if out.len() + chunk.len() > max {
                                return Err(too_large());
                            }
                            out.extend_from_slice(&chunk);
                        }
                        Err(StreamError::Closed) => break,
                        Err(StreamError::LastOperationFailed(e)) => {
                            return Err(e.to_debug_string());
                        }
                    }
                }
                drop(ready);
                Bytes::from(out)
            }
        };
        if bytes.len() > max {
            return Err(too_large());
        }
        Ok(bytes)
    }

    /// Writes the body into `out` and finishes it (with the incoming body's
    /// trailers, if any). An error leaves `out` unfinished, which the host
    /// reports to the other side as an aborted body.
    async fn send(self, out: OutgoingBody) -> Result<(), Failure> {
        let WasiBody { kind, limit } = self;
        let failed = |why: String| Failure::Other(why);
        let trailers = match kind {
            Kind::Empty => None,
            Kind::Full(bytes) => {
                if let Some(limit) = &limit
                    && bytes.len() as u64 > limit.max
                {
                    limit.exceeded.store(true, Ordering::Relaxed);
                    return Err(failed("body too large".into()));
                }
                let stream = out
                    .write()
                    .map_err(|()| failed("outgoing body already written".into()))?;
                let stream = wstd::io::AsyncOutputStream::new(stream);
                stream
                    .write_all(&bytes)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                drop(stream);
                None
            }
            Kind::Incoming(mut incoming) => {
                let input = incoming.stream().map_err(failed)?;
                let output = out
                    .write()
                    .map_err(|()| failed("outgoing body already written".into()))?;
                splice(input, &output, limit.as_ref()).await?;
                drop(output);
                incoming.trailers().await?
            }
        };
        OutgoingBody::finish(out, trailers).map_err(Failure::Code)
    }
}

impl Incoming {
    /// The body's stream, taken on first use.
    fn stream(&mut self) -> Result<&InputStream, String> {
        if self.stream.is_none() {
            let stream = self
                .body
                .as_ref()
                .and_then(|body| body.stream().ok())
                .ok_or_else(|| "incoming body already read".to_string())?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_ref().expect("set above"))
    }

    /// Ends the body (its stream must be finished) and waits for its
    /// trailers.
    async fn trailers(mut self) -> Result<Option<Fields>, Failure> {
        drop(self.stream.take());
        let body = self
            .body
            .take()
            .ok_or_else(|| Failure::Other("incoming body already finished".into()))?;
        let future: FutureTrailers = IncomingBody::finish(body);
        // `get` answers only once the future was polled as ready.
        AsyncPollable::new(future.subscribe()).wait_for().await;
        match future.get() {
            Some(Ok(Ok(trailers))) => Ok(trailers),
            Some(Ok(Err(code))) => Err(Failure::Code(code)),
            Some(Err(())) => Err(Failure::Other("trailers already taken".into())),
            None => Err(Failure::Other(
                "trailers not ready when polled ready".into(),
            )),
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.linger && self.body.is_some() {
            let unread = Incoming {
                stream: self.stream.take(),
                body: self.body.take(),
                linger: false,
            };
            UNREAD.with(|slot| *slot.borrow_mut() = Some(unread));
        }
    }
}

/// Moves everything from `input` to `output` host-side, enforcing `limit`.
/// Readiness is awaited only when a splice moved nothing.
async fn splice(
    input: &InputStream,
    output: &OutputStream,
    limit: Option<&Limit>,
) -> Result<(), Failure> {
    let mut sent: u64 = 0;
    let mut input_ready: Option<AsyncPollable> = None;
    let mut output_ready: Option<AsyncPollable> = None;
    let failed = |e: wasip2::io::error::Error| Failure::Other(e.to_debug_string());
    loop {
        let room = match limit {
            Some(limit) => limit.max - sent,
            None => u64::MAX,
        };
        if room == 0 {
            // At the limit: one more byte means too much. It is read, not
            // spliced, so the upstream never gets it.
            match input.read(1) {
                Ok(byte) if byte.is_empty() => {}
                Ok(_) => {
                    if let Some(limit) = limit {
                        limit.exceeded.store(true, Ordering::Relaxed);
                    }
                    return Err(Failure::Other("request body too large".into()));
                }
                Err(StreamError::Closed) => return Ok(()),
                Err(StreamError::LastOperationFailed(e)) => return Err(failed(e)),
            }
        } else {
            match output.splice(input, room) {
                Ok(0) => {}
                Ok(n) => {
                    sent += n;
                    continue;
                }
                Err(StreamError::Closed) => return Ok(()),
                Err(StreamError::LastOperationFailed(e)) => return Err(failed(e)),
            }
        }
        // Nothing moved: wait until both sides can go on.
        input_ready
            .get_or_insert_with(|| AsyncPollable::new(input.subscribe()))
            .wait_for()
            .await;
        if room > 0 {
            output_ready
                .get_or_insert_with(|| AsyncPollable::new(output.subscribe()))
                .wait_for()
                .await;
        }
    }
}

/// Reads and throws away the rest of the client's body, if the request let
/// go of it before its end (a 413, a 401, an early upstream answer): the
/// client may still be sending it, and a host that closes the connection
/// with bytes unread makes the client see a reset instead of the answer.
/// Called once the answer is out; bounded by [`CLIENT_REST_MAX`] and
/// [`CLIENT_REST_TIME`], as lingering close is in other servers.
pub async fn linger() {
    use wstd::future::FutureExt as _;
    let Some(mut unread) = UNREAD.with(|slot| slot.borrow_mut().take()) else {
        return;
    };
    let Ok(input) = unread.stream() else {
        return;
    };
    let skip = async {
        let mut left = CLIENT_REST_MAX;
        let mut ready: Option<AsyncPollable> = None;
        while left > 0 {
            match input.skip(left) {
                Ok(0) => {
                    ready
                        .get_or_insert_with(|| AsyncPollable::new(input.subscribe()))
                        .wait_for()
                        .await
                }
                Ok(n) => left = left.saturating_sub(n),
                Err(_) => break,
            }
        }
    };
    let _ = skip
        .timeout(wstd::time::Duration::from(CLIENT_REST_TIME))
        .await;
}

/// A header list as `fields` (one host call).
fn fields(headers: &HeaderMap) -> Result<Fields, Failure> {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).map_err(|e| Failure::Other(format!("header rejected: {e:?}")))
}

/// `fields` as a header map; the resource is released here.
fn header_map(fields: Fields) -> Result<HeaderMap, String> {
    let entries = fields.entries();
    drop(fields);
    let mut map = HeaderMap::with_capacity(entries.len());
    for (name, value) in entries {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name}: {e}"))?;
        let value =
            HeaderValue::from_bytes(&value).map_err(|e| format!("header value for {name}: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn method_from_wasi(method: WasiMethod) -> Result<Method, String> {
    Ok(match method {
        WasiMethod::Get => Method::GET,
        WasiMethod::Head => Method::HEAD,
        WasiMethod::Post => Method::POST,
        WasiMethod::Put => Method::PUT,
        WasiMethod::Delete => Method::DELETE,
        WasiMethod::Connect => Method::CONNECT,
        WasiMethod::Options => Method::OPTIONS,
        WasiMethod::Trace => Method::TRACE,
        WasiMethod::Patch => Method::PATCH,
        WasiMethod::Other(m) => Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?,
    })
}

fn method_to_wasi(method: &Method) -> WasiMethod {
    match *method {
        Method::GET => WasiMethod::Get,
        Method::HEAD => WasiMethod::Head,
        Method::POST => WasiMethod::Post,
        Method::PUT => WasiMethod::Put,
        Method::DELETE => WasiMethod::Delete,
        Method::CONNECT => WasiMethod::Connect,
        Method::OPTIONS => WasiMethod::Options,
        Method::TRACE => WasiMethod::Trace,
        Method::PATCH => WasiMethod::Patch,
        ref other => WasiMethod::Other(other.as_str().to_string()),
    }
}

fn scheme_from_wasi(scheme: WasiScheme) -> Result<Scheme, String> {
    Ok(match scheme {
        WasiScheme::Http => Scheme::HTTP,
        WasiScheme::Https => Scheme::HTTPS,
        WasiScheme::Other(s) => s.parse().map_err(|e| format!("scheme {s}: {e}"))?,
    })
}

fn scheme_to_wasi(scheme: &Scheme) -> WasiScheme {
    match scheme.as_str() {
        "http" => WasiScheme::Http,
        "https" => WasiScheme::Https,
        other => WasiScheme::Other(other.to_string()),
    }
}

/// The incoming request as an `http` request whose body is still the
/// host's.
pub fn request_from_wasi(incoming: IncomingRequest) -> Result<http::Request<WasiBody>, String> {
    let headers = header_map(incoming.headers())?;
    let method = method_from_wasi(incoming.method())?;
    let mut uri = Uri::builder();
    if let Some(scheme) = incoming.scheme() {
        uri = uri.scheme(scheme_from_wasi(scheme)?);
    }
    if let Some(authority) = incoming.authority() {
        uri = uri.authority(Authority::try_from(authority).map_err(|e| e.to_string())?);
    }
    if let Some(path) = incoming.path_with_query() {
        uri = uri.path_and_query(PathAndQuery::try_from(path).map_err(|e| e.to_string())?);
    }
    let uri = uri.build().map_err(|e| e.to_string())?;
    let body = incoming
        .consume()
        .map_err(|()| "incoming request body already consumed".to_string())?;
    // A GET or HEAD without `content-length` has no body to linger over
    // (hosts may drop `transfer-encoding`, so a chunked POST cannot be told
    // from an empty one). With `expect: 100-continue`, reading would invite
    // a body the client would otherwise not send; `edgegate serve`
    // discards rests itself.
    let bodiless = matches!(method, Method::GET | Method::HEAD)
        && !headers.contains_key(http::header::CONTENT_LENGTH);
    let linger = !bodiless
        && !headers.contains_key(http::header::EXPECT)
        && !crate::host_feature("unread-bodies");
    let mut request = http::Request::new(WasiBody::incoming(body, linger));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Sends `response` through `outparam` and streams its body. Failures past
/// the head trap, as the client cannot be told any more.
pub async fn respond(outparam: ResponseOutparam, response: http::Response<WasiBody>) {
    let (parts, body) = response.into_parts();
    let headers = match fields(&parts.headers) {
        Ok(headers) => headers,
        Err(e) => panic!("response headers: {e}"),
    };
    let wasi_response = OutgoingResponse::new(headers);
    wasi_response
        .set_status_code(parts.status.as_u16())
        .expect("a valid status code");
    let wasi_body = wasi_response.body().expect("body taken once");
    ResponseOutparam::set(outparam, Ok(wasi_response));
    if let Err(e) = body.send(wasi_body).await {
        panic!("sending the response body: {e}");
    }
}

/// Timeouts of one outgoing request.
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// Sends `request` (absolute URI) and returns the response head; its body
/// streams from the host on.
pub async fn send(
    request: http::Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<http::Response<WasiBody>, Failure> {
    let (parts, body) = request.into_parts();
    let other = |what: &str| Failure::Other(format!("{what} rejected by wasi-http"));
    let wasi_request = OutgoingRequest::new(fields(&parts.headers)?);
    wasi_request
        .set_method(&method_to_wasi(&parts.method))
        .map_err(|()| other("method"))?;
    let scheme = parts.uri.scheme().map_or(WasiScheme::Https, scheme_to_wasi);
    wasi_request
        .set_scheme(Some(&scheme))
        .map_err(|()| other("scheme"))?;
    wasi_request
        .set_authority(parts.uri.authority().map(Authority::as_str))
        .map_err(|()| other("authority"))?;
    if let Some(path) = parts.uri.path_and_query() {
        wasi_request
            .set_path_with_query(Some(path.as_str()))
            .map_err(|()| other("path"))?;
    }
    // A GET or HEAD without framing headers goes out without a body (HTTP/1.1
    // gives it none), so its outgoing body is not even opened: that saves the
    // host calls and the wait for the client's trailers.
    let framed = parts.headers.contains_key(http::header::CONTENT_LENGTH)
        || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    let wasi_body = if framed || !matches!(parts.method, Method::GET | Method::HEAD) {
        Some(wasi_request.body().map_err(|()| other("body"))?)
    } else {
        None
    };

    let options = RequestOptions::new();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    options
        .set_connect_timeout(Some(nanos(timeouts.connect)))
        .map_err(|()| other("connect timeout"))?;
    options
        .set_first_byte_timeout(Some(nanos(timeouts.first_byte)))
        .map_err(|()| other("first-byte timeout"))?;
    options
        .set_between_bytes_timeout(Some(nanos(timeouts.between_bytes)))
        .map_err(|()| other("between-bytes timeout"))?;

    let pending = outgoing_handler::handle(wasi_request, Some(options)).map_err(Failure::Code)?;
    let send_body = async move {
        match wasi_body {
            Some(out) => body.send(out).await,
            None => Ok(()),
        }
    };
    let ((), response) = futures_lite::future::try_zip(send_body, async move {
        AsyncPollable::new(pending.subscribe()).wait_for().await;
        match pending.get() {
            Some(Ok(Ok(response))) => response_from_wasi(response),
            Some(Ok(Err(code))) => Err(Failure::Code(code)),
            Some(Err(())) => Err(Failure::Other("response already taken".into())),
            None => Err(Failure::Other(
                "response not ready when polled ready".into(),
            )),
        }
    })
    .await?;
    Ok(response)
}

fn response_from_wasi(incoming: IncomingResponse) -> Result<http::Response<WasiBody>, Failure> {
    let headers = header_map(incoming.headers()).map_err(Failure::Other)?;
    let status = StatusCode::from_u16(incoming.status())
        .map_err(|e| Failure::Other(format!("status: {e}")))?;
    let body = incoming
        .consume()
        .map_err(|()| Failure::Other("response body already consumed".into()))?;
    let mut response = http::Response::new(WasiBody::incoming(body, false));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
