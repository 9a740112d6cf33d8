#!/usr/bin/env bash
# Writes crates/gatekit-bin/symbol-order.txt: the functions a training run of the release
# `gatekit` binary executes, most instructions first. crates/gatekit-bin/build.rs passes
# the file to the linker (lld's --symbol-ordering-file) for release builds, so that what
# start-up and serving run sits together at the start of .text instead of in 64 KiB
# windows spread over all of its 20 MB: an idle gateway then maps a third of the pages
# (docs/benchmarks.md, "The binary's own pages").
#
# The training run (valgrind's callgrind, loopback only, about 30 s):
#   1. `gatekit demo`: HTTP/1.1 and h2 requests through the weighted split and the header
#      match, a POST, the admin API's /metrics, /config and /readyz;
#   2. `gatekit run --resources DIR` on the demo's manifests (`demo --write DIR` serves the
#      backends): the same requests, then a route edited, added and deleted (reloads),
#      200 routes written and deleted, error responses (no ready endpoint, a refused
#      connection), and 600 routes written in one change and deleted in one.
#
# Symbol names carry rustc's hashes, which change with the toolchain, with dependency
# versions (Cargo.lock) and with the features cargo unifies for a build: the order holds
# for the shipped build, `cargo build --release --locked -p gatekit-bin`, and not for one
# that builds examples or other packages with it (16% of the names left). Run this again
# after a toolchain or Cargo.lock change, then rebuild. A stale
# file costs nothing but the ordering (lld skips names it does not find);
# `scripts/symbol-order.sh --check [BIN]` says how much of the file a binary still has.
#
# Needs valgrind, curl and h2load (Debian: valgrind curl nghttp2-client) and python3.
# Ports 19310 and 19311 must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=crates/gatekit-bin/symbol-order.txt

build() {
  cargo build --release --locked -q -p gatekit-bin
  echo "${CARGO_TARGET_DIR:-target}/release/gatekit"
}

if [ "${1:-}" = "--check" ]; then
  BIN=${2:-$(build)}
  python3 - "$OUT" "$BIN" <<'EOF'
import subprocess, sys
names = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith('#')]
nm = subprocess.run(['nm', sys.argv[2]], capture_output=True, text=True, check=True).stdout
have = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3}
found = sum(n in have for n in names)
print(f'{found} of {len(names)} ordered symbols are in {sys.argv[2]} ({100 * found / max(len(names), 1):.0f}%)')
EOF
  exit 0
fi

for tool in valgrind curl h2load python3; do
  command -v "$tool" >/dev/null || { echo "symbol-order.sh needs $tool" >&2; exit 1; }
done
BIN=${GATEKIT_BIN:-$(build)}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=19310 ADMIN=19311
ready() {
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "127.0.0.1:$ADMIN/readyz" && return 0
    sleep 0.2
  done
  echo "gatekit did not become ready" >&2
  exit 1
}
traffic() {
  for _ in $(seq 1 30); do curl -s -o /dev/null "127.0.0.1:$PORT/"; done
  curl -s -o /dev/null -H 'x-canary: true' "127.0.0.1:$PORT/"
  curl -s -o /dev/null -X POST --data-binary 'hello' "127.0.0.1:$PORT/"
  curl -s -o /dev/null --http2-prior-knowledge "127.0.0.1:$PORT/"
  h2load -n 200 -c 2 -m 8 "http://127.0.0.1:$PORT/" >/dev/null
  for path in metrics config readyz healthz; do curl -s -o /dev/null "127.0.0.1:$ADMIN/$path"; done
}
# Runs the rest of the arguments under callgrind, writing its profile to $1.
profile() {
  local out=$1
  shift
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$out" "$@" \
    >"$out.log" 2>&1 &
  PIDS+=($!)
}
stop_last() {
  local pid=${PIDS[-1]}
  kill -TERM "$pid"
  wait "$pid" || true
}

# 1. The demo.
profile "$WORK/demo.cg" "$BIN" demo --port "$PORT" --admin-port "$ADMIN"
ready
traffic
stop_last

# 2. `gatekit run` on the demo's manifests, with reloads.
"$BIN" demo --write "$WORK/res" >"$WORK/backends.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -f "$WORK/res/canary.yaml" ] && break; sleep 0.1; done
sed -i "s/port: 8080/port: $PORT/" "$WORK/res/gateway.yaml"
printf 'admin: { address: "127.0.0.1:%s" }\n' "$ADMIN" >"$WORK/settings.yaml"
profile "$WORK/run.cg" "$BIN" run --resources "$WORK/res" --config "$WORK/settings.yaml"
ready
traffic
generation() { curl -s "127.0.0.1:$ADMIN/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
reload() {
  local before
  before=$(generation)
  "$@"
  for _ in $(seq 1 300); do [ "$(generation)" != "$before" ] && return 0; sleep 0.2; done
  echo "no reload after: $*" >&2
  exit 1
}
reload sed -i 's/weight: 70/weight: 60/' "$WORK/res/gateway.yaml"
extra() {
  cat >"$WORK/res/extra.yaml" <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: extra, namespace: default }
spec:
  parentRefs: [{ name: demo }]
  hostnames: ["extra.example"]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /extra } }]
    backendRefs: [{ name: blue, port: 80 }]
YAML
}
reload extra
curl -s -o /dev/null -H 'host: extra.example' "127.0.0.1:$PORT/extra/a"
reload rm "$WORK/res/extra.yaml"
# Many routes, as `live_change` writes them: 100 to a file, each with its own Service
# and EndpointSlice (to the blue backend), then one slice rewritten and all deleted.
BLUE=$(sed -n 's/^ports: \[{ name: http, port: \([0-9]*\) }\]/\1/p' "$WORK/res/blue.yaml")
routes() {
  local file=$1 first=$2 i
  for ((i = first; i < first + 100; i++)); do
    cat <<YAML
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r$i, namespace: default }
spec:
  parentRefs: [{ name: demo }]
  hostnames: ["r$i.example"]
  rules:
  - matches: [{ path: { type: PathPrefix, value: "/" } }]
    backendRefs: [{ name: r$i, port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: r$i, namespace: default }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: r$i-1, namespace: default, labels: { kubernetes.io/service-name: r$i } }
addressType: IPv4
ports: [{ name: http, port: $BLUE }]
endpoints: [{ addresses: ["127.0.0.1"], conditions: { ready: true } }]
YAML
  done >"$WORK/res/$file"
}
reload routes routes-0.yaml 0
reload routes routes-1.yaml 100
for i in 0 1 150 199; do curl -s -o /dev/null -H "host: r$i.example" "127.0.0.1:$PORT/"; done
reload sed -i 's/"127.0.0.1"\], conditions: { ready: true }/"127.0.0.1"], conditions: { ready: false }/' "$WORK/res/routes-1.yaml"
# Errors: no ready endpoint (503), and an endpoint that refuses connections (port 1).
for i in 150 199; do curl -s -o /dev/null -H "host: r$i.example" "127.0.0.1:$PORT/"; done
reload sed -i "s/port: $BLUE }\]/port: 1 }]/" "$WORK/res/routes-0.yaml"
for i in 0 1 2; do curl -s -o /dev/null -H "host: r$i.example" "127.0.0.1:$PORT/"; done
# A batch: 600 routes in six files at once, then all deleted at once.
batch() { for f in 2 3 4 5 6 7; do routes "routes-$f.yaml" $((f * 100)); done; }
reload batch
curl -s -o /dev/null -H "host: r777.example" "127.0.0.1:$PORT/"
reload rm "$WORK/res"/routes-*.yaml
traffic
stop_last

{
  echo "# The functions a training run of the release gatekit binary executes, most"
  echo "# instructions first: written by scripts/symbol-order.sh, read by build.rs. Do not edit."
  echo "# $(rustc -V); Cargo.lock sha256 $(sha256sum Cargo.lock | cut -d' ' -f1)"
  python3 - "$WORK/demo.cg" "$WORK/run.cg" "$BIN" <<'EOF'
import collections, re, subprocess, sys
cost = collections.Counter()
for path in sys.argv[1:3]:
    names, current = {}, None
    for line in open(path, errors='replace'):
        m = re.match(r'^(c?fn)=\((\d+)\)(?: (.*))?$', line.rstrip('\n'))
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == 'fn':
                current = names.get(ident)
            cost[names.get(ident)] += 0
            continue
        if current and line[:1].isdigit():
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                cost[current] += int(fields[1])
nm = subprocess.run(['nm', sys.argv[3]], capture_output=True, text=True, check=True).stdout
text = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in 'tT'}
for name, _ in cost.most_common():
    if name in text:
        print(name)
EOF
} >"$OUT.new"
mv "$OUT.new" "$OUT"
echo "wrote $OUT: $(grep -vc '^#' "$OUT") functions; rebuild (cargo build --release --locked -p gatekit-bin) to use it"
