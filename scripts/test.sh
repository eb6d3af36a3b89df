#!/usr/bin/env bash
# Runs every test of twinops: unit tests, integration tests against the real emulator, and the
# conformance tests with Microsoft's SDKs (the tests create their Python venv / Node packages under
# target/ through scripts/sdk-venv.sh and scripts/sdk-node.sh on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bin twinops
cargo test --locked --all-targets -- --test-threads="${TWINOPS_TEST_THREADS:-4}"
