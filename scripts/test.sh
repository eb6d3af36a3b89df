#!/usr/bin/env bash
# Runs every test of twinops: unit tests, integration tests against the real emulator, and the
# conformance tests with Microsoft's SDKs (the tests create their Python venv and Node packages under
# target/ through scripts/sdk-venv.sh and scripts/sdk-node.sh on first use, the schema checks
# theirs through scripts/schema-venv.sh and scripts/schema-node.sh, and the export-job tests
# Microsoft's storage emulator Azurite through scripts/azurite.sh). Ends with one line
# `tests: N passed, M failed` summing every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# The change-scoped plan tests (--changed-from) make git repositories with the git command.
command -v git >/dev/null || { echo "the tests need the git command (apt-get install git)" >&2; exit 1; }
cargo build --locked --bin twinops
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --no-fail-fast --workspace --all-targets -- --test-threads="${TWINOPS_TEST_THREADS:-4}" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
