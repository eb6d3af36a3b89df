//! How the emulator's simulated devices answer desired changes, through the real binary with raw REST:
//! `--simulate-reject` identities report the Plug and Play rejection (`ac` 400, the `ad` text, `av` = the
//! desired `$version`, `value` = what they ran before), the others echo or, with `--simulate-ack pnp`,
//! report the Plug and Play acknowledgement; a `dev/mod` pattern rejects for that module twin only; `N%`
//! picks the same identities on every run; and after a restart on the same state without the flag, a
//! device that rejected acknowledges the current desired values as it connects.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::run;
use crate::support::{Emulator, eventually};

const REJECTED: &str = "rejected by simulated device";
const ACCEPTED: &str = "accepted by simulated device";

fn sim(state: Option<&str>, extra: &[&str]) -> Emulator {
    let mut args = vec!["--mqtt", "127.0.0.1:0"];
    if let Some(s) = state {
        args.extend(["--state", s]);
    }
    args.extend(extra);
    Emulator::start_with(&args)
}

/// PATCHes desired `body` into the twin at `path`; returns the new desired `$version`.
async fn desire(hub: &Emulator, path: &str, body: Value) -> i64 {
    let r = hub
        .patch(path, json!({"properties": {"desired": body}}), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap()
}

/// The reported entry of `key` once `ok` holds for it.
async fn reported_until(
    hub: &Emulator,
    path: &str,
    key: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        &format!("{path} reports the expected {key}"),
        Duration::from_secs(30),
        async || hub.get(path).await.body["properties"]["reported"][key].clone(),
        ok,
    )
    .await
}

fn has_av(v: i64) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["av"] == v
}

#[tokio::test]
async fn a_rejecting_device_reports_the_plug_and_play_rejection_and_the_others_echo() {
    let hub = sim(
        None,
        &[
            "--simulate-devices",
            "sim-*:100ms",
            "--simulate-reject",
            "sim-r*",
        ],
    );
    hub.create_device("sim-r1").await;
    hub.create_device("sim-e1").await;
    let v = desire(&hub, "/twins/sim-r1", json!({"telemetryInterval": 30})).await;
    desire(&hub, "/twins/sim-e1", json!({"telemetryInterval": 30})).await;
    let rejected = reported_until(&hub, "/twins/sim-r1", "telemetryInterval", has_av(v)).await;
    assert_eq!(
        rejected,
        json!({"ac": 400, "ad": REJECTED, "av": v}),
        "no old value: `\"value\": null` cannot be written by a merge patch"
    );
    reported_until(&hub, "/twins/sim-e1", "telemetryInterval", |e| *e == 30).await;
    let v = desire(
        &hub,
        "/twins/sim-r1",
        json!({"telemetryInterval": 45, "mode": "eco"}),
    )
    .await;
    let t = reported_until(&hub, "/twins/sim-r1", "mode", has_av(v)).await;
    assert_eq!(t, json!({"ac": 400, "ad": REJECTED, "av": v}));
    let t = hub.get("/twins/sim-r1").await.body;
    assert_eq!(
        t["properties"]["reported"]["telemetryInterval"],
        json!({"ac": 400, "ad": REJECTED, "av": v}),
        "every changed top-level key is answered"
    );
}

#[tokio::test]
async fn with_pnp_acks_a_module_pattern_rejects_for_that_module_twin_only() {
    let hub = sim(
        None,
        &[
            "--simulate-devices",
            "all:100ms",
            "--simulate-ack",
            "pnp",
            "--simulate-reject",
            "dev/mod",
        ],
    );
    hub.create_device("dev").await;
    hub.create_module("dev", "mod").await;
    hub.create_module("dev", "other").await;
    let mut versions = Vec::new();
    for path in [
        "/twins/dev",
        "/twins/dev/modules/mod",
        "/twins/dev/modules/other",
    ] {
        let v = desire(&hub, path, json!({"mode": {"eco": true}})).await;
        versions.push((path, v));
    }
    for (path, v) in versions {
        let e = reported_until(&hub, path, "mode", has_av(v)).await;
        if path == "/twins/dev/modules/mod" {
            assert_eq!(e, json!({"ac": 400, "ad": REJECTED, "av": v}), "{path}");
        } else {
            assert_eq!(
                e,
                json!({"value": {"eco": true}, "ac": 200, "ad": ACCEPTED, "av": v}),
                "{path}"
            );
        }
    }
    let v = desire(&hub, "/twins/dev", json!({"mode": {"fan": 2}})).await;
    let e = reported_until(&hub, "/twins/dev", "mode", has_av(v)).await;
    assert_eq!(
        e,
        json!({"value": {"eco": true, "fan": 2}, "ac": 200, "ad": ACCEPTED, "av": v}),
        "the acknowledgement carries the key's whole desired value"
    );
}

/// The devices of `ids` that reject on a fresh emulator with `--simulate-reject 40%`.
async fn rejecting_share(ids: &[String]) -> BTreeSet<String> {
    let hub = sim(
        None,
        &[
            "--simulate-devices",
            "pct-*:100ms",
            "--simulate-reject",
            "40%",
        ],
    );
    let mut versions = Vec::new();
    for id in ids {
        hub.create_device(id).await;
        versions.push(desire(&hub, &format!("/twins/{id}"), json!({"x": 1})).await);
    }
    let mut out = BTreeSet::new();
    for (id, v) in ids.iter().zip(versions) {
        let path = format!("/twins/{id}");
        let e = reported_until(&hub, &path, "x", |e| *e == 1 || e["av"] == v).await;
        if e["ac"] == 400 {
            out.insert(id.clone());
        }
    }
    out
}

#[tokio::test]
async fn a_percentage_rejects_the_same_identities_on_every_run() {
    let ids: Vec<String> = (1..=20).map(|i| format!("pct-{i:02}")).collect();
    let first = rejecting_share(&ids).await;
    assert!((2..=14).contains(&first.len()), "{first:?}");
    assert_eq!(rejecting_share(&ids).await, first);
}

#[tokio::test]
async fn after_a_restart_without_reject_the_device_acknowledges_on_connect() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut hub = sim(Some(state), &["--simulate-devices", "d1:100ms"]);
    hub.create_device("d1").await;
    desire(&hub, "/twins/d1", json!({"telemetryInterval": 30})).await;
    reported_until(&hub, "/twins/d1", "telemetryInterval", |e| *e == 30).await;
    hub.terminate();
    drop(hub);

    let mut hub = sim(
        Some(state),
        &["--simulate-devices", "d1:100ms", "--simulate-reject", "d1"],
    );
    let v = desire(&hub, "/twins/d1", json!({"telemetryInterval": 45})).await;
    let e = reported_until(&hub, "/twins/d1", "telemetryInterval", has_av(v)).await;
    assert_eq!(
        e,
        json!({"value": 30, "ac": 400, "ad": REJECTED, "av": v}),
        "the old value is the one it acknowledged before"
    );
    hub.terminate();
    drop(hub);

    let hub = sim(Some(state), &["--simulate-devices", "d1:100ms"]);
    reported_until(&hub, "/twins/d1", "telemetryInterval", |e| *e == 45).await;
    let t = hub.get("/twins/d1").await.body;
    assert_eq!(
        t["properties"]["desired"]["$version"], v,
        "no desired write since"
    );
    drop(hub);

    let hub = sim(
        Some(state),
        &["--simulate-devices", "d1:100ms", "--simulate-ack", "pnp"],
    );
    let e = reported_until(&hub, "/twins/d1", "telemetryInterval", |e| e["ac"] == 200).await;
    assert_eq!(
        e,
        json!({"value": 45, "ac": 200, "ad": ACCEPTED, "av": v}),
        "a Plug and Play device answers the current values in its form on connect"
    );
}

#[test]
fn bad_reject_and_ack_values_and_a_missing_fleet_exit_1_naming_the_flag() {
    let bin = env!("CARGO_BIN_EXE_twinops");
    let start = |extra: &[&str]| {
        let mut c = std::process::Command::new(bin);
        c.args(["emulator", "--listen", "127.0.0.1:0", "--mqtt", "off"])
            .args(extra);
        run(c)
    };
    for (extra, named) in [
        (
            &["--simulate-devices", "all", "--simulate-reject", "120%"][..],
            "--simulate-reject `120%`",
        ),
        (
            &["--simulate-devices", "all", "--simulate-reject", "a,sim-["][..],
            "--simulate-reject pattern `sim-[`",
        ),
        (
            &["--simulate-devices", "all", "--simulate-ack", "loud"][..],
            "--simulate-ack `loud`",
        ),
        (&["--simulate-reject", "d1"][..], "--simulate-devices"),
        (&["--simulate-ack", "pnp"][..], "--simulate-devices"),
    ] {
        let r = start(extra);
        assert_eq!(r.code, 1, "{extra:?}: {r:?}");
        assert!(r.stderr.contains(named), "{extra:?}: {}", r.stderr);
    }
}
