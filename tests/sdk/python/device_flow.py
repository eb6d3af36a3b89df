"""The walkthrough's device application (seed "Create a device application": connect, get_twin,
patch_twin_reported_properties, on_twin_desired_properties_patch_received) run with Microsoft's
`azure-iot-device` SDK against the twinops emulator's MQTT side.

Only the harness around the walkthrough code is ours:
- paho's connect is redirected to MQTT_PORT: the SDK's port is fixed at 8883 (reference 15.2), and
  tests run in parallel on random ports;
- machine-readable lines (TWIN, READY, PATCH, DONE) tell the Rust test how far the flow got;
- after the first desired patch is received, its values are reported back and the script ends.

Environment: DEVICE_CONNECTION_STRING (from `twinops connection-string`), CA_CERT (PEM path), MQTT_PORT.
"""

import asyncio
import os
import random
import sys

from harness import redirect_connect, say

redirect_connect(int(os.environ["MQTT_PORT"]))

# import the device client library
from azure.iot.device.aio import IoTHubModuleClient  # noqa: E402


async def main():
    conn_str = os.environ["DEVICE_CONNECTION_STRING"]
    with open(os.environ["CA_CERT"]) as f:
        cert = f.read()
    received = asyncio.Queue()
    loop = asyncio.get_running_loop()

    # --- the walkthrough's device application ---
    device_client = IoTHubModuleClient.create_from_connection_string(
        conn_str, server_verification_cert=cert
    )

    # connect the application to the device
    await device_client.connect()

    # get the twin
    twin = await device_client.get_twin()
    print("Twin document:")
    print("{}".format(twin))
    say("TWIN", twin)

    # create the reported properties patch
    reported_properties = {"temperature": random.randint(320, 800) / 10}
    print("Setting reported temperature to {}".format(reported_properties["temperature"]))
    # update the reported properties and wait for the result
    await device_client.patch_twin_reported_properties(reported_properties)

    # Define behavior for receiving twin desired property patches
    def twin_patch_handler(twin_patch):
        print("Twin patch received:")
        print(twin_patch)
        loop.call_soon_threadsafe(received.put_nowait, twin_patch)

    try:
        # Set handlers on the client
        device_client.on_twin_desired_properties_patch_received = twin_patch_handler
    except:  # noqa: E722
        # Clean up in the event of failure
        device_client.shutdown()
        raise
    # --- end of the walkthrough's code ---

    say("READY")
    patch = await asyncio.wait_for(received.get(), timeout=60)
    say("PATCH", patch)
    echo = {k: v for k, v in patch.items() if not k.startswith("$")}
    await device_client.patch_twin_reported_properties(echo)
    say("DONE")
    await device_client.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), timeout=120))
    except Exception as e:  # the test prints stderr on failure
        print("device flow failed: {!r}".format(e), file=sys.stderr, flush=True)
        sys.exit(1)
