#!/usr/bin/env bash
# Try gatekit on a local kind cluster. Documented in docs/kubernetes.md; not run in CI.
#
# Needs: docker (with BuildKit), kind, kubectl, curl. Creates (or reuses) a kind cluster,
# builds the image, installs the Gateway API CRDs and deploy/, deploys an echo backend
# with an HTTPRoute, and curls it through gatekit. Leaves the cluster running; delete it
# with `kind delete cluster --name "$CLUSTER"`.
#
# Environment: CLUSTER (default gatekit), IMAGE (gatekit:dev), GATEWAY_API_VERSION
# (v1.5.1), LOCAL_PORT (18080, for the port-forward).
set -euo pipefail

CLUSTER=${CLUSTER:-gatekit}
IMAGE=${IMAGE:-gatekit:dev}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.5.1}
LOCAL_PORT=${LOCAL_PORT:-18080}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

step() { printf '\n==> %s\n' "$*"; }

for tool in docker kind kubectl curl; do
  command -v "$tool" >/dev/null || { echo "kind.sh: $tool is required" >&2; exit 1; }
done

step "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

step "image $IMAGE"
DOCKER_BUILDKIT=1 docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "Gateway API CRDs $GATEWAY_API_VERSION"
kubectl apply --server-side -f \
  "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"
kubectl wait --for=condition=Established --timeout=60s \
  crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io

step "gatekit (deploy/)"
kubectl apply -k "$ROOT/deploy"
kubectl -n gatekit set image deployment/gatekit gatekit="$IMAGE" >/dev/null
kubectl apply -f "$ROOT/deploy/example/gateway.yaml" -f "$ROOT/deploy/example/echo.yaml"
kubectl -n demo rollout status deployment/echo --timeout=180s
kubectl -n gatekit rollout status deployment/gatekit --timeout=180s

step "curl through gatekit (port-forward to the Service; kind has no LoadBalancer)"
kubectl -n gatekit port-forward service/gatekit "$LOCAL_PORT:80" >/dev/null 2>&1 &
PF=$!
trap 'kill "$PF" 2>/dev/null || true' EXIT
ok=""
for _ in $(seq 1 30); do
  if body=$(curl -sf -H 'Host: echo.example' "http://127.0.0.1:$LOCAL_PORT/hostname"); then
    ok=1
    break
  fi
  sleep 1
done
if [ -z "$ok" ]; then
  echo "kind.sh: no answer through gatekit; logs:" >&2
  kubectl -n gatekit logs deployment/gatekit --tail=50 >&2 || true
  exit 1
fi
echo "answered by backend pod: $body"

step "status written by the leader"
kubectl -n demo get httproute echo \
  -o jsonpath='{range .status.parents[*]}{.controllerName}{": "}{range .conditions[*]}{.type}={.status} {end}{"\n"}{end}'

step "fleet: membership Leases"
kubectl -n gatekit get leases -l gatekit.io/fleet=gatekit \
  -L gatekit.io/config-generation -L gatekit.io/config-hash
