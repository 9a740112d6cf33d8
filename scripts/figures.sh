#!/usr/bin/env bash
# Figures for the gatekit binary (release build, loopback):
#   1. reload latency, write -> new route serving, with 10, 1,000 and 5,000 routes;
#   2. idle RSS of `gatekit demo`, and RSS of `gatekit run` with 5,000 routes loaded (and
#      after one reload);
#   3. requests/s through `gatekit run` vs straight to the backend (wrk).
#
# Usage: scripts/figures.sh [WRK_SECONDS]   (ports 8080, 9901, 18080, 19901 must be free)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}

# Two builds: the binary alone, as shipped (an example's dev-dependencies would change
# the features, and with them the names crates/gatekit-bin/symbol-order.txt orders).
cargo build --release --locked -q -p gatekit-bin
cargo build --release --locked -q -p gatekit-bin --example reload_latency
BIN=target/release/gatekit
EX=target/release/examples/reload_latency
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
wait_ready() { # admin address
  for _ in $(seq 200); do
    curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "not ready: $1" >&2
  return 1
}

echo "== 1. reload latency (write -> served; 20 rewrites of a probe route each)"
RUST_LOG=warn "$EX" 10 1000 5000

echo
echo "== 2. memory"
RUST_LOG=warn "$BIN" demo >"$WORK/demo.out" 2>&1 &
DEMO=$!
PIDS+=("$DEMO")
wait_ready 127.0.0.1:9901
for _ in $(seq 50); do curl -s http://127.0.0.1:8080/ >/dev/null; done
sleep 1
echo "gatekit demo, idle after 50 requests: RSS $(rss_kb "$DEMO") KB"

CANARY=$(curl -s http://127.0.0.1:9901/config | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["upstreams"]["default/canary:80"]["endpoints"][0]["address"])')
printf 'admin: { address: "127.0.0.1:19901" }\n' >"$WORK/gatekit.yaml"
mkdir -p "$WORK/m5000" "$WORK/m10"
"$EX" --write "$WORK/m5000" 5000 18080 "$CANARY"
"$EX" --write "$WORK/m10" 10 18080 "$CANARY"

RUST_LOG=warn "$BIN" run --resources "$WORK/m5000" --config "$WORK/gatekit.yaml" &
RUN=$!
PIDS+=("$RUN")
wait_ready 127.0.0.1:19901
for _ in $(seq 50); do curl -s http://127.0.0.1:18080/r4999 >/dev/null; done
sleep 1
echo "gatekit run, 5000 routes loaded: RSS $(rss_kb "$RUN") KB"
# One reload (the probe route rewritten, as reload_latency does), then RSS again.
printf -- '---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: probe, namespace: default }\nspec:\n  parentRefs: [{ name: gw }]\n  rules: [{ matches: [{ path: { type: PathPrefix, value: "/probe-1" } }], backendRefs: [{ name: web, port: 80 }] }]\n' >"$WORK/m5000/.probe.tmp"
mv "$WORK/m5000/.probe.tmp" "$WORK/m5000/probe.yaml"
sleep 1.5
echo "gatekit run, 5000 routes, after one reload: RSS $(rss_kb "$RUN") KB"
kill -TERM "$RUN"; wait "$RUN" || true

echo
echo "== 3. requests/s on loopback (wrk -t2 -c32 -d${SECS}s; gateway, backend and wrk share the machine)"
RUST_LOG=warn "$BIN" run --resources "$WORK/m10" --config "$WORK/gatekit.yaml" &
RUN=$!
PIDS+=("$RUN")
wait_ready 127.0.0.1:19901
echo "-- straight to the backend ($CANARY)"
wrk -t2 -c32 -d"${SECS}s" "http://$CANARY/r0" | grep -E "Requests/sec|Latency|Non-2xx"
echo "-- through gatekit run (10 routes)"
wrk -t2 -c32 -d"${SECS}s" "http://127.0.0.1:18080/r0" | grep -E "Requests/sec|Latency|Non-2xx"
