//! Route matching on a 50-route table and path normalisation:
//! `cargo bench -p edgegate-bench --bench router`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgegate_config::Config;
use edgegate_router::{Match, Router, normalize_path};

fn table() -> Router {
    let mut text =
        String::from("[[upstreams]]\nname = \"u\"\ntargets = [{ url = \"http://127.0.0.1:1\" }]\n");
    for i in 0..20 {
        text += &format!(
            "[[routes]]\nname = \"p{i}\"\nmatch = {{ path_prefix = \"/svc{i}\" }}\nupstream = \"u\"\n"
        );
        text += &format!(
            "[[routes]]\nname = \"t{i}\"\nmatch = {{ path = \"/svc{i}/items/{{id}}\", methods = [\"GET\"] }}\nupstream = \"u\"\n"
        );
    }
    for i in 0..10 {
        text += &format!(
            "[[routes]]\nname = \"h{i}\"\nmatch = {{ host = \"api{i}.example.com\", path = \"/status\" }}\nupstream = \"u\"\n"
        );
    }
    let config = Config::parse(&text).expect("bench config");
    Router::new(&config.routes)
}

fn find(c: &mut Criterion) {
    let router = table();
    let mut group = c.benchmark_group("router_find_50_routes");
    group.throughput(Throughput::Elements(1));
    for (name, host, path) in [
        ("prefix", "gw.example.com", "/svc17/anything/else"),
        ("template", "gw.example.com", "/svc17/items/42"),
        ("host", "api7.example.com", "/status"),
        ("not_found", "gw.example.com", "/nothing/here"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                matches!(
                    router.find(Some(black_box(host)), "GET", black_box(path)),
                    Match::Found(_)
                )
            })
        });
    }
    group.bench_function("normalize_path", |b| {
        b.iter(|| normalize_path(black_box("/svc17//items/42")).map(|p| p.len()))
    });
    group.finish();
}

criterion_group!(benches, find);
criterion_main!(benches);
