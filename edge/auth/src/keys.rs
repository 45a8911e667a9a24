//! Verification keys: parsing (secret, PEM, JWK) and signature checks.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jwt_compact::alg::{Ed25519, Es256, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};

use crate::rsassa::{Hash, Padding, RsaKey};

/// RFC 7518 §3.3: RSA keys below 2048 bits must not be used.
const MIN_RSA_BITS: usize = 2048;

/// A JWS algorithm we accept. Anything else (including `none`) is refused
/// before a key is even looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    EdDsa,
}

impl Alg {
    pub(crate) fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, Alg::Hs256 | Alg::Hs384 | Alg::Hs512)
    }

    /// The padding and hash of an RSA algorithm (RS*, PS*).
    fn rsassa(self) -> Option<(Padding, Hash)> {
        Some(match self {
            Alg::Rs256 => (Padding::Pkcs1v15, Hash::Sha256),
            Alg::Rs384 => (Padding::Pkcs1v15, Hash::Sha384),
            Alg::Rs512 => (Padding::Pkcs1v15, Hash::Sha512),
            Alg::Ps256 => (Padding::Pss, Hash::Sha256),
            Alg::Ps384 => (Padding::Pss, Hash::Sha384),
            Alg::Ps512 => (Padding::Pss, Hash::Sha512),
            _ => return None,
        })
    }
}

enum Material {
    /// HMACs keyed once: a verification starts from the keyed state
    /// instead of hashing the padded secret again.
    Hs256(Hmac<sha2::Sha256>),
    Hs384(Hmac<sha2::Sha384>),
    Hs512(Hmac<sha2::Sha512>),
    Rsa(Box<RsaKey>),
    Es256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A parsed public key (or HMAC secret), pinned to one algorithm.
pub(crate) struct Key {
    pub(crate) alg: Alg,
    material: Material,
}

impl Key {
    /// Checks `signature` over `message`. The caller has already made sure
    /// the token's `alg` equals `self.alg`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hs256(k) => check_mac(k, message, signature),
            Material::Hs384(k) => check_mac(k, message, signature),
            Material::Hs512(k) => check_mac(k, message, signature),
            Material::Rsa(k) => self
                .alg
                .rsassa()
                .is_some_and(|(padding, hash)| k.verify(padding, hash, message, signature)),
            Material::Es256(k) => check(&Es256, k, message, signature),
            Material::Ed25519(k) => check(&Ed25519, k, message, signature),
        }
    }

    /// An HMAC key from the configured secret string.
    pub(crate) fn from_secret(alg: Alg, secret: &str) -> Result<Key, String> {
        if !alg.is_hmac() {
            return Err(format!(
                "{} is an asymmetric algorithm: give pem, jwk or jwks_url",
                alg.name()
            ));
        }
        if secret.starts_with("env:") {
            return Err("is an unresolved env: reference".into());
        }
        hmac_key(alg, secret.as_bytes())
    }

    /// A public key from PEM (SPKI, or PKCS#1 for RSA).
    pub(crate) fn from_pem(alg: Alg, pem: &str) -> Result<Key, String> {
        if pem.starts_with("env:") {
            return Err("is an unresolved env: reference".into());
        }
        if pem.contains("PRIVATE KEY-----") {
            return Err("is a private key: configure the public key (BEGIN PUBLIC KEY)".into());
        }
        if pem.contains("BEGIN CERTIFICATE") {
            return Err(
                "certificates are not supported: give the public key (BEGIN PUBLIC KEY)".into(),
            );
        }
        // TOML multi-line strings are often indented; the PEM decoder is strict.
        let pem: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .flat_map(|l| [l, "\n"])
            .collect();
        let material = if alg.rsassa().is_some() {
            let key = if pem.contains("BEGIN RSA PUBLIC KEY") {
                use rsa::pkcs1::DecodeRsaPublicKey;
                RsaPublicKey::from_pkcs1_pem(&pem)
                    .map_err(|e| format!("not a valid RSA public key: {e}"))?
            } else {
                use rsa::pkcs8::DecodePublicKey;
                RsaPublicKey::from_public_key_pem(&pem)
                    .map_err(|e| format!("not a valid RSA public key: {e}"))?
            };
            rsa_material(&key)?
        } else {
            match alg {
                Alg::Es256 => {
                    use p256::pkcs8::DecodePublicKey;
                    Material::Es256(
                        p256::ecdsa::VerifyingKey::from_public_key_pem(&pem)
                            .map_err(|e| format!("not a valid P-256 public key: {e}"))?,
                    )
                }
                Alg::EdDsa => {
                    use ed25519_dalek::pkcs8::DecodePublicKey;
                    Material::Ed25519(
                        ed25519_dalek::VerifyingKey::from_public_key_pem(&pem)
                            .map_err(|e| format!("not a valid Ed25519 public key: {e}"))?,
                    )
                }
                _ => return Err(format!("{} keys need a secret, not a PEM key", alg.name())),
            }
        };
        Ok(Key { alg, material })
    }

    /// A key from one JSON Web Key object (inline or from a JWKS).
    ///
    /// Refuses keys whose `use` is not `sig`, whose `alg` names another
    /// algorithm, whose `kty`/`crv` do not fit `alg`, and private keys.
    pub(crate) fn from_jwk(alg: Alg, jwk: &Map<String, Value>) -> Result<Key, String> {
        let field = |name: &str| -> Result<Option<&str>, String> {
            match jwk.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("JWK member \"{name}\" is not a string")),
            }
        };
        if let Some(u) = field("use")?
            && u != "sig"
        {
            return Err(format!("JWK use is \"{}\", not \"sig\"", printable(u)));
        }
        if let Some(a) = field("alg")?
            && a != alg.name()
        {
            return Err(format!(
                "JWK alg \"{}\" differs from the pinned alg {}",
                printable(a),
                alg.name()
            ));
        }
        let kty = field("kty")?.ok_or("JWK lacks kty")?;
        if alg.is_hmac() {
            if kty != "oct" {
                return Err(format!("{} needs a JWK with kty \"oct\"", alg.name()));
            }
            let k = field("k")?.ok_or("JWK lacks k")?;
            let secret = URL_SAFE_NO_PAD
                .decode(k)
                .map_err(|_| "JWK k is not base64url")?;
            return hmac_key(alg, &secret);
        }
        if jwk.contains_key("d") {
            return Err("JWK holds a private key: configure the public key only".into());
        }
        let (want_kty, public): (&str, &[&str]) = match alg {
            Alg::Es256 | Alg::EdDsa => (
                if alg == Alg::Es256 { "EC" } else { "OKP" },
                &["kty", "crv", "x", "y"],
            ),
            _ => ("RSA", &["kty", "n", "e"]),
        };
        if kty != want_kty {
            return Err(format!(
                "{} needs a JWK with kty \"{want_kty}\", not \"{}\"",
                alg.name(),
                printable(kty)
            ));
        }
        // Only public members are handed on, so no parser message can ever
        // quote private material.
        let public: Map<String, Value> = public
            .iter()
            .filter_map(|k| jwk.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        let parsed: JsonWebKey<'static> = serde_json::from_value(Value::Object(public))
            .map_err(|e| format!("invalid {kty} JWK: {e}"))?;
        let material = match alg {
            Alg::Es256 => Material::Es256(
                p256::ecdsa::VerifyingKey::try_from(&parsed)
                    .map_err(|e| format!("invalid P-256 JWK: {e}"))?,
            ),
            Alg::EdDsa => Material::Ed25519(
                ed25519_dalek::VerifyingKey::try_from(&parsed)
                    .map_err(|e| format!("invalid Ed25519 JWK: {e}"))?,
            ),
            _ => {
                let key =
                    RsaPublicKey::try_from(&parsed).map_err(|e| format!("invalid RSA JWK: {e}"))?;
                rsa_material(&key)?
            }
        };
        Ok(Key { alg, material })
    }
}

/// Keeps peer-supplied strings short and printable inside error reasons.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(32)
        .collect()
}

fn hmac_key(alg: Alg, secret: &[u8]) -> Result<Key, String> {
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let unusable = |_| "the secret is not a usable HMAC key".to_string();
    let material = match alg {
        Alg::Hs256 => Material::Hs256(Hmac::new_from_slice(secret).map_err(unusable)?),
        Alg::Hs384 => Material::Hs384(Hmac::new_from_slice(secret).map_err(unusable)?),
        _ => Material::Hs512(Hmac::new_from_slice(secret).map_err(unusable)?),
    };
    Ok(Key { alg, material })
}

fn rsa_material(key: &RsaPublicKey) -> Result<Material, String> {
    let key = RsaKey::new(&key.n().to_bytes_be(), &key.e().to_bytes_be())
        .map_err(|why| format!("not a usable RSA public key: {why}"))?;
    let bits = key.bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    Ok(Material::Rsa(Box::new(key)))
}

/// An HMAC tag check in constant time (a tag of another length fails).
fn check_mac<M: Mac + Clone>(keyed: &M, message: &[u8], signature: &[u8]) -> bool {
    let mut mac = keyed.clone();
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// Length-checks before handing bytes to jwt-compact: its HMAC signature
/// constructor panics on a wrong length.
fn check<A: Algorithm>(alg: &A, key: &A::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    if let Some(len) = <A::Signature as AlgorithmSignature>::LENGTH
        && signature.len() != len.get()
    {
        return false;
    }
    match <A::Signature as AlgorithmSignature>::try_from_slice(signature) {
        Ok(sig) => alg.verify_signature(&sig, key, message),
        Err(_) => false,
    }
}

/// What trying a token against a set of keys found. Ordered so the most
/// telling outcome of several sets wins with `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Probe {
    /// No key with the token's kid (or, without kid, no key at all).
    NoKey,
    /// Keys were found, but none pinned to the token's alg.
    Mismatch,
    /// Keys of the right alg were tried, none verified.
    BadSignature,
    /// A key verified the signature.
    Verified,
}

/// Keys indexed for lookup by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<Box<str>, Vec<usize>>,
    /// Keys configured without a kid: they serve tokens with any kid.
    kidless: Vec<usize>,
}

impl KeySet {
    pub(crate) fn push(&mut self, kid: Option<&str>, key: Key) {
        let i = self.keys.len();
        self.keys.push(key);
        match kid {
            Some(kid) => self.by_kid.entry(kid.into()).or_default().push(i),
            None => self.kidless.push(i),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub(crate) fn has_alg(&self, alg: Alg) -> bool {
        self.keys.iter().any(|k| k.alg == alg)
    }

    /// Tries the keys the token may use: those with its `kid` (else the
    /// kid-less ones); without `kid`, every key. Only keys pinned to `alg`
    /// are ever asked to verify.
    pub(crate) fn probe(
        &self,
        kid: Option<&str>,
        alg: Alg,
        message: &[u8],
        signature: &[u8],
    ) -> Probe {
        let mut seen = false;
        let mut tried = false;
        let mut attempt = |key: &Key| {
            seen = true;
            if key.alg != alg {
                return false;
            }
            tried = true;
            key.verify(message, signature)
        };
        let verified = match kid {
            Some(kid) => {
                let idx = self.by_kid.get(kid).unwrap_or(&self.kidless);
                idx.iter().any(|&i| attempt(&self.keys[i]))
            }
            None => self.keys.iter().any(&mut attempt),
        };
        if verified {
            Probe::Verified
        } else if tried {
            Probe::BadSignature
        } else if seen {
            Probe::Mismatch
        } else {
            Probe::NoKey
        }
    }
}
