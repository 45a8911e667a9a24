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
#   PROCESSES=3 HOLD=51000 SUBSCRIBERS= bash bench/ws-scale.sh   # past one process's descriptor limit
#
# Both processes need a descriptor per socket: the counts are bounded by
# the hard RLIMIT_NOFILE (`ulimit -Hn`), which the script and the gateway
# raise their soft limits to. With PROCESSES=P (default 1), (a) runs P
# gateways on the gateway's core sharing one redis-server (the scale-out
# set-up, "Running several instances" in the README), each holding 1/P of
# the sockets from a client of its own; every room spans all P, so each
# process has an instance of every hub; RSS is the sum of the gateways'.
# (b) always uses one gateway.
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
PROCESSES=${PROCESSES:-1}
FLOOR=127.0.0.1:19033
REDIS_PORT=19034
SECRET=bench-secret-0123456789abcdef

require "" taskset curl
[ "$PROCESSES" -eq 1 ] || require "(apt-get install -y redis-server)" redis-server
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
for n in $(for h in $HOLD; do echo $((h / PROCESSES)); done) $SUBSCRIBERS; do
  if [ "$n" -gt $((limit - 100)) ]; then
    echo "bench/ws-scale.sh: $n sockets need more than the open-file limit $limit allows" >&2
    exit 1
  fi
done

build -p runtime-host --bin edgegate --example ws_bench
setup_work

# Gateway K listens on 19040+2K (admin 19041+2K) with a data directory of
# its own that shares the compiled-component cache; its configuration is
# $work/gateway-K.toml, with the shared Redis when REDIS is set.
listen() { echo "127.0.0.1:$((19040 + 2 * $1))"; }
admin() { echo "127.0.0.1:$((19041 + 2 * $1))"; }
write_config() {
  local k=$1 data="$work/data-$1"
  mkdir -p "$data" "$work/cache"
  ln -sfn "$work/cache" "$data/cache"
  cat >"$work/gateway-$k.toml" <<TOML
[server]
listen = "$(listen "$k")"
admin = "$(admin "$k")"
data_dir = "$data"
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
  if [ -n "${REDIS:-}" ]; then
    printf '\n[redis]\nurl = "redis://%s"\n' "$REDIS" >>"$work/gateway-$k.toml"
  fi
}

mint() {
  target/release/edgegate token --secret "$SECRET" --sub "$1" --roles user --ttl-s 86400
}
# One user per socket of a room; one user for every broadcast subscriber.
room_tokens=$(for u in $(seq "$ROOM_SIZE"); do mint "user-$u"; done | tr '\n' ' ')
broadcast_token=$(mint subscriber)

# metric NAME: a value from the /metrics of every running gateway, summed.
metric() {
  local k
  for k in "${!gateway_pids[@]}"; do
    curl -fs "http://$(admin "$k")/metrics" || echo "unreachable"
  done | awk -v n="$1" '$1 == n {sum += $2; seen++} /^unreachable$/ {bad = 1}
    END { if (!bad && seen) print sum }'
}
# rss_sum: the RSS of every running gateway, summed, in KiB.
rss_sum() {
  local pid sum=0
  for pid in "${gateway_pids[@]}"; do sum=$((sum + $(rss_kib "$pid"))); done
  echo "$sum"
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
# fresh_gateways COUNT LOG: COUNT new gateways (K = 0..COUNT-1, the log of
# K in LOG-K), ready, settled; their pids in gateway_pids.
gateway_pids=()
fresh_gateways() {
  local k
  for k in $(seq 0 $(($1 - 1))); do
    start_gateway "$work/gateway-$k.toml" "$2-$k"
    gateway_pids[k]=$gateway_pid
  done
  for k in "${!gateway_pids[@]}"; do wait_ready "$(admin "$k")"; done
  sleep 2
}
stop_gateways() {
  local pid
  for pid in "${gateway_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${gateway_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  gateway_pids=()
}
# settled_rss: the gateways' summed RSS once it has settled (changed by
# under 1% in 12 s, longer than the 10 s of a scaled-out hub's heartbeat;
# at most 2 minutes): a hub's memory grows after its sockets are in, as it
# answers its first events and its peers.
settled_rss() {
  local before now
  now=$(rss_sum)
  for _ in $(seq 10); do
    before=$now
    sleep 12
    now=$(rss_sum)
    [ $(((now - before) * 100)) -lt "$before" ] && [ $(((before - now) * 100)) -lt "$before" ] && break
  done
  echo "$now"
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

# The first start compiles the components into the shared cache; every
# measured start is a warm one.
write_config 0
fresh_gateways 1 "$work/gateway-warm.log"
stop_gateways

if [ -n "$HOLD" ] && [ "$PROCESSES" -gt 1 ]; then
  REDIS=127.0.0.1:$REDIS_PORT
  taskset -c 0 redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    >"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=($redis_pid)
  wait_port "$REDIS"
fi
for k in $(seq 0 $((PROCESSES - 1))); do write_config "$k"; done

per_process=$((ROOM_SIZE / PROCESSES))
echo "(a) sockets held, $((per_process * PROCESSES)) per hub, $PROCESSES gateway process(es)"
echo
echo "| sockets held | RSS idle | RSS held (hubs live) | RSS held (hubs evicted) | per socket (hubs live) | per socket (hubs evicted) | set-up |"
echo "|---|---|---|---|---|---|---|"
for n in $HOLD; do
  log="$work/gateway-hold-$n.log"
  fresh_gateways "$PROCESSES" "$log"
  idle=$(rss_sum)
  # Client K holds 1/PROCESSES of the sockets on gateway K, as users of
  # its own, in every room; held until the hubs are evicted and a sample
  # taken.
  clients=()
  for k in "${!gateway_pids[@]}"; do
    tokens=$(tr ' ' '\n' <<<"$room_tokens" | sed -n "$((k * per_process + 1)),$(((k + 1) * per_process))p" | tr '\n' ' ')
    WS_BENCH_TOKEN=$tokens WS_BENCH_HOLD_S=$((IDLE_S * 2 + 150)) \
      client "$work/hold-$n-$k" hold "ws://$(listen "$k")/ws/hold-$n-" "$((n / PROCESSES))" "$per_process"
    clients[k]=$client
  done
  for k in "${!clients[@]}"; do
    client=${clients[k]}
    wait_for holding "$work/hold-$n-$k"
  done
  live=$(settled_rss)
  open=$(metric edgegate_websocket_connections || true)
  hubs=$(metric edgegate_durable_objects_live || true)
  [ -z "${redis_pid:-}" ] || notes+=("hold $n: redis-server RSS while holding $(rss_mib "$redis_pid") MiB")
  if [ "$PROCESSES" -eq 1 ]; then
    for _ in $(seq $((IDLE_S * 2 + 10))); do
      [ "$(metric edgegate_durable_objects_live || true)" = 0 ] && break
      sleep 1
    done
    sleep 1
    evicted=$(rss_sum)
  fi
  left=$(metric edgegate_durable_objects_live || true)
  held=0
  setup=()
  for k in "${!clients[@]}"; do
    kill -TERM "${clients[k]}" 2>/dev/null || true
    wait "${clients[k]}" 2>/dev/null || true
    out="$work/hold-$n-$k"
    subscribed=$(grep -oE 'subscribed [0-9]+' "$out" | awk '{print $2}' || true)
    held=$((held + ${subscribed:-0}))
    setup+=("$(grep -oE 'sockets in [^ ]+' "$out" | sed 's/sockets in //' || true)")
    report "hold $n, process $k" "$out" "$log-$k"
  done
  per() { awk -v r="$1" -v i="$idle" -v n="$held" 'BEGIN { if (n > 0) printf "%.1f KiB", (r - i) / n; else print "-" }'; }
  if [ "$PROCESSES" -eq 1 ]; then
    evicted_mib="$((evicted / 1024)) MiB"
    evicted_per=$(per "$evicted")
  else
    # Scaled out, a hub with users sends its peers a heartbeat every 10 s,
    # so it stays live.
    evicted=$live evicted_mib=- evicted_per=-
  fi
  echo "| $held of $n | $((idle / 1024)) MiB | $((live / 1024)) MiB | $evicted_mib | $(per "$live") | $evicted_per | $(IFS=/; echo "${setup[*]}") |"
  echo "$n $held $idle $live $evicted" >>"$work/hold-results"
  notes+=("hold $n: the gateways counted $open sockets and $hubs live hubs while holding, $left live hubs at the second sample")
  stop_gateways
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
REDIS= write_config 0
for n in $SUBSCRIBERS; do
  log="$work/gateway-broadcast-$n.log"
  out="$work/broadcast-$n"
  fresh_gateways 1 "$log"
  broadcast_row "$n" edgegate "${gateway_pids[0]}" "ws://$(listen 0)/ws/broadcast-$n"
  report "broadcast $n" "$out" "$log-0"
  stop_gateways

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
