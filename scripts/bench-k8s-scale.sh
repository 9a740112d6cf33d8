#!/usr/bin/env bash
# The Kubernetes path at scale (issue 19), measured from outside against the release
# `gatekit` binary run as in a cluster (`gatekit run --config FILE` with a `kubernetes:`
# cluster), against the in-process API server gatekit-k8s-fake (TLS, real list/watch),
# with 1,000 and 10,000 routes (each with its own Service and one EndpointSlice of 5
# endpoints: 10,000 routes = 50,000 endpoints).
#
# The measuring tool is examples/k8s_scale.rs (its doc comment says what each figure
# is): it runs the API server and the backends itself, fills the API server, starts a
# fresh gatekit process where a phase needs one and sends every request itself. Per
# size: start → /readyz and → last route 200, RSS; a route added / its path changed /
# deleted through the API (p50 / p99 of REPEATS) under a steady RATE requests/s to
# another route (errors); an EndpointSlice endpoint moved → first request there; the
# memory of MORE more routes and MORE more endpoints; SECRETS unrelated TLS Secrets
# applied (RSS before / after, reloads they cause) and a fresh start with them present;
# the binary's own reload timings.
#
# Usage: scripts/bench-k8s-scale.sh [SIZE...]   (default: 1000 10000)
#   env: REPEATS=20, RATE=200, MORE=1000, SECRETS=10000, GATEKIT_BIN (default:
#        target/release/gatekit, built here with cargo build --release --locked),
#        TABLE=FILE (the markdown table, rewritten after every size), KEEP=1 (keep the
#        work dir with gatekit's logs)
# Loopback only (127.0.0.1-7); ports PORT..PORT+3 (default 19430-19433: listener, admin, backends, extra
# backends) must be free; the API server takes a free port. No root needed.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000)
REPEATS=${REPEATS:-20}
RATE=${RATE:-200}
MORE=${MORE:-1000}
SECRETS=${SECRETS:-10000}
PORT=${PORT:-19430}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ -z "${GATEKIT_BIN:-}" ]; then
  cargo build --release --locked -q -p gatekit-bin
  GATEKIT_BIN=$TARGET_DIR/release/gatekit
fi
# The tool (API server, backends, clients) needs no whole-program optimisation: the
# bench profile is the release one without fat LTO (cargo puts it under release/).
cargo build --profile bench --locked -q -p gatekit-examples --example k8s_scale
TOOL=$TARGET_DIR/release/examples/k8s_scale

busy=$(ss -Hltn | awk '{print $4}' | grep -E ":($PORT|$((PORT + 1))|$((PORT + 2))|$((PORT + 3)))\$" || true)
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

echo "k8s path at scale: $(realpath "$GATEKIT_BIN"), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); REPEATS=$REPEATS RATE=$RATE MORE=$MORE SECRETS=$SECRETS"
"$TOOL" --gatekit "$GATEKIT_BIN" --work "$WORK" --port "$PORT" --repeats "$REPEATS" \
  --rate "$RATE" --more "$MORE" --secrets "$SECRETS" ${TABLE:+--table "$TABLE"} "${SIZES[@]}" &
TOOL_PID=$!
wait "$TOOL_PID"
TOOL_PID=
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
