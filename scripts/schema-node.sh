#!/usr/bin/env bash
# Installs (idempotently) ajv, an ECMA-262 JSON Schema validator, for the schema test
# (tests/it/schema_tools.rs), which compiles every `pattern` of the manifest schema with
# `new RegExp(p, "u")` and validates documents with ajv's draft 2020-12 build. Prints the install
# directory (holding node_modules/) on the last line of stdout.
#
# Usage: scripts/schema-node.sh [DIR]   (default: target/schema-node under the repository)
#
# The version is pinned by tests/schema/node/package.json and its package-lock.json (ajv 8.20.0);
# `npm ci` installs exactly the locked tree. Fails loudly (non-zero exit) when npm cannot install:
# a schema check must never pass by skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/install.sh"
dir="${1:-$repo/target/schema-node}"
src="$repo/tests/schema/node"

install() {
  npm_ci "$src" "$dir"
  node -e "require(process.argv[1] + '/node_modules/ajv/dist/2020')" "$dir" >&2
}
install_once "$dir" "$(npm_stamp "$src" "$dir")" "$dir/node_modules/ajv" install
echo "$dir"
