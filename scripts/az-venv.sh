#!/usr/bin/env bash
# Creates (idempotently) a virtualenv holding Microsoft's Azure CLI, pinned, and, when given its
# source, Microsoft's IoT extension (`azure-iot`, which serves `az iot hub ...` and `az iot edge
# ...`), so that tests/sdk/az/run.sh can run the CLI against the emulator. Prints the venv's
# directory on the last line of stdout.
#
# Usage: scripts/az-venv.sh [EXTENSION_SOURCE_DIR] [VENV_DIR]
#   EXTENSION_SOURCE_DIR  a checkout of github.com/Azure/azure-iot-cli-extension (0.25.0 was
#                         used); also read from AZ_IOT_EXTENSION_SRC. The extension is published
#                         on GitHub and in the CLI's own extension index, not on a package
#                         registry, so CI (registries only) cannot install it: without a source
#                         the venv holds the CLI alone and run.sh refuses to run.
#   VENV_DIR              default target/az-venv under the repository
#
# The CLI is pinned to 2.65.0, of the extension's time (0.25.0, October 2024): newer CLIs (2.91.0
# was tried) no longer give the extension the MGMT_IOTHUB API profile it registers commands with,
# and it fails to load.
#
# The extension goes where the CLI looks for extensions: $VENV_DIR/cliextensions/azure-iot
# (run.sh sets AZURE_EXTENSION_DIR to $VENV_DIR/cliextensions). Fails loudly when pip cannot
# install.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${1:-${AZ_IOT_EXTENSION_SRC:-}}"
venv="${2:-$repo/target/az-venv}"
python="${PYTHON:-python3}"
cli_stamp="$venv/.twinops-az-cli-2.65.0"

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [[ ! -f "$cli_stamp" || ! -x "$venv/bin/az" ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "azure-cli==2.65.0" >&2
  touch "$cli_stamp"
fi
if [[ -n "$src" ]]; then
  version="$(cd "$src" && "$venv/bin/python" -c 'import re;print(re.search(r"VERSION = \"([^\"]+)\"", open("azext_iot/constants.py").read()).group(1))')"
  ext_stamp="$venv/.twinops-azure-iot-$version"
  if [[ ! -f "$ext_stamp" ]]; then
    rm -rf "$venv/cliextensions/azure-iot"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
      --target "$venv/cliextensions/azure-iot" "$src" >&2
    touch "$ext_stamp"
  fi
fi
echo "$venv"
