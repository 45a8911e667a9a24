//! JWKS fetching, caching, refresh on unknown kid, and its rate limit.

mod common;

use common::*;
use edgegate_auth::{JWKS_MIN_REFRESH_INTERVAL_S, JwtError, JwtVerifier};
use jsonwebtoken::EncodingKey;
use serde_json::json;

const URL: &str = "https://issuer.test/.well-known/jwks.json";

fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa2_private.pem").as_bytes()).unwrap()
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(&config(vec![jwks_key("RS256", URL)])).unwrap()
}

#[test]
fn fetched_once_then_cached() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    let token = mint("RS256", Some("k1"), &claims());
    for i in 0..5 {
        let id = block_on(v.verify(&token, NOW + i, &f)).unwrap();
        assert_eq!(id.user.as_deref(), Some("user-1"));
    }
    assert_eq!(f.calls(), 1);
    // Tokens without kid use the cached keys too.
    assert!(block_on(v.verify(&mint("RS256", None, &claims()), NOW + 6, &f)).is_ok());
    assert_eq!(f.calls(), 1);
}

#[test]
fn unknown_kid_refreshes_at_most_once_per_interval() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    assert!(block_on(v.verify(&mint("RS256", Some("k1"), &claims()), NOW, &f)).is_ok());
    assert_eq!(f.calls(), 1);

    // The issuer rotates to k2 (another key pair).
    f.serve(
        URL,
        &json!({"keys": [rsa_jwk("rsa_public.pem", "k1"), rsa_jwk("rsa2_public.pem", "k2")]}),
    );
    let t2 = mint_with("RS256", Some("k2"), &claims(), &rsa2());

    // Within the interval: no fetch, the kid stays unknown.
    for (i, kid) in ["k2", "spray-1", "spray-2"].iter().enumerate() {
        let token = mint_with("RS256", Some(kid), &claims(), &rsa2());
        let now = NOW + 1 + i as i64;
        assert_eq!(
            block_on(v.verify(&token, now, &f)),
            Err(JwtError::UnknownKey)
        );
    }
    assert_eq!(f.calls(), 1);

    // After it: one refresh, and k2 verifies.
    let later = NOW + JWKS_MIN_REFRESH_INTERVAL_S;
    assert!(block_on(v.verify(&t2, later, &f)).is_ok());
    assert_eq!(f.calls(), 2);
    // Spraying unknown kids right after still costs no fetch.
    for i in 0..20 {
        let token = mint_with("RS256", Some(&format!("x{i}")), &claims(), &rsa2());
        assert_eq!(
            block_on(v.verify(&token, later + 1, &f)),
            Err(JwtError::UnknownKey)
        );
    }
    assert_eq!(f.calls(), 2);
    // Known keys keep working from the cache.
    assert!(block_on(v.verify(&mint("RS256", Some("k1"), &claims()), later + 2, &f)).is_ok());
    assert_eq!(f.calls(), 2);
}

#[test]
fn ttl_expiry_refetches_and_drops_removed_keys() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    let t1 = mint("RS256", Some("k1"), &claims());
    assert!(block_on(v.verify(&t1, NOW, &f)).is_ok());
    assert!(block_on(v.verify(&t1, NOW + 299, &f)).is_ok());
    assert_eq!(f.calls(), 1);
    // k1 is revoked; past the TTL the cache is refreshed before use.
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa2_public.pem", "k2")]}));
    assert_eq!(
        block_on(v.verify(&t1, NOW + 300, &f)),
        Err(JwtError::UnknownKey)
    );
    assert_eq!(f.calls(), 2);
}

#[test]
fn a_refresh_that_drops_a_key_refuses_its_tokens_at_once() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    let t1 = mint("RS256", Some("k1"), &claims());
    assert!(block_on(v.verify(&t1, NOW, &f)).is_ok());
    // The issuer replaces k1 with k2; a k2 token makes the gateway refresh
    // well within the TTL.
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa2_public.pem", "k2")]}));
    let later = NOW + JWKS_MIN_REFRESH_INTERVAL_S;
    let t2 = mint_with("RS256", Some("k2"), &claims(), &rsa2());
    assert!(block_on(v.verify(&t2, later, &f)).is_ok());
    assert_eq!(f.calls(), 2);
    // t1 was verified before, but with a key the issuer no longer lists.
    assert_eq!(
        block_on(v.verify(&t1, later + 1, &f)),
        Err(JwtError::UnknownKey)
    );
}

#[test]
fn stale_keys_stay_in_use_when_the_refresh_fails() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    let t1 = mint("RS256", Some("k1"), &claims());
    assert!(block_on(v.verify(&t1, NOW, &f)).is_ok());
    f.fail(URL);
    assert!(block_on(v.verify(&t1, NOW + 400, &f)).is_ok());
    assert_eq!(f.calls(), 2);
    // A document with no usable key counts as a failure too.
    f.serve(
        URL,
        &json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}),
    );
    assert!(block_on(v.verify(&t1, NOW + 420, &f)).is_ok());
    f.serve_raw(URL, b"<html>oops</html>");
    assert!(block_on(v.verify(&t1, NOW + 440, &f)).is_ok());
    assert_eq!(f.calls(), 4);
}

#[test]
fn fetch_failure_without_cache_is_keys_unavailable() {
    let f = MemFetcher::default();
    f.fail(URL);
    let v = verifier();
    let token = mint("RS256", Some("k1"), &claims());
    let err = block_on(v.verify(&token, NOW, &f)).unwrap_err();
    assert_eq!(err, JwtError::KeysUnavailable);
    assert_eq!(err.reason(), "keys_unavailable");
    assert!(!err.description().contains(URL));
    // Retried only after the interval, then recovers.
    assert_eq!(
        block_on(v.verify(&token, NOW + 1, &f)),
        Err(JwtError::KeysUnavailable)
    );
    assert_eq!(f.calls(), 1);
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    assert!(block_on(v.verify(&token, NOW + 10, &f)).is_ok());
    assert_eq!(f.calls(), 2);
}

#[test]
fn only_sources_pinned_to_the_token_alg_are_fetched() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let cfg = config(vec![
        secret_key("HS256", Some("h"), SECRET),
        jwks_key("RS256", URL),
    ]);
    let v = JwtVerifier::new(&cfg).unwrap();
    // Inline keys answer without touching the JWKS.
    assert!(block_on(v.verify(&mint("HS256", Some("h"), &claims()), NOW, &f)).is_ok());
    assert_eq!(
        block_on(v.verify(&mint("ES256", None, &claims()), NOW, &f)),
        Err(JwtError::AlgorithmMismatch)
    );
    assert_eq!(f.calls(), 0);
    assert!(block_on(v.verify(&mint("RS256", Some("k1"), &claims()), NOW, &f)).is_ok());
    assert_eq!(f.calls(), 1);
}

#[test]
fn jwks_keys_are_filtered_by_use_type_and_pinned_alg() {
    let f = MemFetcher::default();
    let mut enc = rsa_jwk("rsa_public.pem", "enc");
    enc["use"] = json!("enc");
    let mut other_alg = rsa_jwk("rsa_public.pem", "ps");
    other_alg["alg"] = json!("PS256");
    f.serve(
        URL,
        &json!({"keys": [enc, other_alg, ec_jwk("ec"), ed_jwk("ed"), "junk",
                         rsa_jwk("rsa_public.pem", "ok")]}),
    );
    let v = verifier();
    assert!(block_on(v.verify(&mint("RS256", Some("ok"), &claims()), NOW, &f)).is_ok());
    for kid in ["enc", "ps", "ec", "ed"] {
        let token = mint("RS256", Some(kid), &claims());
        assert_eq!(
            block_on(v.verify(&token, NOW + 1, &f)),
            Err(JwtError::UnknownKey),
            "{kid}"
        );
    }
}

#[test]
fn one_url_pinned_to_several_algorithms_is_fetched_once() {
    let f = MemFetcher::default();
    f.serve(
        URL,
        &json!({"keys": [rsa_jwk("rsa_public.pem", "r"), ec_jwk("e"), ed_jwk("d")]}),
    );
    let cfg = config(vec![
        jwks_key("RS256", URL),
        jwks_key("ES256", URL),
        jwks_key("EdDSA", URL),
    ]);
    let v = JwtVerifier::new(&cfg).unwrap();
    for (alg, kid) in [("RS256", "r"), ("ES256", "e"), ("EdDSA", "d")] {
        assert!(
            block_on(v.verify(&mint(alg, Some(kid), &claims()), NOW, &f)).is_ok(),
            "{alg}"
        );
    }
    assert_eq!(f.calls(), 1);
    // A key of the document used with another pinned algorithm.
    assert_eq!(
        block_on(v.verify(&mint("EdDSA", Some("r"), &claims()), NOW, &f)),
        Err(JwtError::AlgorithmMismatch)
    );
}

#[test]
fn prefetch_loads_every_source() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    f.fail("https://down.test/jwks");
    let cfg = config(vec![
        jwks_key("RS256", URL),
        jwks_key("RS256", "https://down.test/jwks"),
    ]);
    let v = JwtVerifier::new(&cfg).unwrap();
    assert_eq!(block_on(v.prefetch_jwks(NOW, &f)), 1);
    assert_eq!(f.calls(), 2);
    assert!(block_on(v.verify(&mint("RS256", Some("k1"), &claims()), NOW, &f)).is_ok());
    assert_eq!(f.calls(), 2);
}

#[test]
fn bad_signature_with_a_cached_kid_does_not_refetch() {
    let f = MemFetcher::default();
    f.serve(URL, &json!({"keys": [rsa_jwk("rsa_public.pem", "k1")]}));
    let v = verifier();
    assert!(block_on(v.verify(&mint("RS256", Some("k1"), &claims()), NOW, &f)).is_ok());
    let forged = mint_with("RS256", Some("k1"), &claims(), &rsa2());
    for i in 0..3 {
        assert_eq!(
            block_on(v.verify(&forged, NOW + 20 + i, &f)),
            Err(JwtError::BadSignature)
        );
    }
    assert_eq!(f.calls(), 1);
}
