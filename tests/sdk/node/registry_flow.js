// Microsoft's Node service SDK (`azure-iothub`, pinned in package.json) runs a Registry flow
// against the twinops emulator: create a device (twice: the second is a 409), get and update its
// twin with the etag, a stale etag (412), a paged query over at least 250 twins with `nextAsTwin`
// until `hasMoreResults` is false, and delete. Every step asserts what the SDK returned.
//
// Environment: IOTHUB_CONNECTION_STRING (the emulator's iothubowner string, `HostName=host:port`),
// NODE_EXTRA_CA_CERTS (the emulator's certificate) and NODE_PATH (the SDK's node_modules).
//
// The one adaptation, a transport detail: the SDK hands the connection string's `HostName` to
// Node's `https.request` as `host`, and Node does not split `host:port` there (it would look up
// "localhost:8443" in DNS). The SDK's own `Http` transport takes a `port` request option
// (SRS_NODE_HTTP_13_006), so `HostPortHttp` below splits the host name and passes the port that
// way; it is handed to the SDK's `RestApiClient` through its documented `httpRequestBuilder`
// argument, and that client to `new Registry(config, restApiClient)`. The config is built exactly
// as `Registry.fromConnectionString` builds it, so the token is signed for `host:port` as the SDK
// would sign it against a real hub. Nothing else in the SDK is touched.

'use strict';

const assert = require('assert');
const { Registry, ConnectionString, SharedAccessSignature } = require('azure-iothub');
const { RestApiClient } = require('azure-iothub/dist/common-http/rest_api_client');
const { Http } = require('azure-iothub/dist/common-http/http');
const sdkVersion = require('azure-iothub/package.json').version;

class HostPortHttp extends Http {
  buildRequest(method, path, httpHeaders, host, options, done) {
    if (!done && typeof options === 'function') {
      done = options;
      options = undefined;
    }
    const m = typeof host === 'string' ? /^(.*):(\d+)$/.exec(host) : null;
    if (m && options === undefined) {
      return super.buildRequest(method, path, httpHeaders, m[1], { port: Number(m[2]) }, done);
    }
    if (m && this.isHttpRequestOptions(options)) {
      return super.buildRequest(method, path, httpHeaders, m[1], { ...options, port: Number(m[2]) }, done);
    }
    return super.buildRequest(method, path, httpHeaders, host, options, done);
  }
}

function registryFor(connectionString) {
  // As Registry.fromConnectionString does (azure-iothub dist/registry.js).
  const cn = ConnectionString.parse(connectionString);
  const config = {
    host: cn.HostName,
    sharedAccessSignature: SharedAccessSignature.create(
      cn.HostName, cn.SharedAccessKeyName, cn.SharedAccessKey, Date.now()),
    tokenCredential: undefined,
  };
  const ua = 'azure-iothub/' + sdkVersion;
  return new Registry(config, new RestApiClient(config, ua, new HostPortHttp()));
}

async function expectStatus(promise, status, what) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err.response, `${what}: an HTTP error, got ${err}`);
    assert.strictEqual(err.response.statusCode, status, `${what}: ${err.responseBody}`);
    return err;
  }
  assert.fail(`${what}: expected HTTP ${status}, the call succeeded`);
}

function step(name) {
  console.log('step: ' + name);
}

async function main() {
  const registry = registryFor(process.env.IOTHUB_CONNECTION_STRING);
  const id = 'node-sdk-device';

  step('create');
  const created = await registry.create({ deviceId: id, status: 'enabled' });
  assert.strictEqual(created.responseBody.deviceId, id);
  assert.strictEqual(created.httpResponse.statusCode, 200);
  assert.strictEqual(created.responseBody.authentication.type, 'sas');
  assert.strictEqual(created.responseBody.authentication.symmetricKey.primaryKey.length, 44);

  step('create again is a conflict');
  const conflict = await expectStatus(registry.create({ deviceId: id }), 409, 'second create');
  assert.strictEqual(conflict.name, 'DeviceAlreadyExistsError');
  assert.strictEqual(conflict.response.headers['iothub-errorcode'], 'DeviceAlreadyExists');

  step('get');
  const got = await registry.get(id);
  assert.strictEqual(got.responseBody.deviceId, id);
  assert.strictEqual(got.responseBody.etag, created.responseBody.etag);

  step('get twin');
  const { responseBody: twin } = await registry.getTwin(id);
  assert.strictEqual(twin.deviceId, id);
  assert.ok(twin.etag, 'the twin has an etag');
  const etag0 = twin.etag;

  step('update twin with its etag');
  const patch = { tags: { env: 'test', site: { name: 'lab' } }, properties: { desired: { rate: 5 } } };
  const { responseBody: updated } = await registry.updateTwin(id, patch, etag0);
  assert.strictEqual(updated.tags.env, 'test');
  assert.strictEqual(updated.tags.site.name, 'lab');
  assert.strictEqual(updated.properties.desired.rate, 5);
  assert.notStrictEqual(updated.etag, etag0, 'a write moves the etag');

  step('Twin.update through the twin object');
  const { result: viaTwin } = await updated.update({ tags: { owner: 'node' } });
  assert.strictEqual(viaTwin.tags.owner, 'node');
  assert.strictEqual(viaTwin.tags.env, 'test');

  step('stale etag is a precondition failure');
  const stale = await expectStatus(
    registry.updateTwin(id, { tags: { env: 'prod' } }, etag0), 412, 'stale etag');
  assert.strictEqual(stale.name, 'InvalidEtagError');
  assert.strictEqual(stale.response.headers['iothub-errorcode'], 'PreconditionFailed');
  const { responseBody: after } = await registry.getTwin(id);
  assert.strictEqual(after.tags.env, 'test', 'the stale write changed nothing');

  step('bulk create 260 devices');
  const fleet = [];
  for (let i = 0; i < 260; i++) {
    fleet.push({ deviceId: 'node-fleet-' + String(i).padStart(4, '0') });
  }
  for (let i = 0; i < fleet.length; i += 100) {
    const { responseBody: bulk } = await registry.addDevices(fleet.slice(i, i + 100));
    assert.strictEqual(bulk.isSuccessful, true, JSON.stringify(bulk));
  }

  step('paged query');
  const pageSize = 40;
  const query = registry.createQuery("SELECT * FROM devices WHERE startswith(deviceId, 'node-fleet-')", pageSize);
  const seen = [];
  let pages = 0;
  do {
    const { result, message: response } = await query.nextAsTwin();
    pages += 1;
    assert.ok(result.length <= pageSize, `page ${pages} has ${result.length} rows`);
    assert.strictEqual(response.headers['x-ms-item-type'], 'Twin');
    for (const t of result) {
      assert.strictEqual(typeof t.update, 'function', 'nextAsTwin returns Twin objects');
      seen.push(t.deviceId);
    }
    assert.ok(pages <= 20, 'the query ends');
  } while (query.hasMoreResults);
  assert.strictEqual(seen.length, 260, `rows: ${seen.length}`);
  assert.strictEqual(new Set(seen).size, 260, 'no row twice');
  assert.deepStrictEqual(seen, fleet.map((d) => d.deviceId), 'stable order by device ID');
  assert.strictEqual(pages, Math.ceil(260 / pageSize));

  step('delete');
  const deleted = await registry.delete(id);
  assert.strictEqual(deleted.httpResponse.statusCode, 204);
  const gone = await expectStatus(registry.get(id), 404, 'get after delete');
  assert.strictEqual(gone.name, 'DeviceNotFoundError');

  console.log(`node SDK azure-iothub ${sdkVersion} registry flow: all steps passed`);
}

// device_twin_flow.js borrows `registryFor`.
module.exports = { registryFor };

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error('FAILED:', err && err.stack ? err.stack : err);
      process.exit(1);
    });
}
