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
dir="${1:-$repo/target/azurite}"
src="$repo/tests/azurite"
entry="$dir/node_modules/azurite/dist/src/blob/main.js"
# The stamp names the lock file's hash, so a changed pin reinstalls.
lock_hash="$(sha256sum "$src/package-lock.json" | cut -c1-16)"
stamp="$dir/.twinops-azurite-$lock_hash"

if [[ -f "$stamp" && -f "$entry" ]]; then
  echo "$entry"
  exit 0
fi

command -v npm >/dev/null || { echo "scripts/azurite.sh: npm is not installed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
# A lock so that parallel test binaries do not install twice.
exec 9>"$dir.lock"
flock 9
if [[ -f "$stamp" && -f "$entry" ]]; then
  echo "$entry"
  exit 0
fi

rm -rf "$dir/node_modules" "$dir"/.twinops-azurite-*
cp "$src/package.json" "$src/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
# The entry point must load under this Node (it exits at once on --help).
node "$entry" --help >/dev/null
touch "$stamp"
echo "$entry"
