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
dir="${1:-$repo/target/sdk-node}"
src="$repo/tests/sdk/node"
# The stamp names the lock file's hash, so a changed pin reinstalls.
lock_hash="$(sha256sum "$src/package-lock.json" | cut -c1-16)"
stamp="$dir/.twinops-sdk-$lock_hash"

if [[ -f "$stamp" && -d "$dir/node_modules/azure-iothub" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
# A lock so that parallel test binaries do not install twice.
exec 9>"$dir.lock"
flock 9
if [[ -f "$stamp" && -d "$dir/node_modules/azure-iothub" ]]; then
  echo "$dir"
  exit 0
fi

rm -rf "$dir/node_modules" "$dir"/.twinops-sdk-*
cp "$src/package.json" "$src/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
node -e "require(process.argv[1] + '/node_modules/azure-iothub')" "$dir" >&2
touch "$stamp"
echo "$dir"
