//! WebSocket broadcast benchmark client for `bench/ws.sh`: opens N
//! subscriber connections to one hub, then one publisher sends messages
//! carrying their send time; every delivery's latency is recorded.
//!
//! ```text
//! ws_bench URL [SUBSCRIBERS] [MESSAGES] [INTERVAL_MS]
//! ```
//!
//! Prints connection set-up time and latency percentiles over all
//! deliveries. Loopback use only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const TOPIC: &str = "bench";

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn subscribe(url: &str) -> Ws {
    let (mut ws, _) = connect_async(url).await.expect("connecting");
    let subscribe = format!(r#"{{"type":"subscribe","topic":"{TOPIC}","id":"s"}}"#);
    ws.send(Message::Text(subscribe.into()))
        .await
        .expect("subscribing");
    // Wait for the ack so every subscriber is in before publishing.
    while let Some(Ok(frame)) = ws.next().await {
        if let Message::Text(text) = frame
            && text.contains(r#""type":"ack""#)
        {
            break;
        }
    }
    ws
}

fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:19023/ws/bench".into());
    let subscribers = arg(2, 1000) as usize;
    let messages = arg(3, 200) as usize;
    let interval = Duration::from_millis(arg(4, 20));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(url, subscribers, messages, interval));
}

async fn run(url: String, subscribers: usize, messages: usize, interval: Duration) {
    let clock = Instant::now();
    let started = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subscribers * messages)));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        // Read from the start: every later connection announces itself
        // (`join`) to the earlier ones.
        let mut ws = subscribe(&url).await;
        let latencies = Arc::clone(&latencies);
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            let mut mine = Vec::with_capacity(messages);
            while seen < messages {
                let Ok(Some(Ok(frame))) =
                    tokio::time::timeout(Duration::from_secs(60), ws.next()).await
                else {
                    break;
                };
                let Message::Text(text) = frame else { continue };
                // {"type":"message","topic":…,"data":{"t":MICROS},"from":…}
                let Some(at) = text.find(r#""t":"#) else {
                    continue;
                };
                let digits: String = text[at + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(sent) = digits.parse::<u64>() {
                    let now = clock.elapsed().as_micros() as u64;
                    mine.push(now.saturating_sub(sent));
                    seen += 1;
                }
            }
            latencies.lock().await.extend(mine);
            ws
        }));
    }
    let connect_time = started.elapsed();
    println!("connected and subscribed {subscribers} sockets in {connect_time:?}");

    let (mut publisher, _) = connect_async(&url).await.expect("publisher");
    let sending = Instant::now();
    for _ in 0..messages {
        let t = clock.elapsed().as_micros() as u64;
        let publish = format!(r#"{{"type":"publish","topic":"{TOPIC}","data":{{"t":{t}}}}}"#);
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
    let mut all = latencies.lock().await.clone();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let expected = subscribers * messages;
    println!(
        "{} of {expected} deliveries in {sent_for:?}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        pct(0.50),
        pct(0.99),
        all.last().map_or(0.0, |us| *us as f64 / 1000.0)
    );
    println!("holding {} sockets", held.len());
    if std::env::var_os("WS_BENCH_HOLD").is_some() {
        // Lets the caller read the gateway's RSS with the sockets open.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
