//! Hot-path throughput check, run on demand:
//! `cargo test -p edgegate-auth --release --test throughput -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use edgegate_auth::JwtVerifier;

#[test]
#[ignore = "timing; run in release on demand"]
fn hs256_verifications_per_second() {
    let cfg = config(vec![
        secret_key("HS256", Some("other"), "another-secret-entirely"),
        secret_key("HS256", Some("k"), SECRET),
    ]);
    let v = JwtVerifier::new(&cfg).unwrap();
    let mut c = claims();
    c["scope"] = serde_json::json!("read write");
    c["email"] = serde_json::json!("user@example.com");
    let token = mint("HS256", Some("k"), &c);
    let n = 400_000;
    let start = Instant::now();
    for _ in 0..n {
        let id = block_on(v.verify(std::hint::black_box(&token), NOW, &NoFetch)).unwrap();
        std::hint::black_box(id);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "HS256: {rate:.0} verifications/s ({} byte token)",
        token.len()
    );
    if !cfg!(debug_assertions) {
        assert!(rate >= 200_000.0, "below the 200k/s target");
    }
}
