//! Error types: why a token was refused, and why a configured key is unusable.

/// Why a token was refused.
///
/// Every variant maps to RFC 6750's
/// `WWW-Authenticate: Bearer error="invalid_token", error_description="…"`
/// with [`JwtError::description`] as the description. `Display` never
/// contains the token, its claims' values or key material.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not a compact JWS with a JSON header and JSON claims.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one we accept (this includes `none`).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// No configured or fetched key matches the token's `kid` / `alg`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The selected key is pinned to another algorithm (e.g. HS/RS confusion).
    #[error("token algorithm does not match the key's algorithm")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` differs from the configured issuer.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` contains none of the configured audiences.
    #[error("wrong token audience")]
    WrongAudience,
    /// A required claim is absent (carries the claim's name).
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    /// Keys must come from a JWKS URL that could not be fetched, and none is cached.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl JwtError {
    /// Short stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::UnsupportedAlgorithm => "unsupported_algorithm",
            JwtError::UnknownKey => "unknown_key",
            JwtError::AlgorithmMismatch => "algorithm_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Human-readable text for `error_description`; never contains the
    /// token or secrets, and never a `"` or `\` (safe inside the quoted
    /// header parameter).
    pub fn description(&self) -> String {
        match self {
            // Claim names come from configuration or a fixed list, but are
            // filtered anyway so the header value stays well-formed.
            JwtError::MissingClaim(name) => {
                let name: String = name
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                    .collect();
                format!("the token lacks the required {name} claim")
            }
            other => other.to_string(),
        }
    }
}

/// A configured key cannot be used.
///
/// `Display` is `path: reason`, where `path` is the key's place in the
/// configuration (`auth.jwt.keys[2].pem`); it never contains key material.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key's algorithm is not supported.
    #[error("{path}: unsupported algorithm \"{alg}\"")]
    UnsupportedAlgorithm {
        /// Configuration path of the `alg` key.
        path: String,
        /// The configured algorithm name.
        alg: String,
    },
    /// The key (secret, PEM, JWK or digest) is unusable.
    #[error("{path}: {reason}")]
    Invalid {
        /// Configuration path of the offending value.
        path: String,
        /// What is wrong with it (never the value itself).
        reason: String,
    },
}

impl KeyError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        KeyError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Configuration path of the offending value.
    pub fn path(&self) -> &str {
        match self {
            KeyError::UnsupportedAlgorithm { path, .. } | KeyError::Invalid { path, .. } => path,
        }
    }
}
