#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, bans (duplicate majors are
# warnings, a second crypto provider or OpenSSL is an error) and sources (crates.io only).
# Advisories are not checked: the RustSec database is fetched from GitHub, which these
# machines cannot reach (run `cargo deny check advisories` where it can).
#
# Skips with a note when cargo-deny is not installed (`cargo install cargo-deny --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "deny: cargo-deny is not installed; skipped (cargo install cargo-deny --locked)"
    exit 0
fi
cargo deny --locked check licenses bans sources
