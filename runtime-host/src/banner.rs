//! What `serve` tells a person at start-up: where it listens and, with a
//! development key in the configuration, a token and commands to try.

use std::fmt::Write as _;
use std::net::SocketAddr;

use edgegate_config::{Config, OneOrMany};

use crate::token::{self, Claims};

/// Lifetime of the printed development token.
const DEV_TOKEN_TTL_S: u64 = 3600;

/// The start-up text. Commands to try are printed only for the embedded
/// default configuration (`default_config`), whose routes they exercise:
/// another configuration may route none of those paths.
pub fn render(
    config: &Config,
    public: SocketAddr,
    admin: SocketAddr,
    demo: Option<SocketAddr>,
    default_config: bool,
) -> String {
    let base = format!("http://{}", reachable(public));
    let mut out = String::new();
    let _ = writeln!(out, "edgegate listening on {base}");
    let _ = writeln!(out, "  admin: http://{}/healthz, /readyz", reachable(admin));
    if let Some(demo) = demo {
        let _ = writeln!(out, "  demo upstream: http://{}", reachable(demo));
    }
    if let Some(token) = dev_token(config) {
        let _ = writeln!(
            out,
            "  dev token (sub alice, role user, valid 1 h):\n    {token}"
        );
        if default_config {
            let _ = writeln!(out, "  try:");
            let _ = writeln!(out, "    curl {base}/public/hello");
            let _ = writeln!(
                out,
                "    curl -H \"authorization: Bearer {token}\" {base}/api/hello"
            );
            let _ = writeln!(
                out,
                "    curl -H \"x-api-key: demo-key\" {base}/service/hello"
            );
        }
    }
    out
}

/// A token for `alice` with role `user`, signed with the first inline
/// (literal, not `env:`) HS256 key; `None` when there is no such key.
pub fn dev_token(config: &Config) -> Option<String> {
    let jwt = config.auth.jwt.as_ref()?;
    let key = jwt.keys.iter().find(|k| {
        k.alg == "HS256" && k.secret.as_deref().is_some_and(|s| !s.starts_with("env:"))
    })?;
    let claims = Claims {
        sub: "alice".into(),
        roles: vec!["user".into()],
        roles_claim: Some(jwt.roles_claim.clone()),
        iss: jwt.issuer.clone(),
        aud: jwt.audience.as_ref().and_then(|a| match a {
            OneOrMany::One(one) => Some(one.clone()),
            OneOrMany::Many(many) => many.first().cloned(),
        }),
        kid: key.kid.clone(),
        ttl_s: DEV_TOKEN_TTL_S,
        ..Claims::default()
    };
    let secret = key.secret.as_deref()?;
    Some(token::mint_hs256(
        secret.as_bytes(),
        &claims,
        token::unix_now(),
    ))
}

/// An address a local client can use (`0.0.0.0` is not one).
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_gets_a_dev_token_and_curl_lines() {
        let config = Config::parse(edgegate_config::DEFAULT_CONFIG).unwrap();
        let text = render(
            &config,
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:9901".parse().unwrap(),
            None,
            true,
        );
        assert!(text.contains("curl http://127.0.0.1:8080/public/hello"));
        assert!(text.contains("authorization: Bearer ey"));
        assert!(text.contains("x-api-key: demo-key"));
        assert!(!text.contains("edgegate-dev-secret"));
    }

    #[test]
    fn another_config_gets_the_token_but_no_commands_for_routes_it_may_lack() {
        let config =
            Config::parse("[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"a-dev-secret\" }]")
                .unwrap();
        let text = render(
            &config,
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9901".parse().unwrap(),
            None,
            false,
        );
        assert!(text.contains("dev token"), "{text}");
        assert!(!text.contains("curl"), "{text}");
    }

    #[test]
    fn env_keys_get_no_token() {
        let config =
            Config::parse("[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"env:X\" }]").unwrap();
        assert!(dev_token(&config).is_none());
    }
}
