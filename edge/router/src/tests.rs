use std::borrow::Cow;

use edgegate_config::{AuthMode, Route};

use super::*;

/// A route; `path` with a leading `~` is a `path_prefix`.
fn route(host: Option<&str>, path: &str, methods: &[&str]) -> Route {
    let (path, path_prefix) = match path.strip_prefix('~') {
        Some(prefix) => (None, Some(prefix.to_owned())),
        None => (Some(path.to_owned()), None),
    };
    Route {
        name: format!("{host:?} {path:?} {path_prefix:?} {methods:?}"),
        match_: edgegate_config::Match {
            host: host.map(str::to_owned),
            path,
            path_prefix,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        },
        upstream: Some("u".into()),
        strip_prefix: None,
        rewrite: None,
        auth: AuthMode::None,
        roles: Vec::new(),
        scopes: Vec::new(),
        rate_limits: Vec::new(),
        max_body_bytes: 1024,
        cors: None,
        websocket: None,
        hub: None,
        timeout_ms: None,
    }
}

fn paths(routes: &[(&str, &[&str])]) -> Router {
    let routes: Vec<Route> = routes.iter().map(|(p, m)| route(None, p, m)).collect();
    Router::new(&routes)
}

/// Index of the route taking `GET path` with no host, or None.
fn index(router: &Router, host: Option<&str>, path: &str) -> Option<usize> {
    match router.find(host, "GET", path) {
        Match::Found(m) => Some(m.index),
        _ => None,
    }
}

fn found<'p>(m: Match<'p>) -> RouteMatch<'p> {
    match m {
        Match::Found(m) => m,
        other => panic!("expected a match, got {other:?}"),
    }
}

#[test]
fn exact_beats_template_beats_prefix() {
    let r = paths(&[
        ("~/", &[]),
        ("~/users", &[]),
        ("/users/{id}", &[]),
        ("/users/me", &[]),
    ]);
    assert_eq!(index(&r, None, "/users/me"), Some(3));
    assert_eq!(index(&r, None, "/users/42"), Some(2));
    assert_eq!(index(&r, None, "/users/42/posts"), Some(1));
    assert_eq!(index(&r, None, "/users"), Some(1));
    assert_eq!(index(&r, None, "/other"), Some(0));
}

#[test]
fn templates_with_more_literal_segments_first() {
    let r = paths(&[
        ("/{a}/{b}/{c}", &[]),
        ("/users/{id}/{sub}", &[]),
        ("/users/{id}/posts", &[]),
    ]);
    assert_eq!(index(&r, None, "/users/1/posts"), Some(2));
    assert_eq!(index(&r, None, "/users/1/likes"), Some(1));
    assert_eq!(index(&r, None, "/teams/1/posts"), Some(0));
}

#[test]
fn templates_with_equal_literals_sort_by_segment_count() {
    let r = paths(&[("/a/{x}", &[]), ("/a/{x}/{y}", &[]), ("/{x}", &[])]);
    let order: Vec<usize> = r.entries.iter().map(|e| e.index).collect();
    assert_eq!(order, [1, 0, 2]);
}

#[test]
fn longest_prefix_first() {
    let r = paths(&[("~/api", &[]), ("~/api/v2/admin", &[]), ("~/api/v2", &[])]);
    assert_eq!(index(&r, None, "/api/v2/admin/x"), Some(1));
    assert_eq!(index(&r, None, "/api/v2/users"), Some(2));
    assert_eq!(index(&r, None, "/api/v1"), Some(0));
}

#[test]
fn prefix_matches_on_segment_boundaries() {
    let r = paths(&[("~/api", &[])]);
    for path in ["/api", "/api/", "/api/x", "/api/x/y"] {
        assert_eq!(index(&r, None, path), Some(0), "{path}");
    }
    for path in ["/apix", "/ap", "/", "/x/api"] {
        assert_eq!(index(&r, None, path), None, "{path}");
    }
}

#[test]
fn prefix_trailing_slash_is_ignored() {
    let r = paths(&[("~/api/", &[])]);
    assert_eq!(index(&r, None, "/api"), Some(0));
    assert_eq!(index(&r, None, "/api/x"), Some(0));
    assert_eq!(index(&r, None, "/apix"), None);
}

#[test]
fn root_prefix_matches_everything() {
    let r = paths(&[("~/", &[])]);
    for path in ["/", "/a", "/a/b/c", "//x"] {
        assert_eq!(index(&r, None, path), Some(0), "{path}");
    }
}

#[test]
fn exact_path_is_exact() {
    let r = paths(&[("/users", &[])]);
    assert_eq!(index(&r, None, "/users"), Some(0));
    for path in ["/users/", "/Users", "/users/x", "/user"] {
        assert_eq!(index(&r, None, path), None, "{path}");
    }
}

#[test]
fn template_param_is_one_non_empty_segment() {
    let r = paths(&[("/users/{id}", &[])]);
    let m = found(r.find(None, "GET", "/users/42"));
    assert_eq!(m.params.get("id"), Some("42"));
    assert_eq!(m.params.get("other"), None);
    for path in [
        "/users",
        "/users/",
        "/users//",
        "/users/1/",
        "/users/1/x",
        "/Users/1",
    ] {
        assert_eq!(index(&r, None, path), None, "{path}");
    }
}

#[test]
fn params_are_raw_segments_in_template_order() {
    let r = paths(&[("/orgs/{org}/repos/{repo}", &[])]);
    let m = found(r.find(None, "GET", "/orgs/a%2Fb/repos/caf%C3%A9"));
    assert_eq!(m.params.get("org"), Some("a%2Fb"));
    assert_eq!(m.params.get("repo"), Some("caf%C3%A9"));
    let pairs: Vec<_> = m.params.iter().collect();
    assert_eq!(pairs, [("org", "a%2Fb"), ("repo", "caf%C3%A9")]);
    assert_eq!(m.params.len(), 2);
    assert_eq!(
        format!("{:?}", m.params),
        r#"{"org": "a%2Fb", "repo": "caf%C3%A9"}"#
    );
}

#[test]
fn many_params_spill_to_the_heap() {
    let r = paths(&[("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", &[])]);
    let m = found(r.find(None, "GET", "/1/2/3/4/5/6/7/8"));
    assert_eq!(m.params.len(), 8);
    assert_eq!(m.params.get("a"), Some("1"));
    assert_eq!(m.params.get("f"), Some("6"));
    assert_eq!(m.params.get("h"), Some("8"));
}

#[test]
fn non_template_match_has_no_params() {
    let r = paths(&[("~/api", &[])]);
    let m = found(r.find(None, "GET", "/api/x"));
    assert!(m.params.is_empty());
    assert_eq!(m.params.get("x"), None);
}

#[test]
fn exact_host_beats_wildcard_beats_none() {
    let routes = [
        route(None, "/x", &[]),
        route(Some("*.example.com"), "/x", &[]),
        route(Some("api.example.com"), "/x", &[]),
    ];
    let r = Router::new(&routes);
    assert_eq!(index(&r, Some("api.example.com"), "/x"), Some(2));
    assert_eq!(index(&r, Some("www.example.com"), "/x"), Some(1));
    assert_eq!(index(&r, Some("example.com"), "/x"), Some(0));
    assert_eq!(index(&r, Some("other.org"), "/x"), Some(0));
    assert_eq!(index(&r, None, "/x"), Some(0));
}

#[test]
fn host_class_outranks_path_specificity() {
    let routes = [
        route(None, "/users/me", &[]),
        route(Some("api.example.com"), "~/", &[]),
    ];
    let r = Router::new(&routes);
    assert_eq!(index(&r, Some("api.example.com"), "/users/me"), Some(1));
    assert_eq!(index(&r, Some("www.example.com"), "/users/me"), Some(0));
}

#[test]
fn host_route_falls_back_when_its_path_does_not_match() {
    let routes = [
        route(Some("api.example.com"), "~/v1", &[]),
        route(None, "~/", &[]),
    ];
    let r = Router::new(&routes);
    assert_eq!(index(&r, Some("api.example.com"), "/v1/x"), Some(0));
    assert_eq!(index(&r, Some("api.example.com"), "/v2/x"), Some(1));
}

#[test]
fn wildcard_needs_at_least_one_label() {
    let r = Router::new(&[route(Some("*.example.com"), "~/", &[])]);
    for host in ["a.example.com", "a.b.example.com", "A.Example.COM"] {
        assert_eq!(index(&r, Some(host), "/"), Some(0), "{host}");
    }
    for host in [
        "example.com",
        ".example.com",
        "a..example.com",
        "badexample.com",
        "a.example.com.evil",
        "a.example.org",
    ] {
        assert_eq!(index(&r, Some(host), "/"), None, "{host}");
    }
    assert_eq!(index(&r, None, "/"), None);
}

#[test]
fn longer_wildcard_wins() {
    let routes = [
        route(Some("*.example.com"), "~/", &[]),
        route(Some("*.api.example.com"), "~/", &[]),
    ];
    let r = Router::new(&routes);
    assert_eq!(index(&r, Some("eu.api.example.com"), "/"), Some(1));
    assert_eq!(index(&r, Some("api.example.com"), "/"), Some(0));
}

#[test]
fn host_route_never_matches_another_host() {
    let r = Router::new(&[route(Some("api.example.com"), "~/", &[])]);
    assert_eq!(index(&r, Some("api.example.com"), "/"), Some(0));
    for host in [
        "www.example.com",
        "api.example.com.evil",
        "xapi.example.com",
        "",
    ] {
        assert_eq!(index(&r, Some(host), "/"), None, "{host}");
    }
    assert_eq!(index(&r, None, "/"), None);
}

#[test]
fn host_port_case_and_trailing_dot_are_ignored() {
    let routes = [
        route(Some("API.Example.com"), "~/", &[]),
        route(Some("[::1]"), "~/", &[]),
        route(Some("127.0.0.1"), "~/", &[]),
    ];
    let r = Router::new(&routes);
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com:8443",
        "api.example.com.",
        "api.example.com.:80",
        "api.example.com:",
    ] {
        assert_eq!(index(&r, Some(host), "/"), Some(0), "{host}");
    }
    assert_eq!(index(&r, Some("[::1]:8080"), "/"), Some(1));
    assert_eq!(index(&r, Some("[::1]"), "/"), Some(1));
    assert_eq!(index(&r, Some("127.0.0.1:80"), "/"), Some(2));
    assert_eq!(index(&r, Some("api.example.com:x"), "/"), None);
}

#[test]
fn configured_host_port_is_ignored_too() {
    let r = Router::new(&[route(Some("api.example.com:8443"), "~/", &[])]);
    assert_eq!(index(&r, Some("api.example.com"), "/"), Some(0));
    assert_eq!(index(&r, Some("api.example.com:80"), "/"), Some(0));
}

#[test]
fn method_filter_and_405_union() {
    let r = paths(&[
        ("/items", &["POST"]),
        ("/items", &["DELETE", "GET"]),
        ("~/items", &["PUT"]),
        ("/other", &["GET"]),
    ]);
    assert_eq!(found(r.find(None, "POST", "/items")).index, 0);
    assert_eq!(found(r.find(None, "DELETE", "/items")).index, 1);
    assert_eq!(found(r.find(None, "PUT", "/items")).index, 2);
    assert_eq!(
        r.find(None, "PATCH", "/items"),
        Match::MethodNotAllowed {
            allowed: vec!["GET", "HEAD", "POST", "PUT", "DELETE"]
        }
    );
    // Only routes matching host and path count towards Allow.
    assert_eq!(
        r.find(None, "PATCH", "/items/1"),
        Match::MethodNotAllowed {
            allowed: vec!["PUT"]
        }
    );
    assert_eq!(r.find(None, "GET", "/nothing"), Match::NotFound);
}

#[test]
fn method_mismatch_falls_through_to_a_less_specific_route() {
    let r = paths(&[("~/users", &[]), ("/users/me", &["GET"])]);
    assert_eq!(found(r.find(None, "GET", "/users/me")).index, 1);
    assert_eq!(found(r.find(None, "DELETE", "/users/me")).index, 0);
}

#[test]
fn empty_methods_take_any_method() {
    let r = paths(&[("~/", &[])]);
    for method in ["GET", "POST", "OPTIONS", "PROPFIND", "get"] {
        assert_eq!(found(r.find(None, method, "/")).index, 0, "{method}");
    }
}

#[test]
fn unknown_and_lowercase_methods_only_reach_any_method_routes() {
    let r = paths(&[("/a", &["GET"])]);
    for method in ["get", "PROPFIND", ""] {
        assert_eq!(
            r.find(None, method, "/a"),
            Match::MethodNotAllowed {
                allowed: vec!["GET", "HEAD"]
            },
            "{method}"
        );
    }
}

#[test]
fn head_matches_a_get_route() {
    let r = paths(&[("/a", &["GET"]), ("/b", &["HEAD"]), ("/c", &["POST"])]);
    assert_eq!(found(r.find(None, "HEAD", "/a")).index, 0);
    assert_eq!(found(r.find(None, "HEAD", "/b")).index, 1);
    assert!(matches!(
        r.find(None, "GET", "/b"),
        Match::MethodNotAllowed { allowed } if allowed == ["HEAD"]
    ));
    assert!(matches!(
        r.find(None, "HEAD", "/c"),
        Match::MethodNotAllowed { allowed } if allowed == ["POST"]
    ));
}

#[test]
fn ties_keep_configuration_order() {
    let r = paths(&[("~/a", &[]), ("~/a", &[]), ("/x/{p}", &[]), ("/x/{q}", &[])]);
    assert_eq!(index(&r, None, "/a/b"), Some(0));
    let m = found(r.find(None, "GET", "/x/1"));
    assert_eq!(m.index, 2);
    assert_eq!(m.params.get("p"), Some("1"));
    assert_eq!(m.params.get("q"), None);
}

#[test]
fn empty_router_and_unvalidated_routes_never_match() {
    assert_eq!(Router::default().find(None, "GET", "/"), Match::NotFound);
    let mut no_path = route(None, "/", &[]);
    no_path.match_.path = None;
    let r = Router::new(&[no_path]);
    assert_eq!(r.find(None, "GET", "/"), Match::NotFound);
}

fn upstream(strip_prefix: Option<&str>, rewrite: Option<&str>, m: &str, path: &str) -> String {
    let mut r = route(None, m, &[]);
    r.strip_prefix = strip_prefix.map(str::to_owned);
    r.rewrite = rewrite.map(str::to_owned);
    let router = Router::new(std::slice::from_ref(&r));
    let matched = found(router.find(None, "GET", path));
    upstream_path(&r, &matched, path)
}

#[test]
fn strip_prefix_on_segment_boundary() {
    assert_eq!(
        upstream(Some("/api"), None, "~/api", "/api/users"),
        "/users"
    );
    assert_eq!(upstream(Some("/api"), None, "~/api", "/api"), "/");
    assert_eq!(upstream(Some("/api"), None, "~/api", "/api/"), "/");
    assert_eq!(upstream(Some("/api/"), None, "~/api", "/api/x/y"), "/x/y");
    assert_eq!(upstream(Some("/"), None, "~/", "/x"), "/x");
    assert_eq!(upstream(Some("/ap"), None, "~/", "/api/x"), "/api/x");
    assert_eq!(upstream(Some("/api"), None, "/api/{id}", "/api/7"), "/7");
    assert_eq!(upstream(None, None, "~/api", "/api/x"), "/api/x");
}

#[test]
fn rewrite_expands_params() {
    assert_eq!(
        upstream(None, Some("/v2/users/{id}"), "/users/{id}", "/users/a%20b"),
        "/v2/users/a%20b"
    );
    assert_eq!(
        upstream(Some("/users"), Some("/u/{id}/x"), "/users/{id}", "/users/9"),
        "/u/9/x"
    );
    assert_eq!(upstream(None, Some("/fixed"), "~/old", "/old/x"), "/fixed");
}

#[test]
fn expand_fills_placeholders() {
    let params: Params = [("room", "lobby"), ("id", "7")].into_iter().collect();
    assert_eq!(expand("room-{room}", &params), "room-lobby");
    assert_eq!(expand("/v2/{id}/{room}/{id}", &params), "/v2/7/lobby/7");
    assert_eq!(expand("/static", &params), "/static");
    assert_eq!(expand("", &params), "");
    assert_eq!(expand("/{missing}/{id}", &params), "/{missing}/7");
    assert_eq!(expand("/{id}/{open", &params), "/7/{open");
    assert_eq!(expand("/{id}", &Params::new()), "/{id}");
}

#[test]
fn normalize_accepts_and_collapses() {
    assert_eq!(normalize_path("/"), Ok(Cow::Borrowed("/")));
    assert!(matches!(
        normalize_path("/a/b/"),
        Ok(Cow::Borrowed("/a/b/"))
    ));
    assert_eq!(normalize_path("//a///b//").as_deref(), Ok("/a/b/"));
    assert_eq!(normalize_path("/a//").as_deref(), Ok("/a/"));
    for ok in [
        "/...",
        "/a.b/.c/d.",
        "/%2e%2e%2e",
        "/%2ex",
        "/a%2Fb",
        "/caf%C3%A9",
        "/%5",
        "/%0",
    ] {
        assert_eq!(normalize_path(ok).as_deref(), Ok(ok), "{ok}");
    }
}

#[test]
fn normalize_refuses() {
    use PathError::*;
    for (path, err) in [
        ("", NotAbsolute),
        ("*", NotAbsolute),
        ("a/b", NotAbsolute),
        ("http://x/a", NotAbsolute),
        ("/a/../b", DotSegment),
        ("/a/./b", DotSegment),
        ("/..", DotSegment),
        ("/.", DotSegment),
        ("/a/%2e%2e/b", DotSegment),
        ("/a/%2E%2e", DotSegment),
        ("/a/.%2e/b", DotSegment),
        ("/a/%2e/b", DotSegment),
        ("//../a", DotSegment),
        ("/a\0b", Nul),
        ("/a%00b", Nul),
        ("/a\\b", Backslash),
        ("/a%5cb", Backslash),
        ("/a%5C..%5Cb", Backslash),
    ] {
        assert_eq!(normalize_path(path), Err(err), "{path:?}");
    }
    assert_eq!(DotSegment.to_string(), "path has a . or .. segment");
}

#[test]
fn router_and_matches_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Router>();
    send_sync::<Match<'static>>();
}

/// `normalize_path` against a plain statement of the rule: percent-decode
/// each segment once; refuse `.`, `..`, NUL and backslash; collapse `//`.
mod normalize_model {
    use proptest::prelude::*;

    use super::*;

    /// Pieces that combine into every spelling the rule is about.
    const PIECES: [&str; 16] = [
        "", ".", "..", "...", "%2e", "%2E", "%2", "e", "a", "%00", "%5c", "%5C", "\\", "%", "%25",
        "\0",
    ];

    fn decode_once(segment: &str) -> Vec<u8> {
        let bytes = segment.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        out
    }

    fn expected(path: &str) -> Result<String, PathError> {
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let decoded: Vec<Vec<u8>> = path.split('/').map(decode_once).collect();
        if decoded.iter().any(|s| s.contains(&0)) {
            return Err(PathError::Nul);
        }
        if decoded.iter().any(|s| s.contains(&b'\\')) {
            return Err(PathError::Backslash);
        }
        if decoded.iter().any(|s| s == b"." || s == b"..") {
            return Err(PathError::DotSegment);
        }
        let mut collapsed = path.to_string();
        while collapsed.contains("//") {
            collapsed = collapsed.replace("//", "/");
        }
        Ok(collapsed)
    }

    proptest! {
        #[test]
        fn follows_the_rule(
            absolute in any::<bool>(),
            segments in prop::collection::vec(
                prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..3).prop_map(|p| p.concat()),
                0..6,
            ),
        ) {
            let path = format!("{}{}", if absolute { "/" } else { "" }, segments.join("/"));
            let got = normalize_path(&path).map(Cow::into_owned);
            let want = expected(&path);
            // Which reason is named when several apply is the function's
            // choice; that the path is refused is not.
            match (&got, &want) {
                (Ok(g), Ok(w)) => {
                    prop_assert_eq!(g, w);
                    prop_assert_eq!(normalize_path(g), Ok(Cow::Borrowed(g.as_str())));
                }
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "{:?}: got {:?}, want {:?}", path, got, want),
            }
        }
    }
}
