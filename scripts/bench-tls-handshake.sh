#!/usr/bin/env bash
# TLS handshakes per second against the release `gatekit` binary on an HTTPS listener,
# full handshakes and resumed ones, side by side with NGINX, on loopback, in one run
# (issue 17).
#
# One certificate for everybody: an ECDSA P-256 leaf for bench.test issued by a CA made
# here with openssl. Servers (pinned to core 0 with taskset; the client on core 1):
#   gk       `gatekit run` with its defaults: HTTPS listener, resumption on (TLS 1.3
#            tickets and a bounded session cache); no route, so every request is a 404
#   gk-off   the same with a ClientTrafficPolicy `tls.session.resumption: {}` (off)
#   nginx    NGINX 1 worker, `ssl_session_cache shared:SSL:10m; ssl_session_tickets on;`
#            answering `return 404;`
#   nginx-off  the same worker with `ssl_session_cache off; ssl_session_tickets off;`
# Client: examples/tls_handshake.rs (rustls): CONNS tasks, each in a loop connect, TLS
# handshake, `GET /` with `connection: close`, read to the end, close. Modes: `full`
# (client resumes nothing) and `resume` (client keeps rustls' session store).
#
# Metrics per (server, mode): connections per second (median over the rounds, min–max),
# the share of resumed handshakes the client saw, and the server process's CPU time per
# connection (utime + stime from /proc/PID/stat over the run).
#
# Usage: scripts/bench-tls-handshake.sh [seconds-per-run=5] [rounds=3]
#   env: CONNS=8, GATEKIT (default target/release/gatekit), CLIENT (default
#        target/release/examples/tls_handshake; both built here in release if missing)
# Needs openssl and nginx (/usr/sbin/nginx). Ports 19443-19444 (gatekit), 19543-19544
# (NGINX), 19943-19944 (gatekit admin); 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-5}"
ROUNDS="${2:-3}"
CONNS="${CONNS:-8}"
NGINX="${NGINX:-/usr/sbin/nginx}"
GATEKIT="${GATEKIT:-target/release/gatekit}"
CLIENT="${CLIENT:-target/release/examples/tls_handshake}"
command -v openssl >/dev/null || { echo "openssl is missing"; exit 1; }
[ -x "$NGINX" ] || { echo "nginx is missing ($NGINX)"; exit 1; }
if [ ! -x "$GATEKIT" ] || [ ! -x "$CLIENT" ]; then
  # Two builds: the binary alone, as shipped (see scripts/symbol-order.sh).
  cargo build --release --locked -p gatekit-bin >/dev/null
  cargo build --release --locked -p gatekit-examples --example tls_handshake >/dev/null
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# --- the certificate -------------------------------------------------------------------
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${EC[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 \
  -subj /CN=bench-ca 2>/dev/null
openssl req "${EC[@]}" -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" -subj /CN=bench.test 2>/dev/null
printf 'subjectAltName=DNS:bench.test\nbasicConstraints=CA:FALSE\n' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -out "$WORK/leaf.pem" -days 2 -extfile "$WORK/leaf.ext" 2>/dev/null

# --- gatekit ---------------------------------------------------------------------------
gk_dir() { # name port admin off?
  local d=$WORK/$1
  mkdir -p "$d/manifests"
  printf 'admin: { address: "127.0.0.1:%s" }\n' "$3" >"$d/gatekit.yaml"
  cat >"$d/manifests/bench.yaml" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: gatekit
  listeners:
  - name: https
    port: $2
    protocol: HTTPS
    hostname: bench.test
    tls: { mode: Terminate, certificateRefs: [{ name: bench-cert }] }
---
apiVersion: v1
kind: Secret
metadata: { name: bench-cert, namespace: default }
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$WORK/leaf.pem")
  tls.key: $(base64 -w0 "$WORK/leaf.key")
YAML
  if [ "${4:-}" = off ]; then
    cat >"$d/manifests/ctp.yaml" <<YAML
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: { name: no-resumption, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]
  tls: { session: { resumption: {} } }
YAML
  fi
  taskset -c 0 "$GATEKIT" run --resources "$d/manifests" --config "$d/gatekit.yaml" >"$d/log" 2>&1 &
  GK_STARTED=$!
  PIDS+=($GK_STARTED)
}
gk_dir gk 19443 19943; GK=$GK_STARTED
gk_dir gk-off 19444 19944 off; GK_OFF=$GK_STARTED

# --- nginx -----------------------------------------------------------------------------
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_certificate $WORK/leaf.pem;
  ssl_certificate_key $WORK/leaf.key;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {
    listen 127.0.0.1:19543 ssl;
    server_name bench.test;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / { return 404; }
  }
  server {
    listen 127.0.0.1:19544 ssl;
    server_name bench.test;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / { return 404; }
  }
}
CONF
taskset -c 0 "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
  >"$WORK/nginx/out.log" 2>&1 &
NGINX_MASTER=$!
PIDS+=($NGINX_MASTER)

# Ready: every server answers one request.
for port in 19443 19444 19543 19544; do
  ok=
  for _ in $(seq 200); do
    if curl -sk --resolve "bench.test:$port:127.0.0.1" -o /dev/null "https://bench.test:$port/"; then
      ok=1; break
    fi
    sleep 0.05
  done
  [ -n "$ok" ] || { echo "nothing serves TLS on $port"; cat "$WORK"/gk*/log "$WORK/nginx/error.log" 2>/dev/null; exit 1; }
done
# The NGINX worker does the TLS work.
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

declare -A RATE RESUMED CPU
run() { # name port pid mode
  local before after line rate resumed errors
  before=$(ticks "$3")
  line=$(taskset -c 1 "$CLIENT" "127.0.0.1:$2" bench.test "$WORK/ca.pem" "$DURATION" "$CONNS" "$4")
  after=$(ticks "$3")
  read -r rate resumed errors <<<"$line"
  [ "$errors" = 0 ] || echo "WARNING: $1 $4: $errors failed connections" >&2
  RATE[$1-$4]+="$rate "
  RESUMED[$1-$4]+="$resumed "
  CPU[$1-$4]+="$(echo "($after - $before) * 1000000 / $HZ / ($rate * $DURATION)" | bc -l) "
}

TARGETS=("gk 19443 $GK" "gk-off 19444 $GK_OFF" "nginx 19543 $NGINX_WORKER" "nginx-off 19544 $NGINX_WORKER")
for round in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    for mode in full resume; do
      # shellcheck disable=SC2086
      run $t "$mode"
    done
  done
  echo "round $round done" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.0f (%.0f-%.0f)", m, a[1], a[NR]}'; }
median1() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]}'; }
echo "TLS handshakes: ${DURATION}s x $ROUNDS rounds, $CONNS client tasks, ECDSA P-256, loopback"
printf '%-20s %-22s %-10s %s\n' "server / client" "conn/s median (min-max)" "resumed %" "server CPU us/conn"
for t in gk gk-off nginx nginx-off; do
  for mode in full resume; do
    k=$t-$mode
    printf '%-20s %-22s %-10s %s\n' "$t / $mode" "$(echo "${RATE[$k]}" | median)" \
      "$(echo "${RESUMED[$k]}" | median1)" "$(echo "${CPU[$k]}" | median)"
  done
done
