//! Crash safety: twinops killed with SIGKILL at random moments of an apply; the next apply converges
//! with no duplicate or stray identity and the one after makes no write.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{manifests, twinops, writes};
use crate::support::Emulator;
use rand::Rng;

const DEVICES: usize = 300;

fn fleet(value: u32) -> String {
    format!(
        "owner: crash\ndevices:\n  \"c-{{001..{DEVICES:03}}}\":\n    tags: {{name: \"${{device}}\"}}\n    desired: {{v: {value}, nested: {{a: [1, 2], b: \"${{device}}\"}}}}\n    modules:\n      m1:\n        desired: {{v: {value}}}\n      m2:\n        tags: {{role: \"${{module}}\"}}\n"
    )
}

fn spawn_apply(em: &Emulator, dir: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args(["apply", "--yes", "--quiet", dir])
        .env("TWINOPS_HUB", &em.connection_string)
        .env("TWINOPS_CA_CERT", &em.ca_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn count(em: &Emulator, sql: &str) -> u64 {
    let r = em
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(serde_json::json!({"query": sql})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body[0]["n"].as_u64().unwrap()
}

#[tokio::test]
async fn apply_killed_at_random_moments_is_repaired_by_the_next_apply() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap().to_string();
    // Calibrate: how long a full apply of the fleet takes here.
    let em = Emulator::start();
    manifests(d.path(), &[("fleet.yaml", &fleet(1))]);
    let t = Instant::now();
    assert_eq!(spawn_apply(&em, &dir).wait().unwrap().code(), Some(0));
    let full = t.elapsed();
    drop(em);

    let mut rng = rand::rng();
    let trials = 12;
    let mut killed_mid_run = 0;
    for trial in 0..trials {
        let em = Emulator::start();
        // Half the trials kill a first apply (creates), half an update of an existing fleet.
        if trial % 2 == 1 {
            manifests(d.path(), &[("fleet.yaml", &fleet(1))]);
            assert_eq!(twinops(&em, &["apply", "--yes", &dir]).code, 0);
        }
        manifests(d.path(), &[("fleet.yaml", &fleet(2 + trial))]);
        let delay = Duration::from_secs_f64(full.as_secs_f64() * rng.random_range(0.05..1.0));
        let mut child = spawn_apply(&em, &dir);
        // Not a wait for a state: the random moment is the behaviour under test (a kill anywhere in
        // the run, between any two requests), so this sleep stays.
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        let r = twinops(&em, &["apply", "--yes", &dir]);
        assert_eq!(
            r.code, 0,
            "trial {trial}: the repairing apply failed: {r:?}"
        );
        assert_eq!(
            count(&em, "SELECT COUNT() AS n FROM devices").await,
            DEVICES as u64,
            "trial {trial}"
        );
        assert_eq!(
            count(&em, "SELECT COUNT() AS n FROM devices.modules").await,
            2 * DEVICES as u64,
            "trial {trial}"
        );
        assert_eq!(
            count(&em, &format!("SELECT COUNT() AS n FROM devices.modules WHERE IS_DEFINED(tags.twinops.owners.crash) AND properties.desired.v = {}", 2 + trial)).await
                + count(&em, "SELECT COUNT() AS n FROM devices.modules WHERE moduleId = 'm2' AND IS_DEFINED(tags.twinops.owners.crash)").await,
            2 * DEVICES as u64,
            "trial {trial}: every module twin carries the ledger and the new value"
        );
        let before = em.stats().await;
        let r = twinops(&em, &["apply", "--yes", &dir]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains("No changes."),
            "trial {trial}: {}",
            r.stdout
        );
        assert_eq!(
            writes(&em.stats().await),
            writes(&before),
            "trial {trial}: converged apply wrote"
        );
    }
    eprintln!(
        "crash: {trials} SIGKILL trials, {killed_mid_run} landed mid-run (a full apply took {full:?}); all repaired"
    );
    assert!(
        killed_mid_run >= trials / 2,
        "only {killed_mid_run} of {trials} kills landed mid-run"
    );
}
