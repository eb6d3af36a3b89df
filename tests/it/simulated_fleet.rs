//! `apply --wait` against the emulator's simulated fleet: virtual devices connected over MQTT echo desired
//! values into reported ones. All acknowledged → exit 0; with 5% offline → exit 1 naming exactly those.
//! `TWINOPS_SIM_DEVICES` changes the fleet size (the closing note's 1,000-device figure used it).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Instant;

use crate::cli::{manifests, twinops};
use crate::support::Emulator;

fn devices() -> usize {
    std::env::var("TWINOPS_SIM_DEVICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn fleet(n: usize, v: u32) -> String {
    format!(
        "owner: sim\ndevices:\n  \"sim-{{0001..{n:04}}}\":\n    desired: {{telemetryInterval: {v}, mode: {{eco: true}}}}\n"
    )
}

#[tokio::test]
async fn apply_wait_sees_the_simulated_fleet_acknowledge() {
    let n = devices();
    let em = Emulator::start_with(&["--mqtt", "127.0.0.1:0", "--simulate-devices", "sim-*:200ms"]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(n, 10))]);
    let t = Instant::now();
    let r = twinops(&em, &["apply", "--yes", "--wait=120s", p]);
    eprintln!(
        "apply --wait over {n} simulated devices took {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("Acknowledged: {n} of {n} twins.")),
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["counts"]["not_acknowledged"], 0);
}

#[tokio::test]
async fn apply_wait_times_out_naming_exactly_the_offline_devices() {
    let n = devices();
    let em = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "sim-*:200ms",
        "--simulate-offline",
        "5%",
    ]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(n, 10))]);
    let r = twinops(&em, &["apply", "--yes", "--wait=20s", p]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("not acknowledged:"))
        .unwrap();
    let named: BTreeSet<String> = line
        .split("not acknowledged:")
        .nth(1)
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    // The offline ones are the devices that never connected.
    let r = em
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(serde_json::json!({"query": "SELECT deviceId FROM devices WHERE connectionState != 'Connected'"})),
            &[("x-ms-max-item-count", "1000")],
        )
        .await;
    let offline: BTreeSet<String> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["deviceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, offline);
    let share = offline.len() as f64 / n as f64;
    assert!(
        (0.02..=0.09).contains(&share),
        "{} of {n} offline",
        offline.len()
    );
}

#[tokio::test]
async fn apply_wait_and_drift_accept_plug_and_play_acknowledgements() {
    let em = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "sim-*:200ms",
        "--simulate-ack",
        "pnp",
    ]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(20, 10))]);
    let r = twinops(&em, &["apply", "--yes", "--wait=60s", p]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Acknowledged: 20 of 20 twins."),
        "{}",
        r.stdout
    );
    let t = em.get("/twins/sim-0001").await.body;
    assert_eq!(
        t["properties"]["reported"]["telemetryInterval"]["ac"], 200,
        "{t}"
    );
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["counts"]["not_acknowledged"], 0);
}

#[tokio::test]
async fn a_rejecting_device_fails_apply_wait_at_once_and_drift_names_it_with_its_text() {
    let em = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "sim-*:100ms",
        "--simulate-reject",
        "sim-0003",
    ]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(5, 10))]);
    let t = Instant::now();
    let r = twinops(&em, &["apply", "--yes", "--wait=120s", p]);
    let took = t.elapsed();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("rejected by the device: sim-0003")
            && r.stderr.contains("rejected by simulated device"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("NO (rejected)"), "{}", r.stdout);
    // "At once": long before the 120 s limit (reported, not asserted as a wall-clock bound).
    eprintln!(
        "apply --wait stopped on the rejection after {:.1}s",
        took.as_secs_f64()
    );
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 2, "a rejection is drift: {r:?}");
    let j = r.json();
    assert_eq!(j["counts"]["rejected_by_device"], 1, "{j}");
    let item = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["class"] == "rejected_by_device")
        .unwrap()
        .clone();
    assert_eq!(item["device_id"], "sim-0003");
    assert!(
        item["detail"]
            .as_str()
            .unwrap()
            .contains("rejected by simulated device"),
        "{item}"
    );
}
