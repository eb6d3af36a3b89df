"""The reconcile done the way Microsoft's SDK samples do it: one call per operation, no pacing.

For each module: create_module_with_sas, get_module_twin, update_module_twin(..., etag) with the
desired properties. Devices are created first with create_device_with_sas. Run by benches/fleet.rs
against the same emulator as twinops; prints one JSON line with the wall time.

Usage: IOTHUB_CONNECTION_STRING=... REQUESTS_CA_BUNDLE=... python sdk_loop.py DEVICES MODULES PREFIX
"""
import json
import os
import sys
import time

from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties


def main():
    devices, modules, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rm = IoTHubRegistryManager.from_connection_string(os.environ["IOTHUB_CONNECTION_STRING"])
    start = time.monotonic()
    for d in range(devices):
        device_id = f"{prefix}-{d:05d}"
        rm.create_device_with_sas(device_id, "", "", "enabled")
        for m in range(modules):
            module_id = f"mod-{m}"
            rm.create_module_with_sas(device_id, module_id, "", "", "")
            twin = rm.get_module_twin(device_id, module_id)
            patch = Twin(properties=TwinProperties(desired={"telemetryInterval": 122, "unit": "celsius"}))
            rm.update_module_twin(device_id, module_id, patch, twin.etag)
    print(json.dumps({"seconds": time.monotonic() - start, "modules": devices * modules}))


if __name__ == "__main__":
    main()
