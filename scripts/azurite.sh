#!/usr/bin/env bash
# Installs (idempotently) Microsoft's storage emulator Azurite, the blob store that the emulator's
# export jobs write to in tests (crates/emulator/tests/it/support/azurite.rs starts it). Prints the
# path of the `azurite-blob` entry point (a node script) on the last line of stdout.
#
# Usage: scripts/azurite.sh [DIR]   (default: target/azurite under the repository)
#
# The version is pinned by tests/azurite/package.json and its package-lock.json (azurite 3.35.0:
# the newest release whose engines accept the Node 20 of Debian's packages; 3.36 asks for 21, 3.37
# for 22); `npm ci` installs exactly the locked tree. Fails loudly (non-zero exit) when npm cannot
# install: a test that needs a blob store must never pass by skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/install.sh"
dir="${1:-$repo/target/azurite}"
src="$repo/tests/azurite"
entry="$dir/node_modules/azurite/dist/src/blob/main.js"

install() {
  npm_ci "$src" "$dir"
  # The entry point must load under this Node (it exits at once on --help).
  node "$entry" --help >/dev/null
}
install_once "$dir" "$(npm_stamp "$src" "$dir")" "$entry" install
echo "$entry"
