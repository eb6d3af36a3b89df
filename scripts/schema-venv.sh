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
venv="${1:-$repo/target/schema-venv}"
pins=("check-jsonschema==0.39.0" "jsonschema==4.26.0")
stamp="$venv/.twinops-schema-$(echo "${pins[*]}" | sha256sum | cut -c1-16)"
python="${PYTHON:-python3}"

if [[ -f "$stamp" && -x "$venv/bin/check-jsonschema" ]]; then
  echo "$venv/bin"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
# A lock so that parallel test binaries do not build the venv twice.
exec 9>"$venv.lock"
flock 9
if [[ -f "$stamp" && -x "$venv/bin/check-jsonschema" ]]; then
  echo "$venv/bin"
  exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
"$venv/bin/python" -c "import jsonschema, check_jsonschema" >&2
"$venv/bin/check-jsonschema" --version >&2
touch "$stamp"
echo "$venv/bin"
