#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while: scripts/fuzz.sh TARGET [SECONDS]   (default 600)
#
# Targets: manifest_load, connection_string, sas_token, query (fuzz/fuzz_targets/). Needs
# `cargo install cargo-fuzz`; libFuzzer's `-Z` flags are accepted by the stable toolchain through
# RUSTC_BOOTSTRAP=1. The growing corpus goes to fuzz/corpus/TARGET (ignored by git), seeded from
# fuzz/seeds/TARGET (committed); crashes go to fuzz/artifacts/TARGET. Build artifacts go to
# $FUZZ_TARGET_DIR (default target/fuzz under the repository).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:?usage: scripts/fuzz.sh TARGET [SECONDS]}"
seconds="${2:-600}"
dir="${FUZZ_TARGET_DIR:-$repo/target/fuzz}"

cd "$repo"
mkdir -p "fuzz/corpus/$target"
# -O with debug assertions: release speed, and integer overflow is a finding, not a wrap.
RUSTC_BOOTSTRAP=1 exec cargo fuzz run -O -a --target-dir "$dir" "$target" \
  "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
