//! edgegate configuration: the TOML schema every target reads, its
//! validation (errors name the key path and the reason), and the resolution
//! of `env:NAME` secrets.

mod schema;
mod validate;

pub use schema::*;
pub use validate::UPSTASH_MAX_LIMIT_PERIOD_MS;

/// The configuration `edgegate serve` and the edge component use when no
/// other is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../../gateway.toml");

/// Name of the variable that carries configuration TOML on every target.
pub const CONFIG_VAR: &str = "EDGEGATE_CONFIG";

/// A configuration error: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Key path, e.g. `routes[1].match.path_prefix` (`.` for the whole file).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Parses and validates TOML text. Secrets stay as written (`env:NAME`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new(".", one_line(&e.to_string())))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path.is_empty() { ".".into() } else { path },
                one_line(&e.into_inner().to_string()),
            )
        })?;
        validate::validate(&config)?;
        Ok(config)
    }

    /// Replaces every `env:NAME` secret with the value `lookup` gives.
    /// A missing variable is an error naming the key, never the value.
    pub fn resolve_secrets(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let resolve = |path: String, value: &mut String| -> Result<(), ConfigError> {
            if let Some(name) = value.strip_prefix("env:") {
                *value = lookup(name).ok_or_else(|| {
                    ConfigError::new(path, format!("environment variable {name} is not set"))
                })?;
            }
            Ok(())
        };
        if let Some(jwt) = &mut self.auth.jwt {
            for (i, key) in jwt.keys.iter_mut().enumerate() {
                if let Some(s) = &mut key.secret {
                    resolve(format!("auth.jwt.keys[{i}].secret"), s)?;
                }
                if let Some(s) = &mut key.pem {
                    resolve(format!("auth.jwt.keys[{i}].pem"), s)?;
                }
            }
        }
        for (i, key) in self.auth.api_keys.iter_mut().enumerate() {
            resolve(
                format!("auth.api_keys[{i}].key_sha256"),
                &mut key.key_sha256,
            )?;
        }
        if self
            .rate_limits
            .iter()
            .any(|r| r.backend == Backend::Upstash && r.upstash.is_none())
        {
            let upstash = self.upstash.get_or_insert_with(Upstash::default);
            resolve("upstash.url".into(), &mut upstash.url)?;
            resolve("upstash.token".into(), &mut upstash.token)?;
        }
        // Each upstash-backed policy carries its resolved endpoint, so the
        // gateway compiles a policy from the policy alone.
        for (i, policy) in self.rate_limits.iter_mut().enumerate() {
            if policy.backend != Backend::Upstash {
                continue;
            }
            match &mut policy.upstash {
                Some(own) => {
                    resolve(format!("rate_limits[{i}].upstash.url"), &mut own.url)?;
                    resolve(format!("rate_limits[{i}].upstash.token"), &mut own.token)?;
                }
                None => policy.upstash = self.upstash.clone(),
            }
        }
        validate::validate_resolved(self)
    }

    /// The origins the gateway calls out to, as `scheme://host[:port]`
    /// (default ports left out): every upstream target, JWKS URL and Upstash
    /// endpoint, sorted, without duplicates. This is what Spin's
    /// `allowed_outbound_hosts` must list.
    ///
    /// An Upstash URL given as an `env:NAME` secret is known only after
    /// [`Config::resolve_secrets`]; before that it is left out.
    pub fn outbound_hosts(&self) -> Vec<String> {
        let mut urls: Vec<&str> = Vec::new();
        for upstream in &self.upstreams {
            urls.extend(upstream.targets.iter().map(|t| t.url.as_str()));
        }
        if let Some(jwt) = &self.auth.jwt {
            urls.extend(jwt.keys.iter().filter_map(|k| k.jwks_url.as_deref()));
        }
        let uses_upstash = |r: &&RateLimit| r.backend == Backend::Upstash;
        if self
            .rate_limits
            .iter()
            .filter(uses_upstash)
            .any(|r| r.upstash.is_none())
        {
            urls.extend(self.upstash.as_ref().map(|u| u.url.as_str()));
        }
        urls.extend(
            self.rate_limits
                .iter()
                .filter(uses_upstash)
                .filter_map(|r| r.upstash.as_ref().map(|u| u.url.as_str())),
        );
        let mut hosts: Vec<String> = urls.into_iter().filter_map(origin).collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Names of the environment variables that `env:NAME` secrets refer to.
    pub fn secret_env_names(&self) -> Vec<String> {
        let mut values: Vec<&str> = Vec::new();
        if let Some(jwt) = &self.auth.jwt {
            for key in &jwt.keys {
                values.extend(key.secret.as_deref());
                values.extend(key.pem.as_deref());
            }
        }
        values.extend(self.auth.api_keys.iter().map(|k| k.key_sha256.as_str()));
        if let Some(u) = &self.upstash {
            values.extend([u.url.as_str(), u.token.as_str()]);
        } else if self
            .rate_limits
            .iter()
            .any(|r| r.backend == Backend::Upstash && r.upstash.is_none())
        {
            values.extend(["env:UPSTASH_REDIS_REST_URL", "env:UPSTASH_REDIS_REST_TOKEN"]);
        }
        for policy in &self.rate_limits {
            if let Some(u) = &policy.upstash {
                values.extend([u.url.as_str(), u.token.as_str()]);
            }
        }
        let mut names: Vec<String> = values
            .into_iter()
            .filter_map(|v| v.strip_prefix("env:"))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// `scheme://host[:port]` of an `http(s)://` URL, lower case, without the
/// scheme's default port; `None` for anything else (an unresolved
/// `env:NAME`).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if authority.is_empty() {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// TOML errors span several lines with a source excerpt; keep the reason
/// and the location so the message fits one log line.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    let location = lines
        .first()
        .and_then(|l| l.strip_prefix("TOML parse error at "));
    let reason = lines
        .iter()
        .rev()
        .find(|l| !l.is_empty() && !l.starts_with('|') && !l.starts_with('^') && !l.contains(" | "))
        .copied()
        .unwrap_or_default();
    match location {
        Some(at) if reason != lines[0] => format!("{reason} ({at})"),
        _ => reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
