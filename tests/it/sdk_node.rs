//! Conformance: Microsoft's Node service SDK (`azure-iothub` 1.16.6, pinned by
//! `tests/sdk/node/package-lock.json`) runs a `Registry` flow against the emulator binary: create
//! (and the 409 of a second create), twin get/update with the etag, the 412 of a stale etag, a
//! paged `createQuery`/`nextAsTwin` over 260 twins, delete.
//!
//! Microsoft's Node device SDK (`azure-iot-device` 1.18.4, `azure-iot-device-mqtt` 1.16.4) runs
//! what its own e2e tests assert of twins (`device_twin_flow.js`): "can null out all desired
//! properties", with and without `If-Match: *`, over `Mqtt` and `MqttWs` (MQTT over WebSockets on
//! the emulator's HTTPS port), and a module twin over `MqttWs`.
//!
//! `scripts/sdk-node.sh` installs the SDK (once, under `target/sdk-node`). When npm cannot install
//! it this test fails: a conformance test that skips proves nothing. The one transport adaptation
//! (the SDK does not split `host:port`) is described at the top of `registry_flow.js`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::Emulator;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sdk_dir() -> PathBuf {
    crate::support::sdk_setup("sdk-node.sh", "the npm registry")
}

#[test]
fn node_sdk_registry_flow_runs_against_the_emulator() {
    let dir = sdk_dir();
    let hub = Emulator::start();
    let started = std::time::Instant::now();
    let out = Command::new("node")
        .arg(repo().join("tests/sdk/node/registry_flow.js"))
        .env("IOTHUB_CONNECTION_STRING", &hub.connection_string)
        .env("NODE_EXTRA_CA_CERTS", &hub.ca_path)
        .env("NODE_PATH", dir.join("node_modules"))
        .output()
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Node SDK flow failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("registry flow: all steps passed"),
        "{stdout}\n{stderr}"
    );
    eprintln!("node SDK flow took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn node_device_sdk_twin_flow_over_mqtt_and_websockets() {
    let dir = sdk_dir();
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let mqtt_port = hub.mqtt_port().await;
    let https_port = hub.host.rsplit_once(':').expect("host:port").1.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let out = Command::new("node")
            .arg(repo().join("tests/sdk/node/device_twin_flow.js"))
            .env("IOTHUB_CONNECTION_STRING", &hub.connection_string)
            .env("NODE_EXTRA_CA_CERTS", &hub.ca_path)
            .env("NODE_PATH", dir.join("node_modules"))
            .env("MQTT_PORT", mqtt_port.to_string())
            .env("HTTPS_PORT", https_port)
            .output()
            .expect("running node (is Node.js installed?)");
        drop(hub);
        out
    })
    .await
    .expect("the node flow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("device twin flow: all steps passed"),
        "Node device SDK flow failed:\n{stdout}\n{stderr}"
    );
}
