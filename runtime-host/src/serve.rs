//! `edgegate serve`: validate, bind, compile, serve, stop on a signal.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access::AccessLog;
use crate::admin::{self, Admin};
use crate::cli::ServeArgs;
use crate::engine::{self, Origin};
use crate::health::Health;
use crate::objects::{self, Objects};
use crate::otlp::Spans;
use crate::outbound::Outbound;
use crate::pool::{self, Guests, Limits};
use crate::reload::{self, Generation, Live};
use crate::settings::{Loaded, ServeSettings, Source};
use crate::{banner, demo, linker, listener, server};

/// The edge component built from `edge/component`.
static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("EDGE_COMPONENT_WASM"));
/// The Durable Object component built from `durable-objects/component`.
static EMBEDDED_OBJECTS: &[u8] = include_bytes!(env!("OBJECTS_COMPONENT_WASM"));

/// How long open WebSockets get to close at shutdown.
const SOCKET_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `serve`; exit code 2 for an invalid configuration.
pub fn run(args: ServeArgs) -> ExitCode {
    let started = Instant::now();
    let loaded = match Loaded::for_serve(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = ServeSettings::new(&loaded.config, &args);
    if same_address(&settings.listen, &settings.admin) {
        eprintln!(
            "error: server.admin: must differ from the public listen address {}",
            settings.listen
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(loaded, settings, args, started));
    // Blocking compile threads must not hold up exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    loaded: Loaded,
    settings: ServeSettings,
    args: ServeArgs,
    started: Instant,
) -> anyhow::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    let admin = Admin::new();
    {
        let admin = Arc::clone(&admin);
        let grace = settings.shutdown_grace;
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                grace_s = grace.as_secs(),
                "shutting down: finishing requests in flight"
            );
            admin.set_draining();
            let _ = stop.send(true);
        });
    }

    let admin_listener = bind(&settings.admin, "server.admin").await?;
    let public_listener = bind(&settings.listen, "server.listen").await?;
    let admin_addr = admin_listener.local_addr()?;
    let public_addr = public_listener.local_addr()?;
    // The admin listener outlives the drain, so probes see `/readyz` 503
    // while requests in flight finish.
    let (admin_stop, admin_shutdown) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&admin),
        admin_shutdown,
    ));

    let demo_addr = if args.demo || loaded.source == Source::Default {
        start_demo(&loaded, shutdown.clone()).await
    } else {
        None
    };

    let wasm = match &args.component {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("reading the component {}", path.display()))?,
        None => EMBEDDED_COMPONENT.to_vec(),
    };
    let objects_wasm = match &args.objects_component {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("reading the objects component {}", path.display()))?,
        None => EMBEDDED_OBJECTS.to_vec(),
    };
    let compile = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || prepare(&wasm, &settings))
    };
    let compile_objects = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || prepare_objects(&objects_wasm, &settings))
    };
    let mut waiting = shutdown.clone();
    let (pre, objects_pre) = tokio::select! {
        prepared = async { (compile.await, compile_objects.await) } => (
            prepared.0.context("compiling the component")??,
            prepared.1.context("compiling the objects component")??,
        ),
        _ = listener::stopped(&mut waiting) => return Ok(()),
    };

    release_compiler_memory();
    let objects = Objects::start(
        objects_pre,
        objects::Settings {
            dir: settings.objects_dir.clone(),
            limits: objects::Limits {
                memory: settings.max_instance_memory,
                cpu: settings.cpu_limit,
            },
            idle_timeout: settings.object_idle_timeout,
            socket_idle_timeout: settings.websocket_idle_timeout,
        },
    );
    let redis = crate::redis_link::start(loaded.redis.clone(), &objects);
    let outbound = Arc::new(
        Outbound::new(Some(Arc::clone(&objects)))
            .context("setting up TLS for outbound requests")?
            .with_redis(redis),
    );
    let limits = Limits {
        memory: settings.max_instance_memory,
        cpu: settings.cpu_limit,
        max_requests: settings.instance_max_requests,
    };
    let spans = loaded.config.server.otlp.as_ref().map(|otlp| {
        Spans::start(
            &otlp.endpoint,
            &otlp.service_name,
            std::time::Duration::from_millis(otlp.timeout_ms),
        )
    });
    let access = AccessLog::new(loaded.config.gateway.access_log, spans.clone());
    let guests = Guests::new(
        pre,
        reload::guest_env(&loaded),
        outbound,
        limits,
        Arc::clone(&access),
    );
    let live = Live::new(Generation {
        guests: Arc::new(guests),
        health: Health::start(&loaded.config, shutdown.clone()),
    });
    admin.set_ready(Arc::clone(&live));
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    eprint!(
        "{}",
        banner::render(
            &loaded.config,
            public_addr,
            admin_addr,
            demo_addr,
            loaded.source == Source::Default,
        )
    );

    // Sockets close (1001) as soon as the shutdown starts, beside the
    // listener letting requests in flight finish.
    let closing = {
        let objects = Arc::clone(&objects);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            listener::stopped(&mut stop).await;
            objects.shutdown(SOCKET_CLOSE_GRACE).await;
        })
    };
    let config_file = match &loaded.source {
        Source::File(path) => Some(path.clone()),
        _ => None,
    };
    tokio::spawn(reload::watch(
        config_file,
        loaded,
        Arc::clone(&live),
        access,
        shutdown.clone(),
    ));
    server::serve(
        public_listener,
        live,
        objects,
        settings.shutdown_grace,
        shutdown,
    )
    .await;
    let _ = closing.await;
    if let Some(spans) = spans {
        spans.flush(std::time::Duration::from_secs(2)).await;
    }
    let _ = admin_stop.send(true);
    let _ = admin_task.await;
    Ok(())
}

/// Compiles (or loads from cache) and links the component.
fn prepare(
    wasm: &[u8],
    settings: &ServeSettings,
) -> anyhow::Result<wasmtime_wasi_http::p2::bindings::ProxyPre<pool::HostState>> {
    let started = Instant::now();
    let engine = engine::new_engine(settings.max_instance_memory)?;
    engine::start_epoch_ticker(&engine);
    let (component, origin) =
        engine::load_component(&engine, wasm, settings.cache_dir.as_deref(), "edge")?;
    let how = match origin {
        Origin::Cache => "loaded from cache",
        Origin::Compiled => "compiled",
    };
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        cache = ?settings.cache_dir,
        "edge component {how}"
    );
    Ok(linker::proxy_pre(&component)?)
}

/// Compiles (or loads from cache) and links the Durable Object component
/// on its own engine.
fn prepare_objects(wasm: &[u8], settings: &ServeSettings) -> anyhow::Result<objects::Prepared> {
    let started = Instant::now();
    let engine = engine::new_objects_engine()?;
    engine::start_epoch_ticker(&engine);
    let (component, origin) =
        engine::load_component(&engine, wasm, settings.cache_dir.as_deref(), "objects")?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ?origin,
        "objects component ready"
    );
    Ok(objects::Prepared::new(&component)?)
}

/// Compiling the components leaves tens of MiB of freed heap that the
/// allocator would keep for a while; hand it back now so a cold start idles
/// as small as a warm one.
fn release_compiler_memory() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena returns its unused
    // dirty pages.
    // SAFETY: a purge takes and returns no value (null pointers, length 0)
    // and is thread-safe.
    let purged = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if purged != 0 {
        tracing::debug!(error = purged, "returning the compiler's memory failed");
    }
}

async fn start_demo(loaded: &Loaded, shutdown: watch::Receiver<bool>) -> Option<SocketAddr> {
    let addr = demo::address(&loaded.config);
    match TcpListener::bind(&addr).await {
        Ok(listener) => {
            let local = listener.local_addr().ok();
            tokio::spawn(demo::serve(listener, shutdown));
            local
        }
        Err(e) => {
            tracing::warn!("demo upstream not started on {addr}: {e}");
            None
        }
    }
}

async fn bind(addr: &str, key: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) => bail!("{key}: cannot listen on {addr}: {e}"),
    }
}

/// Whether two listener addresses name the same socket.
/// Port 0 (any free port) never clashes.
fn same_address(a: &str, b: &str) -> bool {
    let first = |s: &str| s.to_socket_addrs().ok().and_then(|mut it| it.next());
    match (first(a), first(b)) {
        (Some(x), Some(y)) => x == y && x.port() != 0,
        _ => a == b,
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_address_compares_sockets() {
        assert!(same_address("127.0.0.1:9901", "127.0.0.1:9901"));
        assert!(!same_address("127.0.0.1:9901", "127.0.0.1:8080"));
        assert!(!same_address("127.0.0.1:0", "127.0.0.1:0"));
        assert!(same_address("localhost:9901", "127.0.0.1:9901"));
    }
}
