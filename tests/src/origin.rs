//! Real loopback origin servers for the scenarios: they answer with what
//! they received, so a test can assert what the gateway forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What an origin does with every request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// JSON echo: method, path, query, headers, body length.
    Echo,
    /// Waits, then echoes.
    Slow(Duration),
    /// A fixed status and body (e.g. a JSON document or an error page).
    Fixed(u16, &'static str, String),
    /// Streams `n` bytes in 64 KiB chunks.
    Large(usize),
}

/// A running origin; stops when dropped.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    complete: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Origin {
    /// Starts an origin on a free loopback port.
    pub fn start(behaviour: Behaviour) -> Origin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let hits = Arc::new(AtomicUsize::new(0));
        let complete = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let completed = complete.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let behaviour = behaviour.clone();
                let counter = counter.clone();
                let completed = completed.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        answer(behaviour.clone(), req, completed.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            hits,
            complete,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head arrived so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Echoed requests whose whole body arrived (a body cut off midway
    /// does not count).
    pub fn complete(&self) -> usize {
        self.complete.load(Ordering::SeqCst)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    behaviour: Behaviour,
    req: Request<Incoming>,
    complete: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    match behaviour {
        Behaviour::Echo => Ok(echo(req, &complete).await),
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            Ok(echo(req, &complete).await)
        }
        Behaviour::Fixed(status, content_type, body) => Ok(Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("x-origin", "fixed")
            .body(Full::new(Bytes::from(body)).boxed())
            .expect("response")),
        Behaviour::Large(n) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..n.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(n - i * chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
            });
            let stream = futures_util::stream::iter(chunks);
            Ok(Response::builder()
                .header("content-type", "application/octet-stream")
                .body(StreamBody::new(stream).boxed())
                .expect("response"))
        }
    }
}

async fn echo(req: Request<Incoming>, complete: &AtomicUsize) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => {
            complete.fetch_add(1, Ordering::SeqCst);
            b.to_bytes()
        }
        Err(_) => Bytes::new(),
    };
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": bytes.len(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .expect("response")
}
