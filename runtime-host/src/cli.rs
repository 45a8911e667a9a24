//! Command-line interface. Subcommand and flag names are a contract with
//! users' scripts: add, never rename.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// edgegate: an API gateway running as a WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "edgegate",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (`serve` when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway (the default).
    Serve(ServeArgs),
    /// Validate a configuration file (parse and resolve `env:` secrets).
    Check(CheckArgs),
    /// Mint an HS256 JSON Web Token for testing.
    Token(TokenArgs),
}

/// `edgegate serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file (else `$EDGEGATE_CONFIG` as TOML text, else the
    /// built-in default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public listener address (overrides `[server] listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listener address (overrides `[server] admin`).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Data directory: Durable Object storage in `DIR/objects`, the
    /// compiled-component cache in `DIR/cache` (overrides `[server]
    /// data_dir`; default `./data` for objects).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start the built-in demo upstream (automatic with the default config).
    #[arg(long)]
    pub demo: bool,
    /// Run this edge component instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Run this Durable Object component (world `edgegate:durable-object`)
    /// instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub objects_component: Option<PathBuf>,
}

/// `edgegate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file to validate.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `edgegate token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// HMAC secret, literal or `env:NAME`.
    #[arg(long)]
    pub secret: String,
    /// Subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Roles, comma-separated (`roles` claim).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// OAuth scopes, space-separated (`scope` claim).
    #[arg(long)]
    pub scope: Option<String>,
    /// Issuer (`iss`).
    #[arg(long)]
    pub iss: Option<String>,
    /// Audience (`aud`).
    #[arg(long)]
    pub aud: Option<String>,
    /// Key id (`kid` header).
    #[arg(long)]
    pub kid: Option<String>,
    /// Lifetime in seconds.
    #[arg(long = "ttl-s", default_value_t = 3600)]
    pub ttl_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subcommand_means_serve_with_flags() {
        let cli = Cli::try_parse_from(["edgegate", "--listen", "127.0.0.1:1", "--demo"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.as_deref(), Some("127.0.0.1:1"));
        assert!(cli.serve.demo);
    }

    #[test]
    fn token_roles_split_on_commas() {
        let cli = Cli::try_parse_from([
            "edgegate", "token", "--secret", "s", "--sub", "u", "--roles", "a,b",
        ])
        .unwrap();
        let Some(Command::Token(t)) = cli.command else {
            panic!("expected token")
        };
        assert_eq!(t.roles, ["a", "b"]);
        assert_eq!(t.ttl_s, 3600);
    }
}
