//! Header hygiene: what reaches the upstream and what reaches the client.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use edgegate_auth::Identity;

/// Request id header, kept when valid and echoed on the response.
pub const REQUEST_ID: &str = "x-request-id";
/// Identity headers the gateway sets; any client-sent copy is removed first.
pub const USER_ID: &str = "x-user-id";
/// Roles of the caller, comma-separated.
pub const USER_ROLES: &str = "x-user-roles";
/// Scopes of the caller, space-separated.
pub const USER_SCOPES: &str = "x-user-scopes";
/// API-key consumer name.
pub const CONSUMER: &str = "x-consumer";

/// Set by hosts on WebSocket upgrade requests, for guests that cannot see
/// the `Upgrade` header (WASI HTTP hides it). Hosts remove client-sent copies.
pub const WEBSOCKET_UPGRADE: &str = "edgegate-websocket";

const IDENTITY: &[&str] = &[USER_ID, USER_ROLES, USER_SCOPES, CONSUMER];

/// Hop-by-hop headers (RFC 9110 §7.6.1) and their legacy cousins, as
/// parsed names so that removing them parses nothing per request.
fn hop_by_hop() -> [HeaderName; 11] {
    [
        http::header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        http::header::PROXY_AUTHENTICATE,
        http::header::PROXY_AUTHORIZATION,
        http::header::TE,
        http::header::TRAILER,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        HeaderName::from_static("http2-settings"),
        // The gateway's own HTTP layer answers `100 Continue`; forwarded, some
        // platforms hand the upstream's interim 100 back as the final answer.
        http::header::EXPECT,
    ]
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(http::header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in hop_by_hop() {
        headers.remove(name);
    }
}

/// Removes identity headers a client may have sent to impersonate someone.
pub fn strip_identity(headers: &mut HeaderMap) {
    for name in IDENTITY {
        headers.remove(*name);
    }
}

/// Sets the identity headers for an authenticated caller.
pub fn set_identity(headers: &mut HeaderMap, identity: &Identity) {
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    if let Some(user) = &identity.user {
        put(USER_ID, user);
    }
    if let Some(consumer) = &identity.consumer {
        put(CONSUMER, consumer);
    }
    if !identity.roles.is_empty() {
        put(USER_ROLES, &identity.roles.join(","));
    }
    if !identity.scopes.is_empty() {
        put(USER_SCOPES, &identity.scopes.join(" "));
    }
}

/// A client-sent request id is kept only if it is a short token of safe
/// characters (it ends up in logs and upstream headers).
pub fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// W3C trace context of the upstream call: the caller's trace continued
/// with a new span, or a new trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 hex digits.
    pub trace_id: String,
    /// This gateway's span, the upstream's parent: 16 hex digits.
    pub span_id: String,
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent_id: Option<String>,
    /// Trace flags, 2 hex digits.
    pub flags: String,
}

impl TraceContext {
    /// Continues `incoming` (a `traceparent` value) when valid, else starts
    /// a trace with `fresh_trace` (sampled).
    pub fn new(incoming: Option<&str>, span_id: [u8; 8], fresh_trace: [u8; 16]) -> TraceContext {
        match incoming.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id: trace_id.to_string(),
                span_id: hex(&span_id),
                parent_id: Some(parent.to_string()),
                flags: flags.to_string(),
            },
            None => TraceContext {
                trace_id: hex(&fresh_trace),
                span_id: hex(&span_id),
                parent_id: None,
                flags: "01".to_string(),
            },
        }
    }

    /// The `traceparent` header sent upstream.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// Returns (trace-id, parent-id, flags) of a valid version-00 `traceparent`.
fn parse_traceparent(v: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let is_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = *version == "00"
        && is_hex(trace, 32)
        && is_hex(parent, 16)
        && is_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, parent, flags))
}

/// Sets `x-forwarded-for/-proto/-host`. Without `trust`, a client-sent chain
/// is replaced: it cannot be verified.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: Option<&str>,
    scheme: &str,
    host: Option<&str>,
    trust: bool,
) {
    let previous = trust
        .then(|| headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .map(str::to_string);
    let chain = match (previous, client_ip) {
        (Some(p), Some(ip)) => Some(format!("{p}, {ip}")),
        (Some(p), None) => Some(p),
        (None, ip) => ip.map(str::to_string),
    };
    match chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
        Some(v) => {
            headers.insert("x-forwarded-for", v);
        }
        None => {
            headers.remove("x-forwarded-for");
        }
    }
    if !(trust && headers.contains_key("x-forwarded-proto")) {
        headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
        );
    }
    if !(trust && headers.contains_key("x-forwarded-host")) {
        match host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(v) => {
                headers.insert("x-forwarded-host", v);
            }
            None => {
                headers.remove("x-forwarded-host");
            }
        }
    }
}

/// Adds configured security headers the upstream did not set itself.
pub fn add_security_headers(headers: &mut HeaderMap, configured: &[(HeaderName, HeaderValue)]) {
    for (name, value) in configured {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn traceparent_is_continued_or_started() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tc = TraceContext::new(Some(incoming), [1; 8], [2; 16]);
        assert_eq!(
            tc.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01"
        );
        assert_eq!(tc.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        let tc = TraceContext::new(Some("garbage"), [1; 8], [2; 16]);
        assert_eq!(
            tc.header(),
            "00-02020202020202020202020202020202-0101010101010101-01"
        );
        assert_eq!(tc.parent_id, None);
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert!(
            TraceContext::new(Some(zero), [1; 8], [2; 16])
                .header()
                .starts_with("00-0202")
        );
    }

    #[test]
    fn forwarded_chain_is_replaced_unless_trusted() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        set_forwarded(&mut h, Some("10.0.0.1"), "http", Some("api.example"), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-host"], "api.example");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        set_forwarded(&mut h, Some("10.0.0.1"), "http", None, true);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.1");
    }

    #[test]
    fn request_id_validation() {
        assert!(valid_request_id("abc-123_x.y"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
