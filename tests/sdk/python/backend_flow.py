"""Microsoft's backend walkthrough for module identities and module twins (Python, azure-iot-hub),
run unchanged except for the connection string, against the twinops emulator, followed by the
rest of the registry manager surface twinops replaces. Every step asserts what the SDK returned.

Environment: IOTHUB_CONNECTION_STRING (the emulator's iothubowner string) and REQUESTS_CA_BUNDLE
(the emulator's certificate). Exits non-zero on the first failed assertion.
"""

import os
import sys

from msrest.exceptions import HttpOperationError

# ---- The walkthrough's backend code, unchanged except for the connection string ----------------
import sys
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties, QuerySpecification, QueryResult

# Connect to IoT hub
IOTHUB_CONNECTION_STRING = os.environ["IOTHUB_CONNECTION_STRING"]
iothub_registry_manager = IoTHubRegistryManager.from_connection_string(IOTHUB_CONNECTION_STRING)

DEVICE_ID = "myFirstDevice"
MODULE_ID = "myFirstModule"

# The walkthrough assumes the device exists; create it first, letting the hub assign keys.
device = iothub_registry_manager.create_device_with_sas(DEVICE_ID, "", "", "enabled")
assert device.device_id == DEVICE_ID, device
assert device.status == "enabled", device.status
assert len(device.authentication.symmetric_key.primary_key) == 44
assert device.authentication.symmetric_key.primary_key != device.authentication.symmetric_key.secondary_key
assert device.etag and device.generation_id

try:
    # CreateModule - let IoT Hub assign keys
    primary_key = ""
    secondary_key = ""
    managed_by = ""
    new_module = iothub_registry_manager.create_module_with_sas(
        DEVICE_ID, MODULE_ID, managed_by, primary_key, secondary_key
    )
except HttpOperationError as ex:
    if ex.response.status_code == 409:
        # 409 indicates a conflict. This happens because the module already exists.
        new_module = iothub_registry_manager.get_module(DEVICE_ID, MODULE_ID)
    else:
        raise

assert new_module.module_id == MODULE_ID and new_module.device_id == DEVICE_ID, new_module
assert len(new_module.authentication.symmetric_key.primary_key) == 44

# The same create again takes the walkthrough's 409 path.
conflict = None
try:
    primary_key = ""
    secondary_key = ""
    managed_by = ""
    new_module = iothub_registry_manager.create_module_with_sas(
        DEVICE_ID, MODULE_ID, managed_by, primary_key, secondary_key
    )
except HttpOperationError as ex:
    conflict = ex.response.status_code
    conflict_code = ex.response.headers.get("iothub-errorcode")
    if ex.response.status_code == 409:
        # 409 indicates a conflict. This happens because the module already exists.
        new_module = iothub_registry_manager.get_module(DEVICE_ID, MODULE_ID)
    else:
        raise
assert conflict == 409, conflict
assert conflict_code == "ModuleAlreadyExistsOnDevice", conflict_code
assert new_module.module_id == MODULE_ID

updated_module_twin = None
try:
    module_twin = iothub_registry_manager.get_module_twin(DEVICE_ID, MODULE_ID)
    print ( "" )
    print ( "Module twin properties before update    :" )
    print ( "{0}".format(module_twin.properties) )

    # Update twin
    twin_patch = Twin()
    twin_patch.properties = TwinProperties(desired={"telemetryInterval": 122})
    updated_module_twin = iothub_registry_manager.update_module_twin(
        DEVICE_ID, MODULE_ID, twin_patch, module_twin.etag
    )
    print ( "" )
    print ( "Module twin properties after update     :" )
    print ( "{0}".format(updated_module_twin.properties) )

except Exception as ex:
    print ( "Unexpected error {0}".format(ex) )
except KeyboardInterrupt:
    print ( "IoTHubRegistryManager sample stopped" )
# ---- end of the walkthrough's code --------------------------------------------------------------

assert updated_module_twin is not None, "the walkthrough's update failed (see above)"
assert module_twin.etag == "AAAAAAAAAAE=", module_twin.etag
assert module_twin.module_id == MODULE_ID
assert updated_module_twin.properties.desired["telemetryInterval"] == 122
assert updated_module_twin.properties.desired["$version"] == 2
assert updated_module_twin.etag != module_twin.etag

# The same update with the etag it was planned against is refused: 412, nothing overwritten.
try:
    iothub_registry_manager.update_module_twin(DEVICE_ID, MODULE_ID, twin_patch, module_twin.etag)
    raise AssertionError("a stale etag was accepted")
except HttpOperationError as ex:
    assert ex.response.status_code == 412, ex.response.status_code
    assert ex.response.headers.get("iothub-errorcode") == "PreconditionFailed"

# Device twin: tags and desired in one patch, unconditional ("*").
device_twin = iothub_registry_manager.update_twin(
    DEVICE_ID,
    Twin(tags={"site": "berlin"}, properties=TwinProperties(desired={"mode": {"eco": True}})),
    "*",
)
assert device_twin.tags == {"site": "berlin"}, device_twin.tags
assert device_twin.properties.desired["mode"] == {"eco": True}
fetched = iothub_registry_manager.get_twin(DEVICE_ID)
assert fetched.etag == device_twin.etag and fetched.version == device_twin.version

# Replace the module twin's desired properties wholesale.
before = iothub_registry_manager.get_module_twin(DEVICE_ID, MODULE_ID)
replaced = iothub_registry_manager.replace_module_twin(
    DEVICE_ID, MODULE_ID, Twin(properties=TwinProperties(desired={"sampling": 5})), before.etag
)
desired = {k: v for k, v in replaced.properties.desired.items() if not k.startswith("$")}
assert desired == {"sampling": 5}, desired

# Bulk: create a fleet of devices, then modules on them through rows carrying moduleId.
from azure.iot.hub.protocol.models import ExportImportDevice, AuthenticationMechanism, SymmetricKey


def sas():
    return AuthenticationMechanism(type="sas", symmetric_key=SymmetricKey(primary_key=None, secondary_key=None))


FLEET = ["fleet-%02d" % i for i in range(6)]
MODULES = ["mod-%02d" % i for i in range(45)]
result = iothub_registry_manager.bulk_create_or_update_devices(
    [ExportImportDevice(id=d, import_mode="create", status="enabled", authentication=sas(), tags={"fleet": True}) for d in FLEET]
)
assert result.is_successful, result.errors
rows = [
    ExportImportDevice(id=d, module_id=m, import_mode="create", authentication=sas())
    for d in FLEET
    for m in MODULES
]
for start in range(0, len(rows), 100):
    result = iothub_registry_manager.bulk_create_or_update_devices(rows[start:start + 100])
    assert result.is_successful, result.errors
assert len(iothub_registry_manager.get_modules(FLEET[0])) == len(MODULES)

# A bulk call with a failing row answers 400 with the failed rows; the good rows are applied.
result = iothub_registry_manager.bulk_create_or_update_devices(
    [ExportImportDevice(id=FLEET[0], import_mode="create"), ExportImportDevice(id="fleet-new", import_mode="create")]
)
assert result.is_successful is False
assert [e.error_code for e in result.errors] == ["DeviceAlreadyExists"], result.errors
assert iothub_registry_manager.get_device("fleet-new").device_id == "fleet-new"

# Query the module twins in pages, following the continuation token to the end.
query = QuerySpecification(query="SELECT * FROM devices.modules WHERE STARTSWITH(deviceId, 'fleet-')")
seen = []
token = None
pages = 0
while True:
    page = iothub_registry_manager.query_iot_hub(query, token, 100)
    pages += 1
    assert page.type.lower() == "twin", page.type
    seen.extend((t.device_id, t.module_id) for t in page.items)
    token = page.continuation_token
    if not token:
        break
assert len(seen) == len(FLEET) * len(MODULES) == 270, len(seen)
assert len(set(seen)) == len(seen), "a twin was served twice"
assert seen == sorted(seen), "pages are in (device, module) order"
assert pages == 3, pages

count = iothub_registry_manager.query_iot_hub(
    QuerySpecification(query="SELECT COUNT() AS n FROM devices WHERE tags.fleet = true")
)
# The SDK reads every query row as a Twin; a COUNT row's column lands in additional_properties.
assert count.type.lower() == "raw", count.type
assert [row.additional_properties for row in count.items] == [{"n": len(FLEET)}]

# Delete a module and a device; both are gone afterwards.
iothub_registry_manager.delete_module(DEVICE_ID, MODULE_ID)
try:
    iothub_registry_manager.get_module(DEVICE_ID, MODULE_ID)
    raise AssertionError("deleted module still there")
except HttpOperationError as ex:
    assert ex.response.status_code == 404, ex.response.status_code
iothub_registry_manager.delete_device(DEVICE_ID)
try:
    iothub_registry_manager.get_device(DEVICE_ID)
    raise AssertionError("deleted device still there")
except HttpOperationError as ex:
    assert ex.response.status_code == 404
    assert ex.response.headers.get("iothub-errorcode") == "DeviceNotFound"

result = iothub_registry_manager.bulk_create_or_update_devices(
    [ExportImportDevice(id=d, import_mode="delete") for d in FLEET + ["fleet-new"]]
)
assert result.is_successful, result.errors
remaining = iothub_registry_manager.query_iot_hub(QuerySpecification(query="SELECT COUNT() AS n FROM devices.modules"))
assert [row.additional_properties for row in remaining.items] == [{"n": 0}]

print("backend flow: all steps passed")
