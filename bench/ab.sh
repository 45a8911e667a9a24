#!/usr/bin/env bash
# Two builds of `edgegate` side by side on the routes of bench/proxy.sh, the
# rounds alternated so that the machine's drift falls on both alike:
# requests/s, latency and the gateway's CPU time per request (from /proc).
#
#   A=old/edgegate B=target/release/edgegate bash bench/ab.sh
#   A=… B=… ROUTE=/limited/x CONNS=1 ROUNDS=5 DURATION=4 bash bench/ab.sh
#
# ROUTE is /api/x (JWT) or /limited/x (JWT + per-user rate limit). Origin
# and wrk on core 0, both gateways on core 1 (only the measured one is
# busy), A first in odd rounds and B first in even ones. Loopback only; every
# process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

: "${A:?A=path of the first edgegate binary}" "${B:?B=path of the second}"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
ROUTE=${ROUTE:-/api/x}
ORIGIN=127.0.0.1:19041
SECRET=bench-secret-0123456789abcdef

require "(apt-get install -y wrk)" wrk taskset curl

build -p runtime-host -p edgegate-bench
setup_work
start_origin "$ORIGIN"
declare -A listen gateway
for build in A B; do
  case $build in A) port=19042 ;; B) port=19044 ;; esac
  listen[$build]=127.0.0.1:$port
  mkdir -p "$work/$build"
  (
    work="$work/$build"
    jwt_route_config "$work/gateway.toml" "127.0.0.1:$port" "127.0.0.1:$((port + 1))" "$ORIGIN" "$SECRET"
    rate_limited_route_config >>"$work/gateway.toml"
  )
  EDGEGATE=${!build} start_gateway "$work/$build/gateway.toml" "$work/$build/log"
  gateway[$build]=$gateway_pid
  wait_ready "127.0.0.1:$((port + 1))"
done
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)

for build in A B; do
  curl -fs -H "authorization: Bearer $token" "http://${listen[$build]}$ROUTE" >/dev/null
done
# The order flips every round: with one binary as both A and B, the one
# measured second in every round took 4% less CPU per request (66.0 vs
# 68.6 µs).
for round in $(seq "$ROUNDS"); do
  order="A B"
  [ $((round % 2)) -eq 0 ] && order="B A"
  for build in $order; do
    c0=$(cpu_ticks "${gateway[$build]}")
    out=$(wrk_latency -H "authorization: Bearer $token" "http://${listen[$build]}$ROUTE")
    c1=$(cpu_ticks "${gateway[$build]}")
    cpu_us=$(cpu_us_per_request $((c1 - c0)) "$out")
    echo "$build $(wrk_figures "$out") $cpu_us" >>"$work/results"
  done
done

echo "| build | requests/s | p50 ms | p99 ms | gateway CPU per request µs | RSS after |"
echo "|---|---|---|---|---|---|"
for build in A B; do
  echo "| $build | $(field $build 2 | median) | $(field $build 3 | to_ms | median) | $(field $build 4 | to_ms | median) | $(field $build 5 | median) | $(rss_mib "${gateway[$build]}") MiB |"
done
echo
echo "machine: $(machine); $ROUTE, wrk -t1 -c$CONNS -d${DURATION}s, medians of $ROUNDS alternated rounds"
