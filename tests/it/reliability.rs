//! Reliability: apply under injected faults converges, and Ctrl-C stops cleanly with exit 130.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::{class, manifests, twin_retrying, twinops, writes};
use crate::support::{Emulator, eventually};

fn fleet(devices: usize, value: u32) -> String {
    format!(
        "owner: rel\ndevices:\n  \"r-{{001..{devices:03}}}\":\n    tags: {{site: berlin, name: \"${{device}}\"}}\n    desired: {{v: {value}, deep: {{list: [1, 2, 3]}}}}\n    modules:\n      m1:\n        desired: {{v: {value}}}\n"
    )
}

#[tokio::test]
async fn apply_under_faults_converges_and_the_next_apply_writes_nothing() {
    let em = Emulator::start_with(&[
        "--faults",
        "429ra:0.08,500:0.04,503:0.04,reset:0.03,reset-after:0.03,latency:1-5ms",
        "--faults-seed",
        "7",
    ]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(120, 1))]);
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    manifests(d.path(), &[("fleet.yaml", &fleet(120, 2))]);
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let stats = em.stats().await;
    let faults: u64 = stats["faults"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "latency")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(faults > 10, "faults were injected: {stats}");
    // Converged: every twin holds the manifest, and another apply makes no write.
    for i in [1, 60, 120] {
        assert_eq!(
            twin_retrying(&em, &format!("r-{i:03}")).await["properties"]["desired"]["v"],
            2
        );
        assert_eq!(
            twin_retrying(&em, &format!("r-{i:03}/m1")).await["properties"]["desired"]["v"],
            2
        );
    }
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    let before = em.stats().await;
    let r = twinops(&em, &["plan", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(writes(&em.stats().await), writes(&before));
}

#[tokio::test]
async fn ctrl_c_stops_starting_operations_and_exits_130() {
    let em = Emulator::start_with(&["--faults", "latency:150ms"]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_str().unwrap().to_string();
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 1))]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 2))]);
    // 60 twin patches one at a time at 150 ms each: about 9 s; interrupt after the first few.
    let before = class(&em.stats().await, "twin_write");
    let child = Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args([
            "apply",
            "--yes",
            "--concurrency",
            "1",
            "--format",
            "json",
            &p,
        ])
        .env("TWINOPS_HUB", &em.connection_string)
        .env("TWINOPS_CA_CERT", &em.ca_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        "the apply writes its first twins",
        Duration::from_secs(30),
        async || class(&em.stats().await, "twin_write") - before,
        |written| *written >= 3,
    )
    .await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let outcomes = report["outcomes"].as_array().unwrap();
    let applied = outcomes.iter().filter(|o| o["status"] == "applied").count();
    let skipped = outcomes.iter().filter(|o| o["status"] == "skipped").count();
    assert!(
        applied >= 1 && skipped >= 1,
        "applied {applied}, skipped {skipped}"
    );
    assert_eq!(
        applied + skipped,
        outcomes.len(),
        "in-flight operations finished: none failed"
    );
    // Running apply again repairs the interrupted one.
    let r = twinops(&em, &["apply", "--yes", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "{r:?}");
}
