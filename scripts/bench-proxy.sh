#!/usr/bin/env bash
# Proxy-path benchmark: gatekit (router + upstream client) vs NGINX (1 worker, upstream
# keep-alive) vs straight to the backend, HTTP/1.1 keep-alive, all in one run.
#
# The proxy under test is pinned to core 0; wrk and the backend share core 1. Reported per
# target: requests/s, p99 latency, and CPU time per request of the proxy process (utime +
# stime from /proc/PID/stat over the run, divided by completed requests) — the figure that
# is stable on a shared machine. Rounds are interleaved; the median round is reported.
# `bare` is gatekit's upstream client behind a plain hyper server with no router: the
# difference to `gatekit` is what routing, filters and header handling cost. Both gatekit
# targets serve HTTP/1 only (`ServerConfig::http2(false)`), like the NGINX listener.
# `nginx` forwards with the minimal configuration (X-Forwarded-For only); `nginx-eq` is
# the same NGINX worker on a second port adding the four headers gatekit adds
# (X-Forwarded-For/-Proto/-Host, X-Request-Id): the same work per request.
# Method, figures and history: docs/benchmarks.md.
#
# Usage: scripts/bench-proxy.sh [seconds-per-run=10] [rounds=3] [connections=64]
# Needs root once to install wrk and nginx from Debian's packages if they are missing.
# Traffic goes to 127.0.0.1 only, bounded by the run time.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${3:-64}
BACKEND=127.0.0.1:18080
GATEKIT=127.0.0.1:18081
NGINX_PORT=18082
BARE=127.0.0.1:18083
NGINX_EQ_PORT=18084
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi

cargo build --release --locked -q -p gatekit-examples --example bench_backend --example bench_gateway
BIN=target/release/examples

taskset -c 1 "$BIN/bench_backend" "$BACKEND" & PIDS+=($!)
taskset -c 0 "$BIN/bench_gateway" "$GATEKIT" "$BACKEND" & GATEKIT_PID=$!; PIDS+=($GATEKIT_PID)
taskset -c 0 "$BIN/bench_gateway" "$BARE" "$BACKEND" bare & BARE_PID=$!; PIDS+=($BARE_PID)

mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/nginx/logs/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server $BACKEND; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_EQ_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
CONF
taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & PIDS+=($!)

wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
wait_port 18080; wait_port 18081; wait_port 18083; wait_port $NGINX_PORT; wait_port $NGINX_EQ_PORT
# NGINX's worker is the child of the master we started.
NGINX_WORKER=$(pgrep -P "${PIDS[3]}" nginx | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK=$(getconf CLK_TCK)

run() { # name url pid(or -)
  local name=$1 url=$2 pid=$3 before after out reqs p99 rps cpu
  [ "$pid" != "-" ] && before=$(ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
  [ "$pid" != "-" ] && after=$(ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  if [ "$pid" != "-" ]; then
    cpu=$(awk -v t=$((after - before)) -v c="$CLK" -v n="$reqs" 'BEGIN { printf "%.2f", t / c * 1e6 / n }')
  else cpu="-"; fi
  echo "$name $rps $p99 $cpu" >> "$WORK/results"
}

# Warm up each path once, then interleave rounds.
for url in "http://$BACKEND/" "http://$GATEKIT/" "http://$BARE/" "http://127.0.0.1:$NGINX_PORT/" "http://127.0.0.1:$NGINX_EQ_PORT/"; do
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s "$url" > /dev/null
done
for r in $(seq "$ROUNDS"); do
  run direct "http://$BACKEND/" -
  run gatekit "http://$GATEKIT/" "$GATEKIT_PID"
  run bare "http://$BARE/" "$BARE_PID"
  run nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_WORKER"
  run nginx-eq "http://127.0.0.1:$NGINX_EQ_PORT/" "$NGINX_WORKER"
done

echo
echo "HTTP/1.1, $CONNS connections, ${DURATION}s x $ROUNDS rounds (median round by CPU/request)"
printf '%-8s %12s %10s %16s\n' target "requests/s" p99 "CPU µs/request"
for t in direct gatekit bare nginx nginx-eq; do
  grep "^$t " "$WORK/results" | sort -k4 -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { printf "%-8s %12s %10s %16s\n", $1, $2, $3, $4 }'
done
echo
echo "all rounds:"; cat "$WORK/results"
