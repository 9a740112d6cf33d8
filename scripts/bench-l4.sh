#!/usr/bin/env bash
# Throughput of gatekit's stream data plane (TCP, and TLS passthrough routed by SNI) side
# by side with HAProxy in TCP mode, on loopback, in one run.
#
# Every proxy relays to one sink (examples/bench_l4.rs `sink`: reads each connection to
# its end and answers the byte count); a load client (`client`) opens CONNS connections
# and sends MB megabytes through them in 64 KiB writes. For passthrough each connection
# starts with a TLS ClientHello record naming bench.test, then raw bytes: the proxies
# read the SNI and route, no TLS is done on either side, so what is measured is the relay.
#
# Targets (proxies pinned to core 0 with taskset; client and sink on core 1):
#   direct          the client straight to the sink (the ceiling; no proxy)
#   gk-tcp          `bench_l4 proxy tcp` (Server::serve_streams, current-thread runtime)
#   gk-passthrough  `bench_l4 proxy passthrough` (SNI peek, then relay)
#   haproxy-tcp     HAProxy `mode tcp`, nbthread 1
#   haproxy-sni     HAProxy `mode tcp`, `req_ssl_sni` routing after `inspect-delay`
#   bin-tcp         the `gatekit` binary (GATEKIT=path) from manifests: a TCP listener and
#   bin-passthrough a TLS Passthrough listener with a TLSRoute, one Service, as users run it
#                   (both in one process; left out when GATEKIT is unset)
#
# Metrics per target: MB/s (median over the rounds, min–max) and the proxy process's CPU
# seconds per GB relayed (utime + stime from /proc/PID/stat over the run).
#
# Usage: scripts/bench-l4.sh [MB-per-run=2000] [rounds=3]
#   env: CONNS=4, BIN (default: the bench_l4 example, built here in release),
#        GATEKIT (a release `gatekit` binary; unset: no bin-* targets)
# Needs haproxy (apt-get install haproxy).
set -euo pipefail
cd "$(dirname "$0")/.."

MB="${1:-2000}"
ROUNDS="${2:-3}"
CONNS="${CONNS:-4}"
command -v haproxy >/dev/null || { echo "haproxy is missing (apt-get install haproxy)"; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -p gatekit-examples --example bench_l4 >/dev/null
  BIN=target/release/examples/bench_l4
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

SINK=127.0.0.1:19100
taskset -c 1 "$BIN" sink "$SINK" & PIDS+=($!)
taskset -c 0 "$BIN" proxy tcp 127.0.0.1:19101 "$SINK" 2>/dev/null & GK_TCP=$!; PIDS+=($GK_TCP)
taskset -c 0 "$BIN" proxy passthrough 127.0.0.1:19102 "$SINK" 2>/dev/null & GK_SNI=$!; PIDS+=($GK_SNI)
cat >"$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend tcp
  bind 127.0.0.1:19111
  default_backend sink
frontend sni
  bind 127.0.0.1:19112
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend sink if { req_ssl_sni -i bench.test }
backend sink
  server s1 $SINK
CFG
taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 & HAPROXY=$!; PIDS+=($HAPROXY)
if [ -n "${GATEKIT:-}" ]; then
  mkdir -p "$WORK/m"
  cat >"$WORK/m/l4.yaml" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: gatekit
  listeners:
  - { name: tcp, port: 19121, protocol: TCP }
  - { name: tls, port: 19122, protocol: TLS, hostname: bench.test, tls: { mode: Passthrough } }
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: tcp, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: sink, port: 9 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: { name: tls, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: tls }]
  hostnames: [bench.test]
  rules: [{ backendRefs: [{ name: sink, port: 9 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: sink, namespace: default }
spec: { ports: [{ name: p, port: 9 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: sink-1, namespace: default, labels: { kubernetes.io/service-name: sink } }
addressType: IPv4
ports: [{ name: p, port: ${SINK##*:} }]
endpoints: [{ addresses: ["127.0.0.1"] }]
YAML
  RUST_LOG=warn taskset -c 0 "$GATEKIT" run --resources "$WORK/m" >"$WORK/gatekit.log" 2>&1 & GK_BIN=$!; PIDS+=($GK_BIN)
  TARGETS_BIN=(bin-tcp bin-passthrough)
else
  TARGETS_BIN=()
fi
sleep 1

ticks() { # utime + stime of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
HZ=$(getconf CLK_TCK)

declare -A RESULTS CPU
run() { # name addr pid [sni]
  local name=$1 addr=$2 pid=$3 sni=${4:-}
  local before after mbs
  before=$([ "$pid" = - ] && echo 0 || ticks "$pid")
  mbs=$(taskset -c 1 "$BIN" client "$addr" "$MB" "$CONNS" $sni)
  after=$([ "$pid" = - ] && echo 0 || ticks "$pid")
  RESULTS[$name]+="$mbs "
  CPU[$name]+="$(echo "($after - $before) / $HZ / ($MB / 1000)" | bc -l) "
}

TARGETS=(direct gk-tcp haproxy-tcp gk-passthrough haproxy-sni "${TARGETS_BIN[@]}")
for round in $(seq 1 "$ROUNDS"); do
  # The order rotates every round.
  for i in "${!TARGETS[@]}"; do
    t=${TARGETS[$(( (i + round) % ${#TARGETS[@]} ))]}
    case $t in
      direct) run direct "$SINK" - ;;
      gk-tcp) run gk-tcp 127.0.0.1:19101 "$GK_TCP" ;;
      gk-passthrough) run gk-passthrough 127.0.0.1:19102 "$GK_SNI" bench.test ;;
      haproxy-tcp) run haproxy-tcp 127.0.0.1:19111 "$HAPROXY" ;;
      haproxy-sni) run haproxy-sni 127.0.0.1:19112 "$HAPROXY" bench.test ;;
      bin-tcp) run bin-tcp 127.0.0.1:19121 "$GK_BIN" ;;
      bin-passthrough) run bin-passthrough 127.0.0.1:19122 "$GK_BIN" bench.test ;;
    esac
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f (%.2f-%.2f)", m, a[1], a[NR]}'; }
echo "== $MB MB per run, $CONNS connections, $ROUNDS rounds; median (min-max)"
printf '%-16s %-28s %s\n' target 'MB/s' 'proxy CPU s/GB'
for t in "${TARGETS[@]}"; do
  printf '%-16s %-28s %s\n' "$t" "$(echo "${RESULTS[$t]}" | median)" "$(echo "${CPU[$t]}" | median)"
done
