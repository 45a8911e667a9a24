//! JWT verification against tokens minted by `jsonwebtoken`.

mod common;

use common::*;
use edgegate_auth::{AuthMethod, JwtError, JwtVerifier, KeyError};
use edgegate_config::{Jwt, OneOrMany};
use serde_json::{Value, json};

fn verify(cfg: &Jwt, token: &str) -> Result<edgegate_auth::Identity, JwtError> {
    verify_at(cfg, token, NOW)
}

fn verify_at(cfg: &Jwt, token: &str, now: i64) -> Result<edgegate_auth::Identity, JwtError> {
    let v = JwtVerifier::new(cfg).expect("keys parse");
    let result = block_on(v.verify(token, now, &NoFetch));
    if let Err(e) = &result {
        // Neither the token nor any part of it may leak into messages.
        for text in [e.to_string(), e.description()] {
            assert!(token.is_empty() || !text.contains(token), "{text}");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!text.contains(part), "{text}");
            }
            assert!(!text.contains(SECRET), "{text}");
        }
    }
    result
}

const ALL_ALGS: [&str; 11] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "EdDSA",
];

#[test]
fn every_algorithm_is_accepted() {
    for alg in ALL_ALGS {
        let cfg = config(vec![verifying_key(alg, None)]);
        let id =
            verify(&cfg, &mint(alg, None, &claims())).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(id.user.as_deref(), Some("user-1"), "{alg}");
        assert_eq!(id.roles, ["user"]);
        assert_eq!(id.consumer, None);
        assert_eq!(id.method, AuthMethod::Jwt);
    }
}

#[test]
fn every_algorithm_refuses_a_foreign_signature() {
    for alg in ALL_ALGS {
        let cfg = config(vec![verifying_key(alg, None)]);
        let token = mint(alg, None, &claims());
        // Same header and claims, signature taken from a token with other claims.
        let other = mint(alg, None, &json!({"sub": "someone-else"}));
        let (message, _) = token.rsplit_once('.').unwrap();
        let (_, sig) = other.rsplit_once('.').unwrap();
        let forged = format!("{message}.{sig}");
        assert_eq!(verify(&cfg, &forged), Err(JwtError::BadSignature), "{alg}");
    }
}

#[test]
fn wrong_secret_and_tampered_claims_are_refused() {
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let other = jsonwebtoken::EncodingKey::from_secret(b"another-secret-entirely");
    let token = mint_with("HS256", None, &claims(), &other);
    assert_eq!(verify(&cfg, &token), Err(JwtError::BadSignature));

    let token = mint("HS256", None, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["roles"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&cfg, &tampered), Err(JwtError::BadSignature));

    // Truncated or empty signatures must not panic in the HMAC check.
    assert_eq!(
        verify(&cfg, &format!("{}.{}.", parts[0], parts[1])),
        Err(JwtError::BadSignature)
    );
    assert_eq!(
        verify(
            &cfg,
            &format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20])
        ),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn rsa_pkcs1_pem_and_indented_pem_are_accepted() {
    let cfg = config(vec![pem_key(
        "RS256",
        None,
        &fixture("rsa_public_pkcs1.pem"),
    )]);
    assert!(verify(&cfg, &mint("RS256", None, &claims())).is_ok());
    let indented: String = fixture("ec_public.pem")
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let cfg = config(vec![pem_key("ES256", None, &indented)]);
    assert!(verify(&cfg, &mint("ES256", None, &claims())).is_ok());
}

#[test]
fn expiry_with_and_without_leeway() {
    let mut c = claims();
    c["exp"] = json!(NOW - 10);
    let token = mint("HS256", None, &c);
    let mut cfg = config(vec![secret_key("HS256", None, SECRET)]);
    assert_eq!(verify(&cfg, &token), Err(JwtError::Expired));
    cfg.leeway_s = 30;
    assert!(verify(&cfg, &token).is_ok());
    cfg.leeway_s = 10;
    // RFC 7519: refused on or after exp (+ leeway).
    assert_eq!(verify(&cfg, &token), Err(JwtError::Expired));
    assert!(verify_at(&cfg, &token, NOW - 1).is_ok());
}

#[test]
fn a_remembered_token_is_still_checked() {
    let mut cfg = config(vec![secret_key("HS256", None, SECRET)]);
    cfg.leeway_s = 5;
    let v = JwtVerifier::new(&cfg).expect("keys parse");
    let token = mint("HS256", None, &claims());
    let exp = NOW + 600;
    for now in [NOW, NOW + 1, exp + 4] {
        let id = block_on(v.verify(&token, now, &NoFetch)).expect("valid until exp + leeway");
        assert_eq!(id.user.as_deref(), Some("user-1"));
        assert_eq!(id.roles, ["user"]);
    }
    // Remembered or not, a token expires at exp + leeway...
    assert_eq!(
        block_on(v.verify(&token, exp + 5, &NoFetch)),
        Err(JwtError::Expired)
    );
    // ...is not valid before its nbf...
    let mut c = claims();
    c["nbf"] = json!(NOW);
    let early = mint("HS256", None, &c);
    assert!(block_on(v.verify(&early, NOW, &NoFetch)).is_ok());
    assert_eq!(
        block_on(v.verify(&early, NOW - 6, &NoFetch)),
        Err(JwtError::NotYetValid)
    );
    // ...and a copy with another signature is verified, not looked up.
    let (message, _) = token.rsplit_once('.').unwrap();
    let other = jsonwebtoken::EncodingKey::from_secret(b"another-secret-entirely");
    let (_, forged_sig) = mint_with("HS256", None, &claims(), &other)
        .rsplit_once('.')
        .map(|(m, s)| (m.to_string(), s.to_string()))
        .unwrap();
    assert_eq!(
        block_on(v.verify(&format!("{message}.{forged_sig}"), NOW + 2, &NoFetch)),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn exp_is_optional_but_enforced_when_present() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    assert!(verify(&cfg, &mint("HS256", None, &c)).is_ok());
    c["exp"] = json!(NOW as f64 - 0.5);
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::Expired)
    );
    c["exp"] = json!("never");
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::Malformed)
    );
}

#[test]
fn not_before_with_and_without_leeway() {
    let mut c = claims();
    c["nbf"] = json!(NOW + 10);
    let token = mint("HS256", None, &c);
    let mut cfg = config(vec![secret_key("HS256", None, SECRET)]);
    assert_eq!(verify(&cfg, &token), Err(JwtError::NotYetValid));
    assert!(verify_at(&cfg, &token, NOW + 10).is_ok());
    cfg.leeway_s = 30;
    assert!(verify(&cfg, &token).is_ok());
}

#[test]
fn issuer_is_checked() {
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::WrongIssuer)
    );
    c.as_object_mut().unwrap().remove("iss");
    let err = verify(&cfg, &mint("HS256", None, &c)).unwrap_err();
    assert_eq!(err, JwtError::MissingClaim("iss".into()));
    assert_eq!(err.reason(), "missing_claim");

    let mut open = cfg.clone();
    open.issuer = None;
    assert!(verify(&open, &mint("HS256", None, &c)).is_ok());
}

#[test]
fn audience_string_or_array() {
    let mut cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let mut c = claims();
    c["aud"] = json!("other");
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::WrongAudience)
    );
    c["aud"] = json!(["other", "api"]);
    assert!(verify(&cfg, &mint("HS256", None, &c)).is_ok());
    c["aud"] = json!(["other", "more"]);
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::WrongAudience)
    );

    cfg.audience = Some(OneOrMany::Many(vec!["x".into(), "more".into()]));
    assert!(verify(&cfg, &mint("HS256", None, &c)).is_ok());

    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::MissingClaim("aud".into()))
    );
    cfg.audience = None;
    assert!(verify(&cfg, &mint("HS256", None, &c)).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let body = b64(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let head = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        for sig in ["", "AAAA"] {
            let token = format!("{head}.{body}.{sig}");
            assert_eq!(verify(&cfg, &token), Err(JwtError::UnsupportedAlgorithm));
        }
    }
    let head = b64(br#"{"alg":"HS1"}"#);
    assert_eq!(
        verify(&cfg, &format!("{head}.{body}.AAAA")),
        Err(JwtError::UnsupportedAlgorithm)
    );
}

#[test]
fn hs256_token_against_rs256_key_is_refused() {
    // The classic confusion: the RSA public key used as an HMAC secret.
    let public = fixture("rsa_public.pem");
    let forged_key = jsonwebtoken::EncodingKey::from_secret(public.as_bytes());
    let cfg = config(vec![pem_key("RS256", Some("rsa"), &public)]);
    for kid in [Some("rsa"), None] {
        let token = mint_with("HS256", kid, &claims(), &forged_key);
        let err = verify(&cfg, &token).unwrap_err();
        assert_eq!(err, JwtError::AlgorithmMismatch, "kid {kid:?}");
        assert!(!err.description().contains("BEGIN"));
    }
    // The reverse direction: an RS256 token for an HS256-pinned kid.
    let cfg = config(vec![secret_key("HS256", Some("k"), SECRET)]);
    assert_eq!(
        verify(&cfg, &mint("RS256", Some("k"), &claims())),
        Err(JwtError::AlgorithmMismatch)
    );
}

#[test]
fn keys_are_selected_by_kid() {
    let cfg = config(vec![
        secret_key("HS256", Some("a"), "secret-for-key-a"),
        secret_key("HS256", Some("b"), SECRET),
        pem_key("ES256", Some("c"), &fixture("ec_public.pem")),
    ]);
    assert!(verify(&cfg, &mint("HS256", Some("b"), &claims())).is_ok());
    assert!(verify(&cfg, &mint("ES256", Some("c"), &claims())).is_ok());
    // Without kid every HS256 key is tried.
    assert!(verify(&cfg, &mint("HS256", None, &claims())).is_ok());
    // The right secret under the wrong kid does not verify.
    assert_eq!(
        verify(&cfg, &mint("HS256", Some("a"), &claims())),
        Err(JwtError::BadSignature)
    );
    assert_eq!(
        verify(&cfg, &mint("HS256", Some("zzz"), &claims())),
        Err(JwtError::UnknownKey)
    );
}

#[test]
fn kidless_keys_serve_tokens_with_any_kid() {
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    assert!(verify(&cfg, &mint("HS256", Some("whatever"), &claims())).is_ok());
}

#[test]
fn roles_scopes_and_user_claims() {
    let mut cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let mut c = claims();
    c["roles"] = json!("user  admin");
    c["scope"] = json!("read write");
    let id = verify(&cfg, &mint("HS256", None, &c)).unwrap();
    assert_eq!(id.roles, ["user", "admin"]);
    assert_eq!(id.scopes, ["read", "write"]);
    assert!(id.has_any_role(&["admin".into()]));
    assert!(id.has_all_scopes(&["read".into(), "write".into()]));

    // Arrays for scopes, `scp` as a fallback, no roles at all.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("roles");
    c["scp"] = json!(["a", "b"]);
    let id = verify(&cfg, &mint("HS256", None, &c)).unwrap();
    assert!(id.roles.is_empty());
    assert_eq!(id.scopes, ["a", "b"]);
    c["scope"] = json!(["x"]);
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)).unwrap().scopes,
        ["x"]
    );

    // Custom claim names, including URL-like ones with dots.
    cfg.roles_claim = "https://example.com/roles".into();
    cfg.user_claim = "email".into();
    cfg.scope_claim = "permissions".into();
    let mut c = claims();
    c["https://example.com/roles"] = json!(["editor"]);
    c["email"] = json!("a@example.com");
    c["permissions"] = json!("p1 p2");
    let id = verify(&cfg, &mint("HS256", None, &c)).unwrap();
    assert_eq!(id.roles, ["editor"]);
    assert_eq!(id.user.as_deref(), Some("a@example.com"));
    assert_eq!(id.scopes, ["p1", "p2"]);

    // Roles of the wrong shape are a malformed token, not silently empty.
    c["https://example.com/roles"] = json!({"admin": true});
    assert_eq!(
        verify(&cfg, &mint("HS256", None, &c)),
        Err(JwtError::Malformed)
    );
}

#[test]
fn inline_jwk_as_table_or_json_string() {
    let cases: Vec<(&str, Value)> = vec![
        ("RS256", rsa_jwk("rsa_public.pem", "r")),
        ("PS384", rsa_jwk("rsa_public.pem", "r")),
        ("ES256", ec_jwk("e")),
        ("EdDSA", ed_jwk("d")),
        ("HS512", json!({"kty": "oct", "k": b64(SECRET.as_bytes())})),
    ];
    for (alg, jwk) in cases {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let as_toml: toml::Value = toml::Value::try_from(&jwk).unwrap();
        for value in [as_toml, toml::Value::String(jwk.to_string())] {
            let mut k = key(alg);
            k.jwk = Some(value);
            let cfg = config(vec![k]);
            // The JWK's own kid is used when the entry names none.
            let token = mint(alg, kid.as_deref(), &claims());
            assert!(verify(&cfg, &token).is_ok(), "{alg}");
            if kid.is_some() {
                assert_eq!(
                    verify(&cfg, &mint(alg, Some("other"), &claims())),
                    Err(JwtError::UnknownKey),
                    "{alg}"
                );
            }
        }
    }
}

/// `b64` (unpadded base64url of 32 bytes, whose last character carries two
/// unused bits) with the lowest unused bit set.
fn with_spare_bit_set(b64: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = b64.split_at(b64.len() - 1);
    let index = ALPHABET
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[index | 1] as char)
}

#[test]
fn malformed_tokens() {
    let cfg = config(vec![secret_key("HS256", None, SECRET)]);
    let good = mint("HS256", None, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "garbage".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"kid":"x"}"#), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","crit":["exp"]}"#),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","alg":"none"}"#),
            parts[1],
            parts[2]
        ),
        "a".repeat(edgegate_auth::MAX_TOKEN_LEN + 1),
        // The same signature bytes spelled with the last character's unused
        // bits set: one token has one spelling.
        format!("{}.{}.{}", parts[0], parts[1], with_spare_bit_set(parts[2])),
    ];
    for token in cases {
        assert_eq!(
            verify(&cfg, &token),
            Err(JwtError::Malformed),
            "{token:.60}"
        );
    }
    // A valid signature over a payload that is not a JSON object.
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!(["not", "an", "object"]),
        &key,
    )
    .unwrap();
    assert_eq!(verify(&cfg, &token), Err(JwtError::Malformed));
}

#[test]
fn large_tokens_use_the_heap_path() {
    let cfg = config(vec![secret_key("HS256", Some("k"), SECRET)]);
    let mut c = claims();
    c["blob"] = json!("x".repeat(6000));
    c["roles"] = json!(vec!["r"; 50]);
    let id = verify(&cfg, &mint("HS256", Some("k"), &c)).unwrap();
    assert_eq!(id.roles.len(), 50);
    let kid = "k".repeat(900);
    let cfg = config(vec![secret_key("HS256", Some(&kid), SECRET)]);
    assert!(verify(&cfg, &mint("HS256", Some(&kid), &claims())).is_ok());
}

#[test]
fn error_labels_and_descriptions() {
    let all = [
        (JwtError::Malformed, "malformed"),
        (JwtError::UnsupportedAlgorithm, "unsupported_algorithm"),
        (JwtError::UnknownKey, "unknown_key"),
        (JwtError::AlgorithmMismatch, "algorithm_mismatch"),
        (JwtError::BadSignature, "bad_signature"),
        (JwtError::Expired, "expired"),
        (JwtError::NotYetValid, "not_yet_valid"),
        (JwtError::WrongIssuer, "wrong_issuer"),
        (JwtError::WrongAudience, "wrong_audience"),
        (JwtError::MissingClaim("a\"b\\c".into()), "missing_claim"),
        (JwtError::KeysUnavailable, "keys_unavailable"),
    ];
    for (e, reason) in all {
        assert_eq!(e.reason(), reason);
        let d = e.description();
        assert!(
            !d.is_empty() && !d.contains('"') && !d.contains('\\'),
            "{d}"
        );
    }
}

fn key_error(k: edgegate_config::JwtKey) -> KeyError {
    JwtVerifier::new(&config(vec![secret_key("HS256", None, SECRET), k])).unwrap_err()
}

#[test]
fn key_errors_name_the_path_and_never_the_secret() {
    let e = key_error(secret_key("RS256", None, "super-secret-value"));
    assert_eq!(e.path(), "auth.jwt.keys[1].secret");
    assert!(!e.to_string().contains("super-secret-value"), "{e}");

    let e = key_error(secret_key("HS256", None, "env:JWT_SECRET"));
    assert!(
        e.to_string().starts_with("auth.jwt.keys[1].secret: "),
        "{e}"
    );

    let e = key_error(secret_key("HS256", None, ""));
    assert_eq!(e.path(), "auth.jwt.keys[1].secret");

    let e = key_error(secret_key("XS256", None, SECRET));
    assert_eq!(e.path(), "auth.jwt.keys[1].alg");
    assert!(e.to_string().contains("XS256"));

    let private = fixture("rsa_private.pem");
    let e = key_error(pem_key("RS256", None, &private));
    assert_eq!(e.path(), "auth.jwt.keys[1].pem");
    assert!(e.to_string().contains("private key"));
    assert!(!e.to_string().contains(&private[40..80]));

    let e = key_error(pem_key("RS256", None, &fixture("rsa1024_public.pem")));
    assert!(e.to_string().contains("1024 bits"), "{e}");
    let e = key_error(pem_key("ES256", None, &fixture("rsa_public.pem")));
    assert_eq!(e.path(), "auth.jwt.keys[1].pem");
    let e = key_error(pem_key("RS256", None, "-----BEGIN PUBLIC KEY-----\nnope\n"));
    assert_eq!(e.path(), "auth.jwt.keys[1].pem");

    // A JWK in a JSON string with a syntax error right after the secret.
    let mut k = key("HS256");
    k.jwk = Some(toml::Value::String(
        r#"{"kty":"oct","k":"c2VjcmV0LWp3ay1zZWNyZXQ" "x"}"#.into(),
    ));
    let e = key_error(k);
    assert_eq!(e.path(), "auth.jwt.keys[1].jwk");
    assert!(!e.to_string().contains("c2VjcmV0LWp3ay1zZWNyZXQ"), "{e}");

    // Private JWKs, JWKs for encryption, and JWKs of another algorithm.
    let mut jwk = ec_jwk("e");
    jwk["d"] = json!(b64(&[7u8; 32]));
    let mut k = key("ES256");
    k.jwk = Some(toml::Value::String(jwk.to_string()));
    let e = key_error(k);
    assert!(e.to_string().contains("private"), "{e}");
    assert!(!e.to_string().contains(&b64(&[7u8; 32])), "{e}");
    for (field, value) in [("use", "enc"), ("alg", "ES384")] {
        let mut jwk = ec_jwk("e");
        jwk[field] = json!(value);
        let mut k = key("ES256");
        k.jwk = Some(toml::Value::String(jwk.to_string()));
        assert_eq!(key_error(k).path(), "auth.jwt.keys[1].jwk");
    }
    let mut k = key("EdDSA");
    k.jwk = Some(toml::Value::String(ec_jwk("e").to_string()));
    assert!(key_error(k).to_string().contains("OKP"));

    let mut k = secret_key("HS256", None, SECRET);
    k.pem = Some(fixture("rsa_public.pem"));
    assert_eq!(key_error(k).path(), "auth.jwt.keys[1]");
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JwtVerifier>();
    assert_send_sync::<edgegate_auth::ApiKeys>();
}

/// Tokens come from the network: whatever the text, verification answers
/// with an error (never a panic), and no edit of a genuine token passes.
mod untrusted {
    use proptest::prelude::*;

    use super::*;

    /// One character replaced, removed or added.
    #[derive(Debug, Clone)]
    enum Edit {
        Replace(prop::sample::Index, char),
        /// The last character of a segment, where base64 leaves bits unused.
        ReplaceLast(prop::sample::Index, char),
        Remove(prop::sample::Index),
        Insert(prop::sample::Index, char),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        // The token alphabet, plus what a lenient decoder might skip.
        let c = prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
                .chars()
                .collect::<Vec<_>>(),
        );
        prop_oneof![
            (any::<prop::sample::Index>(), c.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
            (any::<prop::sample::Index>(), c.clone()).prop_map(|(i, c)| Edit::ReplaceLast(i, c)),
            any::<prop::sample::Index>().prop_map(Edit::Remove),
            (any::<prop::sample::Index>(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
        ]
    }

    fn apply(token: &str, edit: &Edit) -> String {
        let mut chars: Vec<char> = token.chars().collect();
        let len = chars.len();
        match edit {
            Edit::Replace(i, c) => chars[i.index(len)] = *c,
            Edit::ReplaceLast(i, c) => {
                let ends: Vec<usize> = (0..len)
                    .filter(|&at| chars.get(at + 1).is_none_or(|next| *next == '.'))
                    .collect();
                chars[ends[i.index(ends.len())]] = *c;
            }
            Edit::Remove(i) => {
                chars.remove(i.index(len));
            }
            Edit::Insert(i, c) => chars.insert(i.index(len + 1), *c),
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Covers the unused low bits of a segment's last base64 character
        /// too: a decoder that ignored them would accept a second spelling
        /// of the same signature.
        #[test]
        fn no_edit_of_a_genuine_token_is_accepted(
            alg in prop::sample::select(ALL_ALGS.to_vec()),
            edit in edit(),
        ) {
            let cfg = config(vec![verifying_key(alg, None)]);
            let token = mint(alg, None, &claims());
            let edited = apply(&token, &edit);
            prop_assume!(edited != token);
            prop_assert!(verify(&cfg, &edited).is_err(), "{} accepted {:?}", alg, edit);
        }

        #[test]
        fn any_text_is_refused(
            text in prop_oneof![
                "\\PC{0,300}",
                "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
                "eyJ[A-Za-z0-9_-]{0,40}\\.eyJ[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{43}",
            ],
        ) {
            for alg in ["HS256", "RS256", "ES256", "EdDSA"] {
                let cfg = config(vec![verifying_key(alg, None)]);
                prop_assert!(verify(&cfg, &text).is_err());
            }
        }
    }
}
