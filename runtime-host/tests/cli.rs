//! `edgegate check`, `edgegate token` and `serve`'s refusal of bad
//! configurations, run as the real binary.

mod support;

use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use support::{BIN, TempDir};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("EDGEGATE_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("running edgegate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_accepts_the_default_config() {
    let dir = TempDir::new();
    let file = dir.write("ok.toml", edgegate_default());
    let out = run(&["check", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 3 routes, 1 upstreams"
    );
}

#[test]
fn check_names_the_key_of_an_unknown_field() {
    let dir = TempDir::new();
    let file = dir.write(
        "bad.toml",
        "[[routes]]\nname = \"r\"\nmatch = { path_prefx = \"/\" }\n",
    );
    let out = run(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(message.starts_with("error: "), "{message}");
    assert!(message.contains("routes[0].match"), "{message}");
}

#[test]
fn check_names_the_key_of_a_bad_reference() {
    let dir = TempDir::new();
    let file = dir.write(
        "bad.toml",
        "[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"nowhere\"\n",
    );
    let out = run(&["check", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("routes[0].upstream"), "{}", text(&out));
}

#[test]
fn check_names_a_missing_secret_without_showing_values() {
    let dir = TempDir::new();
    let config = "[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"env:EDGEGATE_TEST_UNSET_SECRET\" }]\n\
                  [[auth.api_keys]]\nconsumer = \"c\"\nkey_sha256 = \"env:EDGEGATE_TEST_SET_SECRET\"\n";
    let file = dir.write("secret.toml", config);
    let out = run(
        &["check", file.to_str().unwrap()],
        &[("EDGEGATE_TEST_SET_SECRET", "value-that-must-not-appear")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("auth.jwt.keys[0].secret"), "{message}");
    assert!(message.contains("EDGEGATE_TEST_UNSET_SECRET"), "{message}");
    assert!(!message.contains("value-that-must-not-appear"), "{message}");
}

#[test]
fn check_reports_an_unreadable_file() {
    let out = run(&["check", "/nonexistent/edgegate.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).starts_with("error: /nonexistent/edgegate.toml: "));
}

#[test]
fn token_is_a_three_part_jwt_with_the_claims() {
    let out = run(
        &[
            "token",
            "--secret",
            "env:EDGEGATE_TEST_TOKEN_SECRET",
            "--sub",
            "bob",
            "--roles",
            "admin,user",
            "--scope",
            "read write",
            "--iss",
            "me",
            "--aud",
            "api",
            "--kid",
            "k1",
            "--ttl-s",
            "60",
        ],
        &[("EDGEGATE_TEST_TOKEN_SECRET", "s3cret")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["sub"], "bob");
    assert_eq!(payload["roles"], serde_json::json!(["admin", "user"]));
    assert_eq!(payload["scope"], "read write");
    assert_eq!(payload["iss"], "me");
    assert_eq!(payload["aud"], "api");
    let exp = payload["exp"].as_u64().unwrap();
    assert_eq!(exp - payload["iat"].as_u64().unwrap(), 60);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "k1");
}

#[test]
fn token_with_a_missing_env_secret_fails() {
    let out = run(
        &[
            "token",
            "--secret",
            "env:EDGEGATE_TEST_UNSET_SECRET",
            "--sub",
            "x",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("EDGEGATE_TEST_UNSET_SECRET"));
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_2() {
    let dir = TempDir::new();
    let file = dir.write("bad.toml", "[server]\nlisten = 8080\n");
    let out = run(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("error: server.listen: "),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_refuses_invalid_config_from_the_environment() {
    let out = run(&["serve"], &[("EDGEGATE_CONFIG", "[nope]\n")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).starts_with("error: "), "{}", text(&out));
}

#[test]
fn serve_refuses_admin_on_the_public_address() {
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:18099",
            "--admin",
            "127.0.0.1:18099",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("server.admin"), "{}", text(&out));
}

fn edgegate_default() -> &'static str {
    include_str!("../../gateway.toml")
}

/// A configuration whose `[redis]` section is `redis` (the URL holds the
/// password `hunter2-secret`), which both `check` and `serve` must refuse
/// (`serve` with exit 2, as for any invalid configuration); their output.
fn refused_with_redis(dir: &TempDir, redis: &str) -> String {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\ndata_dir = {:?}\n\n[redis]\n{redis}\n",
        support::free_port(),
        support::free_port(),
        dir.path().join("data").display().to_string(),
    );
    let file = dir.write("edgegate.toml", &config);
    let file = file.to_str().unwrap();
    let checked = run(&["check", file], &[]);
    let served = run(&["serve", "--config", file], &[]);
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    assert_eq!(served.status.code(), Some(2), "{}", text(&served));
    let text = format!("{}{}", text(&checked), text(&served));
    assert!(!text.contains("hunter2"), "{text}");
    text
}

#[test]
fn a_redis_ca_file_that_cannot_be_used_is_named_without_the_url() {
    let dir = TempDir::new();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.write("not.pem", "a certificate, in words\n");
    for (ca_file, reason) in [(&missing, "No such file"), (&not_pem, "no PEM certificate")] {
        let text = refused_with_redis(
            &dir,
            &format!(
                "url = \"rediss://:hunter2-secret@127.0.0.1:1/\"\nca_file = {:?}",
                ca_file.display().to_string()
            ),
        );
        assert!(
            text.contains(&format!("error: redis.ca_file: {}: ", ca_file.display())),
            "{text}"
        );
        assert!(text.contains(reason), "{text}");
    }
}

#[test]
fn a_redis_url_that_turns_off_the_certificate_check_is_refused() {
    let dir = TempDir::new();
    let text = refused_with_redis(
        &dir,
        "url = \"rediss://:hunter2-secret@127.0.0.1:1/#insecure\"",
    );
    assert!(text.contains("error: redis.url: #insecure"), "{text}");
}
