//! API key authentication.

use edgegate_auth::{ApiKeys, AuthMethod, sha256_hex};
use edgegate_config::ApiKey;

fn entry(consumer: &str, key_sha256: &str) -> ApiKey {
    ApiKey {
        consumer: consumer.into(),
        key_sha256: key_sha256.into(),
        roles: vec!["service".into()],
        scopes: vec!["read".into()],
    }
}

#[test]
fn sha256_hex_matches_known_digests() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // The digest of "demo-key" in the default gateway.toml.
    assert_eq!(
        sha256_hex(b"demo-key"),
        "c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c"
    );
}

#[test]
fn known_keys_are_accepted_others_refused() {
    let keys = ApiKeys::new(&[
        entry("alpha", &sha256_hex(b"alpha-key")),
        entry("beta", &sha256_hex(b"beta-key").to_uppercase()),
    ])
    .unwrap();
    let id = keys.authenticate("alpha-key").unwrap();
    assert_eq!(id.consumer.as_deref(), Some("alpha"));
    assert_eq!(id.user, None);
    assert_eq!(id.roles, ["service"]);
    assert_eq!(id.scopes, ["read"]);
    assert_eq!(id.method, AuthMethod::ApiKey);
    assert_eq!(
        keys.authenticate("beta-key").unwrap().consumer.as_deref(),
        Some("beta")
    );
    for wrong in [
        "",
        "alpha-key ",
        "Alpha-key",
        "gamma",
        &sha256_hex(b"alpha-key"),
    ] {
        assert_eq!(keys.authenticate(wrong), None, "{wrong}");
    }
    assert!(ApiKeys::new(&[]).unwrap().authenticate("x").is_none());
}

#[test]
fn bad_digests_name_the_key_path() {
    let good = sha256_hex(b"k");
    for bad in [
        "env:API_KEY",
        "abc",
        &good.replace('a', "g"),
        &format!("{good}00"),
    ] {
        let e = ApiKeys::new(&[entry("a", &good), entry("b", bad)]).unwrap_err();
        assert_eq!(e.path(), "auth.api_keys[1].key_sha256");
        assert!(
            e.to_string().starts_with("auth.api_keys[1].key_sha256: "),
            "{e}"
        );
        if bad.len() > 8 && !bad.starts_with("env:") {
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }
    let e = ApiKeys::new(&[entry("a", &good), entry("b", &good)]).unwrap_err();
    assert!(e.to_string().contains("auth.api_keys[0]"), "{e}");
}

#[test]
fn debug_output_shows_consumers_only() {
    let digest = sha256_hex(b"secret-key");
    let keys = ApiKeys::new(&[entry("alpha", &digest)]).unwrap();
    let text = format!("{keys:?}");
    assert!(
        text.contains("alpha") && !text.contains(&digest[..16]),
        "{text}"
    );
}
