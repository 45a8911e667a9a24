use super::*;

fn err(text: &str) -> ConfigError {
    Config::parse(text).expect_err("config should be rejected")
}

const MIN: &str = r#"
[[upstreams]]
name = "u"
targets = [{ url = "http://127.0.0.1:9" }]
"#;

#[test]
fn default_config_is_valid() {
    let c = Config::parse(DEFAULT_CONFIG).unwrap();
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.server.admin, "127.0.0.1:9901");
}

#[test]
fn unknown_key_names_its_path() {
    let e = err(&format!(
        "{MIN}[[routes]]\nname = \"r\"\nupstream = \"u\"\nmatch = {{ path_prefx = \"/a\" }}\n"
    ));
    assert!(e.path.starts_with("routes[0].match"), "{e}");
    assert!(e.reason.contains("path_prefx"), "{e}");
}

#[test]
fn bad_value_type_names_its_path() {
    let e = err(&format!("{MIN}\n[server]\ncpu_limit_ms = \"fast\"\n"));
    assert_eq!(e.path, "server.cpu_limit_ms", "{e}");
}

#[test]
fn syntax_error_is_one_line() {
    let e = err("[server\nlisten = 1");
    assert_eq!(e.path, ".");
    assert_eq!(e.reason, "unclosed table, expected `]` (line 1, column 8)");
}

#[test]
fn route_refers_to_missing_upstream() {
    let e = err(&format!(
        "{MIN}[[routes]]\nname = \"r\"\nupstream = \"nope\"\nmatch = {{ path_prefix = \"/a\" }}\n"
    ));
    assert_eq!(e.path, "routes[0].upstream");
    assert!(e.reason.contains("nope"));
}

#[test]
fn hmac_key_needs_secret_and_asymmetric_refuses_it() {
    let e = err("[auth.jwt]\nkeys = [{ alg = \"HS256\", pem = \"x\" }]\n");
    assert_eq!(e.path, "auth.jwt.keys[0].secret");
    let e = err("[auth.jwt]\nkeys = [{ alg = \"RS256\", secret = \"x\" }]\n");
    assert_eq!(e.path, "auth.jwt.keys[0].secret");
    let e = err("[auth.jwt]\nkeys = [{ alg = \"none\", secret = \"x\" }]\n");
    assert_eq!(e.path, "auth.jwt.keys[0].alg");
}

#[test]
fn template_and_rewrite_are_checked() {
    let e = err(&format!(
        "{MIN}[[routes]]\nname = \"r\"\nupstream = \"u\"\nmatch = {{ path = \"/a/{{id}}\" }}\nrewrite = \"/b/{{other}}\"\n"
    ));
    assert_eq!(e.path, "routes[0].rewrite");
    let e = err(&format!(
        "{MIN}[[routes]]\nname = \"r\"\nupstream = \"u\"\nmatch = {{ path = \"/a/x{{id}}\" }}\n"
    ));
    assert_eq!(e.path, "routes[0].match.path");
}

#[test]
fn rate_limit_key_and_reference() {
    let e = err(
        "[[rate_limits]]\nname = \"p\"\nalgorithm = \"gcra\"\nkey = \"cookie\"\nlimit = 1\nperiod_s = 1\n",
    );
    assert_eq!(e.path, "rate_limits[0].key");
    let e = err(
        "[[rate_limits]]\nname = \"p\"\nalgorithm = \"leaky\"\nkey = \"ip\"\nlimit = 1\nperiod_s = 1\n",
    );
    assert_eq!(e.path, "rate_limits[0].algorithm");
    let e = err(&format!(
        "{MIN}[[routes]]\nname = \"r\"\nupstream = \"u\"\nmatch = {{ path_prefix = \"/\" }}\nrate_limits = [\"missing\"]\n"
    ));
    assert_eq!(e.path, "routes[0].rate_limits[0]");
}

#[test]
fn secrets_resolve_from_env_and_missing_ones_name_the_key() {
    let text = "[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"env:MY_SECRET\" }]\n";
    let mut c = Config::parse(text).unwrap();
    assert_eq!(c.secret_env_names(), vec!["MY_SECRET".to_string()]);
    let e = c.clone().resolve_secrets(&|_| None).unwrap_err();
    assert_eq!(e.path, "auth.jwt.keys[0].secret");
    assert!(!e.reason.contains("hunter2"));
    c.resolve_secrets(&|n| (n == "MY_SECRET").then(|| "hunter2".into()))
        .unwrap();
    assert_eq!(
        c.auth.jwt.unwrap().keys[0].secret.as_deref(),
        Some("hunter2")
    );
}

#[test]
fn cors_credentials_with_wildcard_is_refused() {
    let e = err("[cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n");
    assert_eq!(e.path, "cors.allow_credentials");
}

#[test]
fn admin_must_not_be_public_listener() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:1\"\n");
    assert_eq!(e.path, "server.admin");
}

fn upstash_policy(name: &str, extra: &str) -> String {
    format!(
        "[[rate_limits]]\nname = \"{name}\"\nalgorithm = \"gcra\"\nkey = \"ip\"\nlimit = 10\nperiod_s = 60\nbackend = \"upstash\"\n{extra}\n"
    )
}

#[test]
fn upstash_policies_get_their_resolved_endpoint() {
    let text = upstash_policy("shared", "")
        + &upstash_policy(
            "own",
            "upstash = { url = \"https://own.example:8443\", token = \"env:OWN_TOKEN\", timeout_ms = 250 }",
        );
    let mut c = Config::parse(&text).unwrap();
    assert_eq!(
        c.secret_env_names(),
        [
            "OWN_TOKEN",
            "UPSTASH_REDIS_REST_TOKEN",
            "UPSTASH_REDIS_REST_URL"
        ]
    );
    let env = |n: &str| match n {
        "UPSTASH_REDIS_REST_URL" => Some("https://eu1-shared.upstash.io".to_string()),
        "UPSTASH_REDIS_REST_TOKEN" => Some("shared-token".to_string()),
        "OWN_TOKEN" => Some("own-token".to_string()),
        _ => None,
    };
    c.resolve_secrets(&env).unwrap();
    let shared = c.rate_limits[0].upstash.as_ref().unwrap();
    assert_eq!(
        (
            shared.url.as_str(),
            shared.token.as_str(),
            shared.timeout_ms
        ),
        ("https://eu1-shared.upstash.io", "shared-token", 1000)
    );
    let own = c.rate_limits[1].upstash.as_ref().unwrap();
    assert_eq!(
        (own.url.as_str(), own.token.as_str(), own.timeout_ms),
        ("https://own.example:8443", "own-token", 250)
    );
    assert!(
        !format!("{c:?}").contains("own-token"),
        "tokens stay out of debug output"
    );
}

#[test]
fn missing_upstash_secret_names_the_key() {
    let text = upstash_policy(
        "p",
        "upstash = { url = \"http://127.0.0.1:1\", token = \"env:NOPE\" }",
    );
    let e = Config::parse(&text)
        .unwrap()
        .resolve_secrets(&|_| None)
        .unwrap_err();
    assert_eq!(e.path, "rate_limits[0].upstash.token");
    let e = Config::parse(&upstash_policy("p", ""))
        .unwrap()
        .resolve_secrets(&|n| (n == "UPSTASH_REDIS_REST_TOKEN").then(|| "t".into()))
        .unwrap_err();
    assert_eq!(e.path, "upstash.url");
    let e = Config::parse(&upstash_policy("p", ""))
        .unwrap()
        .resolve_secrets(&|n| {
            Some(if n.ends_with("URL") {
                "redis://x".into()
            } else {
                "t".into()
            })
        })
        .unwrap_err();
    assert_eq!(e.path, "upstash.url", "a resolved URL is checked too");
}

#[test]
fn upstash_endpoint_only_on_upstash_policies() {
    let e = err(
        "[[rate_limits]]\nname = \"p\"\nalgorithm = \"gcra\"\nkey = \"ip\"\nlimit = 1\nperiod_s = 1\nupstash = { url = \"https://x.example\", token = \"t\" }\n",
    );
    assert_eq!(e.path, "rate_limits[0].upstash");
    let e = err(&upstash_policy(
        "p",
        "upstash = { url = \"ftp://x\", token = \"t\" }",
    ));
    assert_eq!(e.path, "rate_limits[0].upstash.url");
    let e = err(&upstash_policy(
        "p",
        "upstash = { url = \"https://x\", token = \"t\", timeout_ms = 0 }",
    ));
    assert_eq!(e.path, "rate_limits[0].upstash.timeout_ms");
    let e = err("[upstash]\nurl = \"https://x\"\ntoken = \"\"\n");
    assert_eq!(e.path, "upstash.token");
}

#[test]
fn upstash_policies_stay_within_exact_double_arithmetic() {
    // 26 million a day fits; 27 million a day does not.
    let day = "[[rate_limits]]\nname = \"p\"\nalgorithm = \"sliding_window\"\nkey = \"global\"\nperiod_s = 86400\nbackend = \"upstash\"\n";
    Config::parse(&format!("{day}limit = 26000000\n")).unwrap();
    let e = err(&format!("{day}limit = 27000000\n"));
    assert_eq!(e.path, "rate_limits[0].limit");
    assert!(e.reason.contains("2^51"), "{e}");
    // The burst counts for the bucket algorithms.
    let e = err(&upstash_policy("p", "burst = 100000000000"));
    assert_eq!(e.path, "rate_limits[0].limit");
    // Durable Objects compute in u128 and need no such bound.
    Config::parse(
        &day.replace("backend = \"upstash\"\n", "")
            .replace("period_s", "limit = 27000000\nperiod_s"),
    )
    .unwrap();
}

#[test]
fn outbound_hosts_lists_every_origin_once() {
    let text = r#"
[[upstreams]]
name = "a"
targets = [{ url = "http://127.0.0.1:9001/base" }, { url = "https://API.Example.com:443/v1" }]
[[upstreams]]
name = "b"
targets = [{ url = "http://127.0.0.1:9001" }, { url = "http://[::1]:8080" }]

[auth.jwt]
keys = [{ alg = "RS256", jwks_url = "https://login.example.com/.well-known/jwks.json" }]

[[rate_limits]]
name = "shared"
algorithm = "token_bucket"
key = "ip"
limit = 5
period_s = 1
backend = "upstash"

[[rate_limits]]
name = "own"
algorithm = "fixed_window"
key = "ip"
limit = 5
period_s = 1
backend = "upstash"
upstash = { url = "https://own.upstash.io:8443", token = "t" }
"#;
    let mut c = Config::parse(text).unwrap();
    let before = c.outbound_hosts();
    assert!(
        !before.iter().any(|h| h.contains("env")),
        "an unresolved env:NAME URL is no host: {before:?}"
    );
    c.resolve_secrets(&|n| {
        Some(if n.ends_with("URL") {
            "https://eu1-merry-cat.upstash.io".into()
        } else {
            "t".into()
        })
    })
    .unwrap();
    assert_eq!(
        c.outbound_hosts(),
        [
            "http://127.0.0.1:9001",
            "http://[::1]:8080",
            "https://api.example.com",
            "https://eu1-merry-cat.upstash.io",
            "https://login.example.com",
            "https://own.upstash.io:8443",
        ]
    );
    assert_eq!(
        Config::parse(DEFAULT_CONFIG).unwrap().outbound_hosts(),
        ["http://127.0.0.1:9001"]
    );
}

#[test]
fn redis_section_takes_a_url_or_env_a_timeout_and_a_ca_file() {
    let policy = "[[rate_limits]]\nname = \"p\"\nalgorithm = \"gcra\"\nkey = \"ip\"\nlimit = 1\nperiod_s = 1\nbackend = \"redis\"\n";
    let e = err(policy);
    assert_eq!(e.path, "rate_limits[0].backend");
    let c = Config::parse(&format!(
        "{policy}[redis]\nurl = \"redis://127.0.0.1:6379\"\n"
    ))
    .unwrap();
    let redis = c.redis.unwrap();
    assert_eq!(redis.timeout_ms, 1000);
    let secret = Config::parse(&format!(
        "{policy}[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379\"\n"
    ))
    .unwrap();
    assert!(!format!("{secret:?}").contains("hunter2"));
    Config::parse(&format!(
        "{policy}[redis]\nurl = \"env:REDIS_URL\"\ntimeout_ms = 50\n"
    ))
    .unwrap();
    let e = err(&format!("{policy}[redis]\nurl = \"http://x\"\n"));
    assert_eq!(e.path, "redis.url");
    let tls = Config::parse(&format!(
        "{policy}[redis]\nurl = \"rediss://:hunter2@cache.example:6380\"\nca_file = \"/etc/ca.pem\"\n"
    ))
    .unwrap();
    assert_eq!(tls.redis.unwrap().ca_file.as_deref(), Some("/etc/ca.pem"));
    let e = err(&format!(
        "{policy}[redis]\nurl = \"redis://x\"\nca_file = \"/etc/ca.pem\"\n"
    ));
    assert_eq!(e.path, "redis.ca_file");
    assert!(e.to_string().contains("rediss://"), "{e}");
    let e = err(&format!(
        "{policy}[redis]\nurl = \"rediss://x\"\nca_file = \"\"\n"
    ));
    assert_eq!(e.path, "redis.ca_file");
    let e = err(&format!(
        "{policy}[redis]\nurl = \"redis://x\"\ntimeout_ms = 0\n"
    ));
    assert_eq!(e.path, "redis.timeout_ms");
    // The same scripts as upstash: the same bound.
    let e = err(&format!(
        "{}[redis]\nurl = \"redis://x\"\n",
        policy.replace("limit = 1\n", "limit = 10000000000000\n")
    ));
    assert_eq!(e.path, "rate_limits[0].limit");
}

#[test]
fn health_check_and_otlp_are_checked() {
    let with_check = |check: &str| {
        format!(
            "[[upstreams]]\nname = \"u\"\ntargets = [{{ url = \"http://127.0.0.1:9\" }}]\nhealth_check = {check}\n"
        )
    };
    let c = Config::parse(&with_check("{ path = \"/healthz\" }")).unwrap();
    let check = c.upstreams[0].health_check.as_ref().unwrap();
    assert_eq!(
        (
            check.interval_ms,
            check.healthy_threshold,
            check.unhealthy_threshold
        ),
        (5_000, 2, 3)
    );
    let e = err(&with_check("{ path = \"healthz\" }"));
    assert_eq!(e.path, "upstreams[0].health_check.path", "{e}");
    let e = err(&with_check("{ path = \"/h\", unhealthy_threshold = 0 }"));
    assert_eq!(
        e.path, "upstreams[0].health_check.unhealthy_threshold",
        "{e}"
    );
    let e = err(&format!(
        "{MIN}[server.otlp]\nendpoint = \"grpc://127.0.0.1:4317\"\n"
    ));
    assert_eq!(e.path, "server.otlp.endpoint", "{e}");
    let c = Config::parse(&format!(
        "{MIN}[server.otlp]\nendpoint = \"http://127.0.0.1:4318\"\n"
    ))
    .unwrap();
    assert_eq!(c.server.otlp.unwrap().service_name, "edgegate");
}
