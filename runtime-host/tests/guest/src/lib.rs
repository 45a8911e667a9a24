//! Test guest for the edgegate host. Endpoints (all GET):
//!
//! - `/ok`: 200 `ok`
//! - `/loop`: computes forever without calling the host
//! - `/busy?ms=N`: computes for N ms, then 200
//! - `/sleep?ms=N`: waits N ms on a host timer, then 200
//! - `/trap`: traps
//! - `/env`: the environment variable names, one per line
//! - `/headers`: the request headers as `name: value` lines
//! - `/count`: how many requests this instance has served
//! - `/fetch?url=U`: fetches U and answers with its status, or 502 and the
//!   `wasi:http` error code
//! - `/fetch-late?url=U`: GETs U but writes and finishes its (empty) request
//!   body only once the response head is in, then answers like `/fetch`
//! - `/big?kib=N`: N KiB of `x`
//! - `/alloc?mib=N`: allocates and touches N MiB, then 200
//! - `/len` (any method): reads the request body, answers its length
#![cfg(target_arch = "wasm32")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wstd::http::{Body, Client, Request, Response, Result, StatusCode};

static SERVED: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let number = |key: &str| -> u64 {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let text = match path.as_str() {
        "/ok" => "ok".to_string(),
        "/loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "/busy" => {
            let until = Instant::now() + Duration::from_millis(number("ms"));
            let mut x: u64 = 0;
            while Instant::now() < until {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            format!("busy {x}")
        }
        "/sleep" => {
            wstd::task::sleep(Duration::from_millis(number("ms")).into()).await;
            "slept".to_string()
        }
        "/trap" => core::arch::wasm32::unreachable(),
        "/env" => {
            let mut names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            names.sort();
            names.join("\n")
        }
        "/headers" => request
            .headers()
            .iter()
            .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join("\n"),
        "/count" => served.to_string(),
        "/fetch" => {
            let url = query.strip_prefix("url=").unwrap_or("");
            let mut client = Client::new();
            client.set_connect_timeout(Duration::from_millis(500));
            client.set_first_byte_timeout(Duration::from_millis(500));
            let outgoing = Request::get(url).body(Body::empty())?;
            return Ok(match client.send(outgoing).await {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let body = response.body_mut().str_contents().await?.to_string();
                    Response::new(format!("{status} {body}").into())
                }
                Err(e) => {
                    let mut response = Response::new(format!("{e:?}").into());
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    response
                }
            });
        }
        "/fetch-late" => fetch_late(query.strip_prefix("url=").unwrap_or("")).await,
        "/big" => "x".repeat(number("kib") as usize * 1024),
        "/alloc" => {
            let block = vec![1u8; number("mib") as usize * 1024 * 1024];
            format!("allocated {}", std::hint::black_box(block).len())
        }
        "/len" => request.body_mut().contents().await?.len().to_string(),
        _ => {
            let mut response = Response::new("not found".into());
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    Ok(Response::new(text.into()))
}

/// A GET whose request body is finished only after the response head came
/// back, which `wasi:http` allows: the body stream must still be writable.
async fn fetch_late(url: &str) -> String {
    use wasip2::http::outgoing_handler::{OutgoingRequest, handle};
    use wasip2::http::types::{Fields, OutgoingBody, Scheme};
    use wstd::io::AsyncPollable;

    let uri: wstd::http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return format!("bad url: {e}"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(uri.authority().map(|a| a.as_str()));
    let _ = request.set_path_with_query(uri.path_and_query().map(|p| p.as_str()));
    let body = request.body().expect("body taken once");
    let pending = match handle(request, None) {
        Ok(pending) => pending,
        Err(code) => return format!("{code:?}"),
    };
    AsyncPollable::new(pending.subscribe()).wait_for().await;
    let stream = body.write().expect("stream taken once");
    let written = stream
        .check_write()
        .and_then(|_| stream.write(&[]))
        .map_err(|e| format!("{e:?}"));
    drop(stream);
    let finished = OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"));
    match (written, finished, pending.get()) {
        (Err(e), _, _) | (_, Err(e), _) => format!("body: {e}"),
        (_, _, Some(Ok(Ok(response)))) => response.status().to_string(),
        (_, _, other) => format!("response: {other:?}"),
    }
}
