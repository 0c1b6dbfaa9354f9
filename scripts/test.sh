#!/usr/bin/env bash
# The one command that sets up and runs every test on a fresh machine:
# installs what is missing (Debian packages for the lab), then formatting,
# lints, unit/property/golden/differential tests, the fuzz corpora, the
# kernel tests in network namespaces and the end-to-end matrix.
# Needs root (network namespaces, NFQUEUE, conntrack). Works with no stdin.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: run as root (the kernel tests create network namespaces)" >&2
    exit 1
fi

step "dependencies"
scripts/install-deps.sh

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --all-targets --locked -- -D warnings

step "tests (unit, property, golden, differential, fuzz corpora, kernel)"
cargo test --locked

if [[ -x scripts/e2e.sh ]]; then
    step "end-to-end matrix"
    cargo build --release --locked
    scripts/e2e.sh
fi

step "all tests passed"
