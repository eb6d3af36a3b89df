//! Conformance: Microsoft's Python device SDK (`azure-iot-device` 2.14.0 on paho-mqtt 1.6.1) runs
//! the walkthrough's device application against the emulator's MQTT side, while twinops itself
//! plays the back end: `twinops apply` writes the desired `telemetryInterval`, `twinops
//! connection-string` hands the module its connection string, and a second apply must reach the
//! running device as a desired-property patch, which it reports back.
//!
//! The SDK's port is fixed at 8883; the script redirects paho's connect to the emulator's random
//! MQTT port (read from `GET /_emulator/info`), so tests can run in parallel (reference §15.2).
//!
//! The same SDK over MQTT over WebSockets (`websockets=True`, port 443 on IoT Hub, redirected to
//! the emulator's HTTPS port) gets its twin, reports, receives a desired patch and sees the
//! service clear all desired properties (`"desired": null`): its merged view and a fresh
//! `get_twin()` end empty.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::Emulator;
use serde_json::{Value, json};

fn twinops(hub: &Emulator, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args(args)
        .args(["--hub", &hub.connection_string, "--ca-cert"])
        .arg(&hub.ca_path)
        .env("NO_COLOR", "1")
        .output()
        .expect("running twinops");
    assert!(
        out.status.success(),
        "twinops {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_manifest(dir: &Path, interval: u32) {
    std::fs::write(
        dir.join("fleet.yaml"),
        format!(
            "owner: device-walkthrough\ndevices:\n  myFirstDevice:\n    modules:\n      myFirstModule:\n        desired:\n          telemetryInterval: {interval}\n"
        ),
    )
    .expect("writing the manifest");
}

/// Runs a device script with `env`, its stdout lines sent to the returned channel.
fn run_script(name: &str, env: &[(&str, String)]) -> (std::process::Child, mpsc::Receiver<String>) {
    let python = crate::support::sdk_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk/python")
        .join(name);
    let mut child = Command::new(&python)
        .arg("-u")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the device script");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Waits for the script's next line starting with `tag`; returns the JSON after it.
fn wait_for(lines: &mpsc::Receiver<String>, tag: &str, seen: &mut Vec<String>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if let Some(rest) = line.strip_prefix(tag) {
                    let rest = rest.trim();
                    return if rest.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(rest).expect("JSON after the tag")
                    };
                }
            }
            Err(_) => panic!("no `{tag}` line from the device script; it printed:\n{seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_device_sdk_gets_twin_reports_and_receives_desired_patches_from_apply() {
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let port = hub.mqtt_port().await;
    let manifests = tempfile::tempdir().expect("a temp dir");
    write_manifest(manifests.path(), 122);
    let dir = manifests.path().to_str().expect("utf-8");
    twinops(&hub, &["apply", "--yes", dir]);

    let cs = twinops(&hub, &["connection-string", "myFirstDevice/myFirstModule"]);
    let cs = cs.trim().to_string();
    assert!(
        cs.starts_with(
            "HostName=localhost;DeviceId=myFirstDevice;ModuleId=myFirstModule;SharedAccessKey="
        ),
        "the connection string names the host without its port"
    );

    let started = Instant::now();
    let (child, lines) = run_script(
        "device_flow.py",
        &[
            ("DEVICE_CONNECTION_STRING", cs),
            ("CA_CERT", hub.ca_path.display().to_string()),
            ("MQTT_PORT", port.to_string()),
        ],
    );
    let mut seen = Vec::new();

    let twin = wait_for(&lines, "TWIN", &mut seen);
    assert_eq!(twin["desired"]["telemetryInterval"], 122, "{twin}");
    assert!(twin["desired"]["$version"].is_i64(), "{twin}");
    assert!(twin["reported"]["$version"].is_i64(), "{twin}");
    wait_for(&lines, "READY", &mut seen);
    let module_twin = hub
        .get("/twins/myFirstDevice/modules/myFirstModule")
        .await
        .body;
    assert_eq!(module_twin["connectionState"], "Connected");
    assert!(
        module_twin["properties"]["reported"]["temperature"].is_number(),
        "the walkthrough's reported patch arrived: {module_twin}"
    );

    write_manifest(manifests.path(), 200);
    twinops(&hub, &["apply", "--yes", dir]);
    let patch = wait_for(&lines, "PATCH", &mut seen);
    let desired_version = hub
        .get("/twins/myFirstDevice/modules/myFirstModule")
        .await
        .body["properties"]["desired"]["$version"]
        .clone();
    assert_eq!(
        patch,
        json!({"telemetryInterval": 200, "$version": desired_version})
    );
    wait_for(&lines, "DONE", &mut seen);
    let out = child.wait_with_output().expect("the script ends");
    assert!(
        out.status.success(),
        "device flow failed:\n{seen:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module_twin = hub
        .get("/twins/myFirstDevice/modules/myFirstModule")
        .await
        .body;
    assert_eq!(
        module_twin["properties"]["reported"]["telemetryInterval"], 200,
        "the device reported the new interval back: {module_twin}"
    );
    eprintln!("python device SDK flow took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_device_sdk_over_websockets_gets_twin_reports_and_sees_desired_cleared() {
    let hub = Emulator::start_with(&["--mqtt", "127.0.0.1:0"]);
    let device = hub.create_device("wsDevice").await;
    let r = hub
        .patch(
            "/twins/wsDevice",
            json!({"properties": {"desired": {"telemetryInterval": 122}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let key = device["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a key");
    let https_port = hub.host.rsplit_once(':').expect("host:port").1.to_string();
    let (child, lines) = run_script(
        "device_websocket_flow.py",
        &[
            (
                "DEVICE_CONNECTION_STRING",
                format!("HostName=localhost;DeviceId=wsDevice;SharedAccessKey={key}"),
            ),
            ("CA_CERT", hub.ca_path.display().to_string()),
            ("HTTPS_PORT", https_port),
        ],
    );
    let mut seen = Vec::new();

    let twin = wait_for(&lines, "TWIN", &mut seen);
    assert_eq!(
        twin,
        json!({"desired": {"telemetryInterval": 122, "$version": 2}, "reported": {"$version": 1}})
    );
    wait_for(&lines, "REPORTED", &mut seen);
    let service = hub.get("/twins/wsDevice").await.body;
    assert_eq!(
        service["properties"]["reported"]["firmware"],
        json!({"v": 1}),
        "{service}"
    );
    assert_eq!(service["connectionState"], "Connected");

    wait_for(&lines, "READY", &mut seen);
    let r = hub
        .patch(
            "/twins/wsDevice",
            json!({"properties": {"desired": {"telemetryInterval": 200, "mode": {"eco": true}}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let patch = wait_for(&lines, "PATCH", &mut seen);
    assert_eq!(
        patch,
        json!({"telemetryInterval": 200, "mode": {"eco": true}, "$version": 3})
    );

    let r = hub
        .patch(
            "/twins/wsDevice",
            json!({"properties": {"desired": null}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let desired = &r.body["properties"]["desired"];
    assert_eq!(
        desired
            .as_object()
            .expect("desired")
            .keys()
            .collect::<Vec<_>>(),
        ["$metadata", "$version"],
        "the service's desired is empty: {desired}"
    );
    let cleared = wait_for(&lines, "CLEARED", &mut seen);
    assert_eq!(
        cleared["patch"],
        json!({"telemetryInterval": null, "mode": null, "$version": 4})
    );
    assert_eq!(cleared["view"], json!({}), "the device's merged view");
    let twin = wait_for(&lines, "TWIN2", &mut seen);
    assert_eq!(twin["desired"], json!({"$version": 4}), "{twin}");
    wait_for(&lines, "DONE", &mut seen);
    let out = child.wait_with_output().expect("the script ends");
    assert!(
        out.status.success(),
        "device websocket flow failed:\n{seen:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
