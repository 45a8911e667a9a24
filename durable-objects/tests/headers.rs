//! RateLimit header fields.

use edgegate_durable_objects::Decision;
use edgegate_durable_objects::headers::{
    RATELIMIT, RATELIMIT_POLICY, policy_item, rate_limit_headers, ratelimit_item, seconds_ceil,
};
use http::HeaderMap;
use http::header::RETRY_AFTER;

fn decision(allowed: bool, remaining: u64, reset_ms: u64, retry_after_ms: u64) -> Decision {
    Decision {
        allowed,
        limit: 100,
        remaining,
        reset_ms,
        retry_after_ms,
    }
}

#[test]
fn formats_structured_fields() {
    let h = rate_limit_headers("per-ip", 60_000, &decision(true, 42, 17_500, 0));
    assert_eq!(h.policy, r#""per-ip";q=100;w=60"#);
    assert_eq!(h.ratelimit, r#""per-ip";r=42;t=18"#);
    assert_eq!(h.retry_after, None);

    let h = rate_limit_headers("per-ip", 60_000, &decision(false, 0, 60_000, 2_001));
    assert_eq!(h.ratelimit, r#""per-ip";r=0;t=60"#);
    assert_eq!(h.retry_after, Some(3));
}

#[test]
fn rounds_up() {
    assert_eq!(seconds_ceil(0), 0);
    assert_eq!(seconds_ceil(1), 1);
    assert_eq!(seconds_ceil(1_000), 1);
    assert_eq!(seconds_ceil(1_001), 2);
    assert_eq!(policy_item("p", 5, 500), r#""p";q=5;w=1"#);
    assert_eq!(ratelimit_item("p", 5, 0), r#""p";r=5;t=0"#);
    // Refused requests always say to wait at least a second.
    let h = rate_limit_headers("p", 1_000, &decision(false, 0, 0, 0));
    assert_eq!(h.retry_after, Some(1));
}

#[test]
fn escapes_names() {
    assert_eq!(policy_item(r#"a"b\c"#, 1, 1_000), r#""a\"b\\c";q=1;w=1"#);
    assert_eq!(policy_item("é\n", 1, 1_000), r#""??";q=1;w=1"#);
}

#[test]
fn appends_several_policies() {
    let mut headers = HeaderMap::new();
    rate_limit_headers("burst", 1_000, &decision(false, 0, 900, 900)).append_to(&mut headers);
    rate_limit_headers(
        "daily",
        86_400_000,
        &decision(false, 0, 3_600_000, 3_600_000),
    )
    .append_to(&mut headers);
    rate_limit_headers("hourly", 3_600_000, &decision(false, 0, 1_000, 1_000))
        .append_to(&mut headers);
    let policies: Vec<_> = headers.get_all(RATELIMIT_POLICY).iter().collect();
    assert_eq!(
        policies,
        [
            r#""burst";q=100;w=1"#,
            r#""daily";q=100;w=86400"#,
            r#""hourly";q=100;w=3600"#
        ]
    );
    assert_eq!(headers.get_all(RATELIMIT).iter().count(), 3);
    assert_eq!(headers[RETRY_AFTER], "3600", "the longest wait wins");
}
