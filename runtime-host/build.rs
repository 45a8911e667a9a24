//! Builds the edge component (`edge/component`, a `wasm32-wasip2` HTTP
//! component) and the Durable Object component (`durable-objects/component`)
//! with one nested cargo so `edgegate` can embed both, and records the
//! wasmtime version for the compiled-component cache key.

use std::collections::BTreeSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPONENT_PACKAGE: &str = "edgegate-edge-component";
const COMPONENT_FILE: &str = "edgegate_edge_component.wasm";
const OBJECTS_PACKAGE: &str = "edgegate-durable-objects-component";
const OBJECTS_FILE: &str = "edgegate_durable_objects_component.wasm";
const WASM_TARGET: &str = "wasm32-wasip2";
const WASM_PROFILE: &str = "wasm-release";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("runtime-host lives in the workspace");

    // `edge/`, the objects' component and WIT, and the default config
    // always; the root manifest holds the `wasm-release` profile. Crates
    // elsewhere are added from dep-info below.
    for input in [
        "edge",
        "durable-objects/component",
        "wit",
        "gateway.toml",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=EDGEGATE_SKIP_COMPONENT_BUILD");

    println!(
        "cargo:rustc-env=EDGEGATE_WASMTIME_VERSION={}",
        locked_version(workspace, "wasmtime").unwrap_or_else(|| "unknown".into())
    );

    let target_dir = workspace.join("target").join("wasm");
    let out_dir = target_dir.join(WASM_TARGET).join(WASM_PROFILE);
    let wasm = out_dir.join(COMPONENT_FILE);
    let objects = out_dir.join(OBJECTS_FILE);

    // Escape hatch for environments that build the component separately
    // (it must then already exist at the path above).
    if env::var_os("EDGEGATE_SKIP_COMPONENT_BUILD").is_none() {
        build_component(workspace, &target_dir);
    }
    for built in [&wasm, &objects] {
        if !built.exists() {
            panic!("component was not produced at {}", built.display());
        }
        // The components also depend on crates outside `edge/`: watch every
        // workspace crate their dep-info names.
        for dir in local_crate_dirs(workspace, &built.with_extension("d")) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
    }
    println!("cargo:rustc-env=EDGE_COMPONENT_WASM={}", wasm.display());
    println!(
        "cargo:rustc-env=OBJECTS_COMPONENT_WASM={}",
        objects.display()
    );
}

/// Directories (holding a `Cargo.toml`) of the workspace crates whose
/// sources `dep_info` (a rustc `.d` file) lists.
fn local_crate_dirs(workspace: &Path, dep_info: &Path) -> BTreeSet<PathBuf> {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return BTreeSet::new();
    };
    let mut dirs = BTreeSet::new();
    for token in text.replace("\\ ", "\u{0}").split_whitespace() {
        let path = normalize(Path::new(
            &token.trim_end_matches(':').replace('\u{0}', " "),
        ));
        let Ok(inside) = path.strip_prefix(workspace) else {
            continue;
        };
        if inside.starts_with("target") {
            continue;
        }
        let crate_dir = path
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(workspace) && *a != workspace)
            .find(|a| a.join("Cargo.toml").is_file());
        if let Some(dir) = crate_dir {
            dirs.insert(dir.to_path_buf());
        }
    }
    dirs
}

fn build_component(workspace: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--profile")
        .arg(WASM_PROFILE)
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("-p")
        .arg(COMPONENT_PACKAGE)
        .arg("-p")
        .arg(OBJECTS_PACKAGE)
        .arg("--target-dir")
        .arg(target_dir);

    // Settings of the outer build (host flags, profile overrides, wrappers,
    // the jobserver) must not leak into the wasm build: they are for another
    // target and would also change its fingerprint on every outer build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_TARGET_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_ENCODED_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_TARGET"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }

    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("failed to run cargo for the components: {e}"));
    if !status.success() {
        panic!(
            "building the components ({COMPONENT_PACKAGE}, {OBJECTS_PACKAGE}, {WASM_TARGET}) failed: {status}"
        );
    }
}

/// Resolves `.` and `..` lexically (dep-info keeps `include_str!` paths as
/// written, e.g. `config/src/../../../gateway.toml`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The version of `package` pinned in `Cargo.lock`.
fn locked_version(workspace: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).ok()?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&needle)? + needle.len();
    let end = lock[start..].find('"')? + start;
    Some(lock[start..end].to_string())
}
