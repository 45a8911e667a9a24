//! Where the configuration comes from, its validation before serving, and
//! what of it the host uses (listeners, limits, the guest's environment).

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgegate_config::{CONFIG_VAR, Config, ConfigError, DEFAULT_CONFIG};

use crate::cli::ServeArgs;

/// Variable telling the edge component what the host offers beyond WASI.
pub const HOST_FEATURES_VAR: &str = "EDGEGATE_HOST_FEATURES";
/// Its value: Durable Objects (and so WebSocket hubs) are served here; the
/// host consumes access records (metrics, traces) whatever the access-log
/// setting; it names unhealthy targets (active health checks); it discards
/// what the edge leaves unread of a request body.
pub const HOST_FEATURES: &str = "durable-objects,access-records,health-checks,unread-bodies";

/// Data directory when neither `--data-dir` nor `[server] data_dir` is set
/// (relative to the working directory; created on first use).
const DEFAULT_DATA_DIR: &str = "data";

/// Where the active configuration text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config FILE`.
    File(PathBuf),
    /// The `EDGEGATE_CONFIG` environment variable.
    Env,
    /// The configuration compiled into the binary.
    Default,
}

/// A configuration that failed to load: `path` is a file path or a key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct LoadError {
    /// File path (read errors) or key path (validation errors).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> Self {
        Self {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it came from.
    pub source: Source,
    /// The text as written (`env:` references intact); the guest gets this.
    pub text: String,
    /// Parsed, with `env:` references as written.
    pub config: Config,
    /// The client of `[redis]`, not connected, built (and its `ca_file`
    /// read) once at load; `serve` starts its link from it. A reload's is
    /// not used: `[redis]` applies at start.
    pub redis: Option<redis::Client>,
}

impl Loaded {
    /// Reads the configuration `serve` uses: `--config FILE`, else
    /// `$EDGEGATE_CONFIG`, else the built-in default.
    pub fn for_serve(config_file: Option<&Path>) -> Result<Loaded, LoadError> {
        match config_file {
            Some(path) => Self::from_file(path),
            None => match std::env::var(CONFIG_VAR) {
                Ok(text) => Self::from_text(Source::Env, text),
                Err(std::env::VarError::NotPresent) => {
                    Self::from_text(Source::Default, DEFAULT_CONFIG.to_string())
                }
                Err(std::env::VarError::NotUnicode(_)) => Err(LoadError {
                    path: CONFIG_VAR.into(),
                    reason: "is not valid UTF-8".into(),
                }),
            },
        }
    }

    /// Reads and validates a file.
    pub fn from_file(path: &Path) -> Result<Loaded, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_text(Source::File(path.to_path_buf()), text)
    }

    /// Parses `text` and checks that every `env:` secret resolves from the
    /// host environment (values are checked, never kept or shown), and that
    /// `[redis]` gives a usable client (its `ca_file` read).
    pub fn from_text(source: Source, text: String) -> Result<Loaded, LoadError> {
        let config = Config::parse(&text)?;
        let mut resolved = config.clone();
        resolved.resolve_secrets(&|name| std::env::var(name).ok())?;
        // What only compiling the gateway finds (keys that do not parse).
        edgegate_edge::Gateway::new(resolved)?;
        let redis = config
            .redis
            .as_ref()
            .map(crate::redis_link::client_of)
            .transpose()?;
        Ok(Loaded {
            source,
            text,
            config,
            redis,
        })
    }

    /// The environment of every guest instance: the configuration text plus
    /// the secrets it names, copied from the host environment; nothing else.
    pub fn guest_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(CONFIG_VAR.to_string(), self.text.clone())];
        for name in self.config.secret_env_names() {
            if let Ok(value) = std::env::var(&name) {
                env.push((name, value));
            }
        }
        env
    }

    /// Number of routes and upstreams, for `check`.
    pub fn summary(&self) -> (usize, usize) {
        (self.config.routes.len(), self.config.upstreams.len())
    }
}

/// Host settings of `serve`: `[server]` with command-line overrides applied.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Public listener address.
    pub listen: String,
    /// Admin listener address.
    pub admin: String,
    /// Directory of the compiled-component cache, if any can be found.
    pub cache_dir: Option<PathBuf>,
    /// Linear-memory cap of one instance, in bytes.
    pub max_instance_memory: u64,
    /// Longest continuous guest run before the request fails with 503.
    pub cpu_limit: std::time::Duration,
    /// Requests one instance serves before it is recycled.
    pub instance_max_requests: u64,
    /// Durable Object storage: `<objects_dir>/<class>.sqlite`.
    pub objects_dir: PathBuf,
    /// Idle objects are evicted after this long.
    pub object_idle_timeout: Duration,
    /// WebSockets without traffic for this long are closed.
    pub websocket_idle_timeout: Duration,
    /// Requests in flight get this long to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl ServeSettings {
    /// Applies `args` over the configuration's `[server]`.
    pub fn new(config: &Config, args: &ServeArgs) -> ServeSettings {
        let server = &config.server;
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| server.data_dir.as_ref().map(PathBuf::from));
        ServeSettings {
            listen: args.listen.clone().unwrap_or_else(|| server.listen.clone()),
            admin: args.admin.clone().unwrap_or_else(|| server.admin.clone()),
            cache_dir: data_dir
                .as_ref()
                .map(|d| d.join("cache"))
                .or_else(default_cache_dir),
            max_instance_memory: server.max_instance_memory_mib.saturating_mul(1024 * 1024),
            cpu_limit: Duration::from_millis(server.cpu_limit_ms),
            instance_max_requests: server.instance_max_requests.max(1),
            objects_dir: data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
                .join("objects"),
            object_idle_timeout: Duration::from_secs(server.object_idle_timeout_s),
            websocket_idle_timeout: Duration::from_secs(server.websocket_idle_timeout_s),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_s),
        }
    }
}

/// `$XDG_CACHE_HOME/edgegate`, else `~/.cache/edgegate`.
fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("edgegate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_loads_and_gives_the_guest_only_its_config() {
        let loaded = Loaded::from_text(Source::Default, DEFAULT_CONFIG.into()).unwrap();
        let env = loaded.guest_env();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].0, CONFIG_VAR);
    }

    #[test]
    fn missing_secret_names_the_key_not_a_value() {
        let text = r#"
            [auth.jwt]
            keys = [{ alg = "HS256", secret = "env:EDGEGATE_TEST_SURELY_UNSET_VAR" }]
        "#;
        let err = Loaded::from_text(Source::Env, text.into()).unwrap_err();
        assert_eq!(err.path, "auth.jwt.keys[0].secret");
        assert!(err.reason.contains("EDGEGATE_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn flags_override_server_section() {
        let config = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\ncpu_limit_ms = 5").unwrap();
        let args = ServeArgs {
            admin: Some("127.0.0.1:2".into()),
            data_dir: Some("/tmp/x".into()),
            ..ServeArgs::default()
        };
        let s = ServeSettings::new(&config, &args);
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.admin, "127.0.0.1:2");
        assert_eq!(s.cache_dir, Some(PathBuf::from("/tmp/x/cache")));
        assert_eq!(s.cpu_limit.as_millis(), 5);
        assert_eq!(s.objects_dir, PathBuf::from("/tmp/x/objects"));
        assert_eq!(s.object_idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn idle_timeouts_come_from_server() {
        let text = "[server]\nobject_idle_timeout_s = 1\nwebsocket_idle_timeout_s = 7\n";
        let loaded = Loaded::from_text(Source::Env, text.into()).unwrap();
        assert_eq!(loaded.text, text);
        let s = ServeSettings::new(&loaded.config, &ServeArgs::default());
        assert_eq!(s.object_idle_timeout, Duration::from_secs(1));
        assert_eq!(s.websocket_idle_timeout, Duration::from_secs(7));
        assert_eq!(s.objects_dir, PathBuf::from("data/objects"));
        let err = Loaded::from_text(Source::Env, "[server]\nobject_idle_timeout_s = 0".into())
            .unwrap_err();
        assert_eq!(err.path, "server.object_idle_timeout_s");
    }

    #[test]
    fn keys_that_do_not_parse_are_refused_before_serving() {
        let text = r#"
            [auth.jwt]
            keys = [{ alg = "ES256", pem = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----" }]
        "#;
        let err = Loaded::from_text(Source::Env, text.into()).unwrap_err();
        assert!(err.path.starts_with("auth.jwt.keys"), "{err}");
    }
}
