//! Acknowledgements judged per key (SPEC §11): a device acknowledges a desired key at that key's
//! `$lastUpdatedVersion`, not at the document's `$version`, which every later write of another key
//! moves. One classifier for `drift`, `apply --wait` and rollout gates; and `apply --wait` waits for
//! the fleet, not for this run's writes (SPEC §18).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{
    class, command, dir, manifests, other_writer, report, run, twin, twinops, writes,
};
use crate::support::{Emulator, eventually};

fn one(id: &str, a: i64, b: i64, rollout: Option<&str>) -> String {
    let mut y = String::from("owner: acks\n");
    if let Some(r) = rollout {
        y.push_str(&format!("rollout: {r}\n"));
    }
    y.push_str(&format!(
        "devices:\n  {id}:\n    desired: {{a: {a}, b: {b}}}\n"
    ));
    y
}

/// The key's `$lastUpdatedVersion` in the twin's desired `$metadata`.
fn key_version(t: &Value, k: &str) -> i64 {
    t["properties"]["desired"]["$metadata"][k]["$lastUpdatedVersion"]
        .as_i64()
        .unwrap()
}

/// The Plug and Play acknowledgement a device sends for key `k` as the twin holds it now.
async fn acknowledge(em: &Emulator, id: &str, k: &str) {
    let t = twin(em, id).await;
    let value = t["properties"]["desired"][k].clone();
    let av = key_version(&t, k);
    report(
        em,
        id,
        json!({k: {"value": value, "ac": 200, "ad": "ok", "av": av}}),
    )
    .await;
}

fn items(r: &crate::cli::Run) -> Vec<(String, Vec<Value>)> {
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["class"].as_str().unwrap().to_string(),
                i["keys"].as_array().cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_key_acknowledged_at_its_version_stays_acknowledged_when_another_key_changes() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &one("dev", 1, 1, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    acknowledge(&em, "dev", "a").await;
    acknowledge(&em, "dev", "b").await;
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(items(&r).is_empty(), "{}", r.stdout);

    // b changes; the device does not answer it. a was acknowledged at its own version.
    manifests(d.path(), &[("fleet.yaml", &one("dev", 1, 2, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let t = twin(&em, "dev").await;
    let document = t["properties"]["desired"]["$version"].as_i64().unwrap();
    assert!(
        key_version(&t, "a") < document,
        "the scenario: a's version is older than the document's: {t}"
    );
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 0, "pending is information: {r:?}");
    assert_eq!(
        items(&r),
        [("not_acknowledged".to_string(), vec![json!("desired.b")])],
        "a is acknowledged, b pending"
    );
    let text = twinops(&em, &["drift", p]).stdout;
    assert!(
        text.contains(&format!("desired.b (version {document})")),
        "{text}"
    );

    // Another writer's key moves the document's version again: a and b keep their answers.
    other_writer(&em, "dev", json!({"properties": {"desired": {"other": 1}}})).await;
    acknowledge(&em, "dev", "b").await;
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(items(&r).is_empty(), "{}", r.stdout);

    // --stale-after: a key unacknowledged that long after it changed is drift.
    manifests(d.path(), &[("fleet.yaml", &one("dev", 1, 3, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let r = twinops(
        &em,
        &["drift", "--stale-after", "1h", "--format", "json", p],
    );
    assert_eq!(r.code, 0, "not stale yet: {r:?}");
    let r = twinops(&em, &["drift", "--stale-after", "0s", p]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("not acknowledged in time") && r.stdout.contains("desired.b"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn a_rejected_key_is_drift_with_the_devices_words() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &one("dev", 1, 1, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let t = twin(&em, "dev").await;
    let av = key_version(&t, "b");
    report(
        &em,
        "dev",
        json!({"b": {"value": 0, "ac": 400, "ad": "b out of range", "av": av}}),
    )
    .await;
    acknowledge(&em, "dev", "a").await;
    let r = twinops(&em, &["drift", p]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "rejected: desired.b at version {av}: b out of range"
        )),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn a_re_run_of_a_timed_out_wait_fails_again_until_the_device_acknowledges() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: acks\ndevices:\n  talks: {desired: {a: 1}}\n  silent: {desired: {a: 1}}\n",
        )],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    acknowledge(&em, "talks", "a").await;
    let r = twinops(&em, &["apply", "--yes", "--wait", "1s", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not acknowledged: silent"),
        "{}",
        r.stderr
    );
    // Again: nothing to write, and still the silent device is named; nothing is written.
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", "--wait", "1s", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not acknowledged: silent") && !r.stderr.contains("talks"),
        "{}",
        r.stderr
    );
    let r = twinops(
        &em,
        &["apply", "--yes", "--wait", "1s", "--format", "json", p],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let waited = r.json()["wait"]["twins"].clone();
    assert_eq!(waited, json!([{"twin": "silent"}]), "{waited}");
    // Once it acknowledges: exit 0 with no write.
    acknowledge(&em, "silent", "a").await;
    let r = twinops(&em, &["apply", "--yes", "--wait", "5s", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        writes(&em.stats().await),
        writes(&before),
        "nothing written"
    );
}

#[tokio::test]
async fn a_rollout_does_not_halt_when_another_write_moves_the_documents_version() {
    let em = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "g-*:2s",
        "--simulate-ack",
        "pnp",
    ]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &one("g-1", 1, 1, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    eventually(
        "the simulated device acknowledges",
        Duration::from_secs(30),
        async || twin(&em, "g-1").await["properties"]["reported"]["b"]["av"].clone(),
        |av| av.is_i64(),
    )
    .await;

    // The rollout writes b; while its device takes 2 s to answer, someone else writes another
    // desired key and a tag: the document's version moves past the version b was written at.
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &one("g-1", 1, 2, Some("{waves: [100%], timeout: 20s}")),
        )],
    );
    let cmd = command(&em, &["apply", "--yes", "--format", "json", p]);
    let apply = std::thread::spawn(move || run(cmd));
    eventually(
        "the wave writes b",
        Duration::from_secs(30),
        async || twin(&em, "g-1").await["properties"]["desired"]["b"].clone(),
        |b| *b == 2,
    )
    .await;
    other_writer(
        &em,
        "g-1",
        json!({"tags": {"note": "x"}, "properties": {"desired": {"unrelated": 1}}}),
    )
    .await;
    let r = apply.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    assert_eq!(report["rollout"]["waves"][0]["state"], "passed", "{report}");
    let t = twin(&em, "g-1").await;
    assert!(
        key_version(&t, "b") < t["properties"]["desired"]["$version"].as_i64().unwrap(),
        "the scenario: {t}"
    );
    assert!(class(&em.stats().await, "twin_read") > 0);
}
