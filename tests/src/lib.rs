//! Gateway behaviour written once, asserted on every target.
//!
//! A target (runtime-host, workerd, …) implements [`Target`]: start the
//! gateway with a configuration, give back its base URL. [`conformance!`]
//! expands to one `#[test]` per scenario for that target, so every target
//! runs the very same assertions.

pub mod origin;
pub mod scenarios;
pub mod tokens;
pub mod upstash_rest;

use std::time::Duration;

/// For [`Target::unavailable`]: `missing` is the reason a prerequisite is
/// absent (or `None`). It becomes a skip, unless the environment variable
/// `require` is `1` (CI sets it), where a missing prerequisite is a failure.
pub fn skip_unless_required(require: &str, missing: Option<String>) -> Option<String> {
    let missing = missing?;
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but {missing}");
    }
    Some(missing)
}

/// A way to run the gateway.
pub trait Target {
    /// Short name for messages.
    fn name(&self) -> &'static str;
    /// Starts the gateway with `config` (TOML) and extra environment
    /// variables; the returned handle stops it when dropped.
    fn start(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running>;
    /// Why the target cannot run on this machine (a tool or build that is
    /// not there): its scenarios are then skipped with this reason printed.
    /// A target that must not be skipped panics here instead.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// Whether the gateway learns the client's address here (`wasmtime
    /// serve` gives a guest none), so `x-forwarded-for` can name it.
    fn knows_client_address(&self) -> bool {
        true
    }
    /// Whether edge instances live across requests, keeping balancer
    /// state (`wasmtime serve` and Spin make one per request, so each
    /// request starts the rotation at a weighted-random target).
    fn keeps_instance_state(&self) -> bool {
        true
    }
    /// Whether `backend = "durable-object"` rate limits (and WebSocket
    /// hubs) run on this target, so scenarios that count with Durable
    /// Objects include that backend.
    fn supports_durable_objects(&self) -> bool {
        false
    }
}

/// A started gateway.
pub trait Running {
    /// `http://127.0.0.1:port`.
    fn base_url(&self) -> String;
}

/// Says once per test process why a target's scenarios are skipped.
/// Written to stderr directly, past the test harness's capture, so the
/// reason shows even though the skipped tests pass.
pub fn report_skip(target: &str, why: &str) {
    use std::io::Write;
    static REPORTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if !reported.iter().any(|t| t == target) {
        reported.push(target.to_string());
        let _ = writeln!(std::io::stderr(), "skipping the {target} scenarios: {why}");
    }
}

/// A blocking HTTP client that never follows redirects.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Expands to one test per scenario, each run against the target that
/// `$target` (an expression implementing [`Target`]) builds.
#[macro_export]
macro_rules! conformance {
    ($target:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                let target = $target;
                if let Some(why) = $crate::Target::unavailable(&target) {
                    $crate::report_skip($crate::Target::name(&target), &why);
                    return;
                }
                $crate::scenarios::$scenario(&target);
            }
        )*
    };
    ($target:expr) => {
        $crate::conformance!($target;
            routing_most_specific_wins,
            unknown_route_and_method,
            strip_prefix_and_rewrite,
            weighted_balancing,
            upstream_timeout_is_504,
            refused_is_502_and_idempotent_retries_use_another_target,
            bodies_stream_and_limits_answer_413,
            jwt_hs256_identity_and_failures,
            jwt_asymmetric_keys_and_jwks,
            api_keys,
            header_hygiene,
            cors_preflight_and_actual,
            upstream_errors_pass_through,
            websocket_hub_protocol,
            rate_limit_exact_under_concurrency,
            rate_limit_refusals_and_failure_modes,
        );
    };
}
