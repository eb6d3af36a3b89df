//! Rollouts through the real binary against the emulator's simulated devices (SPEC §11): a canary
//! that rejects halts the rollout with only its twins written, a re-run halts again without a write
//! and completes once the device acknowledges; a device that never answers halts at the timeout;
//! `on_halt: revert` writes the wave back except a twin someone else changed since; a kill during
//! `bake` never lets a later wave out before the earlier one passed again; a saved plan's waves are
//! the waves applied, through the paged gate reads of a large wave; `--no-rollout` writes at once.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{class, command, dir, manifests, other_writer, report, twin, twinops, writes};
use crate::support::{Emulator, eventually};

const REJECTED: &str = "rejected by simulated device";

/// `n` devices `{prefix}00..`, the first `canaries` tagged `ring: canary`, each wanting
/// `interval`; with `rollout` (YAML lines under `rollout:`) when given.
fn fleet(prefix: &str, n: usize, canaries: usize, interval: i64, rollout: Option<&str>) -> String {
    let mut y = String::from("owner: ops\n");
    if let Some(r) = rollout {
        y.push_str("rollout:\n");
        for line in r.lines() {
            y.push_str(&format!("  {line}\n"));
        }
    }
    y.push_str("devices:\n");
    for i in 0..n {
        let ring = if i < canaries { "canary" } else { "main" };
        y.push_str(&format!(
            "  {prefix}{i:02}:\n    tags: {{ring: {ring}}}\n    desired: {{interval: {interval}}}\n"
        ));
    }
    y
}

/// Applies `prefix`/`n` wanting `interval` 10 (no rollout: creates are not gated), then writes the
/// change to 20 with `rollout` into `dir`, ready for the apply under test.
fn staged(
    em: &Emulator,
    dir: &std::path::Path,
    prefix: &str,
    n: usize,
    canaries: usize,
    rollout: &str,
) {
    manifests(
        dir,
        &[("fleet.yaml", &fleet(prefix, n, canaries, 10, None))],
    );
    let r = twinops(em, &["apply", "--yes", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    manifests(
        dir,
        &[("fleet.yaml", &fleet(prefix, n, canaries, 20, Some(rollout)))],
    );
}

fn sim(state: &str, extra: &[&str]) -> Emulator {
    let mut args = vec!["--mqtt", "127.0.0.1:0", "--state", state];
    args.extend(extra);
    Emulator::start_with(&args)
}

async fn desired(em: &Emulator, address: &str, key: &str) -> Value {
    twin(em, address).await["properties"]["desired"][key].clone()
}

/// The `interval` every device of `prefix`/`n` wants now, in device order.
async fn intervals(em: &Emulator, prefix: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(desired(em, &format!("{prefix}{i:02}"), "interval").await);
    }
    out
}

/// How long a simulated device may take to answer a desired change on a busy machine.
const ANSWERED: Duration = Duration::from_secs(30);

/// Waits until every simulated device of `prefix`/`n` but `except` reports `interval` = `v`.
async fn echoed(em: &Emulator, prefix: &str, n: usize, v: i64, except: &[&str]) {
    eventually(
        &format!("the simulated devices {prefix}* report interval {v}"),
        ANSWERED,
        async || {
            let mut behind = Vec::new();
            for i in 0..n {
                let id = format!("{prefix}{i:02}");
                if except.contains(&id.as_str()) {
                    continue;
                }
                let reported = twin(em, &id).await["properties"]["reported"]["interval"].clone();
                if reported != v {
                    behind.push((id, reported));
                }
            }
            behind
        },
        Vec::is_empty,
    )
    .await;
}

fn wave_states(report: &Value) -> Vec<String> {
    report["rollout"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap().to_string())
        .collect()
}

const CANARY: &str = "waves: [50%, 100%]\nfirst: {tags: {ring: canary}}\ntimeout: 20s";

#[tokio::test]
async fn a_rejecting_canary_halts_re_runs_halt_again_and_it_completes_once_the_device_acknowledges()
{
    let state = dir();
    let st = state.path().to_str().unwrap();
    let d = dir();
    let p = d.path().to_str().unwrap();
    let mut em = sim(
        st,
        &[
            "--simulate-devices",
            "r-*:50ms",
            "--simulate-reject",
            "r-01",
        ],
    );
    staged(&em, d.path(), "r-", 10, 2, CANARY);
    echoed(&em, "r-", 10, 10, &["r-01"]).await;
    // The plan shows the waves: the canaries, then up to ceil(50% x 10) = 5, then the rest.
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let sizes: Vec<usize> = plan["rollout"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["twins"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [2, 3, 5]);
    assert_eq!(
        plan["rollout"]["waves"][0]["twins"],
        json!(["r-00", "r-01"])
    );

    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", "--format", "json", p]);
    assert_eq!(r.code, 1, "{r:?}");
    let report = r.json();
    assert_eq!(
        wave_states(&report),
        ["failed", "not_started", "not_started"]
    );
    assert_eq!(report["rollout"]["halted"]["wave"], 0);
    assert_eq!(report["rollout"]["halted"]["reason"], "rejected");
    assert_eq!(report["rollout"]["waves"][0]["acknowledged"], 1);
    assert_eq!(report["rollout"]["waves"][0]["rejected"], 1);
    assert_eq!(
        report["rollout"]["rejected"],
        json!([{"device_id": "r-01", "ad": format!("desired.interval: {REJECTED}")}])
    );
    assert!(
        r.stderr
            .contains("error: rollout halted at wave 0 of 3: 1 of 2 twin(s) rejected the change"),
        "{}",
        r.stderr
    );
    let after = em.stats().await;
    assert_eq!(
        class(&after, "twin_write") - class(&before, "twin_write"),
        2
    );
    let mut want = vec![json!(20), json!(20)];
    want.extend(std::iter::repeat_n(json!(10), 8));
    assert_eq!(intervals(&em, "r-", 10).await, want, "only the canaries");

    // The text report names the device and its words.
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(
            "rejected by the device: r-01: desired.interval: rejected by simulated device"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("continues"), "{}", r.stderr);
    assert_eq!(
        writes(&em.stats().await),
        writes(&before),
        "a re-run halts again with no write"
    );
    assert_eq!(intervals(&em, "r-", 10).await, want);

    // The device takes the value once it runs without the rejection.
    em.terminate();
    drop(em);
    let em = sim(st, &["--simulate-devices", "r-*:50ms"]);
    eventually(
        "r-01 reports interval 20",
        ANSWERED,
        async || twin(&em, "r-01").await["properties"]["reported"]["interval"].clone(),
        |interval| *interval == 20,
    )
    .await;
    let r = twinops(&em, &["apply", "--yes", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    assert_eq!(wave_states(&report), ["passed", "passed", "passed"]);
    assert_eq!(
        report["rollout"]["waves"][0]["acknowledged"], 2,
        "re-checked"
    );
    assert_eq!(intervals(&em, "r-", 10).await, vec![json!(20); 10]);
    // Done: the next plan has nothing to roll out.
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    assert_eq!(plan["changes"], json!([]));
    assert!(plan.get("rollout").is_none(), "{plan}");
}

#[tokio::test]
async fn a_silent_canary_halts_at_the_timeout_and_revert_leaves_a_twin_changed_since_alone() {
    let state = dir();
    let st = state.path().to_str().unwrap();
    let d = dir();
    let p = d.path().to_str().unwrap();
    // c-01 is not simulated: it never answers.
    let em = sim(st, &["--simulate-devices", "c-0[02345]:50ms"]);
    staged(
        &em,
        d.path(),
        "c-",
        6,
        3,
        "waves: [100%]\nfirst: {tags: {ring: canary}}\ntimeout: 3s\non_halt: revert",
    );
    let child = command(&em, &["apply", "--yes", "--format", "json", p])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the wave waits for c-01, someone else sets c-02's interval.
    eventually(
        "the canary wave is written",
        ANSWERED,
        async || desired(&em, "c-02", "interval").await,
        |interval| *interval == 20,
    )
    .await;
    other_writer(
        &em,
        "c-02",
        json!({"properties": {"desired": {"interval": 99}}}),
    )
    .await;
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rollout"]["halted"]["reason"], "pending");
    assert_eq!(report["rollout"]["pending"], json!([{"device_id": "c-01"}]));
    assert!(
        stderr.contains(
            "rollout halted at wave 0 of 2: 1 of 3 twin(s) had not acknowledged after 3s"
        ),
        "{stderr}"
    );
    let status = |id: &str| crate::cli::outcome(&report, "device_id", id)["status"].clone();
    assert_eq!(status("c-00"), "reverted");
    assert_eq!(status("c-01"), "reverted");
    assert_eq!(status("c-02"), "conflict");
    assert_eq!(
        intervals(&em, "c-", 6).await,
        [10, 10, 99, 10, 10, 10].map(|v| json!(v)),
        "the wave is back at its old values, the other writer's value stays, later waves untouched"
    );
    // The reverted twins' ledgers hold no mark: a re-run starts the rollout over.
    let ledger = &twin(&em, "c-00").await["tags"]["twinops"];
    assert!(ledger.get("rollout").is_none(), "{ledger}");
}

#[tokio::test]
async fn a_kill_during_bake_never_lets_a_later_wave_out_before_the_earlier_one_passed_again() {
    let state = dir();
    let st = state.path().to_str().unwrap();
    let d = dir();
    let p = d.path().to_str().unwrap();
    let em = sim(st, &["--simulate-devices", "k-*:50ms"]);
    staged(
        &em,
        d.path(),
        "k-",
        6,
        2,
        "waves: [100%]\nfirst: {tags: {ring: canary}}\nbake: 1m\ntimeout: 20s",
    );
    let mut child = command(&em, &["apply", "--yes", p])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut baking = false;
    for line in lines.by_ref() {
        if line.unwrap().starts_with("Baking 1m before wave 1") {
            baking = true;
            break;
        }
    }
    assert!(baking, "the canary wave passed and the bake began");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let want_after_kill = [20, 20, 10, 10, 10, 10].map(|v| json!(v));
    assert_eq!(intervals(&em, "k-", 6).await, want_after_kill);

    // A canary turns bad after the kill (it reports the Plug and Play rejection of the current
    // desired version): the re-run checks wave 0 again and halts there.
    let version = twin(&em, "k-01").await["properties"]["desired"]["$version"].clone();
    report(
        &em,
        "k-01",
        json!({"interval": {"value": 10, "ac": 400, "ad": "overheats at 20", "av": version}}),
    )
    .await;
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", "--format", "json", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(wave_states(&r.json()), ["failed", "not_started"]);
    assert_eq!(
        writes(&em.stats().await),
        writes(&before),
        "no twin written"
    );
    assert_eq!(intervals(&em, "k-", 6).await, want_after_kill);

    // `--resume` accepts wave 0 as it stands and writes the rest (no bake: the operator decided).
    // The report keeps what happened: wave 0 was accepted as it stood, its rejection counted.
    let r = twinops(&em, &["apply", "--yes", "--resume", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    assert_eq!(wave_states(&report), ["accepted", "passed"]);
    assert_eq!(report["rollout"]["waves"][0]["rejected"], 1, "{report}");
    assert_eq!(report["rollout"]["waves"][0]["acknowledged"], 1, "{report}");
    assert_eq!(intervals(&em, "k-", 6).await, vec![json!(20); 6]);
}

#[tokio::test]
async fn a_saved_plans_waves_are_the_waves_applied_with_paged_gate_reads_and_module_twins() {
    let em = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "{s-*,s-*/*}:50ms",
    ]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    let with_modules = |interval: i64, rollout: Option<&str>| {
        let base = fleet("s-", 60, 0, interval, rollout);
        // Module twins of the first ten devices take part too.
        let mut y = String::new();
        for line in base.lines() {
            y.push_str(line);
            y.push('\n');
            if let Some(id) = line.strip_suffix(':').map(str::trim)
                && id.starts_with("s-0")
            {
                y.push_str(&format!(
                    "    modules:\n      m1:\n        desired: {{rate: {interval}}}\n"
                ));
            }
        }
        y
    };
    manifests(d.path(), &[("fleet.yaml", &with_modules(10, None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    // Planned once the devices answered, so that no report moves an etag under the plan.
    echoed(&em, "s-", 60, 10, &[]).await;
    for i in 0..10 {
        let m = format!("s-{i:02}/m1");
        eventually(
            &format!("{m} reports rate 10"),
            ANSWERED,
            async || twin(&em, &m).await["properties"]["reported"]["rate"].clone(),
            |rate| *rate == 10,
        )
        .await;
    }
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &with_modules(20, Some("waves: [10%, 100%]\ntimeout: 30s")),
        )],
    );
    let saved = d.path().join("plan.json");
    let r = twinops(&em, &["plan", "--out", saved.to_str().unwrap(), p]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let waves = plan["rollout"]["waves"].as_array().unwrap().clone();
    let sizes: Vec<usize> = waves
        .iter()
        .map(|w| w["twins"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [7, 63], "ceil(10% of 70), then the rest");

    let before = em.stats().await;
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--format",
            "json",
            "--plan",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    assert_eq!(wave_states(&report), ["passed", "passed"]);
    assert_eq!(report["rollout"]["id"], plan["rollout"]["id"]);
    assert_eq!(report["rollout"]["waves"][1]["acknowledged"], 63);
    let after = em.stats().await;
    // Each twin's ledger holds the saved plan's rollout and its wave there.
    for (k, w) in waves.iter().enumerate() {
        for address in w["twins"].as_array().unwrap() {
            let t = twin(&em, address.as_str().unwrap()).await;
            let mark = &t["tags"]["twinops"]["owners"]["ops"]["rollout"];
            assert_eq!(mark["id"], plan["rollout"]["id"], "{t}");
            assert_eq!(mark["wave"], k, "{address}");
        }
    }
    // The wave of 63 twins is polled with paged IN queries, not 63 GETs a poll.
    let gets = class(&after, "twin_read") - class(&before, "twin_read");
    assert!(
        gets <= 7 * 10,
        "{gets} twin GETs: only the small wave is read by GET"
    );
    assert!(class(&after, "query") > class(&before, "query"));
}

#[tokio::test]
async fn no_rollout_writes_every_twin_at_once() {
    let em = Emulator::start_with(&["--mqtt", "127.0.0.1:0", "--simulate-devices", "n-*:50ms"]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    staged(&em, d.path(), "n-", 5, 1, CANARY);
    let r = twinops(
        &em,
        &["apply", "--yes", "--no-rollout", "--format", "json", p],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.json().get("rollout").is_none(), "{}", r.stdout);
    assert_eq!(intervals(&em, "n-", 5).await, vec![json!(20); 5]);
    // `--resume` and `--no-rollout` contradict each other.
    let r = twinops(&em, &["apply", "--yes", "--no-rollout", "--resume", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("'--resume'"), "{}", r.stderr);
}
