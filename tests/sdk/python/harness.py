"""What the device flows share around Microsoft's SDK code, and nothing of the SDK itself.

- `redirect_connect(port)`: paho's connect goes to `port` on the emulator's host. The device SDK
  always dials 8883 for MQTT and 443 for MQTT over WebSockets (reference 15.2), while tests run
  emulators in parallel on random ports. Call it before importing `azure.iot.device`.
- `say(tag, value)`: one machine-readable line (`TAG {json}`) that tells the Rust test how far a
  flow got.
"""

import json

import paho.mqtt.client as mqtt


def redirect_connect(to_port):
    connect = mqtt.Client.connect

    # `port` keeps paho's name: the SDK passes it by keyword.
    def redirected(self, host, port=1883, keepalive=60, *args, **kwargs):
        return connect(self, host, to_port, keepalive, *args, **kwargs)

    mqtt.Client.connect = redirected


def say(tag, value=None):
    line = tag if value is None else "{} {}".format(tag, json.dumps(value, sort_keys=True))
    print(line, flush=True)
