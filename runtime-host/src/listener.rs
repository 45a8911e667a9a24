//! The HTTP/1.1 accept loop shared by the public, admin and demo listeners:
//! keep-alive, header limits, a connection cap, `TCP_NODELAY`, graceful
//! shutdown.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Largest request head (request line plus headers); beyond it: 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers; beyond it: 431.
pub const MAX_HEADERS: usize = 100;
/// Open HTTP connections per listener. At the cap the listener stops
/// accepting (new clients wait in the kernel's backlog) instead of growing
/// memory: each connection holds buffers up to `MAX_HEAD_BYTES` and a task.
/// A connection handed over to a WebSocket no longer counts.
pub const MAX_CONNECTIONS: usize = 10_000;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// In-flight requests get this long to finish at shutdown (admin and demo
/// listeners; the public one follows `[server] shutdown_grace_s`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tells listeners to stop.
pub type ShutdownSignal = watch::Receiver<bool>;

/// Resolves once `signal` says stop (or its sender is gone).
pub async fn stopped(signal: &mut ShutdownSignal) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Serves HTTP/1.1 on `listener` with `handler(request, peer)` until
/// `shutdown` turns true, then lets open requests finish (bounded).
pub async fn serve<H, F, B>(listener: TcpListener, handler: H, shutdown: ShutdownSignal)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_with_grace(listener, handler, shutdown, SHUTDOWN_GRACE).await;
}

/// [`serve`], giving requests in flight `grace` to finish at shutdown.
pub async fn serve_with_grace<H, F, B>(
    listener: TcpListener,
    handler: H,
    mut shutdown: ShutdownSignal,
    grace: Duration,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let response = handler(request, peer);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                // A 101 hands the connection to the handler (WebSockets).
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("closing connections still busy after {grace:?}");
    }
}
