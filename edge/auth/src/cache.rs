//! Tokens verified before: a caller presents the same token on every request
//! until it expires, so its signature is checked once and later requests
//! only look it up.
//!
//! Only verified tokens are kept (a forged token costs a full verification
//! every time, as it would without the cache), keyed by their whole text.
//! The time claims are checked again on every hit; an entry verified with
//! keys that have since been replaced (a JWKS refresh) is never used.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::Identity;

/// Most entries kept.
const MAX_ENTRIES: usize = 1024;

/// Most bytes of token and identity text kept (tokens may be up to
/// [`crate::MAX_TOKEN_LEN`] long, so entries alone would not bound memory).
const MAX_BYTES: usize = 512 * 1024;

/// Tokens already verified, with what they proved.
pub(crate) struct TokenCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Box<str>, Entry>,
    bytes: usize,
}

/// What a verified token proved, and until when.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) identity: Identity,
    pub(crate) exp: Option<f64>,
    pub(crate) nbf: Option<f64>,
    /// The key generation it was verified with.
    pub(crate) generation: u64,
}

impl Entry {
    fn size(&self) -> usize {
        let texts = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        64 + self.identity.user.as_ref().map_or(0, String::len)
            + texts(&self.identity.roles)
            + texts(&self.identity.scopes)
    }
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// What `token` proved when verified with keys of `generation`.
    pub(crate) fn get(&self, token: &str, generation: u64) -> Option<Entry> {
        let inner = self.lock();
        inner
            .entries
            .get(token)
            .filter(|e| e.generation == generation)
            .cloned()
    }

    /// Remembers a verified `token`. When full, drops the entries expired at
    /// `now` or verified with older keys, and everything if that is not
    /// enough: a bounded cache, not an exact LRU.
    pub(crate) fn insert(&self, token: &str, entry: Entry, now: f64) {
        let size = token.len() + entry.size();
        if size > MAX_BYTES / 16 {
            return;
        }
        let mut inner = self.lock();
        let full = |i: &Inner| i.entries.len() >= MAX_ENTRIES || i.bytes + size > MAX_BYTES;
        if full(&inner) {
            let generation = entry.generation;
            inner
                .entries
                .retain(|_, e| e.generation == generation && e.exp.is_none_or(|exp| now < exp));
            inner.bytes = inner.entries.iter().map(|(t, e)| t.len() + e.size()).sum();
            if full(&inner) {
                inner.entries.clear();
                inner.bytes = 0;
            }
        }
        if let Some(old) = inner.entries.insert(token.into(), entry) {
            inner.bytes -= token.len() + old.size();
        }
        inner.bytes += size;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    fn entry(user: &str, exp: Option<f64>, generation: u64) -> Entry {
        Entry {
            identity: Identity {
                user: Some(user.into()),
                consumer: None,
                roles: vec!["user".into()],
                scopes: Vec::new(),
                method: AuthMethod::Jwt,
            },
            exp,
            nbf: None,
            generation,
        }
    }

    #[test]
    fn an_entry_is_found_only_for_its_key_generation() {
        let cache = TokenCache::new();
        cache.insert("a.b.c", entry("ann", None, 0), 0.0);
        assert_eq!(
            cache.get("a.b.c", 0).unwrap().identity.user.as_deref(),
            Some("ann")
        );
        assert!(cache.get("a.b.c", 1).is_none(), "keys changed since");
        assert!(cache.get("a.b.d", 0).is_none());
    }

    #[test]
    fn stays_within_its_bounds() {
        let cache = TokenCache::new();
        let pad = "x".repeat(200);
        for i in 0..10 * MAX_ENTRIES {
            cache.insert(&format!("{pad}.{i}"), entry("u", Some(1e12), 0), 0.0);
            let (len, bytes) = cache.len_and_bytes();
            assert!(
                len <= MAX_ENTRIES && bytes <= MAX_BYTES,
                "{len} entries, {bytes} bytes"
            );
        }
        // The latest token is always kept.
        assert!(
            cache
                .get(&format!("{pad}.{}", 10 * MAX_ENTRIES - 1), 0)
                .is_some()
        );
        // Tokens too large to be worth a place are not kept at all.
        cache.insert(&"y".repeat(MAX_BYTES), entry("u", None, 0), 0.0);
        assert!(cache.get(&"y".repeat(MAX_BYTES), 0).is_none());
    }

    #[test]
    fn making_room_drops_expired_and_stale_entries_first() {
        let cache = TokenCache::new();
        cache.insert("live", entry("u", Some(100.0), 1), 0.0);
        for i in 0..MAX_ENTRIES - 1 {
            cache.insert(&format!("old.{i}"), entry("u", Some(10.0), 1), 0.0);
        }
        // Full: at now = 50 every "old" entry has expired; "live" stays.
        cache.insert("new", entry("u", None, 1), 50.0);
        assert_eq!(cache.len_and_bytes().0, 2);
        assert!(cache.get("live", 1).is_some());
        assert!(cache.get("new", 1).is_some());
    }
}
