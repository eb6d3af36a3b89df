#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv in which the schema tests (tests/it/schema_tools.rs)
# check the manifest JSON Schema with Python's `jsonschema` (draft 2020-12, format checks on) and
# run `check-jsonschema` on the example manifests, as a user's editor or CI would. Prints the
# venv's bin directory on the last line of stdout.
#
# Usage: scripts/schema-venv.sh [VENV_DIR]   (default: target/schema-venv under the repository)
#
# Versions are pinned (check-jsonschema 0.39.0 on jsonschema 4.26.0); the stamp names them, so a
# changed pin rebuilds the venv. Fails loudly (non-zero exit) when pip cannot install: a schema
# check must never pass by skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/install.sh"
venv="${1:-$repo/target/schema-venv}"
pins=("check-jsonschema==0.39.0" "jsonschema==4.26.0")

install() {
  pip_venv "$venv" "${pins[@]}"
  "$venv/bin/python" -c "import jsonschema, check_jsonschema" >&2
  "$venv/bin/check-jsonschema" --version >&2
}
install_once "$venv" "$(pip_stamp "$venv" "${pins[@]}")" "$venv/bin/check-jsonschema" install
echo "$venv/bin"
