//! Compact binary form of [`LimiterState`] for storage: one tag byte, then
//! the fields as little-endian `u64`s (at most 25 bytes).

use thiserror::Error;

use super::{FixedWindow, Gcra, LimiterState, SlidingWindow, TokenBucket};

const TOKEN_BUCKET: u8 = 1;
const SLIDING_WINDOW: u8 = 2;
const GCRA: u8 = 3;
const FIXED_WINDOW: u8 = 4;

/// Why stored bytes are not a [`LimiterState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty rate-limit state")]
    Empty,
    /// The tag byte names no known layout.
    #[error("unknown rate-limit state tag {0}")]
    UnknownTag(u8),
    /// The length does not match the tag's layout.
    #[error("rate-limit state has {actual} bytes, expected {expected}")]
    Length {
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
}

impl LimiterState {
    /// The storage form.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, fields): (u8, &[u64]) = match self {
            LimiterState::TokenBucket(s) => (TOKEN_BUCKET, &[s.level, s.updated_ms, s.scale]),
            LimiterState::SlidingWindow(s) => {
                (SLIDING_WINDOW, &[s.window_start_ms, s.previous, s.current])
            }
            LimiterState::Gcra(s) => (GCRA, &[s.tat_ms, s.tat_frac, s.scale]),
            LimiterState::FixedWindow(s) => (FIXED_WINDOW, &[s.window_start_ms, s.count]),
        };
        let mut out = Vec::with_capacity(1 + 8 * fields.len());
        out.push(tag);
        for f in fields {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out
    }

    /// Reads the storage form.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let count = match tag {
            TOKEN_BUCKET | SLIDING_WINDOW | GCRA => 3,
            FIXED_WINDOW => 2,
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if rest.len() != count * 8 {
            return Err(DecodeError::Length {
                expected: 1 + count * 8,
                actual: bytes.len(),
            });
        }
        let f = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Ok(match tag {
            TOKEN_BUCKET => LimiterState::TokenBucket(TokenBucket {
                level: f(0),
                updated_ms: f(1),
                scale: f(2),
            }),
            SLIDING_WINDOW => LimiterState::SlidingWindow(SlidingWindow {
                window_start_ms: f(0),
                previous: f(1),
                current: f(2),
            }),
            GCRA => LimiterState::Gcra(Gcra {
                tat_ms: f(0),
                tat_frac: f(1),
                scale: f(2),
            }),
            _ => LimiterState::FixedWindow(FixedWindow {
                window_start_ms: f(0),
                count: f(1),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_layout() {
        let states = [
            LimiterState::TokenBucket(TokenBucket {
                level: 1,
                updated_ms: u64::MAX,
                scale: 3,
            }),
            LimiterState::SlidingWindow(SlidingWindow {
                window_start_ms: 60_000,
                previous: 4,
                current: 5,
            }),
            LimiterState::Gcra(Gcra {
                tat_ms: 7,
                tat_frac: 8,
                scale: 9,
            }),
            LimiterState::FixedWindow(FixedWindow {
                window_start_ms: 10,
                count: 11,
            }),
        ];
        for s in states {
            assert_eq!(LimiterState::decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(LimiterState::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(LimiterState::decode(&[9]), Err(DecodeError::UnknownTag(9)));
        assert_eq!(
            LimiterState::decode(&[4, 0, 0]),
            Err(DecodeError::Length {
                expected: 17,
                actual: 3
            })
        );
    }
}
