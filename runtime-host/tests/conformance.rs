//! The conformance scenarios against `edgegate serve` running the embedded
//! edge component.

mod support;

use edgegate_conformance::{Running, Target};
use support::Gateway;

/// `edgegate serve` on loopback ports.
struct Host;

struct Started(Gateway);

impl Running for Started {
    fn base_url(&self) -> String {
        format!("http://{}", self.0.listen)
    }
}

impl Target for Host {
    fn name(&self) -> &'static str {
        "runtime-host"
    }

    fn start(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running> {
        let builder = env
            .iter()
            .fold(Gateway::builder(config), |b, (k, v)| b.env(k, v));
        Box::new(Started(builder.start()))
    }
}

edgegate_conformance::conformance!(Host);
