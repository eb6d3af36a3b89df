#!/usr/bin/env bash
# The long soak: the test suite's soak (2,000 twins, faults and a concurrent writer) at N times the fleet,
# in a release build. Usage: benches/soak.sh [SCALE]   (default 10: 20,000 twins)
set -euo pipefail
cd "$(dirname "$0")/.."
TWINOPS_SOAK_SCALE="${1:-10}" cargo test --release --test it soak:: -- --nocapture
