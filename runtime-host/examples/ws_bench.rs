//! WebSocket benchmark client for `bench/ws.sh` and `bench/ws-scale.sh`.
//!
//! ```text
//! ws_bench URL [SUBSCRIBERS] [MESSAGES] [INTERVAL_MS]
//! ws_bench hold URL_PREFIX SOCKETS [ROOM_SIZE]
//! ws_bench broadcast URL SUBSCRIBERS [MESSAGES] [INTERVAL_MS]
//! ws_bench fanout-server ADDR
//! ```
//!
//! - The first form (`bench/ws.sh`) connects SUBSCRIBERS sockets to one
//!   hub one after another, subscribes each, then one publisher sends
//!   MESSAGES messages carrying their send time, INTERVAL_MS apart; every
//!   delivery's latency is recorded.
//! - `hold` opens SOCKETS connections, ROOM_SIZE (default 100) to each of
//!   the hubs `URL_PREFIX0`, `URL_PREFIX1`, …, subscribes each, prints
//!   `holding`, then keeps them open (reading) for `WS_BENCH_HOLD_S`
//!   seconds (default 10) or until SIGTERM, so the caller can read the
//!   gateway's memory, and says how the connections fared.
//! - `broadcast` is the first form with connections opened concurrently;
//!   give it one token so that all subscribers are one user and only the
//!   first connection is announced (`join`) to the others.
//! - `fanout-server` is the floor `broadcast` is compared with: a server
//!   that completes each handshake, acknowledges the subscription, and
//!   then writes each publish as one pre-encoded frame to every subscriber
//!   with a plain `send()` per socket, in a loop on one thread. What it
//!   costs is the kernel's loopback TCP path, which any server pays.
//!
//! Environment:
//! - `WS_BENCH_TOKEN`: bearer tokens (whitespace-separated) sent as
//!   `authorization`; connection `i` uses token `i mod count`, the
//!   publisher the first.
//! - `WS_BENCH_CONCURRENCY`: handshakes in flight in `hold` and
//!   `broadcast` (default 64).
//! - `WS_BENCH_SOURCE_IPS`: local addresses to connect from, in turn
//!   (e.g. `127.0.0.2 127.0.0.3`), for more than one address's ports.
//! - `WS_BENCH_HOLD`: the first form waits 3 s before exiting, with the
//!   sockets open.
//!
//! Prints set-up time, latency percentiles over all deliveries and how
//! connections ended. Loopback use only.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

type Ws = WebSocketStream<TcpStream>;

const TOPIC: &str = "bench";
/// Longest a connect, handshake and subscribe may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a subscriber waits for its next message before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection parameters shared by every socket of a run.
struct Client {
    addr: SocketAddr,
    tokens: Vec<String>,
    sources: Vec<IpAddr>,
    concurrency: usize,
}

impl Client {
    fn from_env(url: &str) -> Client {
        let request = url.into_client_request().expect("a ws:// URL");
        let host = request.uri().host().expect("URL host");
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .expect("resolving the URL host")
            .next()
            .expect("an address for the URL host");
        let var = |name| std::env::var(name).unwrap_or_default();
        Client {
            addr,
            tokens: var("WS_BENCH_TOKEN")
                .split_whitespace()
                .map(String::from)
                .collect(),
            sources: var("WS_BENCH_SOURCE_IPS")
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("WS_BENCH_SOURCE_IPS: IP addresses"))
                .collect(),
            concurrency: var("WS_BENCH_CONCURRENCY").parse().unwrap_or(64).max(1),
        }
    }

    /// Connection `i` to `url`: TCP from the `i`th source address, the
    /// handshake with the `i`th token.
    async fn connect(&self, i: usize, url: &str) -> anyhow::Result<Ws> {
        let mut request = url.into_client_request()?;
        if !self.tokens.is_empty() {
            let token = &self.tokens[i % self.tokens.len()];
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
        }
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(self.sources[i % self.sources.len()], 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        // Small buffers: thousands of sockets share this process (the
        // defaults hold 128 KiB each).
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(4 * 1024);
        let (ws, _) = client_async_with_config(request, stream, Some(config)).await?;
        Ok(ws)
    }

    /// Connection `i`, subscribed to [`TOPIC`] (the ack received).
    async fn subscribe(&self, i: usize, url: &str) -> anyhow::Result<Ws> {
        let open = async {
            let mut ws = self.connect(i, url).await?;
            let subscribe = format!(r#"{{"type":"subscribe","topic":"{TOPIC}","id":"s"}}"#);
            ws.send(Message::Text(subscribe.into())).await?;
            // Others' `join` may come first.
            while let Some(frame) = ws.next().await {
                if let Message::Text(text) = frame?
                    && text.contains(r#""type":"ack""#)
                {
                    return Ok(ws);
                }
            }
            anyhow::bail!("closed before the subscription was acknowledged")
        };
        tokio::time::timeout(OPEN_TIMEOUT, open)
            .await
            .map_err(|_| anyhow::anyhow!("not subscribed within {OPEN_TIMEOUT:?}"))?
    }

    /// Opens and subscribes `count` connections, `url(i)` for the `i`th,
    /// with at most `concurrency` in progress, handing each to `each` as
    /// soon as it is subscribed (it may be sent `join`s from then on); the
    /// failures, counted by message.
    async fn subscribe_all(
        &self,
        count: usize,
        url: impl Fn(usize) -> String,
        mut each: impl FnMut(Ws),
    ) -> BTreeMap<String, usize> {
        let mut failed = BTreeMap::new();
        let mut opening = futures_util::stream::iter(0..count)
            .map(|i| {
                let url = url(i);
                async move { self.subscribe(i, &url).await }
            })
            .buffer_unordered(self.concurrency);
        while let Some(result) = opening.next().await {
            match result {
                Ok(ws) => each(ws),
                Err(e) => *failed.entry(format!("{e:#}")).or_insert(0) += 1,
            }
        }
        failed
    }
}

/// How a subscriber's connection ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// Got every message it waited for (or the hold ended).
    Done,
    /// The gateway sent a close frame with this code.
    Closed(u16),
    /// The connection ended without a close frame, or failed.
    Failed(String),
    /// Nothing arrived for [`READ_TIMEOUT`].
    TimedOut,
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let first = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:19023/ws/bench".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match first.as_str() {
        "hold" => {
            let prefix = std::env::args().nth(2).expect("hold URL_PREFIX SOCKETS");
            let sockets = arg(3, 1000) as usize;
            let room = arg(4, 100).max(1) as usize;
            let hold = Duration::from_secs(
                std::env::var("WS_BENCH_HOLD_S")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(10),
            );
            runtime.block_on(hold_run(prefix, sockets, room, hold));
        }
        "fanout-server" => {
            let addr = std::env::args().nth(2).expect("fanout-server ADDR");
            runtime.block_on(fanout_server(&addr));
        }
        "broadcast" => {
            let url = std::env::args().nth(2).expect("broadcast URL SUBSCRIBERS");
            let subscribers = arg(3, 1000) as usize;
            let messages = arg(4, 50) as usize;
            let interval = Duration::from_millis(arg(5, 100));
            runtime.block_on(broadcast(url, subscribers, messages, interval, true, None));
        }
        _ => {
            let subscribers = arg(2, 1000) as usize;
            let messages = arg(3, 200) as usize;
            let interval = Duration::from_millis(arg(4, 20));
            // Lets the caller read the gateway's RSS with the sockets open.
            let linger = std::env::var_os("WS_BENCH_HOLD").map(|_| Duration::from_secs(3));
            runtime.block_on(broadcast(
                first,
                subscribers,
                messages,
                interval,
                false,
                linger,
            ));
        }
    }
}

fn print_failures(failed: &BTreeMap<String, usize>) {
    for (reason, count) in failed {
        println!("failed to connect or subscribe: {count} × {reason}");
    }
}

fn print_ends(ends: &BTreeMap<End, usize>) {
    let parts: Vec<String> = ends
        .iter()
        .map(|(end, count)| match end {
            End::Done => format!("{count} done"),
            End::Closed(code) => format!("{count} closed by the gateway with {code}"),
            End::Failed(reason) => format!("{count} failed ({reason})"),
            End::TimedOut => format!("{count} timed out"),
        })
        .collect();
    println!("connections: {}", parts.join(", "));
}

/// The `p` quantile of sorted latencies in µs, in ms.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(0.0, |us| *us as f64 / 1000.0)
}

/// The close code of a close frame (1005: none given).
fn close_code(frame: Option<CloseFrame>) -> u16 {
    frame.map_or(1005, |f| u16::from(f.code))
}

/// `hold`: SOCKETS subscribed connections over rooms of ROOM_SIZE, held for
/// `hold` while reading (join announcements, pings).
async fn hold_run(prefix: String, sockets: usize, room: usize, hold: Duration) {
    let client = Client::from_env(&format!("{prefix}0"));
    let (stop, stopped) = watch::channel(false);
    let ends = Arc::new(Mutex::new(BTreeMap::new()));
    let mut readers = Vec::with_capacity(sockets);
    let started = Instant::now();
    let failed = client
        .subscribe_all(
            sockets,
            |i| format!("{prefix}{}", i / room),
            |mut ws| {
                let ends = Arc::clone(&ends);
                let mut stopped = stopped.clone();
                readers.push(tokio::spawn(async move {
                    let end = loop {
                        let frame = tokio::select! {
                            frame = ws.next() => frame,
                            _ = stopped.wait_for(|stop| *stop) => break End::Done,
                        };
                        match frame {
                            Some(Ok(Message::Close(frame))) => {
                                break End::Closed(close_code(frame));
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break End::Failed(e.to_string()),
                            None => break End::Failed("connection ended".into()),
                        }
                    };
                    *ends.lock().expect("ends").entry(end).or_insert(0) += 1;
                    ws
                }));
            },
        )
        .await;
    println!(
        "connected and subscribed {} sockets in {:.2?} ({} rooms)",
        readers.len(),
        started.elapsed(),
        sockets.div_ceil(room)
    );
    print_failures(&failed);
    println!("holding {} sockets for {hold:?}", readers.len());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::time::sleep(hold) => {}
        _ = terminate.recv() => {}
    }
    let _ = stop.send(true);
    let mut held = Vec::with_capacity(readers.len());
    for reader in readers {
        if let Ok(ws) = reader.await {
            held.push(ws);
        }
    }
    print_ends(&ends.lock().expect("ends"));
}

/// The unsigned number after `key` in `text`.
fn number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

/// Reads publishes until `messages` arrived (message number and latency in
/// µs since `clock` into `latencies`); waits without limit until
/// `started`, then at most [`READ_TIMEOUT`] for each message.
async fn receive(
    mut ws: Ws,
    messages: usize,
    clock: Instant,
    mut started: watch::Receiver<bool>,
    latencies: Arc<Mutex<Vec<(usize, u64)>>>,
    ends: Arc<Mutex<BTreeMap<End, usize>>>,
) -> Ws {
    let mut seen = 0;
    let mut mine = Vec::with_capacity(messages);
    let end = loop {
        if seen == messages {
            break End::Done;
        }
        let publishing = *started.borrow();
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = started.changed(), if !publishing => continue,
            _ = tokio::time::sleep(READ_TIMEOUT), if publishing => break End::TimedOut,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => break End::Closed(close_code(frame)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break End::Failed(e.to_string()),
            None => break End::Failed("connection ended".into()),
        };
        // {"type":"message","topic":…,"data":{"t":MICROS,"n":K},"from":…}
        if let (Some(sent), Some(k)) = (number(&text, r#""t":"#), number(&text, r#""n":"#)) {
            let now = clock.elapsed().as_micros() as u64;
            mine.push((k as usize, now.saturating_sub(sent)));
            seen += 1;
        }
    };
    latencies.lock().expect("latencies").extend(mine);
    *ends.lock().expect("ends").entry(end).or_insert(0) += 1;
    ws
}

/// The first form (`concurrent` false: one connection after another) and
/// `broadcast` (`concurrent` true); with `linger`, the sockets stay open
/// that long after the report.
async fn broadcast(
    url: String,
    subscribers: usize,
    messages: usize,
    interval: Duration,
    concurrent: bool,
    linger: Option<Duration>,
) {
    let client = Client::from_env(&url);
    let clock = Instant::now();
    let (start, started) = watch::channel(false);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subscribers * messages)));
    let ends = Arc::new(Mutex::new(BTreeMap::new()));
    let mut readers = Vec::with_capacity(subscribers);
    // Read from the start: connections may be sent `join`s.
    let mut spawn = |ws| {
        readers.push(tokio::spawn(receive(
            ws,
            messages,
            clock,
            started.clone(),
            Arc::clone(&latencies),
            Arc::clone(&ends),
        )));
    };
    let setting_up = Instant::now();
    let failed = if concurrent {
        client
            .subscribe_all(subscribers, |_| url.clone(), &mut spawn)
            .await
    } else {
        for i in 0..subscribers {
            spawn(client.subscribe(i, &url).await.expect("subscribing"));
        }
        BTreeMap::new()
    };
    let connect_time = setting_up.elapsed();
    println!(
        "connected and subscribed {} sockets in {connect_time:.2?}",
        readers.len()
    );
    print_failures(&failed);

    let mut publisher = client
        .connect(0, &url)
        .await
        .expect("connecting the publisher");
    let _ = start.send(true);
    let sending = Instant::now();
    for k in 0..messages {
        let t = clock.elapsed().as_micros() as u64;
        let publish =
            format!(r#"{{"type":"publish","topic":"{TOPIC}","data":{{"t":{t},"n":{k}}}}}"#);
        publisher
            .send(Message::Text(publish.into()))
            .await
            .expect("publishing");
        tokio::time::sleep(interval).await;
    }
    let mut held = Vec::new();
    for reader in readers {
        if let Ok(ws) = reader.await {
            held.push(ws);
        }
    }
    let sent_for = sending.elapsed();
    let deliveries = latencies.lock().expect("latencies").clone();
    let mut all: Vec<u64> = deliveries.iter().map(|(_, us)| *us).collect();
    all.sort_unstable();
    let expected = subscribers * messages;
    println!(
        "{} of {expected} deliveries in {sent_for:.2?}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    // Where the tail comes from: every delivery of a few messages, or a
    // few deliveries of every message.
    let mut by_message = vec![Vec::new(); messages];
    for (k, us) in deliveries {
        if let Some(slot) = by_message.get_mut(k) {
            slot.push(us);
        }
    }
    let mut slowest: Vec<(usize, f64, f64, f64)> = by_message
        .iter_mut()
        .enumerate()
        .filter(|(_, d)| !d.is_empty())
        .map(|(k, d)| {
            d.sort_unstable();
            (
                k,
                percentile(d, 0.0),
                percentile(d, 0.5),
                percentile(d, 1.0),
            )
        })
        .collect();
    slowest.sort_by(|a, b| b.3.total_cmp(&a.3));
    for (k, first, p50, last) in slowest.iter().take(3) {
        println!(
            "slow message #{k}: first delivery {first:.2} ms, p50 {p50:.2} ms, last {last:.2} ms"
        );
    }
    print_ends(&ends.lock().expect("ends"));
    println!("holding {} sockets", held.len());
    if let Some(linger) = linger {
        tokio::time::sleep(linger).await;
    }
}

/// `fanout-server`: see the module documentation. Runs until killed.
async fn fanout_server(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("binding the fan-out server");
    let subscribers = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let subscribers = Arc::clone(&subscribers);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                if text.contains(r#""type":"subscribe""#) {
                    let ack = Message::Text(r#"{"type":"ack","id":"s"}"#.into());
                    if ws.send(ack).await.is_ok() {
                        subscribers
                            .lock()
                            .expect("subscribers")
                            .push(ws.into_inner());
                    }
                    return;
                }
                // `"data":{…}` of the publish, without its closing brace.
                if let Some(data) = text
                    .find(r#""data":"#)
                    .and_then(|at| text[at..].strip_suffix('}'))
                {
                    let message = format!(
                        r#"{{"type":"message","topic":"{TOPIC}",{data},"from":"publisher"}}"#
                    );
                    let frame = server_text_frame(&message);
                    for socket in subscribers.lock().expect("subscribers").iter() {
                        // Small frames into empty socket buffers: a short or
                        // refused write would show as a missing delivery.
                        let _ = socket.try_write(&frame);
                    }
                }
            }
        });
    }
}

/// An unmasked, final text frame carrying `text`.
fn server_text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81];
    match text.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(text.as_bytes());
    frame
}
