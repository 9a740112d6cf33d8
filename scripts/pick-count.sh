#!/usr/bin/env bash
# Instructions per pick (and per outcome-reporting call) under callgrind: exact counts,
# which a shared 2-core machine's timings cannot give for differences of a few percent.
#
# Each row runs crates/gatekit-lb/examples/pick_count.rs twice, with N and 2N iterations,
# and prints (I(2N) - I(N)) / N: the setup (process start, endpoint set) cancels out.
# Give several binaries (e.g. builds of two commits) to get one column each.
#
# Usage: scripts/pick-count.sh BIN [BIN...]   (N=20000 by default; N=... to change)
#        EVENT=D1 scripts/pick-count.sh BIN...  counts simulated L1 data-cache misses
#        (callgrind --cache-sim=yes: its model of a 32 KB L1d) instead of instructions.
# Build: cargo build --profile bench -p gatekit-lb --example pick_count
#        (the binary is $CARGO_TARGET_DIR/release/examples/pick_count)
# Method and figures: docs/benchmarks.md, "Pick cost, instructions per pick".
set -euo pipefail

N=${N:-20000}
ROWS=${ROWS:-"round-robin:10:pick round-robin:10000:pick
least-request:10:pick least-request:100:pick least-request:1000:pick least-request:10000:pick
peak-ewma:10:pick peak-ewma:100:pick peak-ewma:1000:pick peak-ewma:10000:pick
round-robin:10:call least-request:10:call least-request:1000:call peak-ewma:10:call peak-ewma:1000:call"}

case ${EVENT:-Ir} in
    Ir) SIM=(); PATTERN='s/.*I *refs: *\([0-9,]*\).*/\1/p' ;;
    D1) SIM=(--cache-sim=yes); PATTERN='s/.*D1  misses: *\([0-9,]*\).*/\1/p' ;;
    *) echo "EVENT: Ir or D1" >&2; exit 2 ;;
esac

count() { # BIN ALG ENDPOINTS ITERATIONS MODE -> events of the whole run
    valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file=/dev/null "$1" "$2" "$3" "$4" "$5" 2>&1 |
        sed -n "$PATTERN" | tr -d , | head -1
}

printf '%-14s %6s %-5s' algorithm n mode
for bin in "$@"; do printf ' %12s' "$(basename "$(dirname "$(dirname "$(dirname "$bin")")")")"; done
echo
for row in $ROWS; do
    IFS=: read -r alg n mode <<<"$row"
    printf '%-14s %6s %-5s' "$alg" "$n" "$mode"
    for bin in "$@"; do
        a=$(count "$bin" "$alg" "$n" "$N" "$mode")
        b=$(count "$bin" "$alg" "$n" $((2 * N)) "$mode")
        printf ' %12s' "$(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / n }')"
    done
    echo
done
