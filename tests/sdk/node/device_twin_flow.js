// Microsoft's Node device SDK (`azure-iot-device` with `azure-iot-device-mqtt`, pinned in
// package.json) against the twinops emulator, over MQTT (`Mqtt`) and MQTT over WebSockets
// (`MqttWs`, what a device behind a firewall that only opens 443 uses), running what Microsoft's own
// e2e tests assert (azure-iot-sdk-node `e2etests/test/twin_e2e_tests.js`):
//
// - "can null out all desired properties" and "... with etag *": the service sets desired
//   properties, the device receives them, the service patches `{"properties": {"desired": null}}`
//   (with no etag, then with `*`), and the device's own `Twin` object (the SDK merges each patch and
//   drops what is `null`) ends with no desired property but `$`-keys;
// - a module twin over `MqttWs` (the e2e module twin tests): get the twin, report, receive a
//   desired patch.
//
// Environment: IOTHUB_CONNECTION_STRING (the emulator's iothubowner string), NODE_EXTRA_CA_CERTS
// (the emulator's certificate), NODE_PATH (the SDKs' node_modules), MQTT_PORT and HTTPS_PORT.
//
// The adaptations, transport details only: the service side uses registry_flow.js's `Registry` (the
// SDK does not split `host:port`); the device SDK always dials 8883 (`Mqtt`) or 443 (`MqttWs`), so
// the `connect` of the mqtt.js module its MQTT base loads is wrapped to put the emulator's port in
// the URI. Where the e2e tests wait 3 s "to account for subscription time", this flow asks the
// device's `Twin` to enable desired updates once more and waits for that answer instead (MQTT
// answers in order, so the listener's own subscription is done by then).

'use strict';

const assert = require('assert');
const path = require('path');

const mqttJs = require(require.resolve('mqtt', {
  paths: [path.dirname(require.resolve('azure-iot-mqtt-base'))],
}));
const realConnect = mqttJs.connect;
mqttJs.connect = function (uri, options) {
  const port = uri.startsWith('wss:') ? process.env.HTTPS_PORT : process.env.MQTT_PORT;
  const redirected = uri.replace(/^(mqtts|wss):\/\/([^/:]+)(:\d+)?/, `$1://$2:${port}`);
  return realConnect.call(this, redirected, options);
};

const { Client, ModuleClient } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { registryFor } = require('./registry_flow.js');

const newProps = { foo: 1, bar: { baz: 2, tweedle: { dee: 3 } } };

function step(name) {
  console.log('step: ' + name);
}

// The desired values without `$`-keys and functions, as the e2e tests' `sanitizeJson` compares.
function sanitize(v) {
  if (Array.isArray(v)) return v.map(sanitize);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v)) {
      if (k.startsWith('$') || typeof v[k] === 'function') continue;
      out[k] = sanitize(v[k]);
    }
    return out;
  }
  return v;
}

function enableDesired(twin) {
  return new Promise((resolve, reject) => {
    twin.enableTwinDesiredPropertiesUpdates((err) => (err ? reject(err) : resolve()));
  });
}

function timeout(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error('timed out: ' + what)), ms));
}

// The e2e tests' `mergeDesiredProperties(first, second, newEtag, result)`: `first` from the
// service, then `second` once the device saw the first and the service twin holds its answer (the
// e2e tests wait 3 s for both); resolves with the device's desired properties after the second.
function mergeDesired(deviceTwin, serviceTwin, first, second, newEtag) {
  const initial = deviceTwin.properties.desired.$version;
  return new Promise((resolve, reject) => {
    let firstWritten;
    const listener = (props) => {
      if (props.$version === initial + 1) {
        firstWritten
          .then(() => {
            if (newEtag) {
              assert.notStrictEqual(serviceTwin.etag, '*');
              serviceTwin.etag = newEtag;
            }
            return serviceTwin.update({ properties: { desired: second } });
          })
          .catch(reject);
      } else if (props.$version >= initial + 2) {
        deviceTwin.removeListener('properties.desired', listener);
        resolve(deviceTwin.properties.desired);
      }
    };
    deviceTwin.on('properties.desired', listener);
    firstWritten = enableDesired(deviceTwin).then(() =>
      serviceTwin.update({ properties: { desired: first } }));
    firstWritten.catch(reject);
  });
}

async function deviceFlow(registry, protocol) {
  const id = 'node-device-' + protocol.name.toLowerCase();
  step(`${protocol.name}: create ${id}`);
  const created = (await registry.create({ deviceId: id, status: 'enabled' })).responseBody;
  const cs = `HostName=localhost;DeviceId=${id};SharedAccessKey=${created.authentication.symmetricKey.primaryKey}`;
  for (const etag of [null, '*']) {
    step(`${protocol.name}: can null out all desired properties${etag ? ' with etag *' : ''}`);
    const client = Client.fromConnectionString(cs, protocol);
    await client.open();
    const deviceTwin = await client.getTwin();
    const serviceTwin = (await registry.getTwin(id)).responseBody;
    const desired = await Promise.race([
      mergeDesired(deviceTwin, serviceTwin, newProps, null, etag),
      timeout(30000, `${protocol.name} desired updates`),
    ]);
    assert.deepStrictEqual(sanitize(desired), {}, JSON.stringify(desired));
    const service = (await registry.getTwin(id)).responseBody;
    assert.deepStrictEqual(sanitize(service.properties.desired), {});
    await client.close();
  }
}

async function moduleFlow(registry) {
  const id = 'node-module-device';
  step('MqttWs: module twin');
  await registry.create({ deviceId: id, status: 'enabled' });
  const module = (await registry.addModule({ deviceId: id, moduleId: 'm' })).responseBody;
  const cs = `HostName=localhost;DeviceId=${id};ModuleId=m;SharedAccessKey=${module.authentication.symmetricKey.primaryKey}`;
  const client = ModuleClient.fromConnectionString(cs, MqttWs);
  await client.open();
  const twin = await client.getTwin();
  await new Promise((resolve, reject) =>
    twin.properties.reported.update({ temperature: 21.5 }, (err) => (err ? reject(err) : resolve())));
  const service = (await registry.getModuleTwin(id, 'm')).responseBody;
  assert.strictEqual(service.properties.reported.temperature, 21.5);
  const received = new Promise((resolve) => {
    twin.on('properties.desired.telemetryInterval', (v) => {
      if (v === 200) resolve(v);
    });
  });
  await enableDesired(twin);
  await registry.updateModuleTwin(id, 'm', { properties: { desired: { telemetryInterval: 200 } } }, '*');
  await Promise.race([received, timeout(30000, 'module desired patch')]);
  assert.strictEqual(twin.properties.desired.telemetryInterval, 200);
  await client.close();
}

async function main() {
  const registry = registryFor(process.env.IOTHUB_CONNECTION_STRING);
  for (const protocol of [Mqtt, MqttWs]) {
    await deviceFlow(registry, protocol);
  }
  await moduleFlow(registry);
  console.log('device twin flow: all steps passed');
}

main().catch((err) => {
  console.error('device twin flow failed:', err);
  process.exit(1);
});
