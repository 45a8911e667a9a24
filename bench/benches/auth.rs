//! JWT verification with a cached key, per algorithm, and API-key lookup:
//! `cargo bench -p edgegate-bench --bench auth`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgegate_auth::{ApiKeys, JwksFetcher, JwtVerifier, sha256_hex};
use edgegate_config::{ApiKey, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rs256-public.pem");
const EC_PRIVATE: &str = include_str!("../../tests/fixtures/es256-private.pem");
const EC_PUBLIC: &str = include_str!("../../tests/fixtures/es256-public.pem");
const NOW: i64 = 1_700_000_000;
const HS_SECRET: &str = "bench-secret-0123456789abcdef";

struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch_jwks(&self, _url: &str) -> Result<Vec<u8>, String> {
        Err("no JWKS in this benchmark".into())
    }
}

fn verifier() -> JwtVerifier {
    let text = format!(
        "[auth.jwt]\nissuer = \"iss\"\naudience = \"api\"\nkeys = [\n\
         {{ kid = \"hs\", alg = \"HS256\", secret = \"{HS_SECRET}\" }},\n\
         {{ kid = \"rs\", alg = \"RS256\", pem = \"\"\"{RSA_PUBLIC}\"\"\" }},\n\
         {{ kid = \"ps\", alg = \"PS256\", pem = \"\"\"{RSA_PUBLIC}\"\"\" }},\n\
         {{ kid = \"es\", alg = \"ES256\", pem = \"\"\"{EC_PUBLIC}\"\"\" }},\n]\n"
    );
    let config = Config::parse(&text).expect("bench config");
    JwtVerifier::new(config.auth.jwt.as_ref().expect("jwt section")).expect("verifier")
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "sub": "alice", "iss": "iss", "aud": "api", "roles": ["user", "ops"],
        "scope": "read write", "exp": NOW + 3600, "iat": NOW,
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, &claims, key).expect("token")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // Verification with a cached key never waits: one poll completes it.
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("verification waited"),
    }
}

fn jwt(c: &mut Criterion) {
    let tokens = [
        (
            "HS256",
            token(
                Algorithm::HS256,
                "hs",
                &EncodingKey::from_secret(HS_SECRET.as_bytes()),
            ),
        ),
        (
            "RS256",
            token(
                Algorithm::RS256,
                "rs",
                &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            ),
        ),
        (
            "PS256",
            token(
                Algorithm::PS256,
                "ps",
                &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            ),
        ),
        (
            "ES256",
            token(
                Algorithm::ES256,
                "es",
                &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            ),
        ),
    ];
    // Verification itself: the cache of verified tokens would answer every
    // iteration after the first.
    verify_group(c, "jwt_verify", &verifier().without_cache(), &tokens);
    // A caller presenting the token it used before (the common case).
    verify_group(c, "jwt_verify_remembered", &verifier(), &tokens);
}

/// One benchmark per token, each verified once before it is timed.
fn verify_group(c: &mut Criterion, group: &str, v: &JwtVerifier, tokens: &[(&str, String)]) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for (name, token) in tokens {
        block_on(v.verify(token, NOW, &NoFetch)).expect("bench token verifies");
        group.bench_function(*name, |b| {
            b.iter(|| block_on(v.verify(black_box(token), NOW, &NoFetch)))
        });
    }
    group.finish();
}

fn api_keys(c: &mut Criterion) {
    let keys: Vec<ApiKey> = (0..100)
        .map(|i| ApiKey {
            consumer: format!("c{i}"),
            key_sha256: sha256_hex(format!("key-{i}").as_bytes()),
            roles: vec!["service".into()],
            scopes: Vec::new(),
        })
        .collect();
    let keys = ApiKeys::new(&keys).expect("keys");
    let mut group = c.benchmark_group("api_key");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup_of_100", |b| {
        b.iter(|| keys.authenticate(black_box("key-57")))
    });
    group.finish();
}

criterion_group!(benches, jwt, api_keys);
criterion_main!(benches);
