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
# imports it without declaring it. The stamp names the pins, so a changed pin rebuilds the venv.
# Fails loudly (non-zero exit) when pip cannot install: a conformance test must never pass by
# skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/install.sh"
venv="${1:-$repo/target/sdk-venv}"
pins=("azure-iot-hub==2.7.0" "msrest==0.7.1" "six" "azure-iot-device==2.14.0" "paho-mqtt==1.6.1")

install() {
  pip_venv "$venv" "${pins[@]}"
  "$venv/bin/python" -c "import azure.iot.hub, azure.iot.device, msrest, paho.mqtt.client, six" >&2
}
install_once "$venv" "$(pip_stamp "$venv" "${pins[@]}")" "$venv/bin/python" install
echo "$venv/bin/python"
