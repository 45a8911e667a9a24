//! Checks that serde cannot express: references between sections, value
//! ranges and formats. Every error names the key path.

use std::collections::HashSet;

use crate::{Config, ConfigError, Route};

type Result<T = ()> = std::result::Result<T, ConfigError>;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "EdDSA",
];

pub(crate) fn validate(config: &Config) -> Result {
    check_addr("server.listen", &config.server.listen)?;
    check_addr("server.admin", &config.server.admin)?;
    if config.server.listen == config.server.admin {
        return Err(ConfigError::new(
            "server.admin",
            "must differ from server.listen: the admin listener is never the public one",
        ));
    }
    positive(
        "server.max_instance_memory_mib",
        config.server.max_instance_memory_mib,
    )?;
    positive("server.cpu_limit_ms", config.server.cpu_limit_ms)?;
    positive(
        "server.object_idle_timeout_s",
        config.server.object_idle_timeout_s,
    )?;
    positive(
        "server.websocket_idle_timeout_s",
        config.server.websocket_idle_timeout_s,
    )?;
    positive(
        "server.instance_max_requests",
        config.server.instance_max_requests,
    )?;
    if let Some(otlp) = &config.server.otlp {
        if !otlp.endpoint.starts_with("http://") {
            return Err(ConfigError::new(
                "server.otlp.endpoint",
                "must be an http:// URL (an OTLP/HTTP collector, e.g. http://127.0.0.1:4318)",
            ));
        }
        positive("server.otlp.timeout_ms", otlp.timeout_ms)?;
    }
    for (name, value) in &config.gateway.security_headers {
        let path = format!("gateway.security_headers.{name}");
        check_header_name(&path, name)?;
        check_header_value(&path, value)?;
    }

    let mut upstreams = HashSet::new();
    for (i, u) in config.upstreams.iter().enumerate() {
        let p = format!("upstreams[{i}]");
        non_empty(&format!("{p}.name"), &u.name)?;
        if !upstreams.insert(u.name.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.name"),
                format!("duplicate upstream name \"{}\"", u.name),
            ));
        }
        if u.targets.is_empty() {
            return Err(ConfigError::new(
                format!("{p}.targets"),
                "needs at least one target",
            ));
        }
        for (j, t) in u.targets.iter().enumerate() {
            check_url(&format!("{p}.targets[{j}].url"), &t.url)?;
            if t.weight == 0 {
                return Err(ConfigError::new(
                    format!("{p}.targets[{j}].weight"),
                    "must be at least 1",
                ));
            }
        }
        positive(&format!("{p}.timeout_ms"), u.timeout_ms)?;
        positive(&format!("{p}.connect_timeout_ms"), u.connect_timeout_ms)?;
        if u.retries > 10 {
            return Err(ConfigError::new(
                format!("{p}.retries"),
                "must be at most 10",
            ));
        }
        if let Some(check) = &u.health_check {
            let p = format!("{p}.health_check");
            if !check.path.starts_with('/') {
                return Err(ConfigError::new(format!("{p}.path"), "must start with /"));
            }
            positive(&format!("{p}.interval_ms"), check.interval_ms)?;
            positive(&format!("{p}.timeout_ms"), check.timeout_ms)?;
            positive(
                &format!("{p}.healthy_threshold"),
                check.healthy_threshold.into(),
            )?;
            positive(
                &format!("{p}.unhealthy_threshold"),
                check.unhealthy_threshold.into(),
            )?;
        }
    }

    if let Some(jwt) = &config.auth.jwt {
        if jwt.keys.is_empty() {
            return Err(ConfigError::new("auth.jwt.keys", "needs at least one key"));
        }
        for (i, key) in jwt.keys.iter().enumerate() {
            let p = format!("auth.jwt.keys[{i}]");
            if !ALGORITHMS.contains(&key.alg.as_str()) {
                return Err(ConfigError::new(
                    format!("{p}.alg"),
                    format!(
                        "unsupported algorithm \"{}\" (expected one of {})",
                        key.alg,
                        ALGORITHMS.join(", ")
                    ),
                ));
            }
            let sources = [
                key.secret.is_some(),
                key.pem.is_some(),
                key.jwk.is_some(),
                key.jwks_url.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(ConfigError::new(
                    p,
                    "needs exactly one of secret, pem, jwk, jwks_url",
                ));
            }
            let hmac = key.alg.starts_with("HS");
            if hmac && key.secret.is_none() {
                return Err(ConfigError::new(
                    format!("{p}.secret"),
                    format!("{} keys need a secret", key.alg),
                ));
            }
            if !hmac && key.secret.is_some() {
                return Err(ConfigError::new(
                    format!("{p}.secret"),
                    format!(
                        "{} is an asymmetric algorithm: give pem, jwk or jwks_url",
                        key.alg
                    ),
                ));
            }
            if let Some(url) = &key.jwks_url {
                check_url(&format!("{p}.jwks_url"), url)?;
            }
        }
        for (path, v) in [
            ("auth.jwt.roles_claim", &jwt.roles_claim),
            ("auth.jwt.scope_claim", &jwt.scope_claim),
            ("auth.jwt.user_claim", &jwt.user_claim),
        ] {
            non_empty(path, v)?;
        }
        if let Some(c) = &jwt.cookie {
            non_empty("auth.jwt.cookie", c)?;
        }
        if let Some(q) = &jwt.query_param {
            non_empty("auth.jwt.query_param", q)?;
        }
    }
    check_header_name("auth.api_key_header", &config.auth.api_key_header)?;
    for (i, k) in config.auth.api_keys.iter().enumerate() {
        non_empty(&format!("auth.api_keys[{i}].consumer"), &k.consumer)?;
        if !k.key_sha256.starts_with("env:") {
            check_sha256(&format!("auth.api_keys[{i}].key_sha256"), &k.key_sha256)?;
        }
    }

    let mut policies = HashSet::new();
    for (i, r) in config.rate_limits.iter().enumerate() {
        let p = format!("rate_limits[{i}]");
        non_empty(&format!("{p}.name"), &r.name)?;
        if !policies.insert(r.name.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.name"),
                format!("duplicate rate limit name \"{}\"", r.name),
            ));
        }
        positive(&format!("{p}.limit"), r.limit)?;
        positive(&format!("{p}.period_s"), r.period_s)?;
        if let Some(b) = r.burst {
            positive(&format!("{p}.burst"), b)?;
        }
        match r.key.as_str() {
            "ip" | "user" | "api_key" | "global" => {}
            other => match other.strip_prefix("header:") {
                Some(h) => check_header_name(&format!("{p}.key"), h)?,
                None => {
                    return Err(ConfigError::new(
                        format!("{p}.key"),
                        format!(
                            "unknown key \"{other}\" (expected ip, user, api_key, header:<name> or global)"
                        ),
                    ));
                }
            },
        }
        if let Some(u) = &r.upstash {
            if r.backend != crate::Backend::Upstash {
                return Err(ConfigError::new(
                    format!("{p}.upstash"),
                    "only a policy with backend = \"upstash\" takes an upstash endpoint",
                ));
            }
            check_upstash(&format!("{p}.upstash"), u)?;
        }
        if matches!(r.backend, crate::Backend::Upstash | crate::Backend::Redis) {
            check_upstash_exact(&p, r)?;
        }
        if r.backend == crate::Backend::Redis && config.redis.is_none() {
            return Err(ConfigError::new(
                format!("{p}.backend"),
                "backend \"redis\" needs a [redis] section",
            ));
        }
    }
    if let Some(u) = &config.upstash {
        check_upstash("upstash", u)?;
    }
    if let Some(redis) = &config.redis {
        if !["redis://", "rediss://", "env:"]
            .iter()
            .any(|scheme| redis.url.starts_with(scheme))
        {
            return Err(ConfigError::new(
                "redis.url",
                "must start with redis:// or rediss:// (or be env:NAME)",
            ));
        }
        positive("redis.timeout_ms", redis.timeout_ms)?;
        if let Some(file) = &redis.ca_file {
            non_empty("redis.ca_file", file)?;
            if redis.url.starts_with("redis://") {
                return Err(ConfigError::new(
                    "redis.ca_file",
                    "needs a rediss:// url (TLS); redis:// is plain TCP",
                ));
            }
        }
    }

    if let Some(cors) = &config.cors {
        check_cors("cors", cors)?;
    }

    let mut names = HashSet::new();
    for (i, r) in config.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        non_empty(&format!("{p}.name"), &r.name)?;
        if !names.insert(r.name.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.name"),
                format!("duplicate route name \"{}\"", r.name),
            ));
        }
        check_route(config, &p, r, &upstreams, &policies)?;
    }
    Ok(())
}

fn check_route(
    config: &Config,
    p: &str,
    r: &Route,
    upstreams: &HashSet<&str>,
    policies: &HashSet<&str>,
) -> Result {
    let m = &r.match_;
    match (&m.path, &m.path_prefix) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{p}.match"),
                "give either path or path_prefix, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                format!("{p}.match"),
                "needs path or path_prefix",
            ));
        }
        (Some(path), None) => check_template(&format!("{p}.match.path"), path)?,
        (None, Some(prefix)) => check_path(&format!("{p}.match.path_prefix"), prefix)?,
    }
    if let Some(host) = &m.host {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        if bare.is_empty()
            || bare.contains('*')
            || !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        {
            return Err(ConfigError::new(
                format!("{p}.match.host"),
                format!("\"{host}\" is not a host name or *.suffix pattern"),
            ));
        }
    }
    for (j, method) in m.methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.match.methods[{j}]"),
                format!("unknown method \"{method}\" (methods are upper case)"),
            ));
        }
    }
    let targets = [r.upstream.is_some(), r.websocket.is_some(), r.hub.is_some()];
    match targets.iter().filter(|t| **t).count() {
        0 => {
            return Err(ConfigError::new(
                format!("{p}.upstream"),
                "a route needs an upstream, a websocket hub or a hub",
            ));
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                p,
                "give only one of upstream, websocket, hub",
            ));
        }
    }
    if let Some(u) = &r.upstream
        && !upstreams.contains(u.as_str())
    {
        return Err(ConfigError::new(
            format!("{p}.upstream"),
            format!("no upstream named \"{u}\""),
        ));
    }
    if let Some(hub) = &r.hub {
        check_hub_name(&format!("{p}.hub"), hub, m.path.as_deref())?;
    }
    if let Some(prefix) = &r.strip_prefix {
        check_path(&format!("{p}.strip_prefix"), prefix)?;
        let matched = m.path_prefix.as_deref().or(m.path.as_deref()).unwrap_or("");
        if !matched.starts_with(prefix.trim_end_matches('/')) {
            return Err(ConfigError::new(
                format!("{p}.strip_prefix"),
                format!("\"{prefix}\" is not a prefix of the matched path \"{matched}\""),
            ));
        }
    }
    if let Some(rewrite) = &r.rewrite {
        check_template(&format!("{p}.rewrite"), rewrite)?;
        let params = template_params(m.path.as_deref().unwrap_or(""));
        for param in template_params(rewrite) {
            if !params.contains(&param) {
                return Err(ConfigError::new(
                    format!("{p}.rewrite"),
                    format!("{{{param}}} is not a parameter of match.path"),
                ));
            }
        }
    }
    let needs_jwt = matches!(r.auth, crate::AuthMode::Jwt | crate::AuthMode::Any);
    let needs_keys = matches!(r.auth, crate::AuthMode::ApiKey | crate::AuthMode::Any);
    if needs_jwt && config.auth.jwt.is_none() && r.auth == crate::AuthMode::Jwt {
        return Err(ConfigError::new(
            format!("{p}.auth"),
            "auth = \"jwt\" needs an [auth.jwt] section",
        ));
    }
    if needs_keys && config.auth.api_keys.is_empty() && r.auth == crate::AuthMode::ApiKey {
        return Err(ConfigError::new(
            format!("{p}.auth"),
            "auth = \"api_key\" needs [[auth.api_keys]]",
        ));
    }
    if r.auth == crate::AuthMode::Any
        && config.auth.jwt.is_none()
        && config.auth.api_keys.is_empty()
    {
        return Err(ConfigError::new(
            format!("{p}.auth"),
            "auth = \"any\" needs [auth.jwt] or [[auth.api_keys]]",
        ));
    }
    if r.auth == crate::AuthMode::None && (!r.roles.is_empty() || !r.scopes.is_empty()) {
        return Err(ConfigError::new(
            format!("{p}.roles"),
            "roles and scopes need auth = \"jwt\", \"api_key\" or \"any\"",
        ));
    }
    for (j, name) in r.rate_limits.iter().enumerate() {
        if !policies.contains(name.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.rate_limits[{j}]"),
                format!("no rate limit named \"{name}\""),
            ));
        }
    }
    positive(&format!("{p}.max_body_bytes"), r.max_body_bytes)?;
    if let Some(t) = r.timeout_ms {
        positive(&format!("{p}.timeout_ms"), t)?;
    }
    if let Some(cors) = &r.cors {
        check_cors(&format!("{p}.cors"), cors)?;
    }
    if let Some(ws) = &r.websocket {
        check_hub_name(&format!("{p}.websocket.hub"), &ws.hub, m.path.as_deref())?;
        positive(
            &format!("{p}.websocket.max_message_bytes"),
            ws.max_message_bytes,
        )?;
        positive(
            &format!("{p}.websocket.messages_per_second"),
            ws.messages_per_second,
        )?;
    }
    Ok(())
}

fn check_hub_name(path: &str, hub: &str, match_path: Option<&str>) -> Result {
    non_empty(path, hub)?;
    let params = template_params(match_path.unwrap_or(""));
    for param in template_params(hub) {
        if !params.contains(&param) {
            return Err(ConfigError::new(
                path,
                format!("{{{param}}} is not a parameter of match.path"),
            ));
        }
    }
    Ok(())
}

/// Checks that hold only once secrets are known.
pub(crate) fn validate_resolved(config: &Config) -> Result {
    for (i, k) in config.auth.api_keys.iter().enumerate() {
        check_sha256(&format!("auth.api_keys[{i}].key_sha256"), &k.key_sha256)?;
    }
    if let Some(u) = &config.upstash {
        check_url("upstash.url", &u.url)?;
    }
    for (i, r) in config.rate_limits.iter().enumerate() {
        if let Some(u) = &r.upstash {
            check_url(&format!("rate_limits[{i}].upstash.url"), &u.url)?;
        }
    }
    Ok(())
}

/// Largest `max(limit, capacity) × period_ms` of an upstash-backed policy.
/// Redis scripts compute with doubles, exact for integers up to 2^53; the
/// scripts add at most a few such products (and a limit) before comparing,
/// so 2^51 keeps every intermediate exact. That is 26 million per day, or
/// 625 million per hour.
pub const UPSTASH_MAX_LIMIT_PERIOD_MS: u64 = 1 << 51;

fn check_upstash_exact(p: &str, r: &crate::RateLimit) -> Result {
    let capacity = match r.algorithm {
        crate::Algorithm::TokenBucket | crate::Algorithm::Gcra => r.burst.unwrap_or(r.limit),
        crate::Algorithm::SlidingWindow | crate::Algorithm::FixedWindow => r.limit,
    };
    let product = r
        .limit
        .max(capacity)
        .saturating_mul(r.period_s.saturating_mul(1000));
    if product > UPSTASH_MAX_LIMIT_PERIOD_MS {
        return Err(ConfigError::new(
            format!("{p}.limit"),
            format!(
                "backends \"upstash\" and \"redis\" count exactly only while max(limit, burst) × \
                 period_s × 1000 is at most 2^51 ({UPSTASH_MAX_LIMIT_PERIOD_MS}); this policy needs {product}"
            ),
        ));
    }
    Ok(())
}

fn check_upstash(p: &str, u: &crate::Upstash) -> Result {
    if !u.url.starts_with("env:") {
        check_url(&format!("{p}.url"), &u.url)?;
    }
    non_empty(&format!("{p}.token"), &u.token)?;
    positive(&format!("{p}.timeout_ms"), u.timeout_ms)
}

fn check_cors(p: &str, cors: &crate::Cors) -> Result {
    if cors.allow_origins.is_empty() {
        return Err(ConfigError::new(
            format!("{p}.allow_origins"),
            "needs at least one origin (or \"*\")",
        ));
    }
    for (i, o) in cors.allow_origins.iter().enumerate() {
        if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
            return Err(ConfigError::new(
                format!("{p}.allow_origins[{i}]"),
                format!("\"{o}\" is not an origin (scheme://host[:port]) or \"*\""),
            ));
        }
    }
    if cors.allow_credentials && cors.allow_origins.iter().any(|o| o == "*") {
        return Err(ConfigError::new(
            format!("{p}.allow_credentials"),
            "browsers refuse credentials with allow_origins = [\"*\"]: list the origins",
        ));
    }
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            return Err(ConfigError::new(
                format!("{p}.allow_methods[{i}]"),
                format!("unknown method \"{m}\""),
            ));
        }
    }
    for (i, h) in cors
        .allow_headers
        .iter()
        .chain(&cors.expose_headers)
        .enumerate()
    {
        check_header_name(&format!("{p}.allow_headers[{i}]"), h)?;
    }
    Ok(())
}

fn positive(path: &str, v: u64) -> Result {
    if v == 0 {
        return Err(ConfigError::new(path, "must be greater than 0"));
    }
    Ok(())
}

fn non_empty(path: &str, v: &str) -> Result {
    if v.trim().is_empty() {
        return Err(ConfigError::new(path, "must not be empty"));
    }
    Ok(())
}

fn check_addr(path: &str, v: &str) -> Result {
    v.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| ConfigError::new(path, format!("\"{v}\" is not an ip:port socket address")))
}

fn check_url(path: &str, v: &str) -> Result {
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .ok_or_else(|| {
            ConfigError::new(path, format!("\"{v}\" must start with http:// or https://"))
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || authority.contains(' ') {
        return Err(ConfigError::new(path, format!("\"{v}\" has no valid host")));
    }
    if rest.contains(['?', '#']) {
        return Err(ConfigError::new(path, "must not have a query or fragment"));
    }
    Ok(())
}

fn check_path(path: &str, v: &str) -> Result {
    if !v.starts_with('/') {
        return Err(ConfigError::new(path, format!("\"{v}\" must start with /")));
    }
    if v.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            path,
            format!("\"{v}\" is not a plain path"),
        ));
    }
    Ok(())
}

fn check_template(path: &str, v: &str) -> Result {
    check_path(path, v)?;
    let mut seen = HashSet::new();
    for seg in v.split('/') {
        let open = seg.contains('{');
        let close = seg.contains('}');
        if open || close {
            let name = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .ok_or_else(|| {
                    ConfigError::new(
                        path,
                        format!("segment \"{seg}\" must be literal or a whole {{name}} parameter"),
                    )
                })?;
            if !seen.insert(name) {
                return Err(ConfigError::new(
                    path,
                    format!("parameter {{{name}}} appears twice"),
                ));
            }
        }
    }
    Ok(())
}

/// Parameter names of a `/a/{b}/c` template (also of a hub name like `room-{id}`).
pub(crate) fn template_params(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

fn check_header_name(path: &str, v: &str) -> Result {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(ConfigError::new(
            path,
            format!("\"{v}\" is not a valid header name"),
        ));
    }
    Ok(())
}

fn check_header_value(path: &str, v: &str) -> Result {
    if v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(ConfigError::new(
            path,
            "header value has control characters",
        ));
    }
    Ok(())
}

fn check_sha256(path: &str, v: &str) -> Result {
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::new(
            path,
            "must be the 64-character hex SHA-256 of the key",
        ));
    }
    Ok(())
}
