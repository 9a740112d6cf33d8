#!/usr/bin/env bash
# Packages the publishable crates as `cargo publish` would: manifests, file lists, and
# dependency resolution against crates.io (the workspace's own crates resolve to the
# packages made in the same run).
#
#   scripts/package.sh            # what CI runs (.ci/package): --no-verify, ~10 s
#   scripts/package.sh --verify   # also builds each packaged crate alone, as publishing does
#
# Verification builds every crate from its tarball with a fresh target of its own: about
# 17 minutes for the seven crates on two shared cores (measured), too slow for every CI
# run; run it before publishing. gatekit-k8s and gatekit-gateway leave the Kubernetes API
# version to the application (k8s-openapi feature), so verifying them alone needs one:
# K8S_OPENAPI_ENABLED_VERSION below, used only by that check.
set -euo pipefail
export CARGO_INCREMENTAL=0
cd "$(dirname "$0")/.."

# Not published: test support, the test suite and the examples (fuzz/ is its own workspace).
exclude=(--exclude gatekit-tests --exclude gatekit-testkit --exclude gatekit-k8s-fake --exclude gatekit-examples)

verify=(--no-verify)
if [[ "${1:-}" == "--verify" ]]; then
    verify=()
    export K8S_OPENAPI_ENABLED_VERSION="${K8S_OPENAPI_ENABLED_VERSION:-1.36}"
fi
# --allow-dirty: CI runs on a fresh clone anyway; a developer may run it mid-change.
cargo package --workspace "${exclude[@]}" --locked --allow-dirty "${verify[@]}"
