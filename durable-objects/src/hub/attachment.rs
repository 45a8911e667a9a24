//! The per-socket attachment: everything about a connection that must
//! survive the hub being evicted while the platform keeps the socket.
//!
//! Layout (version 1): a fixed 30-byte header with what changes on every
//! message, then a JSON tail with what changes rarely, so that a message
//! rewrites the header and copies a cached tail instead of re-serializing.
//!
//! ```text
//! [0]      version (1)
//! [1]      flags: bit 0 = closed by the hub (ignore further events)
//! [2..10]  connection id, u64 LE
//! [10..18] rate-limit bucket level, u64 LE (token bucket, scale 1000)
//! [18..26] rate-limit bucket updated_ms, u64 LE
//! [26..30] strikes (refused messages, net of admitted ones), u32 LE
//! [30..]   {"u":user,"r":[roles],"s":[subscriptions],"m":max_message_bytes,"q":messages_per_second}
//! ```

use serde::{Deserialize, Serialize};

/// Largest attachment the hub writes; the smallest limit among the
/// platforms (Workers' `serializeAttachment`).
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

const VERSION: u8 = 1;
/// Size of the fixed header.
pub(crate) const HEADER_LEN: usize = 30;
const CLOSED: u8 = 1;

/// The fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub cid: u64,
    pub closed: bool,
    pub level: u64,
    pub updated_ms: u64,
    pub strikes: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = if self.closed { CLOSED } else { 0 };
        out[2..10].copy_from_slice(&self.cid.to_le_bytes());
        out[10..18].copy_from_slice(&self.level.to_le_bytes());
        out[18..26].copy_from_slice(&self.updated_ms.to_le_bytes());
        out[26..30].copy_from_slice(&self.strikes.to_le_bytes());
        out
    }

    /// Reads the header only; `None` for anything not written by this hub.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..HEADER_LEN)?;
        if h[0] != VERSION {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
        Some(Self {
            closed: h[1] & CLOSED != 0,
            cid: u64_at(2),
            level: u64_at(10),
            updated_ms: u64_at(18),
            strikes: u32::from_le_bytes(h[26..30].try_into().unwrap_or_default()),
        })
    }
}

/// The JSON tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "r", default)]
    pub roles: Vec<String>,
    #[serde(rename = "s", default)]
    pub subscriptions: Vec<String>,
    #[serde(rename = "m")]
    pub max_message_bytes: u64,
    #[serde(rename = "q")]
    pub messages_per_second: u64,
}

impl Meta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Header followed by an encoded tail.
pub(crate) fn join(header: &Header, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + tail.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(tail);
    out
}

/// Reads a whole attachment.
pub(crate) fn decode(bytes: &[u8]) -> Option<(Header, Meta)> {
    let header = Header::decode(bytes)?;
    let meta = serde_json::from_slice(&bytes[HEADER_LEN..]).ok()?;
    Some((header, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header = Header {
            cid: 42,
            closed: false,
            level: 40_000,
            updated_ms: 1_700_000_000_000,
            strikes: 3,
        };
        let meta = Meta {
            user: "alice".into(),
            roles: vec!["admin".into()],
            subscriptions: vec!["chat".into()],
            max_message_bytes: 65_536,
            messages_per_second: 20,
        };
        let bytes = join(&header, &meta.encode());
        assert_eq!(decode(&bytes), Some((header, meta)));
        assert_eq!(Header::decode(&bytes[..10]), None);
        let closed = Header {
            closed: true,
            ..header
        };
        assert!(Header::decode(&closed.encode()).unwrap().closed);
    }
}
