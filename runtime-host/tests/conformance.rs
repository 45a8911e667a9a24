//! The conformance scenarios against `edgegate serve` running the embedded
//! edge component: on every core the test may use, and on one core (as the
//! benchmarks and many containers run it).

mod support;

use edgegate_conformance::{Running, Target};
use support::{Gateway, TempDir, private_data_dir};

/// `edgegate serve` on loopback ports.
struct Host {
    one_core: bool,
}

/// The gateway and its own object storage (removed after it stops).
struct Started(Gateway, #[allow(dead_code)] TempDir);

impl Running for Started {
    fn base_url(&self) -> String {
        format!("http://{}", self.0.listen)
    }
}

impl Target for Host {
    fn name(&self) -> &'static str {
        if self.one_core {
            "runtime-host on one core"
        } else {
            "runtime-host"
        }
    }

    fn start(&self, config: &str, env: &[(&str, &str)]) -> Box<dyn Running> {
        let dir = private_data_dir();
        let mut builder = env
            .iter()
            .fold(Gateway::builder(config), |b, (k, v)| b.env(k, v))
            .data_dir(dir.path());
        if self.one_core {
            builder = builder.one_core();
        }
        Box::new(Started(builder.start(), dir))
    }

    fn supports_durable_objects(&self) -> bool {
        true
    }
}

edgegate_conformance::conformance!(Host { one_core: false });

mod one_core {
    use super::Host;

    edgegate_conformance::conformance!(Host { one_core: true });
}
