#!/usr/bin/env bash
# The `gatekit` binary as shipped (issue 20: at most 25 MB): the release build without
# its debug info and symbol table, and both kept beside it in `gatekit.debug`. The
# binary names that file (`.gnu_debuglink`, with its CRC), so gdb, perf and addr2line
# find it when it is placed next to the binary or under /usr/lib/debug; `deploy/Dockerfile`
# ships the first and exports the second from its `debug` stage.
#
# Usage: scripts/dist.sh [OUT_DIR]   (default dist/; writes OUT_DIR/gatekit and
#        OUT_DIR/gatekit.debug). GATEKIT_BIN=PATH splits an already built release
#        binary instead of building one (`cargo build --release --locked -p gatekit-bin`).
# Needs objcopy (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
BIN=${GATEKIT_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --locked -p gatekit-bin
  BIN=${CARGO_TARGET_DIR:-target}/release/gatekit
fi
command -v objcopy >/dev/null || { echo "dist.sh needs objcopy (binutils)" >&2; exit 1; }
mkdir -p "$OUT"
BIN=$(realpath "$BIN")
# From inside OUT, so that the link names the file alone (objcopy reads it for the CRC).
cd "$OUT"
objcopy --only-keep-debug "$BIN" gatekit.debug
objcopy --strip-all --add-gnu-debuglink=gatekit.debug "$BIN" gatekit
size() { stat -c %s "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }
echo "$OUT/gatekit: $(size gatekit) (from $(size "$BIN")); symbols and debug info: $OUT/gatekit.debug, $(size gatekit.debug)"
