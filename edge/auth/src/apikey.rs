//! API keys, stored and compared as SHA-256 digests.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AuthMethod, Identity, KeyError};

/// Lowercase hex SHA-256 (used by the CLI and docs to make `key_sha256`).
pub fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// The configured API keys.
pub struct ApiKeys {
    entries: Vec<Entry>,
}

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.identity.consumer))
            .finish()
    }
}

impl ApiKeys {
    /// Reads `[[auth.api_keys]]`, whose `key_sha256` must already be
    /// resolved to 64 hex characters.
    pub fn new(keys: &[edgegate_config::ApiKey]) -> Result<Self, KeyError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let path = format!("auth.api_keys[{i}].key_sha256");
            let digest = parse_digest(&k.key_sha256).map_err(|r| KeyError::invalid(&path, r))?;
            if let Some(j) = entries.iter().position(|e| e.digest == digest) {
                return Err(KeyError::invalid(
                    path,
                    format!("same key as auth.api_keys[{j}]"),
                ));
            }
            entries.push(Entry {
                digest,
                identity: Identity {
                    user: None,
                    consumer: Some(k.consumer.clone()),
                    roles: k.roles.clone(),
                    scopes: k.scopes.clone(),
                    method: AuthMethod::ApiKey,
                },
            });
        }
        Ok(ApiKeys { entries })
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// SHA-256 of the presented key compared in constant time against every
    /// configured digest; the consumer's identity when one matches.
    pub fn authenticate(&self, presented: &str) -> Option<Identity> {
        if presented.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every entry is compared, so the time taken does not tell which
        // entry (if any) matched.
        let mut found = None;
        for e in &self.entries {
            let hit = bool::from(e.digest.ct_eq(&digest));
            found = if hit { Some(e) } else { found };
        }
        found.map(|e| e.identity.clone())
    }
}

fn parse_digest(s: &str) -> Result<[u8; 32], &'static str> {
    if s.starts_with("env:") {
        return Err("is an unresolved env: reference");
    }
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err("must be the 64-character hex SHA-256 of the key");
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err("must be the 64-character hex SHA-256 of the key");
        };
        *o = hi << 4 | lo;
    }
    Ok(out)
}
