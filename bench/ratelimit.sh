#!/usr/bin/env bash
# Rate-limit decisions per second through the edge, with the counters in
# Durable Objects (`backend = "durable-object"`) served by `edgegate serve`:
# one counter for every request, then 10k counters chosen at random per
# request; admitted requests go on to the loopback origin, and a refused
# run (limit reached: 429, no origin) measures decisions alone. A route
# without a rate limit is the baseline. Layout as in bench/proxy.sh: the
# origin and wrk share core 0, the gateway gets core 1.
#
#   bash bench/ratelimit.sh             # needs wrk (apt-get install -y wrk)
#   ROUNDS=3 DURATION=10 CONNS=64 KEYS=10000 bash bench/ratelimit.sh
#
# The in-process figure (no HTTP, no edge; both cores) comes from
#   cargo test --release -p runtime-host --bin edgegate objects::tests::throughput -- --ignored --nocapture
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
KEYS=${KEYS:-10000}
ORIGIN=127.0.0.1:19011
GATEWAY=127.0.0.1:19013
ADMIN=127.0.0.1:19014
export KEYS

require "(apt-get install -y wrk)" wrk taskset curl

build -p runtime-host -p edgegate-bench
setup_work

start_origin "$ORIGIN"

cat > "$work/gateway.toml" <<TOML
[server]
listen = "$GATEWAY"
admin = "$ADMIN"
data_dir = "$work/data"

[[upstreams]]
name = "origin"
targets = [{ url = "http://$ORIGIN" }]

[[rate_limits]]
name = "one"
algorithm = "fixed_window"
key = "global"
limit = 1000000000000
period_s = 86400
backend = "durable-object"

[[rate_limits]]
name = "many"
algorithm = "fixed_window"
key = "header:x-key"
limit = 1000000000000
period_s = 86400
backend = "durable-object"

[[rate_limits]]
name = "refused"
algorithm = "fixed_window"
key = "global"
limit = 1
period_s = 86400
backend = "durable-object"

[[routes]]
name = "plain"
match = { path_prefix = "/plain" }
upstream = "origin"

[[routes]]
name = "one"
match = { path_prefix = "/one" }
upstream = "origin"
rate_limits = ["one"]

[[routes]]
name = "many"
match = { path_prefix = "/many" }
upstream = "origin"
rate_limits = ["many"]

[[routes]]
name = "refused"
match = { path_prefix = "/refused" }
upstream = "origin"
rate_limits = ["refused"]
TOML
start_gateway "$work/gateway.toml" "$work/gateway.log"
wait_ready "$ADMIN"

run() { # name url [script]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk_latency -s "$3" "$2")
  else
    out=$(wrk_latency "$2")
  fi
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$1 $(wrk_figures "$out") ${non2xx:-0}" >>"$work/results"
}

# Warm up: compiled code, pools, and all KEYS objects created once.
curl -fs "http://$GATEWAY/plain/x" "http://$GATEWAY/one/x" >/dev/null
curl -s "http://$GATEWAY/refused/x" "http://$GATEWAY/refused/x" >/dev/null
taskset -c 0 wrk -t1 -c"$CONNS" -d3s -s bench/ratelimit-keys.lua "http://$GATEWAY/many/x" >/dev/null
for _ in $(seq "$ROUNDS"); do
  run plain "http://$GATEWAY/plain/x"
  run one-key "http://$GATEWAY/one/x"
  run "${KEYS}-keys" "http://$GATEWAY/many/x" bench/ratelimit-keys.lua
  run refused "http://$GATEWAY/refused/x"
done
rss=$(rss_mib "$gateway_pid")

echo "| route | decisions/s (median of $ROUNDS) | p50 ms | p99 ms | non-2xx |"
echo "|---|---|---|---|---|"
for name in plain one-key "${KEYS}-keys" refused; do
  rps=$(field "$name" 2 | median)
  p50=$(field "$name" 3 | to_ms | median)
  p99=$(field "$name" 4 | to_ms | median)
  non2xx=$(field "$name" 5 | median)
  echo "| $name | $rps | $p50 | $p99 | $non2xx |"
done
echo
echo "gateway RSS after the runs: $rss MiB"
echo "machine: $(machine); wrk -t1 -c$CONNS -d${DURATION}s; plain = no rate limit"
