//! CORS: preflights answered at the edge, response headers for actual requests.

use http::header::{HeaderMap, HeaderValue};

/// A compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: String,
    headers: Vec<String>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// Outcome of a preflight check.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Allowed: these headers go on the 204.
    Allowed(HeaderMap),
    /// The origin, method or a header is not allowed.
    Refused(&'static str),
}

impl Cors {
    /// Compiles a policy; `route_methods` are the default allowed methods.
    pub fn new(c: &edgegate_config::Cors, route_methods: &[String]) -> Cors {
        let methods = if !c.allow_methods.is_empty() {
            c.allow_methods.join(", ")
        } else if !route_methods.is_empty() {
            route_methods.join(", ")
        } else {
            "GET, HEAD, POST".into()
        };
        Cors {
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            origins: c
                .allow_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            methods,
            headers: c
                .allow_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose: (!c.expose_headers.is_empty())
                .then(|| HeaderValue::from_str(&c.expose_headers.join(", ")).ok())
                .flatten(),
            credentials: c.allow_credentials,
            max_age: c.max_age_s.map(HeaderValue::from),
        }
    }

    /// Whether `origin` may use this route.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn allow_origin_value(&self, origin: &str) -> Option<HeaderValue> {
        if self.any_origin && !self.credentials {
            Some(HeaderValue::from_static("*"))
        } else {
            HeaderValue::from_str(origin).ok()
        }
    }

    /// Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Preflight {
        if !self.allows_origin(origin) {
            return Preflight::Refused("origin not allowed");
        }
        if !self
            .methods
            .split(", ")
            .any(|m| m.eq_ignore_ascii_case(method))
        {
            return Preflight::Refused("method not allowed");
        }
        let asked: Vec<String> = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if asked
            .iter()
            .any(|h| !self.headers.contains(h) && !safelisted(h))
        {
            return Preflight::Refused("request header not allowed");
        }
        let mut out = HeaderMap::new();
        if let Some(v) = self.allow_origin_value(origin) {
            out.insert("access-control-allow-origin", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.methods) {
            out.insert("access-control-allow-methods", v);
        }
        if !asked.is_empty()
            && let Ok(v) = HeaderValue::from_str(&asked.join(", "))
        {
            out.insert("access-control-allow-headers", v);
        }
        if self.credentials {
            out.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.max_age {
            out.insert("access-control-max-age", v.clone());
        }
        out.insert("vary", HeaderValue::from_static("origin"));
        Preflight::Allowed(out)
    }

    /// Adds CORS headers to an actual response when the origin is allowed.
    pub fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        let Some(origin) = origin.filter(|o| self.allows_origin(o)) else {
            return;
        };
        if let Some(v) = self.allow_origin_value(origin) {
            headers.insert("access-control-allow-origin", v);
        }
        if self.credentials {
            headers.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose {
            headers.insert("access-control-expose-headers", v.clone());
        }
        headers.append("vary", HeaderValue::from_static("origin"));
    }
}

/// CORS-safelisted request headers never need to be listed.
fn safelisted(h: &str) -> bool {
    matches!(
        h,
        "accept" | "accept-language" | "content-language" | "content-type"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(credentials: bool, origins: &[&str]) -> Cors {
        Cors::new(
            &edgegate_config::Cors {
                allow_origins: origins.iter().map(|s| s.to_string()).collect(),
                allow_methods: vec!["GET".into(), "POST".into()],
                allow_headers: vec!["authorization".into()],
                allow_credentials: credentials,
                max_age_s: Some(600),
                ..Default::default()
            },
            &[],
        )
    }

    #[test]
    fn preflight_allows_listed_origin_method_and_headers() {
        let p = policy(true, &["https://app.example"]);
        let Preflight::Allowed(h) = p.preflight(
            "https://app.example",
            "POST",
            Some("Authorization, content-type"),
        ) else {
            panic!("refused")
        };
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(
            p.preflight("https://evil.example", "GET", None),
            Preflight::Refused("origin not allowed")
        );
        assert_eq!(
            p.preflight("https://app.example", "DELETE", None),
            Preflight::Refused("method not allowed")
        );
        assert_eq!(
            p.preflight("https://app.example", "GET", Some("x-other")),
            Preflight::Refused("request header not allowed")
        );
    }

    #[test]
    fn wildcard_without_credentials_answers_star() {
        let p = policy(false, &["*"]);
        let mut h = HeaderMap::new();
        p.apply(Some("https://any.example"), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        let mut h = HeaderMap::new();
        policy(false, &["https://a.example"]).apply(Some("https://b.example"), &mut h);
        assert!(h.is_empty());
    }
}
