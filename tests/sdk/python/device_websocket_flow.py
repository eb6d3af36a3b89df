"""Microsoft's Python device SDK (`azure-iot-device`) over MQTT over WebSockets (`websockets=True`,
what a device behind a firewall that only opens 443 uses) against the twinops emulator's HTTPS
port: connect, get the twin, patch reported properties, receive a desired patch, and then see the
service clear all desired properties (`{"properties": {"desired": null}}`).

The device keeps its view of desired properties as the SDKs' twin objects do (Node's
`Twin._mergePatch`: merge each patch, drop what is `null`), starting from `get_twin()`; once the
service cleared desired that view must be empty, and so must a fresh `get_twin()`.

Only the harness is ours:
- paho's connect is redirected to HTTPS_PORT: with websockets the SDK always dials 443;
- machine-readable lines (TWIN, REPORTED, READY, PATCH, CLEARED, TWIN2, DONE) tell the Rust test
  how far the flow got; the test makes the service writes between them.

Environment: DEVICE_CONNECTION_STRING, CA_CERT (PEM path), HTTPS_PORT.
"""

import asyncio
import os
import sys

from harness import redirect_connect, say

redirect_connect(int(os.environ["HTTPS_PORT"]))

from azure.iot.device.aio import IoTHubDeviceClient  # noqa: E402


def merge(view, patch):
    """RFC 7396, as the device SDKs' twin objects merge desired patches."""
    for key, value in patch.items():
        if value is None:
            view.pop(key, None)
        elif isinstance(value, dict) and isinstance(view.get(key), dict):
            merge(view[key], value)
        else:
            view[key] = value


def values(section):
    return {k: v for k, v in section.items() if not k.startswith("$")}


async def main():
    with open(os.environ["CA_CERT"]) as f:
        cert = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        os.environ["DEVICE_CONNECTION_STRING"], server_verification_cert=cert, websockets=True
    )
    received = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_patch(patch):
        loop.call_soon_threadsafe(received.put_nowait, patch)

    await client.connect()
    twin = await client.get_twin()
    say("TWIN", twin)
    view = values(twin["desired"])

    await client.patch_twin_reported_properties({"temperature": 21.5, "firmware": {"v": 1}})
    say("REPORTED")

    client.on_twin_desired_properties_patch_received = on_patch
    say("READY")

    patch = await asyncio.wait_for(received.get(), timeout=60)
    say("PATCH", patch)
    merge(view, values(patch))

    patch = await asyncio.wait_for(received.get(), timeout=60)
    merge(view, values(patch))
    say("CLEARED", {"patch": patch, "view": view})

    twin = await client.get_twin()
    say("TWIN2", twin)
    await client.shutdown()
    say("DONE")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), timeout=120))
    except Exception as e:  # the test prints stderr on failure
        print("device websocket flow failed: {!r}".format(e), file=sys.stderr, flush=True)
        sys.exit(1)
