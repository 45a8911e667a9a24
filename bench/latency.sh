#!/usr/bin/env bash
# Latency at a fixed request rate, side by side in one run: the origin
# directly, nginx `proxy_pass` (no auth), and edgegate on a JWT (HS256) route
# -- the targets and configs of bench/proxy.sh. oha sends RATE requests/s
# open-loop (`-q` with `--latency-correction`, so a stalled response does not
# hold back the requests scheduled behind it: no coordinated omission, as with
# wrk2) over CONNS keep-alive connections. The origin and oha share core 0;
# the proxy under test gets core 1. Each target is measured ROUNDS times,
# interleaved, and the medians are printed as a Markdown table.
#
#   bash bench/latency.sh               # needs oha, nginx and jq:
#                                       #   cargo install oha --version 1.16.0 --locked
#                                       #   apt-get install -y nginx jq
#   RATE=2500 bash bench/latency.sh     # RATE=5000 ROUNDS=3 DURATION=10 CONNS=64 by default
#   OHA=/opt/oha/bin/oha bash bench/latency.sh   # an oha that is not on PATH
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
RATE=${RATE:-5000}
WARMUP=${WARMUP:-2}   # seconds at RATE per target before the rounds, not counted
OHA=${OHA:-oha}
# Ports of their own, so that this can run while bench/proxy.sh does.
ORIGIN=127.0.0.1:19011
NGINX=127.0.0.1:19012
GATEWAY=127.0.0.1:19013
ADMIN=127.0.0.1:19014
SECRET=bench-secret-0123456789abcdef

require "(cargo install oha --version 1.16.0 --locked, or OHA=/path/to/oha)" "$OHA"
require "(apt-get install -y nginx jq)" nginx jq taskset curl timeout

build -p runtime-host -p edgegate-bench
setup_work

start_origin "$ORIGIN"

start_nginx "$NGINX" "$ORIGIN"

jwt_route_config "$work/gateway.toml" "$GATEWAY" "$ADMIN" "$ORIGIN" "$SECRET"
start_gateway "$work/gateway.toml" "$work/gateway.log"
wait_ready "$ADMIN"
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)
auth="authorization: Bearer $token"

# oha_run SECONDS OUT URL [HEADER]: one open-loop oha run from core 0 at RATE
# requests/s, JSON report in OUT. One runtime thread (like wrk -t1); `-w`
# lets the requests in flight at the end finish instead of counting them as
# errors, `-t` bounds each request and `timeout` the whole run.
oha_run() {
  local seconds=$1 out=$2 url=$3
  shift 3
  taskset -c 0 timeout $((seconds + 30)) "$OHA" -z "${seconds}s" -q "$RATE" -c "$CONNS" \
    --latency-correction -w -t 10s --no-tui --worker-threads 1 --output-format json \
    ${1:+-H "$1"} "$url" >"$out"
}

# figures JSON: "requests/s p50 p99 p99.9 errors non-2xx", latencies in ms.
figures() {
  jq -r '[ .summary.requestsPerSec,
           ((.latencyPercentiles.p50 // 0) * 1000),
           ((.latencyPercentiles.p99 // 0) * 1000),
           ((.latencyPercentiles["p99.9"] // 0) * 1000),
           ([(.errorDistribution // {})[]] | add // 0),
           ([(.statusCodeDistribution // {}) | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0)
         ] | @tsv' "$1" |
    awk '{ printf "%.0f %.3f %.3f %.3f %d %d\n", $1, $2, $3, $4, $5, $6 }'
}

run() { # name round url [header]
  local out="$work/$1-$2.json"
  oha_run "$DURATION" "$out" "$3" "${4:-}"
  echo "$1 $(figures "$out")" >>"$work/results"
  jq -c '.errorDistribution // {} | select(length > 0)' "$out" | sed "s/^/$1 round $2 errors: /" >>"$work/errors"
}

# Warm every path (connection pools, guest instances, compiled code).
curl -fs "http://$NGINX/api/x" >/dev/null
curl -fs -H "$auth" "http://$GATEWAY/api/x" >/dev/null
oha_run "$WARMUP" "$work/warmup.json" "http://$ORIGIN/api/x"
oha_run "$WARMUP" "$work/warmup.json" "http://$NGINX/api/x"
oha_run "$WARMUP" "$work/warmup.json" "http://$GATEWAY/api/x" "$auth"
touch "$work/errors"
for round in $(seq "$ROUNDS"); do
  run direct "$round" "http://$ORIGIN/api/x"
  run nginx "$round" "http://$NGINX/api/x"
  run edgegate "$round" "http://$GATEWAY/api/x" "$auth"
done

echo "| target | achieved req/s (of $RATE) | p50 ms | p99 ms | p99.9 ms | errors / non-2xx |"
echo "|---|---|---|---|---|---|"
for name in direct nginx edgegate; do
  rps=$(field "$name" 2 | median)
  p50=$(field "$name" 3 | median)
  p99=$(field "$name" 4 | median)
  p999=$(field "$name" 5 | median)
  errors=$(field "$name" 6 | median)
  non2xx=$(field "$name" 7 | median)
  echo "| $name | $rps | $p50 | $p99 | $p999 | $errors / $non2xx |"
done
echo
echo "medians of $ROUNDS rounds; per round (target req/s p50 p99 p99.9 errors non-2xx):"
sed 's/^/    /' "$work/results"
if [ -s "$work/errors" ]; then
  echo
  echo "errors seen:"
  cat "$work/errors"
fi
echo
echo "machine: $(machine); $("$OHA" --version) -q $RATE -c $CONNS -z ${DURATION}s --latency-correction --worker-threads 1; $(nginx -v 2>&1)"
