#!/usr/bin/env bash
# Heap allocations per proxied request (issue 20): the gateway built as `gatekit run`
# builds it, in-process, with raw-socket backends and client; HTTP/1.1 and h2c, with 0,
# 10 and 30 extra request headers. Method: examples/alloc_per_request.rs and
# docs/benchmarks.md ("Issue 20: idle connections and allocations per request").
#
# Usage: scripts/alloc-per-request.sh [requests-per-row=20000] [headers=0,10,30]
#   env: PORT=19700 (the gateway's listener; 127.0.0.1 only)
# Built with the bench profile into $CARGO_TARGET_DIR (or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q --profile bench -p gatekit-examples --example alloc_per_request
exec "${CARGO_TARGET_DIR:-target}/release/examples/alloc_per_request" \
  --requests "${1:-20000}" --headers "${2:-0,10,30}" --port "${PORT:-19700}"
