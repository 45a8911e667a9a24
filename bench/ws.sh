#!/usr/bin/env bash
# WebSocket hub broadcast through `edgegate serve`: N subscribers on one hub
# (one topic), one publisher sending MESSAGES messages INTERVAL_MS apart;
# latency is publish-to-delivery for every delivery (p50/p99), plus the
# gateway's RSS while the N sockets are held. The client is
# runtime-host/examples/ws_bench.rs. Layout as in bench/proxy.sh: the client
# gets core 0, the gateway core 1.
#
#   bash bench/ws.sh
#   SUBSCRIBERS="100 1000 2000" MESSAGES=200 INTERVAL_MS=20 bash bench/ws.sh
#
# Every connection is announced (`join`) to the ones before it, so setting
# up N subscribers costs O(N²) frames: large N take a while to connect.
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SUBSCRIBERS=${SUBSCRIBERS:-100 1000 2000}
MESSAGES=${MESSAGES:-200}
INTERVAL_MS=${INTERVAL_MS:-20}
GATEWAY=127.0.0.1:19023
ADMIN=127.0.0.1:19024

require "" taskset curl
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

build -p runtime-host --example ws_bench
setup_work

cat > "$work/gateway.toml" <<TOML
[server]
listen = "$GATEWAY"
admin = "$ADMIN"
data_dir = "$work/data"

[[routes]]
name = "ws"
match = { path = "/ws/{room}" }
websocket = { hub = "{room}", messages_per_second = 1000 }
TOML
start_gateway "$work/gateway.toml" "$work/gateway.log"
wait_ready "$ADMIN"

echo "| subscribers | deliveries | p50 ms | p99 ms | max ms | connect+subscribe | gateway RSS before → held → after |"
echo "|---|---|---|---|---|---|---|"
for n in $SUBSCRIBERS; do
  before=$(rss_mib "$gateway_pid")
  out="$work/client-$n"
  WS_BENCH_HOLD=1 taskset -c 0 target/release/examples/ws_bench "ws://$GATEWAY/ws/bench-$n" "$n" "$MESSAGES" "$INTERVAL_MS" >"$out" &
  client=$!
  pids+=($client)
  while kill -0 "$client" 2>/dev/null && ! grep -q holding "$out"; do sleep 0.2; done
  held=$(rss_mib "$gateway_pid")
  wait "$client" || true
  sleep 1
  after=$(rss_mib "$gateway_pid")
  line=$(grep deliveries "$out")
  deliveries=$(awk '{print $1 "/" $3}' <<<"$line")
  p50=$(sed -E 's/.*p50 ([0-9.]+) ms.*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99 ([0-9.]+) ms.*/\1/' <<<"$line")
  max=$(sed -E 's/.*max ([0-9.]+) ms.*/\1/' <<<"$line")
  connect=$(sed -E 's/.* in (.*)$/\1/' <<<"$(grep connected "$out")")
  echo "| $n | $deliveries | $p50 | $p99 | $max | $connect | $before → $held → $after MiB |"
  sleep 1
done
echo
echo "machine: $(machine); $MESSAGES messages ${INTERVAL_MS} ms apart per run"
