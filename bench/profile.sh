#!/usr/bin/env bash
# Profiles `edgegate serve` on a route of bench/proxy.sh (ROUTE, the JWT
# route by default) under load: the same origin, config and core pinning
# (origin and wrk on core 0, the gateway on core 1), with `perf record`
# attached to the gateway while wrk runs. Guest (wasm) functions are named
# through a perf map (EDGEGATE_PERFMAP); pass an unstripped build of the
# edge component as COMPONENT to see its function names.
#
#   bash bench/profile.sh                       # report on stdout, data in $OUT
#   DURATION=10 CONNS=64 COMPONENT=path/to/edge.wasm OUT=/tmp/edge.perf bash bench/profile.sh
#   ROUTE=/limited/x bash bench/profile.sh      # the JWT + rate-limited route
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ROUTE=${ROUTE:-/api/x}
OUT=${OUT:-/tmp/edgegate.perf.data}
CALLGRAPH=${CALLGRAPH:-}   # e.g. "--call-graph=dwarf" (large) or "-g"
ORIGIN=127.0.0.1:19011
GATEWAY=127.0.0.1:19013
ADMIN=127.0.0.1:19014
SECRET=bench-secret-0123456789abcdef

require "" wrk perf taskset

build -p runtime-host -p edgegate-bench
setup_work

start_origin "$ORIGIN"

jwt_route_config "$work/gateway.toml" "$GATEWAY" "$ADMIN" "$ORIGIN" "$SECRET"
rate_limited_route_config >>"$work/gateway.toml"
component=()
[ -n "${COMPONENT:-}" ] && component=(--component "$COMPONENT")
EDGEGATE_PERFMAP=1 start_gateway "$work/gateway.toml" "$work/gateway.log" "${component[@]}"
wait_ready "$ADMIN"
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)
curl -fs -H "authorization: Bearer $token" "http://$GATEWAY$ROUTE" >/dev/null

# Warm up, then record only the steady state.
taskset -c 0 wrk -t1 -c"$CONNS" -d2s -H "authorization: Bearer $token" "http://$GATEWAY$ROUTE" >/dev/null
taskset -c 0 wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" --latency \
  -H "authorization: Bearer $token" "http://$GATEWAY$ROUTE" >"$work/wrk.txt" &
wrk_pid=$!
sleep 1
# shellcheck disable=SC2086
perf record -F ${FREQ:-999} $CALLGRAPH -p "$gateway_pid" -o "$OUT" -- sleep "$DURATION" 2>/dev/null
wait "$wrk_pid"
grep -E "Requests/sec|99%" "$work/wrk.txt" >&2
perf report -i "$OUT" --no-children --sort dso,symbol --percent-limit 0.4 --stdio 2>/dev/null | grep -v "^$" | grep -v "^#" | sed -E "s/ +/ /g; s/ - - *$//" | cut -c1-200 | head -80
