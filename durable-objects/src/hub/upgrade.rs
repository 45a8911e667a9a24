//! What the edge tells the hub about a connecting client, in request
//! headers: the edge has authenticated the client and resolved the route's
//! limits, so the hub needs no configuration.

use http::{HeaderMap, StatusCode};
use thiserror::Error;

use crate::object::Request;

/// Authenticated user id (required).
pub const USER_ID_HEADER: &str = "x-user-id";
/// The user's roles, comma-separated.
pub const USER_ROLES_HEADER: &str = "x-user-roles";
/// Largest text frame accepted (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
pub const MAX_MESSAGE_BYTES_HEADER: &str = "x-hub-max-message-bytes";
/// Per-connection message rate; the burst is twice this (default
/// [`DEFAULT_MESSAGES_PER_SECOND`]).
pub const MESSAGES_PER_SECOND_HEADER: &str = "x-hub-messages-per-second";

/// Default of [`MAX_MESSAGE_BYTES_HEADER`] (the configuration's default).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 65_536;
/// Default of [`MESSAGES_PER_SECOND_HEADER`] (burst 40).
pub const DEFAULT_MESSAGES_PER_SECOND: u64 = 20;

/// Longest user id: the tag `user:<id>` must fit the 256 characters that
/// Workers allows per tag.
pub const MAX_USER_ID_BYTES: usize = 251;

/// A connecting client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub user: String,
    pub roles: Vec<String>,
    pub max_message_bytes: u64,
    pub messages_per_second: u64,
}

/// Whether `request` asks for a WebSocket.
pub(crate) fn is_upgrade(request: &Request) -> bool {
    request
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Why an upgrade is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum Refusal {
    /// No user: the edge did not authenticate the client (401).
    #[error("missing x-user-id")]
    Unauthenticated,
    /// A header the edge sent is unusable (400).
    #[error("{0}")]
    BadHeader(String),
}

impl Refusal {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
            Refusal::BadHeader(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the identity headers.
pub(crate) fn identity(headers: &HeaderMap) -> Result<Identity, Refusal> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).map(str::trim))
    };
    let user = match text(USER_ID_HEADER) {
        None | Some(Ok("")) => return Err(Refusal::Unauthenticated),
        Some(Err(_)) => return Err(bad("x-user-id is not UTF-8")),
        Some(Ok(u)) if u.len() > MAX_USER_ID_BYTES => return Err(bad("x-user-id is too long")),
        Some(Ok(u)) => u.to_string(),
    };
    let roles = match text(USER_ROLES_HEADER) {
        None => Vec::new(),
        Some(Err(_)) => return Err(bad("x-user-roles is not UTF-8")),
        Some(Ok(r)) => r
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
    };
    let number = |name: &str, default: u64| match text(name) {
        None => Ok(default),
        Some(Ok(v)) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!("{name} must be a positive integer"))),
        },
        Some(Err(_)) => Err(bad(&format!("{name} must be a positive integer"))),
    };
    Ok(Identity {
        user,
        roles,
        max_message_bytes: number(MAX_MESSAGE_BYTES_HEADER, DEFAULT_MAX_MESSAGE_BYTES)?,
        messages_per_second: number(MESSAGES_PER_SECOND_HEADER, DEFAULT_MESSAGES_PER_SECOND)?,
    })
}

fn bad(message: &str) -> Refusal {
    Refusal::BadHeader(message.to_string())
}
