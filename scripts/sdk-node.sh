#!/usr/bin/env bash
# Installs (idempotently) Microsoft's Node service SDK `azure-iothub` and device SDK
# `azure-iot-device` with its MQTT transports (`azure-iot-device-mqtt`) for the Node conformance
# tests (tests/it/sdk_node.rs). Prints the install directory (holding node_modules/) on the last
# line of stdout.
#
# Usage: scripts/sdk-node.sh [DIR]   (default: target/sdk-node under the repository)
#
# The versions are pinned by tests/sdk/node/package.json and its package-lock.json (azure-iothub
# 1.16.6, which sends api-version 2021-04-12; azure-iot-device 1.18.4, azure-iot-device-mqtt
# 1.16.4); `npm ci` installs exactly the locked tree. Fails
# loudly (non-zero exit) when npm cannot install: a conformance test must never pass by skipping.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/lib/install.sh"
dir="${1:-$repo/target/sdk-node}"
src="$repo/tests/sdk/node"

install() {
  npm_ci "$src" "$dir"
  node -e "require(process.argv[1] + '/node_modules/azure-iothub')" "$dir" >&2
}
install_once "$dir" "$(npm_stamp "$src" "$dir")" "$dir/node_modules/azure-iothub" install
echo "$dir"
