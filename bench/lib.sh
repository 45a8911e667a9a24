# Shared helpers of the bench/*.sh scripts. Source it after changing to the
# repository root:  source bench/lib.sh
#
# Processes started with start_origin / start_gateway are recorded in `pids`
# and stopped on exit, together with an nginx whose pid file is
# $work/nginx.pid; $work is removed on exit.

# require HINT TOOL...: exits unless every TOOL is on PATH; HINT (may be
# empty) is appended to the message, e.g. "(apt-get install -y wrk)".
require() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench/${0##*/} needs $tool${hint:+ $hint}" >&2; exit 1; }
  done
}

# build ARGS...: `cargo build --release ARGS...`, output on stderr.
build() {
  cargo build --release "$@" >&2
}

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}

# setup_work: a fresh temp dir in $work, an empty `pids`, cleanup on exit.
setup_work() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}

# start_origin ADDR: the loopback bench origin on core 0.
start_origin() {
  taskset -c 0 target/release/bench-origin "$1" 2>/dev/null &
  pids+=($!)
}

# start_nginx LISTEN ORIGIN: nginx `proxy_pass` to ORIGIN on core 1, the
# baseline of the proxy benchmarks: one worker, upstream keep-alive, no
# access log, no auth.
start_nginx() {
  cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server $2; keepalive 128; }
  server {
    listen $1;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" 2>/dev/null
}

# start_gateway CONFIG LOG [ARGS...]: `edgegate serve` ($EDGEGATE, by
# default target/release/edgegate) on core 1 with its output in LOG; its
# pid is left in $gateway_pid.
start_gateway() {
  local config=$1 log=$2
  shift 2
  EDGEGATE_LOG=warn taskset -c 1 "${EDGEGATE:-target/release/edgegate}" serve --config "$config" "$@" >"$log" 2>&1 &
  gateway_pid=$!
  pids+=($gateway_pid)
}

# jwt_route_config FILE LISTEN ADMIN ORIGIN SECRET: the gateway the proxy
# benchmarks measure: one JWT (HS256) route /api needing role `user` in front
# of ORIGIN, storage under $work/data, access log off (nginx runs without
# one too).
jwt_route_config() {
  cat >"$1" <<EOF
[server]
listen = "$2"
admin = "$3"
data_dir = "$work/data"

[gateway]
access_log = false

[[upstreams]]
name = "origin"
targets = [{ url = "http://$4" }]

[auth.jwt]
keys = [{ alg = "HS256", secret = "$5" }]

[[routes]]
name = "api"
match = { path_prefix = "/api" }
upstream = "origin"
auth = "jwt"
roles = ["user"]
EOF
}

# rate_limited_route_config: a route block to append to jwt_route_config's
# file: /limited, the same JWT route plus a per-user sliding-window rate limit
# (a Durable Object per user) high enough never to refuse.
rate_limited_route_config() {
  cat <<EOF

[[rate_limits]]
name = "per-user"
algorithm = "sliding_window"
key = "user"
limit = 1000000000000
period_s = 60

[[routes]]
name = "limited"
match = { path_prefix = "/limited" }
upstream = "origin"
auth = "jwt"
roles = ["user"]
rate_limits = ["per-user"]
EOF
}

# wait_ready ADMIN: waits (at most about 10 s) until http://ADMIN/readyz answers.
wait_ready() {
  for _ in $(seq 100); do
    curl -fs "http://$1/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}

# wait_port HOST:PORT: waits (at most about 10 s) until a TCP connect succeeds.
wait_port() {
  for _ in $(seq 100); do
    (: >"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && break
    sleep 0.1
  done
}

# wrk_latency ARGS...: one wrk run from core 0 with CONNS connections for
# DURATION seconds and latency percentiles.
wrk_latency() {
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@"
}

# wrk_figures OUTPUT: "requests/s p50 p99" from the output of wrk_latency.
wrk_figures() {
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$1")
  p50=$(awk '$1=="50%" {print $2}' <<<"$1")
  p99=$(awk '$1=="99%" {print $2}' <<<"$1")
  echo "$rps $p50 $p99"
}

# field NAME N: field N of every line of $work/results that starts with NAME.
field() {
  awk -v n="$1" -v f="$2" '$1==n {print $f}' "$work/results"
}

to_ms() { # wrk prints 1.23ms / 456.00us / 1.20s
  awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 } printf "%.3f\n", v }'
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }'; }

# cpu_ticks PID: user + system CPU time of PID, in clock ticks
# (`getconf CLK_TCK` a second).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# cpu_split PID: "user system" CPU time of PID, in clock ticks.
cpu_split() { awk '{print $14, $15}' "/proc/$1/stat"; }

# cpu_us_per_request TICKS WRK_OUTPUT: CPU µs per request, from the clock
# ticks a process used during a wrk run and that run's output.
cpu_us_per_request() {
  local requests
  requests=$(awk '/requests in/ {print $1}' <<<"$2")
  awk -v t="$1" -v r="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz * 1e6 / r }'
}

# rss_kib PID / rss_mib PID: the resident set size of PID in KiB / MiB.
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
rss_mib() { echo $(( $(rss_kib "$1") / 1024 )); }

# machine: "<cores> cores, <cpu model>".
machine() {
  echo "$(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
}
