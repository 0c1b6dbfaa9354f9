#!/usr/bin/env bash
# The one command that sets up and runs every test on a fresh machine:
# installs what is missing (Debian packages for the lab), then formatting,
# lints, unit/property/golden/differential tests, the fuzz corpora, the
# kernel tests in network namespaces, the end-to-end matrix, the gateway
# failover matrix (conntrackd), the hostile input and fault suites and a
# short soak (see RELIABILITY.md).
# Needs root (network namespaces, NFQUEUE, conntrack). Works with no stdin.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: run as root (the kernel tests create network namespaces)" >&2
    exit 1
fi

# Every tier runs: a kernel or lab test that would skip is an error.
export FTPCT_REQUIRE_KERNEL_TESTS=1

step "dependencies"
scripts/install-deps.sh

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the engine crate has no I/O dependency"
scripts/check-engine-deps.sh

step "tests (unit, property, golden, differential, fuzz corpora, kernel)"
cargo test --workspace --locked

step "release build"
cargo build --release --locked --workspace

step "Debian package: cargo deb -p ftpct; install, upgrade, remove, purge in a throwaway root"
scripts/deb-test.sh

step "operations: config file, exit codes, non-root run, sd-notify, SIGHUP, kernel-helper warning, journald"
scripts/ops-test.sh

step "end-to-end matrix (tests/lab, pytest: Debian's, for /usr/bin/python3)"
/usr/bin/python3 -m pytest tests/lab --ignore=tests/lab/test_failover.py --ignore=tests/lab/test_soak.py --ignore=tests/lab/test_faults.py --ignore=tests/lab/test_hostile.py

step "gateway failover with conntrackd (tests/lab: the kernel's helper as the control, and ftpct)"
/usr/bin/python3 -m pytest tests/lab/test_failover.py

step "hostile protocol input (ftpct and the kernel's helper)"
/usr/bin/python3 -m pytest tests/lab/test_hostile.py

step "faults and abuse under load (ftpct and the kernel's helper)"
/usr/bin/python3 -m pytest tests/lab/test_faults.py

step "soak, short (ftpct and the kernel's helper, 200+ clients, default conntrack timeouts)"
/usr/bin/python3 -m pytest tests/lab/test_soak.py --soak-seconds 6 --soak-rotate-servers

step "all tests passed"
