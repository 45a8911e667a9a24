//! `edgegate`: serves the edge component on wasmtime, validates
//! configurations and mints test tokens.

mod access;
mod admin;
mod banner;
mod cli;
mod cpu;
mod demo;
mod engine;
mod health;
mod linker;
mod listener;
mod metrics;
mod objects;
mod otlp;
mod outbound;
mod pool;
mod redis_link;
mod reload;
mod respond;
mod rlimit;
mod serve;
mod server;
mod settings;
mod token;
mod unread;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::{CheckArgs, Cli, Command, TokenArgs};
use crate::settings::Loaded;

// jemalloc: 10% less CPU per proxied request than glibc's allocator, and
// less memory under load (docs/BENCHMARKS.md, "Fifth round").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => {
            rlimit::raise_nofile_limit();
            serve::run(args)
        }
        Command::Check(args) => check(&args),
        Command::Token(args) => mint(args),
    }
}

/// `EDGEGATE_LOG` (an env-filter directive), default `info`, to stderr;
/// `EDGEGATE_LOG_FORMAT=json` for JSON lines.
fn init_logging() {
    let mut filter =
        EnvFilter::try_from_env("EDGEGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // At trace level the WASI bindings log every host call with its
    // arguments and results: header values, the guest's environment
    // (secrets). Cap them at debug whatever the user asked for.
    if filter
        .max_level_hint()
        .is_none_or(|max| max > LevelFilter::DEBUG)
    {
        for target in ["wasmtime_wasi", "wasmtime_wasi_io", "wasmtime_wasi_http"] {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    // Colours only for a terminal: escape codes garble files and journals.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // Text for people, JSON for log shippers.
    if std::env::var("EDGEGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `edgegate check FILE`.
fn check(args: &CheckArgs) -> ExitCode {
    match Loaded::from_file(&args.file) {
        Ok(loaded) => {
            let (routes, upstreams) = loaded.summary();
            println!("ok: {routes} routes, {upstreams} upstreams");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `edgegate token …`.
fn mint(args: TokenArgs) -> ExitCode {
    let secret = match token::resolve_secret(&args.secret) {
        Ok(secret) => secret,
        Err(reason) => {
            eprintln!("error: --secret: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let claims = token::Claims {
        sub: args.sub,
        roles: args.roles.into_iter().filter(|r| !r.is_empty()).collect(),
        roles_claim: None,
        scope: args.scope,
        iss: args.iss,
        aud: args.aud,
        kid: args.kid,
        ttl_s: args.ttl_s,
    };
    println!(
        "{}",
        token::mint_hs256(secret.as_bytes(), &claims, token::unix_now())
    );
    ExitCode::SUCCESS
}
