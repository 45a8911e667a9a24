#!/usr/bin/env bash
# Where a proxied request's cost lands: for nginx `proxy_pass` and edgegate
# on the JWT route of bench/proxy.sh (same origin, same pinning: origin and
# wrk on core 0, the proxy on core 1), per request, the proxy's user and
# system CPU time and, per core, the kernel events that tell a CPU-bound
# proxy from one that waits: context switches, wake-ups, idle entries,
# remote-wake interrupts, timers and system calls (`perf stat -a -A`).
#
#   bash bench/events.sh                    # ROUNDS=2 DURATION=5 CONNS=16
#   EVENTS=page-faults,tlb:tlb_flush bash bench/events.sh
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
EVENTS=${EVENTS:-context-switches,sched:sched_wakeup,power:cpu_idle,irq_vectors:call_function_single_entry,timer:hrtimer_start,raw_syscalls:sys_enter}
ORIGIN=127.0.0.1:19021
NGINX=127.0.0.1:19022
GATEWAY=127.0.0.1:19023
ADMIN=127.0.0.1:19024
SECRET=bench-secret-0123456789abcdef

require "(apt-get install -y wrk nginx linux-perf)" wrk nginx perf taskset

build -p runtime-host -p edgegate-bench
setup_work

start_origin "$ORIGIN"
start_nginx "$NGINX" "$ORIGIN"
jwt_route_config "$work/gateway.toml" "$GATEWAY" "$ADMIN" "$ORIGIN" "$SECRET"
start_gateway "$work/gateway.toml" "$work/gateway.log"
wait_ready "$ADMIN"
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)
curl -fs "http://$NGINX/api/x" >/dev/null
curl -fs -H "authorization: Bearer $token" "http://$GATEWAY/api/x" >/dev/null
# nginx's worker, not its master, serves the requests.
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)

measure() { # name pid url header
  local u0 s0 u1 s1 out requests
  read -r u0 s0 < <(cpu_split "$2")
  perf stat -a -A -x, -e "$EVENTS" -o "$work/stat" -- \
    taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$4" "$3" >"$work/wrk"
  read -r u1 s1 < <(cpu_split "$2")
  out=$(cat "$work/wrk")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  printf "\n%s: %.0f requests/s; proxy CPU per request: user %s µs, system %s µs\n" "$1" \
    "$(wrk_figures "$out" | cut -d' ' -f1)" \
    "$(cpu_us_per_request $((u1 - u0)) "$out")" "$(cpu_us_per_request $((s1 - s0)) "$out")"
  # perf -x, -A lines: CPU,count,unit,event,...
  awk -F, -v r="$requests" '$2 ~ /^[0-9.]+$/ { printf "  %s %-42s %8.3f per request\n", $1, $4, $2 / r }' "$work/stat"
}

for _ in $(seq "$ROUNDS"); do
  measure nginx "$nginx_worker" "http://$NGINX/api/x" "x-bench: 1"
  measure edgegate "$gateway_pid" "http://$GATEWAY/api/x" "authorization: Bearer $token"
done
echo
echo "machine: $(machine); wrk -t1 -c$CONNS -d${DURATION}s; $(nginx -v 2>&1)"
