//! Platform-free Durable Objects for edgegate: the [`RateLimiter`] and the
//! WebSocket [`Hub`], written once over the [`State`] trait. Thin adapters
//! map them onto Cloudflare's `#[durable_object]` and onto the runtime host's
//! WIT world.
//!
//! The crate does no I/O, reads no clock and starts no threads: time comes
//! from [`State::now_ms`], storage and sockets from the adapter.

#![warn(missing_docs)]

pub mod algorithms;
pub mod headers;
pub mod hub;
mod object;
pub mod ratelimiter;
mod response;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use algorithms::{Algorithm, Decision, Policy};
pub use hub::Hub;
pub use object::{DurableObject, FetchOutcome, Request, Response};
pub use ratelimiter::{CheckError, CheckRequest, RateLimiter};
pub use state::{Message, Op, SocketError, State, Storage, StorageError, WebSocket};
