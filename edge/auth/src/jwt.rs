//! JWT verification: compact JWS parsing, key selection, JWKS caching and
//! claim checks.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use crate::cache::{Entry, TokenCache};
use crate::claims::ClaimNames;
use crate::keys::{Alg, Key, KeySet, Probe};
use crate::{AuthMethod, Identity, JwtError, KeyError};

/// Longest token accepted; far above what headers and cookies carry, low
/// enough to bound the work an anonymous caller can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Minimum time between two fetches of one JWKS URL, so tokens with random
/// `kid`s cannot make the gateway hammer the issuer.
pub const JWKS_MIN_REFRESH_INTERVAL_S: i64 = 10;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The largest signature we verify: RSA with an 8192-bit modulus.
const MAX_SIGNATURE_LEN: usize = 1024;

/// Fetches a JWKS document (the edge layer implements this over the
/// platform's HTTP client).
#[allow(async_fn_in_trait)]
pub trait JwksFetcher {
    /// The body of a successful `GET url`, or why it failed (the reason is
    /// not kept; log it in the implementation if wanted).
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// Verifies JWTs against the keys of `[auth.jwt]`.
///
/// Built once from the configuration; `verify` takes `&self` and may run
/// concurrently. Time checks:
/// - `exp` is optional, but when present the token is refused from
///   `exp + leeway_s` on;
/// - `nbf` is optional, but when present the token is refused before
///   `nbf - leeway_s`;
/// - `iss` and `aud` are required only when `issuer` / `audience` are
///   configured.
///
/// A verified token is remembered (a bounded cache, keyed by the whole
/// token): the next request with it skips decoding and the signature, but
/// not the time checks. Entries verified with JWKS keys are used only while
/// those keys are fresh and not replaced since.
///
/// Keys embedded in the token header (`jwk`, `jku`, `x5u`, `x5c`) are never
/// used. While the first fetch of a JWKS URL is in flight, concurrent
/// verifications that need it fail with [`JwtError::KeysUnavailable`];
/// [`JwtVerifier::prefetch_jwks`] at start-up avoids that window.
pub struct JwtVerifier {
    keys: KeySet,
    sources: Vec<JwksSource>,
    issuer: Option<Box<str>>,
    audiences: Vec<Box<str>>,
    leeway_s: f64,
    names: ClaimNames,
    jwks_ttl_s: i64,
    cache: Option<TokenCache>,
    /// Bumped whenever JWKS keys are installed: cached verifications made
    /// with earlier keys no longer count.
    generation: AtomicU64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("inline_keys", &self.keys.len())
            .field(
                "jwks_urls",
                &self.sources.iter().map(|s| &s.url).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// One JWKS URL, with every algorithm it is pinned to by the configuration.
struct JwksSource {
    url: String,
    pins: Vec<Pin>,
    state: RwLock<JwksState>,
}

struct Pin {
    alg: Alg,
    /// When the configured entry names a kid, only that key is taken.
    kid: Option<String>,
}

#[derive(Default)]
struct JwksState {
    keys: Arc<KeySet>,
    fetched_at: Option<i64>,
    last_attempt: Option<i64>,
}

impl JwksState {
    fn is_fresh(&self, now: i64, ttl: i64) -> bool {
        self.fetched_at
            .is_some_and(|t| now < t || now.saturating_sub(t) < ttl)
    }
}

impl JwtVerifier {
    /// Parses every inline key once (secret, PEM or JWK); records JWKS URLs
    /// (with their pinned alg) for lazy fetching.
    pub fn new(config: &edgegate_config::Jwt) -> Result<Self, KeyError> {
        let mut keys = KeySet::default();
        let mut sources: Vec<JwksSource> = Vec::new();
        for (i, k) in config.keys.iter().enumerate() {
            let path = format!("auth.jwt.keys[{i}]");
            let alg = Alg::from_name(&k.alg).ok_or_else(|| KeyError::UnsupportedAlgorithm {
                path: format!("{path}.alg"),
                alg: k.alg.clone(),
            })?;
            let given = [
                k.secret.is_some(),
                k.pem.is_some(),
                k.jwk.is_some(),
                k.jwks_url.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(KeyError::invalid(
                    path,
                    "give exactly one of secret, pem, jwk, jwks_url",
                ));
            }
            if let Some(secret) = &k.secret {
                let key = Key::from_secret(alg, secret)
                    .map_err(|r| KeyError::invalid(format!("{path}.secret"), r))?;
                keys.push(k.kid.as_deref(), key);
            } else if let Some(pem) = &k.pem {
                let key = Key::from_pem(alg, pem)
                    .map_err(|r| KeyError::invalid(format!("{path}.pem"), r))?;
                keys.push(k.kid.as_deref(), key);
            } else if let Some(jwk) = &k.jwk {
                let p = format!("{path}.jwk");
                let obj = jwk_object(jwk).map_err(|r| KeyError::invalid(&p, r))?;
                let key = Key::from_jwk(alg, &obj).map_err(|r| KeyError::invalid(&p, r))?;
                let kid = k
                    .kid
                    .as_deref()
                    .or_else(|| obj.get("kid").and_then(Value::as_str));
                keys.push(kid, key);
            } else if let Some(url) = &k.jwks_url {
                let pin = Pin {
                    alg,
                    kid: k.kid.clone(),
                };
                match sources.iter_mut().find(|s| s.url == *url) {
                    Some(s) => s.pins.push(pin),
                    None => sources.push(JwksSource {
                        url: url.clone(),
                        pins: vec![pin],
                        state: RwLock::default(),
                    }),
                }
            }
        }
        Ok(JwtVerifier {
            keys,
            sources,
            issuer: config.issuer.as_deref().map(Into::into),
            audiences: config
                .audience
                .as_ref()
                .map(|a| a.to_vec().into_iter().map(Into::into).collect())
                .unwrap_or_default(),
            leeway_s: config.leeway_s as f64,
            names: ClaimNames {
                user: config.user_claim.as_str().into(),
                roles: config.roles_claim.as_str().into(),
                scope: config.scope_claim.as_str().into(),
            },
            jwks_ttl_s: i64::try_from(config.jwks_ttl_s).unwrap_or(i64::MAX),
            cache: Some(TokenCache::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// The same verifier without the cache of verified tokens: every token
    /// is verified in full (to measure verification itself).
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Verifies signature with the key selected by `kid` (or, with no kid,
    /// the keys whose pinned alg equals the header alg), then exp/nbf with
    /// leeway, iss, aud (token `aud` string or array must contain one
    /// configured audience).
    ///
    /// A token with a `kid` no key carries may still be verified by keys
    /// configured without a kid. Claims: user from `user_claim` (string or
    /// integer), roles from `roles_claim` (array of strings or
    /// space-separated string), scopes from `scope_claim` (either shape),
    /// else from `scp`. An unknown kid (or no key yet) with JWKS sources
    /// pinned to the token's alg fetches those JWKS via `fetcher` (at most
    /// once per URL per [`JWKS_MIN_REFRESH_INTERVAL_S`]), cached for
    /// `jwks_ttl_s`, then retries once. When a refresh fails, keys fetched
    /// earlier stay in use.
    pub async fn verify(
        &self,
        token: &str,
        now_unix_s: i64,
        fetcher: &impl JwksFetcher,
    ) -> Result<Identity, JwtError> {
        let mut head_buf = [0u8; 512];
        let mut head_heap = Vec::new();
        let mut sig_buf = [0u8; MAX_SIGNATURE_LEN];

        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let now = now_unix_s as f64;
        let generation = self.generation.load(Ordering::Acquire);
        let cache = self.cache.as_ref().filter(|_| {
            // A stale JWKS must be refreshed by a full verification.
            self.sources
                .iter()
                .all(|s| s.is_fresh(now_unix_s, self.jwks_ttl_s))
        });
        if let Some(hit) = cache.and_then(|c| c.get(token, generation)) {
            self.check_time(hit.exp, hit.nbf, now)?;
            return Ok(hit.identity);
        }
        let (message, sig_b64) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (head_b64, body_b64) = message.split_once('.').ok_or(JwtError::Malformed)?;
        if body_b64.contains('.') {
            return Err(JwtError::Malformed);
        }
        let head = decode(head_b64, &mut head_buf, &mut head_heap)?;
        let header: Header<'_> = serde_json::from_slice(head).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: no extension is understood here.
            return Err(JwtError::Malformed);
        }
        let alg = Alg::from_name(&header.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
        if sig_b64.len() > MAX_SIGNATURE_LEN * 4 / 3 + 1 {
            return Err(JwtError::BadSignature);
        }
        let signature = URL_SAFE_NO_PAD
            .decode_slice(sig_b64, &mut sig_buf)
            .map(|n| &sig_buf[..n])
            .map_err(|_| JwtError::Malformed)?;
        let kid = header.kid.as_deref();

        let mut outcome = self.keys.probe(kid, alg, message.as_bytes(), signature);
        if outcome != Probe::Verified && !self.sources.is_empty() {
            outcome = self
                .probe_jwks(kid, alg, message.as_bytes(), signature, now_unix_s, fetcher)
                .await
                .map(|p| p.max(outcome))
                .or_else(|unavailable| {
                    // Keys the missing JWKS might hold outrank a mismatch or
                    // an unknown kid; a failed signature stays what it is.
                    if outcome >= Probe::BadSignature {
                        Ok(outcome)
                    } else {
                        Err(unavailable)
                    }
                })?;
        }
        match outcome {
            Probe::Verified => {}
            Probe::BadSignature => return Err(JwtError::BadSignature),
            Probe::Mismatch => return Err(JwtError::AlgorithmMismatch),
            Probe::NoKey => return Err(JwtError::UnknownKey),
        }

        // Declared after the await so the future does not carry the buffer.
        let mut body_buf = [0u8; 2048];
        let mut body_heap = Vec::new();
        let body = decode(body_b64, &mut body_buf, &mut body_heap)?;
        let claims = self.names.read(body).map_err(|_| JwtError::Malformed)?;
        self.check_time(claims.exp, claims.nbf, now)?;
        if let Some(issuer) = &self.issuer {
            match &claims.iss {
                None => return Err(JwtError::MissingClaim("iss".into())),
                Some(iss) if **iss != **issuer => return Err(JwtError::WrongIssuer),
                Some(_) => {}
            }
        }
        if !self.audiences.is_empty() {
            let aud = claims
                .aud
                .as_ref()
                .ok_or_else(|| JwtError::MissingClaim("aud".into()))?;
            if !aud
                .iter()
                .any(|a| self.audiences.iter().any(|c| **c == **a))
            {
                return Err(JwtError::WrongAudience);
            }
        }
        let identity = Identity {
            user: claims.user,
            consumer: None,
            roles: claims.roles,
            scopes: claims.scope.or(claims.scp).unwrap_or_default(),
            method: AuthMethod::Jwt,
        };
        if let Some(cache) = &self.cache {
            let entry = Entry {
                identity: identity.clone(),
                exp: claims.exp,
                nbf: claims.nbf,
                generation,
            };
            cache.insert(token, entry, now);
        }
        Ok(identity)
    }

    /// Refuses a token past `exp` or before `nbf`, with the leeway.
    fn check_time(&self, exp: Option<f64>, nbf: Option<f64>, now: f64) -> Result<(), JwtError> {
        if let Some(exp) = exp
            && now >= exp + self.leeway_s
        {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = nbf
            && now + self.leeway_s < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    /// Fetches every JWKS URL not fetched yet or past its TTL (subject to the
    /// refresh interval), e.g. at start-up so the first requests need not
    /// wait. Returns how many URLs now have keys.
    pub async fn prefetch_jwks(&self, now_unix_s: i64, fetcher: &impl JwksFetcher) -> usize {
        let mut ready = 0;
        for s in &self.sources {
            let (_, loaded, fresh) = s.snapshot(now_unix_s, self.jwks_ttl_s);
            if !fresh {
                s.refresh(now_unix_s, fetcher, &self.generation).await;
            }
            if loaded || s.snapshot(now_unix_s, self.jwks_ttl_s).1 {
                ready += 1;
            }
        }
        ready
    }

    /// Tries the cached JWKS keys, fetching where the cache cannot answer.
    /// `Err` when no verifying key was found and a JWKS that might hold it
    /// has never been fetched successfully.
    async fn probe_jwks(
        &self,
        kid: Option<&str>,
        alg: Alg,
        message: &[u8],
        signature: &[u8],
        now: i64,
        fetcher: &impl JwksFetcher,
    ) -> Result<Probe, JwtError> {
        let mut best = Probe::NoKey;
        let mut unavailable = false;
        for s in &self.sources {
            let (mut keys, mut loaded, fresh) = s.snapshot(now, self.jwks_ttl_s);
            let pinned = s.pins.iter().any(|p| p.alg == alg);
            let knows = match kid {
                Some(kid) => keys.has_kid(kid),
                None => keys.has_alg(alg),
            };
            if pinned && (!fresh || !knows) && s.refresh(now, fetcher, &self.generation).await {
                (keys, loaded, _) = s.snapshot(now, self.jwks_ttl_s);
            }
            let p = keys.probe(kid, alg, message, signature);
            if p == Probe::Verified {
                return Ok(p);
            }
            best = best.max(p);
            unavailable |= pinned && !loaded;
        }
        if unavailable && best < Probe::BadSignature {
            return Err(JwtError::KeysUnavailable);
        }
        Ok(best)
    }
}

impl JwksSource {
    /// The cached keys, whether any fetch ever succeeded, and whether the
    /// cache is within its TTL.
    fn snapshot(&self, now: i64, ttl: i64) -> (Arc<KeySet>, bool, bool) {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (
            st.keys.clone(),
            st.fetched_at.is_some(),
            st.is_fresh(now, ttl),
        )
    }

    /// Whether the cached keys are within their TTL.
    fn is_fresh(&self, now: i64, ttl: i64) -> bool {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.is_fresh(now, ttl)
    }

    /// Fetches and installs the JWKS unless one was attempted within the
    /// refresh interval, bumping `generation`. True when new keys were
    /// installed.
    async fn refresh(&self, now: i64, fetcher: &impl JwksFetcher, generation: &AtomicU64) -> bool {
        {
            let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
            // A clock stepping back must not block refreshes until it catches up.
            if st
                .last_attempt
                .is_some_and(|t| now >= t && now.saturating_sub(t) < JWKS_MIN_REFRESH_INTERVAL_S)
            {
                return false;
            }
            // Claimed before the await so concurrent callers do not fetch too.
            st.last_attempt = Some(now);
        }
        let Ok(body) = fetcher.fetch_jwks(&self.url).await else {
            return false;
        };
        let Some(keys) = self.parse(&body) else {
            return false;
        };
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        st.keys = Arc::new(keys);
        st.fetched_at = Some(now);
        generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Keys of a JWKS document that fit a pin. A document that is not
    /// `{"keys":[…]}`, or has no usable key, counts as a failed fetch so the
    /// keys cached before stay.
    fn parse(&self, body: &[u8]) -> Option<KeySet> {
        if body.len() > MAX_JWKS_BYTES {
            return None;
        }
        let doc: JwksDoc = serde_json::from_slice(body).ok()?;
        let mut set = KeySet::default();
        for jwk in &doc.keys {
            let Value::Object(jwk) = jwk else { continue };
            let kid = jwk.get("kid").and_then(Value::as_str);
            for pin in &self.pins {
                if pin.kid.is_some() && pin.kid.as_deref() != kid {
                    continue;
                }
                // Keys of another type, use or algorithm are simply not ours.
                if let Ok(key) = Key::from_jwk(pin.alg, jwk) {
                    set.push(kid, key);
                }
            }
        }
        (!set.is_empty()).then_some(set)
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Decodes base64url (no padding) into `stack`, or `heap` when too long.
fn decode<'b>(src: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Result<&'b [u8], JwtError> {
    if src.len() / 4 * 3 + 3 <= stack.len() {
        let n = URL_SAFE_NO_PAD
            .decode_slice(src, stack)
            .map_err(|_| JwtError::Malformed)?;
        Ok(&stack[..n])
    } else {
        URL_SAFE_NO_PAD
            .decode_vec(src, heap)
            .map_err(|_| JwtError::Malformed)?;
        Ok(heap.as_slice())
    }
}

/// The inline `jwk` value as a JSON object: a TOML table, or a JSON string.
fn jwk_object(v: &toml::Value) -> Result<serde_json::Map<String, Value>, String> {
    let json = match v.as_str() {
        Some(s) => serde_json::from_str::<Value>(s).map_err(|e| {
            // Only the position: serde's message may quote key material.
            format!("not valid JSON (line {}, column {})", e.line(), e.column())
        })?,
        None => serde_json::to_value(v).map_err(|_| "cannot be read as a JWK".to_string())?,
    };
    match json {
        Value::Object(m) => Ok(m),
        _ => Err("must be a table or a JSON object".into()),
    }
}
