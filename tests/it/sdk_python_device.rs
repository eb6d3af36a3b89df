//! Conformance: Microsoft's Python device SDK (`azure-iot-device` 2.14.0 on paho-mqtt 1.6.1) runs
//! the walkthrough's device application against the emulator's MQTT side, while twinops itself
//! plays the back end: `twinops apply` writes the desired `telemetryInterval`, `twinops
//! connection-string` hands the module its connection string, and a second apply must reach the
//! running device as a desired-property patch, which it reports back.
//!
//! The SDK's port is fixed at 8883; the script redirects paho's connect to the emulator's random
//! MQTT port (read from `GET /_emulator/info`), so tests can run in parallel (reference §15.2).

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
    let python = crate::support::sdk_python();
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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/python/device_flow.py");
    let mut child = Command::new(&python)
        .arg("-u")
        .arg(script)
        .env("DEVICE_CONNECTION_STRING", &cs)
        .env("CA_CERT", &hub.ca_path)
        .env("MQTT_PORT", port.to_string())
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
