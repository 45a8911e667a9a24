//! Tokens minted by an independent JWT implementation (`jsonwebtoken`),
//! never by the code under test.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

/// RSA private key of the test fixtures (its JWKS is [`RS256_JWKS`]).
pub const RS256_PRIVATE: &str = include_str!("../fixtures/rs256-private.pem");
/// JWKS with the public half of [`RS256_PRIVATE`], kid `rsa-1`.
pub const RS256_JWKS: &str = include_str!("../fixtures/rs256-jwks.json");
/// P-256 private key (PKCS#8) of the test fixtures.
pub const ES256_PRIVATE: &str = include_str!("../fixtures/es256-private.pem");
/// SPKI public half of [`ES256_PRIVATE`].
pub const ES256_PUBLIC: &str = include_str!("../fixtures/es256-public.pem");

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Standard claims for `sub` with `roles`, valid for an hour.
pub fn claims(sub: &str, roles: &[&str]) -> Value {
    serde_json::json!({
        "sub": sub, "iss": "https://issuer.test", "aud": "api",
        "roles": roles, "iat": now(), "exp": now() + 3600,
    })
}

/// An HS256 token.
pub fn hs256(secret: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("mint HS256")
}

/// An RS256 token signed with the fixture key.
pub fn rs256(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).expect("fixture RSA key");
    encode(&header, claims, &key).expect("mint RS256")
}

/// An ES256 token signed with the fixture key.
pub fn es256(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("fixture EC key");
    encode(&header, claims, &key).expect("mint ES256")
}

/// An unsigned `alg: none` token (must always be refused).
pub fn unsigned(claims: &Value) -> String {
    use base64_url as b64;
    format!(
        "{}.{}.",
        b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64::encode(claims.to_string().as_bytes())
    )
}

mod base64_url {
    /// Unpadded base64url.
    pub fn encode(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
