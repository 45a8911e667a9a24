#!/usr/bin/env bash
# Side-by-side proxy benchmark, one run: the origin directly, nginx
# `proxy_pass` (no auth), and edgegate on a JWT (HS256) route, all in front of
# the same loopback origin. The origin and the load generator share core 0;
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

for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh needs $tool (apt-get install -y wrk nginx)" >&2; exit 1; }
done

cargo build --release -p runtime-host -p edgegate-bench >&2
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

taskset -c 0 target/release/bench-origin "$ORIGIN" 2>/dev/null &
pids+=($!)

cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $ORIGIN; keepalive 128; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null

cat > "$work/gateway.toml" <<EOF
[server]
listen = "$GATEWAY"
admin = "$ADMIN"
data_dir = "$work/data"

[gateway]
access_log = false   # nginx runs with access_log off too

[[upstreams]]
name = "origin"
targets = [{ url = "http://$ORIGIN" }]

[auth.jwt]
keys = [{ alg = "HS256", secret = "$SECRET" }]

[[routes]]
name = "api"
match = { path_prefix = "/api" }
upstream = "origin"
auth = "jwt"
roles = ["user"]
EOF
EDGEGATE_LOG=warn taskset -c 1 target/release/edgegate serve --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)
targets="direct nginx edgegate"
if [ -n "${BASELINE_COMPONENT:-}" ]; then
  sed -e "s/$GATEWAY/$BASELINE/; s/$ADMIN/$BASELINE_ADMIN/; s#$work/data#$work/data-baseline#" \
    "$work/gateway.toml" >"$work/baseline.toml"
  EDGEGATE_LOG=warn taskset -c 1 target/release/edgegate serve --config "$work/baseline.toml" \
    --component "$BASELINE_COMPONENT" >"$work/baseline.log" 2>&1 &
  pids+=($!)
  targets="$targets edgegate-baseline"
fi
for admin in $ADMIN ${BASELINE_COMPONENT:+$BASELINE_ADMIN}; do
  for _ in $(seq 100); do
    curl -fs "http://$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
token=$(target/release/edgegate token --secret "$SECRET" --sub bench --roles user --ttl-s 86400)

run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$3" "$2")
  else
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2")
  fi
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  echo "$1 $rps $p50 $p99 ${errors:-}" >>"$work/results"
}

# Warm every path once (connection pools, compiled code).
curl -fs "http://$NGINX/api/x" >/dev/null
curl -fs -H "authorization: Bearer $token" "http://$GATEWAY/api/x" >/dev/null
[ -n "${BASELINE_COMPONENT:-}" ] && curl -fs -H "authorization: Bearer $token" "http://$BASELINE/api/x" >/dev/null
for _ in $(seq "$ROUNDS"); do
  run direct "http://$ORIGIN/api/x"
  run nginx "http://$NGINX/api/x"
  run edgegate "http://$GATEWAY/api/x" "authorization: Bearer $token"
  if [ -n "${BASELINE_COMPONENT:-}" ]; then
    run edgegate-baseline "http://$BASELINE/api/x" "authorization: Bearer $token"
  fi
done

to_ms() { # wrk prints 1.23ms / 456.00us / 1.20s
  awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } printf "%.3f\n", v }'
}
median() { sort -g | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }'; }

echo "| target | requests/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for name in $targets; do
  rps=$(awk -v n="$name" '$1==n {print $2}' "$work/results" | median)
  p50=$(awk -v n="$name" '$1==n {print $3}' "$work/results" | to_ms | median)
  p99=$(awk -v n="$name" '$1==n {print $4}' "$work/results" | to_ms | median)
  echo "| $name | $rps | $p50 | $p99 |"
done
if grep -q "Non-2xx\|Socket" "$work/results"; then
  echo
  echo "errors seen:"
  grep "Non-2xx\|Socket" "$work/results"
fi
echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'); wrk -t1 -c$CONNS -d${DURATION}s; $(nginx -v 2>&1)"
