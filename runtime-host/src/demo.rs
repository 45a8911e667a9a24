//! The built-in demo upstream: answers every request with what it received,
//! so users see what the gateway forwarded.

use std::collections::BTreeMap;

use bytes::Bytes;
use edgegate_config::Config;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::json;

use crate::listener::{self, ShutdownSignal};

/// Where the demo listens when the configuration does not say otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9001";

/// The demo's address: the loopback `http` target of the upstream named
/// `demo` when there is one (the default configuration's is
/// [`DEFAULT_ADDR`]), else [`DEFAULT_ADDR`].
pub fn address(config: &Config) -> String {
    config
        .upstreams
        .iter()
        .find(|u| u.name == "demo")
        .and_then(|u| u.targets.first())
        .and_then(|t| t.url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|authority| authority.starts_with("127.") || authority.starts_with("localhost:"))
        .map_or_else(|| DEFAULT_ADDR.to_string(), str::to_string)
}

/// Serves the demo until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, shutdown: ShutdownSignal) {
    listener::serve(
        listener,
        |request, _peer| {
            let response = echo(&request);
            async move { response }
        },
        shutdown,
    )
    .await;
}

/// `{"method","path","query","headers"}` of `request` as JSON.
pub fn echo<B>(request: &Request<B>) -> Response<Full<Bytes>> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let body = json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query().unwrap_or(""),
        "headers": headers,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_method_path_query_and_lowercase_headers() {
        let request = Request::get("/a/b?x=1")
            .header("X-Thing", "1")
            .header("x-thing", "2")
            .body(())
            .unwrap();
        let response = echo(&request);
        let body = response.into_body();
        let bytes = futures_free_collect(body);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["headers"]["x-thing"], "1, 2");
    }

    #[test]
    fn address_follows_the_demo_upstream() {
        let config = Config::parse(edgegate_config::DEFAULT_CONFIG).unwrap();
        assert_eq!(address(&config), "127.0.0.1:9001");
        let custom = Config::parse(
            "[[upstreams]]\nname = \"demo\"\ntargets = [{ url = \"http://127.0.0.1:4567\" }]",
        )
        .unwrap();
        assert_eq!(address(&custom), "127.0.0.1:4567");
    }

    fn futures_free_collect(body: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(body.collect()).unwrap().to_bytes()
    }
}
