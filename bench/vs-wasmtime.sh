#!/usr/bin/env bash
# The same edge component under `edgegate serve` and under `wasmtime serve`,
# side by side in one run: one open route to the same loopback origin, each
# server measured ROUNDS times, interleaved; medians as a Markdown table.
# The origin and wrk share core 0, the server under test gets core 1.
#
#   cargo install wasmtime-cli --version 48.0.8 --locked   # once
#   bash bench/vs-wasmtime.sh
#   ROUNDS=5 DURATION=10 CONNS=64 bash bench/vs-wasmtime.sh
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
ORIGIN=127.0.0.1:19101
GATEWAY=127.0.0.1:19102
ADMIN=127.0.0.1:19103
WASMTIME=127.0.0.1:19104
COMPONENT=target/wasm/wasm32-wasip2/wasm-release/edgegate_edge_component.wasm

require "(apt-get install -y wrk; cargo install wasmtime-cli --version 48.0.8 --locked)" wrk wasmtime taskset

build -p runtime-host -p edgegate-bench
setup_work
start_origin "$ORIGIN"

cat > "$work/gateway.toml" <<EOF
[server]
listen = "$GATEWAY"
admin = "$ADMIN"
data_dir = "$work/data"

[gateway]
access_log = false

[[upstreams]]
name = "origin"
targets = [{ url = "http://$ORIGIN" }]

[[routes]]
name = "all"
match = { path_prefix = "/" }
upstream = "origin"
EOF
start_gateway "$work/gateway.toml" "$work/gateway.log"
EDGEGATE_CONFIG="$(cat "$work/gateway.toml")" taskset -c 1 \
  wasmtime serve -Scli --env EDGEGATE_CONFIG --addr "$WASMTIME" "$COMPONENT" >"$work/wasmtime.log" 2>&1 &
pids+=($!)
wait_ready "$ADMIN"
for _ in $(seq 100); do
  curl -fs "http://$WASMTIME/x" >/dev/null 2>&1 && break
  sleep 0.1
done

for _ in $(seq "$ROUNDS"); do
  for target in edgegate:$GATEWAY wasmtime-serve:$WASMTIME; do
    out=$(wrk_latency "http://${target#*:}/x")
    echo "${target%%:*} $(wrk_figures "$out")" >>"$work/results"
  done
done

echo "| server | requests/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for name in edgegate wasmtime-serve; do
  echo "| $name | $(field "$name" 2 | median) | $(field "$name" 3 | to_ms | median) | $(field "$name" 4 | to_ms | median) |"
done
echo
echo "machine: $(machine); wrk -t1 -c$CONNS -d${DURATION}s; $(wasmtime --version)"
