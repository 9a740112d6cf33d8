#!/usr/bin/env bash
# Benchmark of the release `gatekit` binary (what users run), side by side with NGINX and
# HAProxy, HTTP/1.1 and h2c, all in one run; several gatekit builds can be compared in
# the same run (before / after).
#
# Each gatekit binary runs `gatekit run --resources DIR --config FILE` with its defaults
# (multi-thread runtime, HTTP listener serving HTTP/1.1 and h2c by preface, access log off)
# on manifests written here: one Gateway (HTTP listener on 127.0.0.1), one HTTPRoute
# (PathPrefix /), one Service whose two EndpointSlices point at two bench backends
# (examples/bench_backend.rs on two ports). The settings file only moves the admin port.
#
# Targets (proxy pinned to core 0 with taskset; load generator and backends on core 1):
#   direct      wrk straight to one backend (the ceiling; no proxy CPU)
#   gk:NAME     each gatekit binary of GATEKIT_BINS (HTTP/1.1 and h2)
#   nginx       NGINX, 1 worker, upstream keepalive to both backends, X-Forwarded-For only
#   nginx-eq    the same worker adding the headers gatekit adds by default:
#               X-Forwarded-For/-Proto/-Host and X-Request-Id ($request_id)
#   haproxy     HAProxy, nbthread 1, both backends, the same four headers (HTTP/1.1 and h2)
# h2 (h2c prior knowledge, upstream still HTTP/1.1): direct-h2, gk:NAME-h2, nginx-h2 (the
# nginx-eq location on a `listen ... http2` port), haproxy-h2 (`bind ... proto h2`).
# Loads: HTTP/1.1 `wrk -t1 -c$CONNS`, h2 `h2load -c$H2_CLIENTS -m$H2_STREAMS`.
#
# Metric: CPU time per completed request of the proxy process (utime + stime of all its
# threads from /proc/PID/stat over the run / completed requests). Rounds are interleaved
# (the order rotates every round) and every gatekit binary is started afresh each round;
# per target the median and the min–max over the rounds are printed, then the ratios
# gatekit/nginx-eq, gatekit/nginx, gatekit-h2/haproxy-h2, gatekit-h2/nginx-h2 (ratio of
# medians, and the min–max of the per-round ratios), each binary against the first one,
# and each binary's idle RSS. A ratio whose per-round range straddles 1.00 is "no change".
# Method and history: docs/benchmarks.md.
#
# Usage: scripts/bench-binary.sh [seconds-per-run=5] [rounds=6]
#   env: ROUNDS, DURATION (override the arguments), CONNS=64, H2_CLIENTS=16, H2_STREAMS=16,
#        GATEKIT_BINS="before=/path/gatekit after=target/release/gatekit" (default:
#        "gatekit=target/release/gatekit", built here with cargo build --release --locked),
#        BACKEND_BIN (default: the bench_backend example, built here), NO_H2=1, NO_HAPROXY=1,
#        PROFILES="NAME=PROFILE ..." to run a binary of GATEKIT_BINS with other settings or
#        policies (the same binary may appear under several names):
#          default   the binary's defaults (trafficDefaults on: unsent requests retried
#                    once, refusing endpoints ejected)
#          bare      trafficDefaults off: no traffic policy at all
#          policy    a traffic policy on the route: retry (2 attempts, gateway errors), a
#                    rate limit by client address that never trips, a concurrency and a
#                    body limit, and a circuit breaker with a retry budget on the Service
#          local-limit   an Envoy Gateway BackendTrafficPolicy on the route: one rate
#                        limit (type: Local) that never trips
#          global-limit  the same limit with type: Global, decided in a redis-server
#                        (started here on 127.0.0.1:19087, core 1) named by `redis:`
# Needs root once to install wrk, nginx-light, nghttp2-client (h2load), haproxy (and
# redis-server for global-limit) from
# Debian's packages if missing. Traffic goes to 127.0.0.1 only, bounded by the run time.
# Ports used: 19080-19099 (backends, NGINX, HAProxy), 19100+i (gatekit i), 19900+i (admin).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-${1:-5}}
ROUNDS=${ROUNDS:-${2:-6}}
CONNS=${CONNS:-64}
H2_CLIENTS=${H2_CLIENTS:-16}
H2_STREAMS=${H2_STREAMS:-16}
NO_H2=${NO_H2:-0}
NO_HAPROXY=${NO_HAPROXY:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

BACKEND_A=127.0.0.1:19080
BACKEND_B=127.0.0.1:19081
NGINX_PORT=19082
NGINX_EQ_PORT=19083
NGINX_H2_PORT=19084
HAPROXY_PORT=19085
HAPROXY_H2_PORT=19086

WORK=$(mktemp -d)
PIDS=()          # long-lived helpers (backends, nginx, haproxy)
declare -A GK_PID=()
cleanup() {
  for p in "${GK_PID[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need wrk || missing+=(wrk)
need nginx || missing+=(nginx-light)
[ "$NO_H2" = 1 ] || need h2load || missing+=(nghttp2-client)
[ "$NO_HAPROXY" = 1 ] || need haproxy || missing+=(haproxy)
case " ${PROFILES:-} " in *=global-limit\ *) need redis-server || missing+=(redis-server) ;; esac
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- binaries --------------------------------------------------------------------------
if [ -z "${GATEKIT_BINS:-}" ]; then
  cargo build --release --locked -q -p gatekit-bin
  GATEKIT_BINS="gatekit=$TARGET_DIR/release/gatekit"
fi
if [ -z "${BACKEND_BIN:-}" ]; then
  cargo build --release --locked -q -p gatekit-examples --example bench_backend
  BACKEND_BIN=$TARGET_DIR/release/examples/bench_backend
fi
NAMES=()
declare -A GK_BIN=() GK_PORT=() GK_ADMIN=()
i=0
for spec in $GATEKIT_BINS; do
  name=${spec%%=*}; bin=${spec#*=}
  [ "$name" != "$spec" ] || { echo "GATEKIT_BINS entries are NAME=PATH: $spec" >&2; exit 2; }
  [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
  NAMES+=("$name"); GK_BIN[$name]=$(realpath "$bin")
  GK_PORT[$name]=$((19100 + i)); GK_ADMIN[$name]=$((19900 + i)); i=$((i + 1))
done

# Every port must be free: HAProxy (and others) bind with SO_REUSEPORT, so a stray
# process on the same port would silently take part of the load.
busy=$(ss -Hltn | awk '{print $4}' | grep -E ':(190[89][0-9]|19[19][0-9][0-9])$' || true)
if [ -n "$busy" ]; then echo "ports in use, stop what listens there first:" >&2; echo "$busy" >&2; exit 1; fi

# --- backends --------------------------------------------------------------------------
taskset -c 1 "$BACKEND_BIN" "$BACKEND_A" >"$WORK/backend-a.log" 2>&1 & PIDS+=($!)
taskset -c 1 "$BACKEND_BIN" "$BACKEND_B" >"$WORK/backend-b.log" 2>&1 & PIDS+=($!)

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2; exit 1; }
wait_port 19080; wait_port 19081

# --- gatekit manifests, one directory per binary (its own listener port) --------------
declare -A GK_PROFILE=()
for spec in ${PROFILES:-}; do GK_PROFILE[${spec%%=*}]=${spec#*=}; done
for name in "${NAMES[@]}"; do
  d=$WORK/gk-$name; mkdir -p "$d/manifests"
  printf 'admin: { address: "127.0.0.1:%s" }\n' "${GK_ADMIN[$name]}" >"$d/gatekit.yaml"
  case "${GK_PROFILE[$name]:-default}" in
    default) ;;
    bare) printf 'trafficDefaults: { retryUnsent: false, ejectRefusingEndpoints: false }\n' >>"$d/gatekit.yaml" ;;
    policy) cat >"$d/manifests/policy.yaml" <<YAML
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: bench, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench }]
  retry: { attempts: 2, retryOn: [gateway-error] }
  rateLimit:
    rules:
    - clientSelectors: { clientIP: true }
      limit: { requests: 1000000000, unit: Second }
  limits: { maxConcurrentRequests: 100000, maxRequestBodyBytes: 1Mi }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: bench, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: backend }]
  circuitBreaker: { maxParallelRequests: 100000, maxPendingRequests: 1024 }
  retryBudget: { percent: 20, interval: 10s, minRetryRate: { count: 10, interval: 1s } }
YAML
    ;;
    local-limit|global-limit)
      kind=Local; [ "${GK_PROFILE[$name]}" = global-limit ] && kind=Global
      lower=$(echo "$kind" | tr A-Z a-z)
      cat >"$d/manifests/policy.yaml" <<YAML
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: bench, namespace: default }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench }]
  rateLimit:
    type: $kind
    $lower:
      rules:
      - limit: { requests: 1000000000, unit: Second }
YAML
      if [ "$kind" = Global ]; then
        printf 'redis: { url: "redis://127.0.0.1:19087", timeout: 50ms }\n' >>"$d/gatekit.yaml"
        if [ -z "${REDIS_STARTED:-}" ]; then
          taskset -c 1 redis-server --port 19087 --bind 127.0.0.1 --save "" --appendonly no \
            >"$WORK/redis.log" 2>&1 & PIDS+=($!); REDIS_STARTED=1
          wait_port 19087
        fi
      fi
      ;;
    *) echo "unknown profile ${GK_PROFILE[$name]} for $name" >&2; exit 2 ;;
  esac
  cat >"$d/manifests/bench.yaml" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: gatekit
  listeners: [{ name: http, port: ${GK_PORT[$name]}, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bench, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: "/" } }]
    backendRefs: [{ name: backend, port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: backend, namespace: default }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: backend-a, namespace: default, labels: { kubernetes.io/service-name: backend } }
addressType: IPv4
ports: [{ name: http, port: ${BACKEND_A#*:} }]
endpoints: [{ addresses: ["127.0.0.1"], conditions: { ready: true } }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: backend-b, namespace: default, labels: { kubernetes.io/service-name: backend } }
addressType: IPv4
ports: [{ name: http, port: ${BACKEND_B#*:} }]
endpoints: [{ addresses: ["127.0.0.1"], conditions: { ready: true } }]
YAML
done

gk_start() { # name
  local name=$1 d=$WORK/gk-$1
  taskset -c 0 "${GK_BIN[$name]}" run --resources "$d/manifests" --config "$d/gatekit.yaml" \
    >>"$d/log" 2>&1 &
  GK_PID[$name]=$!
  for _ in $(seq 200); do
    if curl -sf "http://127.0.0.1:${GK_ADMIN[$name]}/readyz" >/dev/null 2>&1 &&
       [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${GK_PORT[$name]}/")" = 200 ]; then
      return 0
    fi
    kill -0 "${GK_PID[$name]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "gatekit $name never served 200 on ${GK_PORT[$name]}; its log:" >&2; cat "$d/log" >&2; exit 1
}
gk_stop() { # name
  # A global limit measured on its local fallback would be the wrong figure: say so.
  local fb
  fb=$(curl -sf "http://127.0.0.1:${GK_ADMIN[$1]}/metrics" 2>/dev/null \
    | awk '/^gatekit_rate_limit_store_fallbacks_total/ {s += $2} END {print s + 0}')
  [ "${fb:-0}" = 0 ] || echo "WARNING: gatekit $1 decided $fb global-limit requests without Redis" >&2
  kill -TERM "${GK_PID[$1]}" 2>/dev/null || true
  wait "${GK_PID[$1]}" 2>/dev/null || true
  unset "GK_PID[$1]"
}

# --- NGINX -----------------------------------------------------------------------------
mkdir -p "$WORK/nginx/logs"
EQ_HEADERS='
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Request-Id $request_id;'
H2_SERVER=""
if [ "$NO_H2" != 1 ]; then
  # nginx 1.22: `listen ... http2` on a plain listener serves h2c with prior knowledge.
  # keepalive_requests: nginx closes an h2 connection (GOAWAY) after 1,000 requests by
  # default and h2load does not reconnect; gatekit and HAProxy have no such limit.
  H2_SERVER="server {
    listen 127.0.0.1:$NGINX_H2_PORT http2;
    keepalive_requests 1000000000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";$EQ_HEADERS
    }
  }"
fi
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/nginx/logs/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server $BACKEND_A; server $BACKEND_B; keepalive 256; }
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
      proxy_set_header Connection "";$EQ_HEADERS
    }
  }
  $H2_SERVER
}
CONF
taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & NGINX_MASTER=$!; PIDS+=($NGINX_MASTER)

# --- HAProxy ---------------------------------------------------------------------------
if [ "$NO_HAPROXY" != 1 ]; then
  H2_BIND=""
  [ "$NO_H2" = 1 ] || H2_BIND="bind 127.0.0.1:$HAPROXY_H2_PORT proto h2"
  cat >"$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  $H2_BIND
  default_backend app
backend app
  balance roundrobin
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Request-Id %[uuid]
  server a $BACKEND_A
  server b $BACKEND_B
CFG
  taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
fi

wait_port $NGINX_PORT; wait_port $NGINX_EQ_PORT
[ "$NO_H2" = 1 ] || wait_port $NGINX_H2_PORT
if [ "$NO_HAPROXY" != 1 ]; then wait_port $HAPROXY_PORT; [ "$NO_H2" = 1 ] || wait_port $HAPROXY_H2_PORT; fi
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" nginx | head -1)

# --- one measured run ------------------------------------------------------------------
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK=$(getconf CLK_TCK)
RESULTS=$WORK/results
: >"$RESULTS"

run() { # round target proto(h1|h2) port pid(or -) seconds [record]
  local round=$1 target=$2 proto=$3 port=$4 pid=$5 secs=$6 record=${7:-1}
  local t0=0 t1=0 out reqs ok bad rps lat cpu
  [ "$pid" = - ] || t0=$(ticks "$pid")
  if [ "$proto" = h1 ]; then
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" --latency "http://127.0.0.1:$port/" 2>&1) || true
    reqs=$(echo "$out" | awk '/requests in/ {print $1}'); reqs=${reqs:-0}
    bad=$(echo "$out" | awk '/Non-2xx or 3xx/ {print $NF}'); bad=${bad:-0}
    ok=$((reqs - bad))
    bad=$((bad + $(echo "$out" | awk '/Socket errors/ {gsub(",", ""); s = $4 + $6 + $8 + $10} END {print s + 0}')))
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    lat=$(echo "$out" | awk '$1 == "99%" {print $2}')
  else
    out=$(taskset -c 1 h2load -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$secs" "http://127.0.0.1:$port/" 2>&1) || true
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout.
    # With -D, the streams still in flight at the deadline count as failed (at most
    # clients x streams); more than that is a real failure.
    reqs=$(echo "$out" | awk '/^requests:/ {print $8}'); reqs=${reqs:-0}   # succeeded
    ok=$(echo "$out" | awk '/^status codes:/ {print $3}'); ok=${ok:-0}  # 2xx
    bad=$(echo "$out" | awk -v cut=$((H2_CLIENTS * H2_STREAMS)) \
      '/^requests:/ {f = $10 - cut; print (f > 0 ? f : 0) + $14}')
    [ "$ok" -ge "$reqs" ] || bad=$((bad + reqs - ok))
    rps=$(echo "$out" | awk '/^finished in/ {print $4}')
    lat=mean$(echo "$out" | awk '/^time for request:/ {print $6}')
  fi
  [ "$pid" = - ] || t1=$(ticks "$pid")
  if [ -z "$reqs" ] || [ "$reqs" = 0 ]; then
    echo "no requests completed for $target ($proto, port $port):" >&2; echo "$out" >&2; exit 1
  fi
  if [ "$pid" = - ]; then cpu=-; else
    cpu=$(awk -v t=$((t1 - t0)) -v c="$CLK" -v n="$reqs" 'BEGIN { printf "%.2f", t / c * 1e6 / n }')
  fi
  [ "$record" = 1 ] && echo "$round $target $rps $lat $cpu $reqs $ok $bad" >>"$RESULTS"
  return 0
}

# The list of (target proto port pid-source) measured each round.
TARGETS=("direct h1 19080 -")
for name in "${NAMES[@]}"; do TARGETS+=("gk:$name h1 ${GK_PORT[$name]} gk:$name"); done
TARGETS+=("nginx h1 $NGINX_PORT $NGINX_WORKER" "nginx-eq h1 $NGINX_EQ_PORT $NGINX_WORKER")
[ "$NO_HAPROXY" = 1 ] || TARGETS+=("haproxy h1 $HAPROXY_PORT $HAPROXY_PID")
if [ "$NO_H2" != 1 ]; then
  TARGETS+=("direct-h2 h2 19080 -")
  for name in "${NAMES[@]}"; do TARGETS+=("gk:$name-h2 h2 ${GK_PORT[$name]} gk:$name"); done
  TARGETS+=("nginx-h2 h2 $NGINX_H2_PORT $NGINX_WORKER")
  [ "$NO_HAPROXY" = 1 ] || TARGETS+=("haproxy-h2 h2 $HAPROXY_H2_PORT $HAPROXY_PID")
fi

measure() { # round record secs entry
  local target proto port src pid
  read -r target proto port src <<<"$4"
  pid=$src
  case $src in gk:*) pid=${GK_PID[${src#gk:}]} ;; esac
  run "$1" "$target" "$proto" "$port" "$pid" "$3" "$2"
}

# Idle RSS: each binary started, ready, one request, 1 s idle.
RSS_FILE=$WORK/rss
: >"$RSS_FILE"
for name in "${NAMES[@]}"; do
  gk_start "$name"; sleep 1
  echo "$name $(ps -o rss= -p "${GK_PID[$name]}" | tr -d ' ')" >>"$RSS_FILE"
  gk_stop "$name"
done

echo "warming up (1 s per target)..." >&2
for name in "${NAMES[@]}"; do gk_start "$name"; done
for entry in "${TARGETS[@]}"; do measure 0 0 1 "$entry"; done
for name in "${NAMES[@]}"; do gk_stop "$name"; done

N=${#TARGETS[@]}
for r in $(seq "$ROUNDS"); do
  # Fresh gatekit processes every round, started in alternating order.
  if [ $((r % 2)) = 1 ]; then order=("${NAMES[@]}"); else order=(); for ((k = ${#NAMES[@]} - 1; k >= 0; k--)); do order+=("${NAMES[k]}"); done; fi
  for name in "${order[@]}"; do gk_start "$name"; done
  echo "round $r/$ROUNDS..." >&2
  for ((k = 0; k < N; k++)); do measure "$r" 1 "$DURATION" "${TARGETS[$(((k + r - 1) % N))]}"; done
  for name in "${NAMES[@]}"; do gk_stop "$name"; done
done

# --- summary ---------------------------------------------------------------------------
echo
echo "gatekit binary vs NGINX / HAProxy: ${DURATION}s x $ROUNDS interleaved rounds; HTTP/1.1 wrk -t1 -c$CONNS;" \
  "h2 h2load -c$H2_CLIENTS -m$H2_STREAMS; proxy on core 0, load and backends on core 1; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in "${NAMES[@]}"; do echo "  gk:$name = ${GK_BIN[$name]}"; done
python3 - "$RESULTS" "$RSS_FILE" "${NAMES[@]}" <<'PY'
import sys, statistics
from collections import defaultdict
results, rss_file, names = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = defaultdict(dict)  # target -> round -> row
order = []
for line in open(results):
    rnd, target, rps, lat, cpu, reqs, ok, bad = line.split()
    if target not in order:
        order.append(target)
    rows[target][int(rnd)] = dict(rps=float(rps), lat=lat, cpu=None if cpu == "-" else float(cpu),
                                  reqs=int(reqs), ok=int(ok), bad=int(bad))
med = statistics.median

def us(lat):  # wrk / h2load latency ("1.23ms", "mean208us") in µs
    lat = lat.removeprefix("mean")
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if lat.endswith(unit):
            return float(lat[: -len(unit)]) * f
    return float("nan")

def fmt_lat(target, v):
    kind = "mean " if target.endswith("-h2") else "p99 "
    return kind + (f"{v / 1e3:.2f}ms" if v >= 1e3 else f"{v:.0f}us")
print()
print(f"{'target':<18}{'req/s med':>11}{'latency med':>16}{'CPU µs/req med':>16}{'CPU min–max':>16}{'2xx':>11}{'errors':>8}")
cpu_med = {}
for t in order:
    rs = rows[t].values()
    cpus = [r["cpu"] for r in rs if r["cpu"] is not None]
    lats = [us(r["lat"]) for r in rs]
    c = f"{med(cpus):.2f}" if cpus else "-"
    spread = f"{min(cpus):.2f}–{max(cpus):.2f}" if cpus else "-"
    if cpus:
        cpu_med[t] = med(cpus)
    print(f"{t:<18}{med([r['rps'] for r in rs]):>11.0f}{fmt_lat(t, med(lats)):>16}{c:>16}{spread:>16}"
          f"{sum(r['ok'] for r in rs):>11}{sum(r['bad'] for r in rs):>8}")

def ratio(a, b):
    if a not in rows or b not in rows or a not in cpu_med or b not in cpu_med:
        return None
    per = [rows[a][k]["cpu"] / rows[b][k]["cpu"] for k in rows[a] if k in rows[b] and rows[b][k]["cpu"]]
    return cpu_med[a] / cpu_med[b], min(per), max(per)

print()
print("CPU/request ratios: ratio of medians, [min–max of the per-round ratios]; a range that")
print("contains 1.00 means no measurable difference")
pairs = []
for n in names:
    g = f"gk:{n}"
    pairs += [(g, "nginx-eq"), (g, "nginx"), (g, "haproxy"),
              (g + "-h2", "haproxy-h2"), (g + "-h2", "nginx-h2")]
for n in names[1:]:
    pairs += [(f"gk:{n}", f"gk:{names[0]}"), (f"gk:{n}-h2", f"gk:{names[0]}-h2")]
for a, b in pairs:
    r = ratio(a, b)
    if r:
        print(f"  {a + ' / ' + b:<36}{r[0]:>6.3f}   [{r[1]:.3f}–{r[2]:.3f}]")
print()
print("idle RSS (started, ready, one request, 1 s idle):")
for line in open(rss_file):
    n, kb = line.split()
    print(f"  gk:{n:<14}{int(kb) / 1024:>7.1f} MB")
PY
echo
echo "all rounds (round target req/s p99|mean CPU-µs/req requests 2xx errors):"
sort -k1,1n -k2,2 "$RESULTS"
