//! The wasmtime engine and the edge component: configured once, compiled
//! once, and cached as a native artifact so later starts skip compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
    ProfilingStrategy,
};

/// Version of wasmtime compiled in (part of the cache key).
const WASMTIME_VERSION: &str = env!("EDGEGATE_WASMTIME_VERSION");

/// How often the engine epoch advances; the unit of CPU-limit checks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set (to anything) to write `/tmp/perf-<pid>.map` so `perf` names guest
/// functions (see docs/BENCHMARKS.md).
const PERFMAP_VAR: &str = "EDGEGATE_PERFMAP";

/// Component instances that may exist at once (busy plus idle).
pub const MAX_INSTANCES: u32 = 1000;

/// Failures while preparing the engine or the component.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime rejected the configuration.
    #[error("engine configuration: {0}")]
    Config(String),
    /// The component does not compile.
    #[error("compiling the component: {0}")]
    Compile(String),
}

/// Creates the engine every instance runs on.
pub fn new_engine(max_instance_memory: u64) -> Result<Engine, EngineError> {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(MAX_INSTANCES)
        // A component built by `wasm32-wasip2` Rust holds a few core
        // instances (the program plus adapter shims) and one memory.
        .total_core_instances(MAX_INSTANCES * 4)
        .max_core_instances_per_component(16)
        .total_memories(MAX_INSTANCES)
        .max_memories_per_component(2)
        .total_tables(MAX_INSTANCES * 4)
        .max_tables_per_component(8)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(usize::try_from(max_instance_memory).unwrap_or(usize::MAX))
        // Keep some warm slots so recycled instances reuse resident pages.
        .max_unused_warm_slots(64);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    build(config)
}

/// Creates the engine of Durable Object instances. They are long-lived and
/// may be many more than [`MAX_INSTANCES`] (one per live object), so memory
/// is allocated on demand, sized to what each instance uses: no virtual
/// reservation, guard region or copy-on-write image, so that an instance
/// costs one memory mapping (the kernel limits mappings per process, 65530
/// by default) and only the pages it touches. Bounds are checked in code
/// instead. Limits are applied per store.
pub fn new_objects_engine() -> Result<Engine, EngineError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .memory_init_cow(false);
    build(config)
}

/// The engine of `config`, naming guest functions for `perf` when
/// `EDGEGATE_PERFMAP` is set.
fn build(mut config: Config) -> Result<Engine, EngineError> {
    if std::env::var_os(PERFMAP_VAR).is_some() {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(|e| EngineError::Config(format!("{e:#}")))
}

/// Engines whose epoch the ticker thread advances.
static TICKED: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());

/// Advances `engine`'s epoch every [`EPOCH_TICK`] while it lives; guests
/// check it to yield and to enforce the CPU limit. One thread ticks every
/// engine (edge, objects, reloaded generations), so the process wakes once
/// per tick rather than once per engine.
pub fn start_epoch_ticker(engine: &Engine) {
    static TICKER: Once = Once::new();
    let ticked = || TICKED.lock().unwrap_or_else(|e| e.into_inner());
    ticked().push(engine.weak());
    TICKER.call_once(|| {
        std::thread::Builder::new()
            .name("edgegate-epoch".into())
            .spawn(move || {
                loop {
                    ticked().retain(|engine| {
                        engine.upgrade().inspect(Engine::increment_epoch).is_some()
                    });
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning a thread at start-up");
    });
}

/// How the component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the native-code cache.
    Cache,
    /// Compiled now (and written to the cache when possible).
    Compiled,
}

/// Loads the compiled `wasm` from `cache_dir` or compiles it (and caches it
/// as `<name>-<key>.cwasm`).
pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
    name: &str,
) -> Result<(Component, Origin), EngineError> {
    let cached = cache_dir.map(|dir| dir.join(format!("{name}-{}.cwasm", cache_key(engine, wasm))));
    if let Some(path) = cached.as_deref().filter(|p| p.is_file())
        && let Some(component) = map_cached(engine, path)
    {
        return Ok((component, Origin::Cache));
    }
    let component =
        Component::new(engine, wasm).map_err(|e| EngineError::Compile(format!("{e:#}")))?;
    if let Some(path) = cached {
        match write_cache(&component, &path) {
            // Serve from the file just written: its code is mapped from the
            // page cache instead of held in anonymous memory, so a cold
            // start idles as small as a warm one.
            Ok(()) => {
                if let Some(mapped) = map_cached(engine, &path) {
                    return Ok((mapped, Origin::Compiled));
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "could not cache the compiled component: {e}")
            }
        }
    }
    Ok((component, Origin::Compiled))
}

/// The component of a cache file, mapped; `None` (logged) when unusable.
fn map_cached(engine: &Engine, path: &Path) -> Option<Component> {
    // SAFETY: the file is one this host wrote into its own cache directory
    // under a key that covers the wasm bytes, the wasmtime version and the
    // engine's compilation settings; wasmtime also checks its header and
    // rejects foreign artifacts.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e:#}");
            None
        }
    }
}

/// `sha256(wasm ‖ wasmtime version ‖ engine compatibility hash)` in hex.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = DigestHasher(Sha256::new());
    hasher.0.update(wasm);
    hasher.0.update(WASMTIME_VERSION.as_bytes());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes atomically (temp file + rename) so a concurrent start never maps a
/// half-written artifact.
fn write_cache(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("edge"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Feeds `Hash` output into SHA-256 (`finish` is unused).
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_bytes() {
        let engine = new_engine(16 << 20).unwrap();
        let a = cache_key(&engine, b"a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, cache_key(&engine, b"a"));
        assert_ne!(a, cache_key(&engine, b"b"));
    }
}
