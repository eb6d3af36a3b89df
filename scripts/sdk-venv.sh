#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv that the SDK conformance tests run Microsoft's
# `azure-iot-hub` service SDK and `azure-iot-device` device SDK in. Prints the venv's python path on
# the last line of stdout.
#
# Usage: scripts/sdk-venv.sh [VENV_DIR]   (default: target/sdk-venv under the repository)
#
# Versions are pinned to the ones whose wire behaviour is captured in the protocol reference
# (azure-iot-hub 2.7.0 on msrest 0.7.1; azure-iot-device 2.14.0 on paho-mqtt 1.6.1, the 1.x line
# it requires: its transport uses the paho 1.x callback API). `six` is listed because azure-iot-hub
# imports it without declaring it. Fails loudly (non-zero exit) when pip cannot install: a conformance test must never
# pass by skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/target/sdk-venv}"
stamp="$venv/.twinops-sdk-2"
python="${PYTHON:-python3}"

if [[ -f "$stamp" && -x "$venv/bin/python" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
# A lock so that parallel test binaries do not build the venv twice.
exec 9>"$venv.lock"
flock 9
if [[ -f "$stamp" && -x "$venv/bin/python" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "azure-iot-hub==2.7.0" "msrest==0.7.1" "six" \
  "azure-iot-device==2.14.0" "paho-mqtt==1.6.1" >&2
"$venv/bin/python" -c "import azure.iot.hub, azure.iot.device, msrest, paho.mqtt.client, six" >&2
touch "$stamp"
echo "$venv/bin/python"
