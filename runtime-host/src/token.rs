//! HS256 JSON Web Tokens for testing routes (`edgegate token`, the dev token
//! printed at start-up).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// What goes into a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub sub: String,
    /// Roles (omitted when empty).
    pub roles: Vec<String>,
    /// Claim carrying the roles (`roles` when `None`).
    pub roles_claim: Option<String>,
    /// `scope`, space-separated (omitted when `None`).
    pub scope: Option<String>,
    /// `iss`.
    pub iss: Option<String>,
    /// `aud`.
    pub aud: Option<String>,
    /// `kid` header.
    pub kid: Option<String>,
    /// Lifetime in seconds.
    pub ttl_s: u64,
}

/// Signs `claims` with HMAC-SHA256 under `secret`, issued at `now` (Unix s).
pub fn mint_hs256(secret: &[u8], claims: &Claims, now: u64) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), json!("HS256"));
    header.insert("typ".into(), json!("JWT"));
    if let Some(kid) = &claims.kid {
        header.insert("kid".into(), json!(kid));
    }

    let mut payload = Map::new();
    payload.insert("sub".into(), json!(claims.sub));
    payload.insert("iat".into(), json!(now));
    payload.insert("exp".into(), json!(now.saturating_add(claims.ttl_s)));
    if !claims.roles.is_empty() {
        let name = claims.roles_claim.as_deref().unwrap_or("roles");
        payload.insert(name.into(), json!(claims.roles));
    }
    if let Some(scope) = &claims.scope {
        payload.insert("scope".into(), json!(scope));
    }
    if let Some(iss) = &claims.iss {
        payload.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = &claims.aud {
        payload.insert("aud".into(), json!(aud));
    }

    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string())
    );
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Resolves a `--secret` value: a literal, or `env:NAME`.
pub fn resolve_secret(value: &str) -> Result<String, String> {
    match value.strip_prefix("env:") {
        Some(name) => {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
        }
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_claims_and_verifies() {
        let claims = Claims {
            sub: "alice".into(),
            roles: vec!["user".into()],
            iss: Some("i".into()),
            aud: Some("a".into()),
            kid: Some("dev".into()),
            ttl_s: 60,
            ..Claims::default()
        };
        let token = mint_hs256(b"secret", &claims, 1_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);

        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["sub"], "alice");
        assert_eq!(payload["roles"], json!(["user"]));
        assert_eq!(payload["exp"], 1_060);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], "dev");
        assert_eq!(header["alg"], "HS256");

        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }

    #[test]
    fn secret_from_env_reference() {
        assert_eq!(resolve_secret("plain").unwrap(), "plain");
        let err = resolve_secret("env:EDGEGATE_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.contains("EDGEGATE_TEST_SURELY_UNSET_VAR"));
    }
}
