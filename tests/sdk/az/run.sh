#!/usr/bin/env bash
# Runs Microsoft's Azure CLI with its IoT extension (`az iot hub ...`, `az iot edge ...`) against
# a fresh emulator with simulated edge devices, command by command, and prints
# "N passed, M failed". Every command this project's deployment work touches is here:
# configurations and edge deployments (create, layered create, show, list, update, show-metric,
# delete), set-modules and export-modules, module twins, and key renewal (primary, secondary,
# both, swap, modules, every device).
#
# The extension is not on any package registry (GitHub and the CLI's own index only), so this runs
# where its source is at hand:
#   AZ_IOT_EXTENSION_SRC=/path/to/azure-iot-cli-extension tests/sdk/az/run.sh
# It builds the venv with scripts/az-venv.sh and the emulator with cargo (debug). Without the
# source it says so and exits 2: it never passes by skipping. CI runs the same requests without
# the CLI: crates/emulator/tests/it/emulator_az_cli.rs.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
if [[ -z "${AZ_IOT_EXTENSION_SRC:-}" ]]; then
  echo "AZ_IOT_EXTENSION_SRC is not set: the azure-iot extension's source is needed" >&2
  exit 2
fi
venv="$(bash "$repo/scripts/az-venv.sh" "$AZ_IOT_EXTENSION_SRC" | tail -n1)" || exit 1
(cd "$repo" && cargo build -q -p twinops-emulator) || exit 1

work="$(mktemp -d)"
export AZURE_CONFIG_DIR="$work/azure" AZURE_EXTENSION_DIR="$venv/cliextensions"
export AZURE_CORE_COLLECT_TELEMETRY=false AZURE_CORE_ONLY_SHOW_ERRORS=true AZURE_CORE_NO_COLOR=true
export AZURE_EXTENSION_USE_DYNAMIC_INSTALL=no
"$repo/target/debug/twinops-emulator" --listen 127.0.0.1:0 --mqtt 127.0.0.1:0 \
  --simulate-devices 'edge-*:200ms' --simulate-reject 'edge-bad' --config-interval 500ms \
  >"$work/out" 2>"$work/err" &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  [[ $(wc -l <"$work/out") -ge 3 ]] && break
  sleep 0.1
done
cs="$(sed -n 's/^connection string: //p' "$work/out")"
export REQUESTS_CA_BUNDLE="$(sed -n 's/^ca certificate: //p' "$work/out")"
[[ -n "$cs" && -n "$REQUESTS_CA_BUNDLE" ]] || { echo "the emulator did not start" >&2; cat "$work/err" >&2; exit 1; }

if ! "$venv/bin/az" iot edge --help 2>&1 | grep -q set-modules; then
  echo "the azure-iot extension does not load in $venv" >&2
  "$venv/bin/az" iot edge --help 2>&1 | head -5 >&2
  exit 1
fi

passed=0 failed=0
az_() { "$venv/bin/az" "$@" --login "$cs" -o tsv 2>"$work/az-err"; }
# check NAME EXPECTED AZ-ARGS...: the command's tsv output must equal EXPECTED ("!" : it must fail).
check() {
  local name="$1" want="$2"; shift 2
  local got status
  got="$(az_ "$@")"; status=$?
  if [[ "$want" == "!" && $status -ne 0 ]] || [[ "$want" != "!" && $status -eq 0 && "$got" == "$want" ]]; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "not ok - $name: exit $status, got [$got], want [$want]"; sed 's/^/    /' "$work/az-err" | head -5
  fi
}
# eventually NAME EXPECTED AZ-ARGS...: check, retried for up to 30 s (the hub applies in passes).
eventually() {
  local name="$1" want="$2"; shift 2
  for _ in $(seq 60); do
    [[ "$(az_ "$@")" == "$want" ]] && break
    sleep 0.5
  done
  check "$name" "$want" "$@"
}

cat >"$work/base.json" <<'JSON'
{"content": {"modulesContent": {
  "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
    "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
    "systemModules": {
      "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
      "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                  "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}},
    "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                           "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5", "createOptions": "{}"}}}}},
  "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"up": "FROM /messages/* INTO $upstream"},
               "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
  "sensor": {"properties.desired": {"SendInterval": 5}}}}}
JSON
cat >"$work/layer.json" <<'JSON'
{"content": {"modulesContent": {
  "$edgeAgent": {"properties.desired.modules.filter": {"version": "1.0", "type": "docker", "status": "running",
    "restartPolicy": "always", "settings": {"image": "example/filter:1", "createOptions": "{}"}}},
  "$edgeHub": {"properties.desired.routes.filter": "FROM /messages/modules/filter/* INTO $upstream"},
  "filter": {"properties.desired.threshold": 21}}}}
JSON
cat >"$work/metrics.json" <<'JSON'
{"queries": {"running": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND properties.reported.lastDesiredStatus.code = 200"}}
JSON
cat >"$work/adm.json" <<'JSON'
{"content": {"deviceContent": {"properties.desired.telemetryInterval": 30}}}
JSON

agent='$edgeAgent'
check "device-identity create (edge)" "edge-ok" iot hub device-identity create -d edge-ok --ee --query deviceId
check "device-identity create (edge, rejecting)" "edge-bad" iot hub device-identity create -d edge-bad --ee --query deviceId
check "device-identity create (leaf)" "leaf" iot hub device-identity create -d leaf --query deviceId
check "device-twin update tags" "b" iot hub device-twin update -d edge-ok --tags '{"site": "b"}' --query tags.site
check "device-twin update tags (rejecting)" "b" iot hub device-twin update -d edge-bad --tags '{"site": "b"}' --query tags.site
check "edge set-modules" "3" iot edge set-modules -d edge-ok -k "$work/base.json" --query 'length(@)'
check "edge set-modules on a leaf fails" "!" iot edge set-modules -d leaf -k "$work/base.json"
check "edge export-modules" "5" iot edge export-modules -d edge-ok --query 'content.modulesContent.sensor."properties.desired".SendInterval'
check "module-twin show after set-modules" "running" iot hub module-twin show -d edge-ok -m "$agent" --query 'properties.desired.modules.sensor.status'
check "edge deployment create" "base" iot edge deployment create -d base -k "$work/base.json" --tc "tags.site='b'" --pri 10 --metrics "$work/metrics.json" --query id
check "edge deployment create --layered" "layer" iot edge deployment create -d layer -k "$work/layer.json" --layered --tc "tags.site='b'" --pri 20 --query id
check "edge deployment show" "10" iot edge deployment show -d base --query priority
check "edge deployment list" "2" iot edge deployment list --query 'length(@)'
check "edge deployment update --set" "11" iot edge deployment update -d base --set priority=11 --query priority
eventually "base applied in \$edgeAgent" "Applied" iot hub module-twin show -d edge-ok -m "$agent" --query configurations.base.status
eventually "layer merged into \$edgeAgent" "running" iot hub module-twin show -d edge-ok -m "$agent" --query properties.desired.modules.filter.status
check "layer's module twin" "21" iot hub module-twin show -d edge-ok -m filter --query properties.desired.threshold
eventually "edge deployment show-metric appliedCount" "2" iot edge deployment show-metric -d base -m appliedCount --mt system --query 'length(result)'
eventually "edge deployment show-metric reportedSuccessfulCount" "edge-ok" iot edge deployment show-metric -d base -m reportedSuccessfulCount --mt system --query 'result[0].deviceId'
eventually "edge deployment show-metric reportedFailedCount" "edge-bad" iot edge deployment show-metric -d base -m reportedFailedCount --mt system --query 'result[0].deviceId'
eventually "edge deployment systemMetrics results" "1,1" iot edge deployment show -d base --query 'join(`,`, [to_string(systemMetrics.results.reportedSuccessfulCount), to_string(systemMetrics.results.reportedFailedCount)])'
check "edge deployment show-metric (custom)" "edge-ok" iot edge deployment show-metric -d base -m running --query 'result[0].deviceId'
check "edge deployment delete (layer)" "" iot edge deployment delete -d layer
eventually "deleted layer's module gone from \$edgeAgent" "sensor" iot hub module-twin show -d edge-ok -m "$agent" --query 'keys(properties.desired.modules) | join(`,`, @)'
check "module-identity list" "4" iot hub module-identity list -d edge-ok --query 'length(@)'
check "edge deployment delete" "" iot edge deployment delete -d base
check "edge deployment list after deletes" "0" iot edge deployment list --query 'length(@)'
check "hub configuration create" "adm" iot hub configuration create -c adm --content "$work/adm.json" --tc "tags.site='b'" --pri 1 --metrics "$work/metrics.json" --query id
check "hub configuration show" "1" iot hub configuration show -c adm --query priority
check "hub configuration list" "1" iot hub configuration list --query 'length(@)'
check "hub configuration update --set" "2" iot hub configuration update -c adm --set priority=2 --query priority
eventually "hub configuration show-metric appliedCount" "2" iot hub configuration show-metric -c adm -m appliedCount --mt system --query 'length(result)'
check "hub configuration delete" "" iot hub configuration delete -c adm
# renew-key wants a hub name even with --login (the connection string decides the hub).
p0="$(az_ iot hub device-identity show -d leaf --query authentication.symmetricKey.primaryKey)"
s0="$(az_ iot hub device-identity show -d leaf --query authentication.symmetricKey.secondaryKey)"
check "device-identity renew-key primary keeps the secondary" "$s0" iot hub device-identity renew-key -n localhost -d leaf --kt primary --query authentication.symmetricKey.secondaryKey
now="$(az_ iot hub device-identity show -d leaf --query authentication.symmetricKey.primaryKey)"
if [[ -n "$now" && "$now" != "$p0" ]]; then passed=$((passed + 1)); echo "ok - renew-key primary changed the primary key"; else failed=$((failed + 1)); echo "not ok - renew-key primary left the primary key"; fi
check "device-identity renew-key secondary keeps the primary" "$now" iot hub device-identity renew-key -n localhost -d leaf --kt secondary --query authentication.symmetricKey.primaryKey
sec="$(az_ iot hub device-identity show -d leaf --query authentication.symmetricKey.secondaryKey)"
check "device-identity renew-key swap" "$sec" iot hub device-identity renew-key -n localhost -d leaf --kt swap --query authentication.symmetricKey.primaryKey
check "device-identity renew-key both" "primaryKey" iot hub device-identity renew-key -n localhost -d leaf --kt both --query 'keys(authentication.symmetricKey)[0]'
check "module-identity create" "m1" iot hub module-identity create -d leaf -m m1 --query moduleId
check "module-identity renew-key" "m1" iot hub module-identity renew-key -n localhost -d leaf -m m1 --kt primary --query moduleId
check "device-identity renew-key for every device" "0" iot hub device-identity renew-key -n localhost -d '*' --kt both --no-progress --query 'length(errors)'
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
