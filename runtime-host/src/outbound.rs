//! Outgoing HTTP of the guests (`wasi:http/outgoing-handler`): one pooled
//! keep-alive client shared by every instance, with the guest's
//! `request-options` timeouts and error codes the edge can act on.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::objects::{Objects, dispatch};
use crate::pool::EdgeClock;
use crate::redis_link::{self, Redis};
use crate::unread;

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// Connect bound when the guest sets none (the OS default is minutes).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of a GET/HEAD/CONNECT body (never sent) read and discarded.
const UNSENT_MAX: usize = 64 * 1024;
/// How long such a body is kept writable once the response is in.
const UNSENT_TIME: Duration = Duration::from_secs(10);

/// Host names under this suffix address Durable Objects.
pub const DURABLE_OBJECT_SUFFIX: &str = ".do.edgegate.internal";

/// The host's connector for `http` and `https` (Mozilla roots) origins:
/// `TCP_NODELAY`, TCP keep-alive, connects bounded by `connect_timeout`.
/// Shared by the guests' client, health probes and span export.
pub fn connector(
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The shared outbound client.
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, WasiBody>,
    objects: Option<Arc<Objects>>,
    redis: Option<Arc<Redis>>,
}

impl Outbound {
    /// A client for `http` and `https` (Mozilla roots) origins; requests to
    /// Durable Objects go to `objects`.
    pub fn new(objects: Option<Arc<Objects>>) -> Result<Outbound, rustls::Error> {
        let connector = connector(DEFAULT_CONNECT_TIMEOUT)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Outbound {
            client,
            objects,
            redis: None,
        })
    }

    /// Requests to `http://redis.edgegate.internal/` run on `redis`.
    pub fn with_redis(mut self, redis: Option<Arc<Redis>>) -> Outbound {
        self.redis = redis;
        self
    }

    /// Sends `request` (absolute URI) and returns once the response head
    /// arrived; the body streams after that.
    ///
    /// Timeouts: `connect_timeout` bounds getting a connection (DNS, TCP,
    /// TLS; a pooled connection is immediate), `first_byte_timeout` runs from
    /// then until the response head, `between_bytes_timeout` between body
    /// frames.
    pub async fn send(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        if request.uri().authority().is_none() {
            return Err(Error::HttpRequestUriInvalid);
        }
        if is_durable_object(request.uri()) {
            return self.durable_object(request, options).await;
        }
        if redis_link::is_redis(request.uri()) {
            // Never the network: the host's Redis link, or nothing.
            return match &self.redis {
                Some(redis) => redis.rest(request, options).await,
                None => Err(Error::DestinationNotFound),
            };
        }
        let options = options.unwrap_or_default();
        let mut unsent = unsent_body(&mut request).map(Box::pin);
        let response = self.network(request, &options);
        tokio::pin!(response);
        let response = std::future::poll_fn(|cx| {
            if let Some(body) = &mut unsent
                && body.as_mut().poll(cx).is_ready()
            {
                unsent = None;
            }
            response.as_mut().poll(cx)
        })
        .await;
        if let Some(body) = unsent {
            // The guest has not finished its body yet: keep it writable.
            tokio::spawn(body);
        }
        response
    }

    /// Sends `request` to an origin.
    async fn network(
        &self,
        mut request: Request<WasiBody>,
        options: &RequestOptions,
    ) -> Result<Response<WasiBody>, Error> {
        let mut connection = capture_connection(&mut request);
        let response = self.client.request(request);
        tokio::pin!(response);
        let connect_deadline = options.connect_timeout.map(|t| Instant::now() + t);
        let finished_early = tokio::select! {
            biased;
            result = &mut response => Some(result),
            _ = connection.wait_for_connection_metadata() => None,
            _ = sleep_until(connect_deadline) => return Err(Error::ConnectionTimeout),
        };
        let result = match finished_early {
            Some(result) => result,
            None => match options.first_byte_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|_| Error::ConnectionReadTimeout)?,
                None => response.await,
            },
        };
        let response = result.map_err(|e| {
            let code = client_error(&e);
            tracing::debug!(error = %error_chain(&e), ?code, "outbound request failed");
            code
        })?;
        Ok(response.map(|body| TimedBody::new(body, options.between_bytes_timeout).boxed_unsync()))
    }
}

/// Whether `uri` addresses a Durable Object (`<name>.do.edgegate.internal`).
pub fn is_durable_object(uri: &Uri) -> bool {
    uri.host().is_some_and(|host| {
        host.len() > DURABLE_OBJECT_SUFFIX.len()
            && host
                .get(host.len() - DURABLE_OBJECT_SUFFIX.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(DURABLE_OBJECT_SUFFIX))
    })
}

impl Outbound {
    /// **Durable Object dispatch.** Every outbound request to
    /// `<class>.do.edgegate.internal` ends here instead of the network and
    /// is served by the in-process object.
    async fn durable_object(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let Some(objects) = &self.objects else {
            return Err(Error::DestinationNotFound);
        };
        let host = request.uri().host().unwrap_or_default();
        let class = &host[..host.len().saturating_sub(DURABLE_OBJECT_SUFFIX.len())];
        let class = class.to_string();
        dispatch::fetch(objects, &class, request, options).await
    }
}

/// For a GET, HEAD or CONNECT without `content-length` or
/// `transfer-encoding`, hyper sends no body and drops it right after the
/// head, so a guest that writes or finishes its (empty) body after sending
/// would find the stream closed and fail the request; wstd's client does
/// exactly that, racing the origin. Such a body is taken off the request and
/// the returned future reads it to its end instead (discarding at most
/// [`UNSENT_MAX`] bytes for at most [`UNSENT_TIME`]).
fn unsent_body(request: &mut Request<WasiBody>) -> Option<impl Future<Output = ()> + Send + use<>> {
    let bodiless = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::CONNECT
    ) && !request.headers().contains_key(header::CONTENT_LENGTH)
        && !request.headers().contains_key(header::TRANSFER_ENCODING)
        && !request.body().is_end_stream();
    if !bodiless {
        return None;
    }
    let empty = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let body = std::mem::replace(request.body_mut(), empty);
    Some(unread::discard(body, UNSENT_MAX, UNSENT_TIME))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Maps a client failure to the `wasi:http` error code the guest sees: the
/// edge answers refused/reset with 502 and timeouts with 504.
fn client_error(err: &hyper_util::client::legacy::Error) -> Error {
    let causes = causes(err);
    if let Some(tls) = causes
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
    {
        return tls_error(tls);
    }
    if causes
        .iter()
        .any(|e| e.to_string().starts_with("dns error"))
    {
        return dns_error();
    }
    if let Some(hyper) = causes.iter().find_map(|e| e.downcast_ref::<hyper::Error>()) {
        return hyper_error(hyper);
    }
    let io = causes
        .iter()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .find(|io| io.kind() != io::ErrorKind::Other);
    match io {
        Some(io) => io_error(io, err.is_connect()),
        None if err.is_connect() => Error::ConnectionTerminated,
        None => Error::HttpProtocolError,
    }
}

/// Every error below `err`. `io::Error` hides the error it wraps from
/// `source()` (and the TLS connector wraps twice), so look inside too.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut found = Vec::new();
    let mut next: Vec<&(dyn StdError + 'static)> = err.source().into_iter().collect();
    while let Some(e) = next.pop() {
        found.push(e);
        next.extend(e.source());
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            next.push(inner);
        }
    }
    found
}

/// `error: cause: cause …` on one line.
fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn dns_error() -> Error {
    Error::DnsError {
        rcode: Some("address not available".into()),
        info_code: None,
    }
}

fn io_error(err: &io::Error, connecting: bool) -> Error {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        io::ErrorKind::TimedOut if connecting => Error::ConnectionTimeout,
        io::ErrorKind::TimedOut => Error::ConnectionReadTimeout,
        io::ErrorKind::HostUnreachable => Error::DestinationUnavailable,
        io::ErrorKind::NetworkUnreachable => Error::DestinationIpUnroutable,
        io::ErrorKind::AddrNotAvailable => dns_error(),
        _ => Error::ConnectionTerminated,
    }
}

fn hyper_error(err: &hyper::Error) -> Error {
    if err.is_timeout() {
        Error::ConnectionReadTimeout
    } else if err.is_incomplete_message() {
        Error::HttpResponseIncomplete
    } else if err.is_closed() || err.is_canceled() {
        Error::ConnectionTerminated
    } else if err.is_parse() || err.is_parse_status() {
        Error::HttpProtocolError
    } else {
        match err.source().and_then(|s| s.downcast_ref::<io::Error>()) {
            Some(io) => io_error(io, false),
            None => Error::HttpProtocolError,
        }
    }
}

fn tls_error(err: &rustls::Error) -> Error {
    match err {
        rustls::Error::InvalidCertificate(_) => Error::TlsCertificateError,
        rustls::Error::AlertReceived(alert) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    }
}

/// A response body that fails when the next frame takes too long.
struct TimedBody {
    inner: hyper::body::Incoming,
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: hyper::body::Incoming, limit: Option<Duration>) -> TimedBody {
        TimedBody {
            inner,
            limit,
            timer: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(|e| hyper_error(&e))))
            }
            Poll::Pending => {
                let Some(limit) = this.limit else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(timer.as_mut().poll(cx));
                this.timer = None;
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `wasi:http` hooks of one instance: outgoing requests go through the
/// shared [`Outbound`] client.
pub struct OutboundHooks {
    outbound: Arc<Outbound>,
    /// The request being served; stopped by its first call to an origin.
    pub clock: Option<EdgeClock>,
}

impl OutboundHooks {
    /// Hooks sending through `outbound`.
    pub fn new(outbound: Arc<Outbound>) -> OutboundHooks {
        OutboundHooks {
            outbound,
            clock: None,
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), Error>> + Send> {
        // The client drives connections itself; there is no per-request I/O
        // task whose outcome would need reporting.
        drop(fut);
        // Object and Redis calls (rate limits) are part of the edge's own
        // work; the first call to an origin ends it.
        if !is_durable_object(request.uri())
            && !redis_link::is_redis(request.uri())
            && let Some(clock) = self.clock.take()
        {
            clock.stop();
        }
        let outbound = Arc::clone(&self.outbound);
        Box::new(async move {
            let response = outbound.send(request, options).await?;
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_object_authority_is_recognised() {
        let yes: Uri = "http://counter.do.edgegate.internal/x".parse().unwrap();
        let upper: Uri = "http://A.DO.EDGEGATE.INTERNAL:80/".parse().unwrap();
        let bare: Uri = "http://do.edgegate.internal/".parse().unwrap();
        let other: Uri = "http://example.com/".parse().unwrap();
        assert!(is_durable_object(&yes));
        assert!(is_durable_object(&upper));
        assert!(!is_durable_object(&bare));
        assert!(!is_durable_object(&other));
    }

    #[test]
    fn refused_and_timeouts_map_to_their_codes() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(io_error(&refused, true), Error::ConnectionRefused));
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert!(matches!(
            io_error(&timed_out, true),
            Error::ConnectionTimeout
        ));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            io_error(&reset, false),
            Error::ConnectionTerminated
        ));
    }
}
