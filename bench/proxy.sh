#!/usr/bin/env bash
# Side-by-side proxy benchmark, one run: the origin directly, nginx
# `proxy_pass` (no auth), edgegate on a JWT (HS256) route and edgegate on a
# JWT + rate-limited route (a per-user sliding window held by a Durable
# Object), all in front of the same loopback origin. The origin and the load generator share core 0;
# the proxy under test gets core 1. Each target is measured ROUNDS times,
# interleaved, and the medians are printed as a Markdown table.
#
#   bash bench/proxy.sh                 # needs wrk and nginx (apt-get install wrk nginx)
#   ROUNDS=5 DURATION=10 CONNS=64 bash bench/proxy.sh
#   BASELINE_COMPONENT=old.wasm bash bench/proxy.sh   # adds "edgegate-baseline":
#                                       # the same host running another build
#                                       # of the edge component, interleaved
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ORIGIN=127.0.0.1:19001
NGINX=127.0.0.1:19002
GATEWAY=127.0.0.1:19003
ADMIN=127.0.0.1:19004
BASELINE=127.0.0.1:19005
BASELINE_ADMIN=127.0.0.1:19006
SECRET=bench-secret-0123456789abcdef

require "(apt-get install -y wrk nginx)" wrk nginx taskset

build -p runtime-host -p edgegate-bench
setup_work

start_origin "$ORIGIN"

start_nginx "$NGINX" "$ORIGIN"

jwt_route_config "$work/gateway.toml" "$GATEWAY" "$ADMIN" "$ORIGIN" "$SECRET"
rate_limited_route_config >>"$work/gateway.toml"
start_gateway "$work/gateway.toml" "$work/gateway.log"
targets="direct nginx edgegate edgegate-limited"
if [ -n "${BASELINE_COMPONENT:-}" ]; then
  sed -e "s/$GATEWAY/$BASELINE/; s/$ADMIN/$BASELINE_ADMIN/; s#$work/data#$work/data-baseline#" \
    "$work/gateway.toml" >"$work/baseline.toml"
  start_gateway "$work/baseline.toml" "$work/baseline.log" --component "$BASELINE_COMPONENT"
  targets="$targets edgegate-baseline"
fi
for admin in $ADMIN ${BASELINE_COMPONENT:+$BASELINE_ADMIN}; do
  wait_ready "$admin"
done
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)

run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk_latency -H "$3" "$2")
  else
    out=$(wrk_latency "$2")
  fi
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  echo "$1 $(wrk_figures "$out") ${errors:-}" >>"$work/results"
}

# Warm every path once (connection pools, compiled code).
curl -fs "http://$NGINX/api/x" >/dev/null
curl -fs -H "authorization: Bearer $token" "http://$GATEWAY/api/x" >/dev/null
curl -fs -H "authorization: Bearer $token" "http://$GATEWAY/limited/x" >/dev/null
[ -n "${BASELINE_COMPONENT:-}" ] && curl -fs -H "authorization: Bearer $token" "http://$BASELINE/api/x" >/dev/null
for _ in $(seq "$ROUNDS"); do
  run direct "http://$ORIGIN/api/x"
  run nginx "http://$NGINX/api/x"
  run edgegate "http://$GATEWAY/api/x" "authorization: Bearer $token"
  run edgegate-limited "http://$GATEWAY/limited/x" "authorization: Bearer $token"
  if [ -n "${BASELINE_COMPONENT:-}" ]; then
    run edgegate-baseline "http://$BASELINE/api/x" "authorization: Bearer $token"
  fi
done

echo "| target | requests/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for name in $targets; do
  rps=$(field "$name" 2 | median)
  p50=$(field "$name" 3 | to_ms | median)
  p99=$(field "$name" 4 | to_ms | median)
  echo "| $name | $rps | $p50 | $p99 |"
done
if grep -q "Non-2xx\|Socket" "$work/results"; then
  echo
  echo "errors seen:"
  grep "Non-2xx\|Socket" "$work/results"
fi
echo
echo "machine: $(machine); wrk -t1 -c$CONNS -d${DURATION}s; $(nginx -v 2>&1)"
