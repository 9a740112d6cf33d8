#!/usr/bin/env bash
# Live change at scale (issue 19), measured from outside against the release `gatekit`
# binary: `gatekit run --resources DIR --config FILE`, as a user runs it, with 10 / 1,000 /
# 3,000 / 5,000 / 10,000 routes (smallest first, so the small sizes are recorded even if
# a run is cut short).
#
# The measuring tool is examples/live_change.rs (its doc comment says what each figure
# is): it writes the manifests (every route with its own Service and EndpointSlice, 100
# routes to a file, routes told apart by hostname and by path prefix on shared
# hostnames, one Gateway with an HTTP listener on 127.0.0.1), serves the backends
# itself, starts a fresh gatekit process per phase and sends every request itself
# (nothing else to install). Per size: RSS of the fresh process; a route added as a new
# file, changed, deleted (write → served, p50 / p99 of REPEATS); an EndpointSlice
# rewrite (write → new endpoint's first request; how long the removed one still gets
# requests); EDITS route file edits under a steady RATE requests/s (errors); RSS idle,
# after the routes are written into the running gateway, and after they are deleted;
# the binary's own reload timings (load / translate / apply).
#
# Usage: scripts/bench-live-change.sh [SIZE...]   (default: 10 1000 3000 5000 10000)
#   env: REPEATS=30, EDITS=100, RATE=500, GATEKIT_BIN (default: target/release/gatekit,
#        built here with cargo build --release --locked), TABLE=FILE (the markdown table,
#        rewritten after every size), KEEP=1 (keep the work dir with gatekit's logs)
# Loopback only; bounded by the counts above. Ports 19300-19304 (listener, admin, the
# routes' backend, the two endpoint backends) must be free. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10 1000 3000 5000 10000)
REPEATS=${REPEATS:-30}
EDITS=${EDITS:-100}
RATE=${RATE:-500}
PORT=19300
TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ -z "${GATEKIT_BIN:-}" ]; then
  cargo build --release --locked -q -p gatekit-bin
  GATEKIT_BIN=$TARGET_DIR/release/gatekit
fi
cargo build --release --locked -q -p gatekit-examples --example live_change
TOOL=$TARGET_DIR/release/examples/live_change

busy=$(ss -Hltn | awk '{print $4}' | grep -E ':1930[0-4]$' || true)
if [ -n "$busy" ]; then echo "ports in use, stop what listens there first:" >&2; echo "$busy" >&2; exit 1; fi

WORK=$(mktemp -d)
TOOL_PID=
cleanup() {
  [ -z "$TOOL_PID" ] || kill -TERM "$TOOL_PID" 2>/dev/null || true
  # The gatekit process the tool started last (the tool kills it on a normal exit).
  [ ! -f "$WORK/gatekit.pid" ] || kill -TERM "$(cat "$WORK/gatekit.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "live change at scale: $(realpath "$GATEKIT_BIN"), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); REPEATS=$REPEATS EDITS=$EDITS RATE=$RATE"
"$TOOL" --gatekit "$GATEKIT_BIN" --work "$WORK" --port "$PORT" --repeats "$REPEATS" \
  --edits "$EDITS" --rate "$RATE" ${TABLE:+--table "$TABLE"} "${SIZES[@]}" &
TOOL_PID=$!
wait "$TOOL_PID"
TOOL_PID=
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
