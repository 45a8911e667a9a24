#!/usr/bin/env bash
# WebSocket scale through `edgegate serve`, with JWT-authenticated
# connections (HS256, role `user`) on one hub route:
#
# (a) memory: HOLD sockets spread over hubs of ROOM_SIZE (one user per
#     socket of a room), each subscribed to one topic, held open; the
#     gateway's RSS before, while holding with every hub instance live, and
#     again once the idle hubs are evicted (the sockets stay open; an
#     instance costs about its initial linear memory), per socket, set-up
#     time.
# (b) broadcast: N subscribers of one hub and topic, all the same user (so
#     only the first connection is announced with `join`), one publisher
#     sending MESSAGES messages INTERVAL_MS apart; publish-to-delivery
#     latency of every delivery. Then the same client against the floor,
#     `ws_bench fanout-server` on the gateway's core: one send() of one
#     pre-encoded frame per subscriber, nothing else.
#
# Every count gets a freshly started gateway, so each RSS difference is
# that count's own. The client is runtime-host/examples/ws_bench.rs, on
# core 0, opening CONCURRENCY handshakes at a time; the gateway on core 1.
# Each client run connects from its own 32 addresses 127.0.R.1-32: with
# thousands of ports in use on one address, finding a free one costs the
# kernel a scan per connect; and closed connections of the previous run
# (TIME_WAIT) do not take this run's ports.
#
#   bash bench/ws-scale.sh
#   HOLD="1000 5000" SUBSCRIBERS="1000" MESSAGES=20 bash bench/ws-scale.sh
#   HOLD= SUBSCRIBERS=10000 bash bench/ws-scale.sh   # broadcast only
#   EDGEGATE=/path/to/edgegate bash bench/ws-scale.sh  # another build
#   KEEP=/tmp/ws-logs bash bench/ws-scale.sh   # keeps gateway logs and client outputs
#
# Both processes need a descriptor per socket: the counts are bounded by
# the hard RLIMIT_NOFILE (`ulimit -Hn`), which the script and the gateway
# raise their soft limits to.
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

HOLD=${HOLD-5000 10000 18000}
SUBSCRIBERS=${SUBSCRIBERS-1000 10000}
MESSAGES=${MESSAGES:-50}
INTERVAL_MS=${INTERVAL_MS:-100}
ROOM_SIZE=${ROOM_SIZE:-100}
CONCURRENCY=${CONCURRENCY:-64}
IDLE_S=${IDLE_S:-30}
GATEWAY=127.0.0.1:19031
ADMIN=127.0.0.1:19032
FLOOR=127.0.0.1:19033
SECRET=bench-secret-0123456789abcdef

require "" taskset curl
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
for n in $HOLD $SUBSCRIBERS; do
  if [ "$n" -gt $((limit - 100)) ]; then
    echo "bench/ws-scale.sh: $n sockets need more than the open-file limit $limit allows" >&2
    exit 1
  fi
done

build -p runtime-host --bin edgegate --example ws_bench
setup_work

cat >"$work/gateway.toml" <<TOML
[server]
listen = "$GATEWAY"
admin = "$ADMIN"
data_dir = "$work/data"
object_idle_timeout_s = $IDLE_S

[gateway]
access_log = false

[auth.jwt]
keys = [{ alg = "HS256", secret = "$SECRET" }]

[[routes]]
name = "ws"
match = { path = "/ws/{room}" }
auth = "jwt"
roles = ["user"]
websocket = { hub = "{room}", messages_per_second = 1000 }
TOML

mint() {
  target/release/edgegate token --secret "$SECRET" --sub "$1" --roles user --ttl-s 86400
}
# One user per socket of a room; one user for every broadcast subscriber.
room_tokens=$(for u in $(seq "$ROOM_SIZE"); do mint "user-$u"; done | tr '\n' ' ')
broadcast_token=$(mint subscriber)

# metric NAME: a value from the gateway's /metrics.
metric() {
  curl -fs "http://$ADMIN/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
# client OUT ARGS...: ws_bench on core 0 from the next run's addresses,
# output in OUT; its pid is left in $client.
run=10
client() {
  local out=$1 sources
  shift
  run=$((run + 1))
  sources=$(for i in $(seq 32); do echo -n "127.0.$run.$i "; done)
  WS_BENCH_SOURCE_IPS=$sources WS_BENCH_CONCURRENCY=$CONCURRENCY \
    taskset -c 0 target/release/examples/ws_bench "$@" >"$out" 2>&1 &
  client=$!
  pids+=($client)
}
# fresh_gateway LOG: a new gateway, ready, settled.
fresh_gateway() {
  start_gateway "$work/gateway.toml" "$1"
  wait_ready "$ADMIN"
  sleep 2
}
stop_gateway() {
  kill "$gateway_pid" 2>/dev/null || true
  wait "$gateway_pid" 2>/dev/null || true
}
# wait_for PATTERN FILE: until FILE has a line matching PATTERN or the
# client has exited.
wait_for() {
  while kill -0 "$client" 2>/dev/null && ! grep -qs "$1" "$2"; do sleep 0.2; done
}
# report NAME OUT LOG: the client's failures and the gateway's warnings
# (OUT and LOG copied to $KEEP when set).
notes=()
report() {
  local line
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$2" "$3" "$KEEP/"
  fi
  while IFS= read -r line; do notes+=("$1: $line"); done < <(grep -E '^(failed|connections:)' "$2" || true)
  line=$(grep -m1 '^slow message' "$2" || true)
  [ -z "$line" ] || notes+=("$1: slowest ${line#slow }")
  local warnings
  warnings=$(grep -cE 'WARN|ERROR' "$3" || true)
  if [ "$warnings" -gt 0 ]; then
    notes+=("$1: gateway logged $warnings warnings/errors, first: $(grep -m1 -E 'WARN|ERROR' "$3" | sed 's/\x1b\[[0-9;]*m//g')")
  fi
}

# The first start compiles the components into the cache under data_dir;
# every measured start is a warm one.
fresh_gateway "$work/gateway-warm.log"
stop_gateway

echo "(a) sockets held, $ROOM_SIZE per hub"
echo
echo "| sockets held | RSS idle | RSS held (hubs live) | RSS held (hubs evicted) | per socket (hubs live) | per socket (hubs evicted) | set-up |"
echo "|---|---|---|---|---|---|---|"
for n in $HOLD; do
  log="$work/gateway-hold-$n.log"
  out="$work/hold-$n"
  fresh_gateway "$log"
  idle=$(rss_kib "$gateway_pid")
  # Held until the hubs are evicted and a sample taken.
  WS_BENCH_TOKEN=$room_tokens WS_BENCH_HOLD_S=$((IDLE_S * 2 + 20)) \
    client "$out" hold "ws://$GATEWAY/ws/hold-$n-" "$n" "$ROOM_SIZE"
  wait_for holding "$out"
  sleep 2
  live=$(rss_kib "$gateway_pid")
  open=$(metric edgegate_websocket_connections || true)
  hubs=$(metric edgegate_durable_objects_live || true)
  for _ in $(seq $((IDLE_S * 2 + 10))); do
    [ "$(metric edgegate_durable_objects_live || true)" = 0 ] && break
    sleep 1
  done
  sleep 1
  evicted=$(rss_kib "$gateway_pid")
  left=$(metric edgegate_durable_objects_live || true)
  kill -TERM "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  held=$(grep -oE 'subscribed [0-9]+' "$out" | awk '{print $2}' || true)
  held=${held:-0}
  setup=$(grep -oE 'sockets in [^ ]+' "$out" | sed 's/sockets in //' || true)
  per() { awk -v r="$1" -v i="$idle" -v n="$held" 'BEGIN { if (n > 0) printf "%.1f KiB", (r - i) / n; else print "-" }'; }
  echo "| $held of $n | $((idle / 1024)) MiB | $((live / 1024)) MiB | $((evicted / 1024)) MiB | $(per "$live") | $(per "$evicted") | $setup |"
  echo "$n $held $idle $live $evicted" >>"$work/hold-results"
  notes+=("hold $n: gateway counted $open sockets and $hubs live hubs while holding, $left live hubs at the second sample")
  report "hold $n" "$out" "$log"
  stop_gateway
done
if [ -f "$work/hold-results" ] && [ "$(wc -l <"$work/hold-results")" -ge 2 ]; then
  # Marginal cost: least-squares slope of RSS held over sockets held.
  for col in 4 5; do
    awk -v c="$col" '{ x=$2; y=$c; n++; sx+=x; sy+=y; sxx+=x*x; sxy+=x*y }
         END { s=(n*sxy-sx*sy)/(n*sxx-sx*sx); b=(sy-s*sx)/n;
               printf "\n%s: slope %.1f KiB per socket, intercept %.0f MiB; at 50,000 sockets %.0f MiB\n",
                 (c == 4 ? "hubs live" : "hubs evicted"), s, b/1024, (b+s*50000)/1024 }' \
      "$work/hold-results"
  done
fi

echo
echo "(b) broadcast to one hub, $MESSAGES messages ${INTERVAL_MS} ms apart; the"
echo "    floor: the same client against ws_bench fanout-server (one send() per"
echo "    subscriber of one pre-encoded frame), on the gateway's core"
echo
echo "| subscribers | server | deliveries | p50 ms | p99 ms | max ms | set-up | server CPU while publishing | server RSS held |"
echo "|---|---|---|---|---|---|---|---|---|"
# broadcast_row N NAME PID URL: the client's broadcast of N subscribers to
# URL, served by process PID, as one table row; its output in $out.
broadcast_row() {
  local n=$1 name=$2 pid=$3 url=$4 held ticks since busy wall_ms cpu line
  WS_BENCH_TOKEN=$broadcast_token client "$out" broadcast "$url" "$n" "$MESSAGES" "$INTERVAL_MS"
  wait_for "connected and subscribed" "$out"
  held=$(rss_kib "$pid")
  ticks=$(cpu_ticks "$pid")
  since=$(date +%s%N)
  while kill -0 "$client" 2>/dev/null && ! grep -qs deliveries "$out"; do
    busy=$(( $(cpu_ticks "$pid") - ticks ))
    wall_ms=$(( ($(date +%s%N) - since) / 1000000 ))
    sleep 0.1
  done
  wait "$client" || true
  # The server's share of its core while publishing.
  cpu=$(awk -v t="${busy:-0}" -v hz="$(getconf CLK_TCK)" -v ms="${wall_ms:-0}" 'BEGIN { if (ms > 0) printf "%.0f%%", 100 * t / hz / (ms / 1000); else print "-" }')
  line=$(grep deliveries "$out" || echo "0 of $((n * MESSAGES)) deliveries: p50 - ms, p99 - ms, max - ms")
  local deliveries p50 p99 max setup
  deliveries=$(awk '{print $1 "/" $3}' <<<"$line")
  p50=$(sed -E 's/.*p50 ([0-9.-]+) ms.*/\1/' <<<"$line")
  p99=$(sed -E 's/.*p99 ([0-9.-]+) ms.*/\1/' <<<"$line")
  max=$(sed -E 's/.*max ([0-9.-]+) ms.*/\1/' <<<"$line")
  setup=$(grep -oE 'sockets in [^ ]+' "$out" | sed 's/sockets in //' || true)
  echo "| $n | $name | $deliveries | $p50 | $p99 | $max | $setup | $cpu | $((held / 1024)) MiB |"
}
for n in $SUBSCRIBERS; do
  log="$work/gateway-broadcast-$n.log"
  out="$work/broadcast-$n"
  fresh_gateway "$log"
  broadcast_row "$n" edgegate "$gateway_pid" "ws://$GATEWAY/ws/broadcast-$n"
  report "broadcast $n" "$out" "$log"
  stop_gateway

  out="$work/floor-$n"
  taskset -c 1 target/release/examples/ws_bench fanout-server "$FLOOR" >"$work/floor-$n.log" 2>&1 &
  floor_pid=$!
  pids+=($floor_pid)
  wait_port "$FLOOR"
  broadcast_row "$n" floor "$floor_pid" "ws://$FLOOR/"
  report "floor $n" "$out" "$work/floor-$n.log"
  kill "$floor_pid" 2>/dev/null || true
  wait "$floor_pid" 2>/dev/null || true
done

echo
for note in "${notes[@]}"; do echo "- $note"; done
echo
echo "machine: $(machine); open-file limit $limit"
