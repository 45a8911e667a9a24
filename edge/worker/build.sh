#!/usr/bin/env bash
# Builds the Worker into target/edgegate-worker/ (index.js + index_bg.wasm):
# wrangler.toml's [build] command, also run by hand or by CI.
#
# worker-build would download wasm-bindgen, wasm-opt and esbuild from the
# internet; here every tool comes from crates.io or npm instead:
#   - worker-build and wasm-bindgen-cli by `cargo install` (wasm-bindgen-cli
#     at exactly the version Cargo.lock holds: the CLI must match the library),
#   - wasm-opt (binaryen) and esbuild from node_modules (`npm ci`).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

WORKER_BUILD_VERSION=0.8.7
bindgen_version="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$bindgen_version" ]; then
  echo "build.sh: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

# Installs crate $1 (binary $2) at version $3 unless that version is there.
ensure() {
  if ! "$2" --version 2>/dev/null | grep -qw -- "$3"; then
    echo "build.sh: installing $1 $3" >&2
    # wasm-bindgen-cli's own lockfile names a yanked crate, so `--locked`
    # cannot be used for it; worker-build installs locked.
    if [ "$1" = worker-build ]; then
      cargo install "$1" --version "$3" --locked
    else
      cargo install "$1" --version "$3"
    fi
  fi
}
ensure worker-build worker-build "$WORKER_BUILD_VERSION"
ensure wasm-bindgen-cli wasm-bindgen "$bindgen_version"

for tool in wasm-opt esbuild; do
  if [ ! -x "node_modules/.bin/$tool" ]; then
    echo "build.sh: node_modules/.bin/$tool is missing: run \`npm ci\` first" >&2
    exit 1
  fi
done
export WASM_BINDGEN_BIN="$cargo_bin/wasm-bindgen"
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/.bin/esbuild"

# The workspace's size-optimised profile (opt-level "s", LTO), but not
# stripped: wasm-bindgen reads the target_features section, and the names
# section (kept by wasm-opt --debuginfo) gives panics readable stack traces,
# for about 50 KB of gzip.
export CARGO_PROFILE_WASM_RELEASE_STRIP=false
cd edge/worker
exec worker-build --profile wasm-release --out-dir ../../target/edgegate-worker
