//! Shared test helpers: configuration builders, an in-memory JWKS fetcher,
//! a minimal executor, and token minting through `jsonwebtoken` (an
//! implementation independent of the crate under test).

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgegate_auth::JwksFetcher;
use edgegate_config::{Jwt, JwtKey, OneOrMany};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const NOW: i64 = 1_700_000_000;
pub const SECRET: &str = "test-hmac-secret-0123456789abcdef";

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Drives a future that never waits on I/O (the test fetcher answers at once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future waited on something"),
    }
}

pub fn key(alg: &str) -> JwtKey {
    JwtKey {
        kid: None,
        alg: alg.into(),
        secret: None,
        pem: None,
        jwk: None,
        jwks_url: None,
    }
}

pub fn secret_key(alg: &str, kid: Option<&str>, secret: &str) -> JwtKey {
    JwtKey {
        kid: kid.map(Into::into),
        secret: Some(secret.into()),
        ..key(alg)
    }
}

pub fn pem_key(alg: &str, kid: Option<&str>, pem: &str) -> JwtKey {
    JwtKey {
        kid: kid.map(Into::into),
        pem: Some(pem.into()),
        ..key(alg)
    }
}

pub fn jwks_key(alg: &str, url: &str) -> JwtKey {
    JwtKey {
        jwks_url: Some(url.into()),
        ..key(alg)
    }
}

pub fn config(keys: Vec<JwtKey>) -> Jwt {
    Jwt {
        issuer: Some("https://issuer.test".into()),
        audience: Some(OneOrMany::One("api".into())),
        leeway_s: 0,
        keys,
        roles_claim: "roles".into(),
        scope_claim: "scope".into(),
        user_claim: "sub".into(),
        cookie: None,
        query_param: None,
        jwks_ttl_s: 300,
    }
}

/// Claims that pass `config`'s checks at `NOW`.
pub fn claims() -> Value {
    json!({
        "sub": "user-1",
        "iss": "https://issuer.test",
        "aud": "api",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "roles": ["user"],
    })
}

pub fn alg_of(name: &str) -> Algorithm {
    name.parse().expect("algorithm name")
}

pub fn encoding_key(alg: &str) -> EncodingKey {
    match alg {
        "HS256" | "HS384" | "HS512" => EncodingKey::from_secret(SECRET.as_bytes()),
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap()
        }
        "ES256" => EncodingKey::from_ec_pem(fixture("ec_private.pem").as_bytes()).unwrap(),
        "EdDSA" => EncodingKey::from_ed_pem(fixture("ed25519_private.pem").as_bytes()).unwrap(),
        other => panic!("no test key for {other}"),
    }
}

/// The public key (or secret) matching `encoding_key(alg)`.
pub fn verifying_key(alg: &str, kid: Option<&str>) -> JwtKey {
    match alg {
        "HS256" | "HS384" | "HS512" => secret_key(alg, kid, SECRET),
        "ES256" => pem_key(alg, kid, &fixture("ec_public.pem")),
        "EdDSA" => pem_key(alg, kid, &fixture("ed25519_public.pem")),
        _ => pem_key(alg, kid, &fixture("rsa_public.pem")),
    }
}

pub fn mint_with(alg: &str, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg_of(alg));
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn mint(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    mint_with(alg, kid, claims, &encoding_key(alg))
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Public JWKs of the fixture keys, computed from the PEM files.
pub fn rsa_jwk(pem_file: &str, kid: &str) -> Value {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let k = rsa::RsaPublicKey::from_public_key_pem(&fixture(pem_file)).unwrap();
    json!({"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())})
}

pub fn ec_jwk(kid: &str) -> Value {
    use p256::pkcs8::DecodePublicKey;
    let k = p256::ecdsa::VerifyingKey::from_public_key_pem(&fixture("ec_public.pem")).unwrap();
    let point = k.to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

pub fn ed_jwk(kid: &str) -> Value {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let k =
        ed25519_dalek::VerifyingKey::from_public_key_pem(&fixture("ed25519_public.pem")).unwrap();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.as_bytes())})
}

/// An in-memory JWKS server that counts fetches.
#[derive(Default)]
pub struct MemFetcher {
    docs: Mutex<HashMap<String, Result<Vec<u8>, String>>>,
    calls: Mutex<Vec<String>>,
}

impl MemFetcher {
    pub fn serve(&self, url: &str, doc: &Value) {
        self.docs
            .lock()
            .unwrap()
            .insert(url.into(), Ok(doc.to_string().into_bytes()));
    }

    pub fn serve_raw(&self, url: &str, body: &[u8]) {
        self.docs
            .lock()
            .unwrap()
            .insert(url.into(), Ok(body.to_vec()));
    }

    pub fn fail(&self, url: &str) {
        self.docs
            .lock()
            .unwrap()
            .insert(url.into(), Err("connection refused".into()));
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl JwksFetcher for MemFetcher {
    async fn fetch_jwks(&self, url: &str) -> Result<Vec<u8>, String> {
        self.calls.lock().unwrap().push(url.into());
        self.docs
            .lock()
            .unwrap()
            .get(url)
            .cloned()
            .unwrap_or_else(|| Err("404".into()))
    }
}

/// A fetcher for configurations without JWKS URLs.
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch_jwks(&self, _url: &str) -> Result<Vec<u8>, String> {
        panic!("no JWKS fetch expected")
    }
}
