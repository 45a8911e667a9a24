//! The edge function: everything the gateway does with a request, written
//! once over the [`Platform`] trait. It does no I/O of its own, so the same
//! code runs as a WASI HTTP component (Spin, `wasmtime serve`, `edgegate
//! serve`) and as a Cloudflare Worker.
//!
//! Per request: request id → path hygiene → route → CORS preflight → body
//! limit → authentication → roles/scopes → rate limits → upstream call with
//! retries → response headers.

mod access;
mod balance;
pub mod cors;
mod gateway;
pub mod headers;
mod hub;
mod platform;
mod ratelimit;
pub mod upstash;

pub use gateway::Gateway;
pub use platform::{ClientInfo, EdgeBody, FetchError, FetchOptions, Platform};
pub use ratelimit::REDIS_AUTHORITY;

pub use edgegate_config as config;
