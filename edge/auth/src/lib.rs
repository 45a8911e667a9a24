//! edgegate caller authentication: JWT verification (inline keys and JWKS)
//! and API keys.
//!
//! Platform-free and I/O-free: JWKS documents come through the
//! [`JwksFetcher`] the caller provides, and the current time is always
//! passed in, never read here.

#![warn(missing_docs)]

mod apikey;
mod cache;
mod claims;
mod error;
mod jwt;
mod keys;
mod montgomery;
mod rsassa;

pub use apikey::{ApiKeys, sha256_hex};
pub use error::{JwtError, KeyError};
pub use jwt::{JWKS_MIN_REFRESH_INTERVAL_S, JwksFetcher, JwtVerifier, MAX_TOKEN_LEN};

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A verified JSON Web Token.
    Jwt,
    /// A known API key.
    ApiKey,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The JWT's user claim (`None` for API keys, or when the token has none).
    pub user: Option<String>,
    /// The API key's consumer (`None` for JWTs).
    pub consumer: Option<String>,
    /// Roles granted.
    pub roles: Vec<String>,
    /// OAuth scopes granted.
    pub scopes: Vec<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
}

impl Identity {
    /// True if the caller has at least one of `required` (or `required` is empty).
    pub fn has_any_role(&self, required: &[String]) -> bool {
        required.is_empty() || required.iter().any(|r| self.roles.contains(r))
    }

    /// True if the caller has every scope in `required`.
    pub fn has_all_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|s| self.scopes.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(roles: &[&str], scopes: &[&str]) -> Identity {
        Identity {
            user: None,
            consumer: None,
            roles: roles.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            method: AuthMethod::Jwt,
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_need_any_scopes_need_all() {
        let i = id(&["user"], &["read", "write"]);
        assert!(i.has_any_role(&[]));
        assert!(i.has_any_role(&v(&["admin", "user"])));
        assert!(!i.has_any_role(&v(&["admin"])));
        assert!(i.has_all_scopes(&[]));
        assert!(i.has_all_scopes(&v(&["read", "write"])));
        assert!(!i.has_all_scopes(&v(&["read", "delete"])));
    }
}
