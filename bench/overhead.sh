#!/usr/bin/env bash
# The gateway's own time per request (`edgegate_edge_latency_seconds`: from a
# request's arrival at the edge pool to its call to the origin — instance
# reuse, JWT verification, rate limits, routing — without the origin's
# time), read from /metrics around a wrk run at low load, plus the gateway's
# whole CPU time per request (hyper, proxying and all) from /proc.
#
#   bash bench/overhead.sh
#   ROUNDS=5 DURATION=5 CONNS=1 bash bench/overhead.sh
#
# Routes: /api (HS256 JWT, as in bench/proxy.sh) and /limited (the same plus
# a per-user sliding-window rate limit held by a Durable Object). Origin and
# wrk on core 0, the gateway on core 1. Loopback only; every process it
# starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-1}
ORIGIN=127.0.0.1:19031
GATEWAY=127.0.0.1:19033
ADMIN=127.0.0.1:19034
SECRET=bench-secret-0123456789abcdef

require "(apt-get install -y wrk)" wrk taskset curl

build -p runtime-host -p edgegate-bench
setup_work
start_origin "$ORIGIN"
jwt_route_config "$work/gateway.toml" "$GATEWAY" "$ADMIN" "$ORIGIN" "$SECRET"
rate_limited_route_config >>"$work/gateway.toml"
start_gateway "$work/gateway.toml" "$work/gateway.log"
wait_ready "$ADMIN"
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)

# buckets FILE: the edge-latency histogram's cumulative buckets, "le count".
buckets() {
  curl -fs "http://$ADMIN/metrics" |
    awk -F'[{}" ]+' '/^edgegate_edge_latency_seconds_bucket/ {print $3, $4}' >"$1"
}

# quantile Q BEFORE AFTER: Q-quantile in µs of the observations between two
# bucket snapshots, interpolated linearly inside its bucket.
quantile() {
  paste -d' ' "$2" "$3" | awk -v q="$1" '
    { le[NR] = $1; n[NR] = $4 - $2 }
    END {
      target = q * n[NR]; lo = 0; below = 0
      for (i = 1; i <= NR; i++) {
        if (n[i] >= target) {
          hi = (le[i] == "+Inf") ? lo : le[i]
          frac = (n[i] > below) ? (target - below) / (n[i] - below) : 0
          printf "%.1f\n", (lo + (hi - lo) * frac) * 1e6; exit
        }
        lo = le[i]; below = n[i]
      }
    }'
}

for path in /api/x /limited/x; do
  curl -fs -H "authorization: Bearer $token" "http://$GATEWAY$path" >/dev/null
done
for _ in $(seq "$ROUNDS"); do
  for path in /api/x /limited/x; do
    buckets "$work/before"
    c0=$(cpu_ticks "$gateway_pid")
    out=$(wrk_latency -H "authorization: Bearer $token" "http://$GATEWAY$path")
    c1=$(cpu_ticks "$gateway_pid")
    buckets "$work/after"
    cpu_us=$(cpu_us_per_request $((c1 - c0)) "$out")
    echo "$path $(quantile 0.5 "$work/before" "$work/after") $(quantile 0.99 "$work/before" "$work/after") $cpu_us $(wrk_figures "$out")" >>"$work/results"
  done
done

echo "| route | edge latency p50 µs | edge latency p99 µs | gateway CPU per request µs | requests/s | client p50 ms |"
echo "|---|---|---|---|---|---|"
for path in /api/x /limited/x; do
  echo "| $path | $(field "$path" 2 | median) | $(field "$path" 3 | median) | $(field "$path" 4 | median) | $(field "$path" 5 | median) | $(field "$path" 6 | to_ms | median) |"
done
echo
echo "machine: $(machine); wrk -t1 -c$CONNS -d${DURATION}s, medians of $ROUNDS"
