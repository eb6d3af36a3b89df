//! Whole-hub reads through export jobs (SPEC §17), with the real binary, the emulator's jobs API
//! and Azurite as the blob store: the plan, drift and export read through a job equal those read
//! through the API; each failure is named with nothing written, and `auto` falls back; the SAS
//! never shows.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{Run, command, dir, manifests, run, twinops, writes};
use crate::support::{Azurite, Emulator, eventually};

const CONTAINER: &str = "exports";
const T1: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

fn fleet_a(interval: u32) -> String {
    format!(
        "owner: team-a
devices:
  \"th-{{01..12}}\":
    tags: {{site: berlin}}
    desired: {{interval: {interval}, pin: \"1234\"}}
    sensitive: [desired.pin]
    modules:
      sensor: {{desired: {{rate: {interval}}}}}
  gone-soon: {{tags: {{site: berlin}}}}
"
    )
}

const FLEET_B: &str = "owner: team-b\ndevices:\n  \"th-{01..04}\":\n    desired: {mode: eco}\n";

/// A hub with both owners' twins, a self-signed X.509 device and an edge gateway with a child,
/// made outside twinops, and a pending change of team-a's manifests (values changed, one device
/// dropped) in `d`.
async fn hub(em: &Emulator, d: &std::path::Path) {
    manifests(d, &[("fleet.yaml", &fleet_a(30))]);
    assert_eq!(
        twinops(em, &["apply", "--yes", d.to_str().unwrap()]).code,
        0
    );
    let b = dir();
    manifests(b.path(), &[("fleet.yaml", FLEET_B)]);
    assert_eq!(
        twinops(em, &["apply", "--yes", b.path().to_str().unwrap()]).code,
        0
    );
    for (path, body) in [
        (
            "/devices/x509-1",
            json!({"deviceId": "x509-1", "authentication": {"type": "selfSigned",
                "x509Thumbprint": {"primaryThumbprint": T1, "secondaryThumbprint": T1}}}),
        ),
        (
            "/devices/gw",
            json!({"deviceId": "gw", "capabilities": {"iotEdge": true}}),
        ),
    ] {
        let r = em.put(path, body, None).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let scope = em.get("/devices/gw").await.body["deviceScope"].clone();
    let r = em
        .put(
            "/devices/child",
            json!({"deviceId": "child", "deviceScope": scope}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    manifests(
        d,
        &[(
            "fleet.yaml",
            &fleet_a(45).replace("  gone-soon: {tags: {site: berlin}}\n", ""),
        )],
    );
}

async fn storage(az: &Azurite) -> String {
    az.create_container(CONTAINER).await;
    az.container_sas_url(CONTAINER, "racwdl")
}

/// `twinops ARGS` with `TWINOPS_STORAGE` set.
fn with_storage(em: &Emulator, url: &str, args: &[&str]) -> Run {
    let mut cmd = command(em, args);
    cmd.env("TWINOPS_STORAGE", url);
    run(cmd)
}

/// The parts of a plan that must not depend on how the hub was read.
fn substance(plan: &Value) -> Value {
    json!({
        "summary": plan["summary"],
        "changes": plan["changes"],
        "conflicts": plan["conflicts"],
        "no_longer_declared": plan["no_longer_declared"],
    })
}

fn sig(url: &str) -> String {
    url.split("sig=").nth(1).unwrap().to_string()
}

#[tokio::test]
async fn a_plan_drift_and_export_read_through_an_export_job_equal_the_api_read() {
    let em = Emulator::start();
    let az = Azurite::start();
    let url = storage(&az).await;
    let d = dir();
    let p = d.path().to_str().unwrap();
    hub(&em, d.path()).await;

    let mut runs = Vec::new();
    for prune in [false, true] {
        let mut args = vec!["plan", "--format", "json"];
        if prune {
            args.push("--prune");
        }
        let api = twinops(&em, &[args.as_slice(), &["--read", "api", p]].concat());
        let via_export = with_storage(
            &em,
            &url,
            &[args.as_slice(), &["--read", "export", p]].concat(),
        );
        assert_eq!(api.code, 0, "{api:?}");
        assert_eq!(via_export.code, 0, "{via_export:?}");
        let (a, e) = (api.json(), via_export.json());
        assert_eq!(a["read"]["via"], "api");
        assert_eq!(e["read"]["via"], "export");
        assert!(!e["changes"].as_array().unwrap().is_empty(), "{e}");
        assert_eq!(substance(&e), substance(&a), "prune: {prune}");
        assert!(
            via_export
                .stderr
                .contains("Reading the hub through an export job: --read export"),
            "{}",
            via_export.stderr
        );
        runs.push(via_export);
    }
    // The export read is a handful of requests: the job's create, its polls, nothing else of the
    // read (the two COUNT()s of the hint are not needed: an export is complete).
    let plan = runs[0].json();
    let req = &plan["requests"];
    assert!(req["jobs"].as_u64().unwrap() >= 2, "{req}");
    assert!(
        req.get("query").is_none() && req.get("twin_read").is_none(),
        "{req}"
    );

    // Saved from an export, the plan applies as any other.
    let saved = d.path().join("plan.json");
    let r = with_storage(
        &em,
        &url,
        &[
            "plan",
            "--read",
            "export",
            "--out",
            saved.to_str().unwrap(),
            p,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    runs.push(r);
    let r = twinops(
        &em,
        &["apply", "--yes", "--plan", saved.to_str().unwrap(), p],
    );
    assert_eq!(r.code, 0, "{r:?}");

    // Drift and export give the same through either read.
    let api = twinops(&em, &["drift", "--format", "json", "--read", "api", p]);
    let via_export = with_storage(
        &em,
        &url,
        &["drift", "--format", "json", "--read", "export", p],
    );
    assert_eq!(api.code, via_export.code, "{api:?}\n{via_export:?}");
    assert_eq!(api.json()["items"], via_export.json()["items"]);
    runs.push(via_export);
    let (a, e) = (dir(), dir());
    let api = twinops(
        &em,
        &[
            "export",
            "--read",
            "api",
            "--out",
            a.path().to_str().unwrap(),
        ],
    );
    let via_export = with_storage(
        &em,
        &url,
        &[
            "export",
            "--read",
            "export",
            "--out",
            e.path().to_str().unwrap(),
        ],
    );
    assert_eq!(api.code, 0, "{api:?}");
    assert_eq!(via_export.code, 0, "{via_export:?}");
    for owner in ["team-a", "team-b", "default"] {
        let file = |d: &tempfile::TempDir| {
            std::fs::read_to_string(d.path().join(owner).join("fleet.yaml")).unwrap()
        };
        assert_eq!(file(&a), file(&e), "{owner}");
    }
    runs.push(via_export);
    // Every export blob was deleted; the SAS shows nowhere.
    assert!(az.blob_names(CONTAINER).await.is_empty());
    let secret = sig(&url);
    for r in &runs {
        assert!(
            !r.stdout.contains(&secret) && !r.stderr.contains(&secret),
            "{r:?}"
        );
    }
    assert!(!std::fs::read_to_string(&saved).unwrap().contains(&secret));
}

async fn hold(em: &Emulator, on: bool) {
    let r = em
        .raw(
            Method::PUT,
            "/_emulator/jobs/hold",
            Some(json!({ "hold": on }).to_string().into_bytes()),
            &[("authorization", em.owner_token())],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn each_failure_is_named_with_nothing_written_and_auto_falls_back_saying_so() {
    let em = Emulator::start();
    let az = Azurite::start();
    let url = storage(&az).await;
    let d = dir();
    let p = d.path().to_str().unwrap();
    hub(&em, d.path()).await;
    let before = writes(&em.stats().await);
    let mut outputs = Vec::new();

    // A SAS the store refuses.
    let bad = az.container_sas_url_signed_with(CONTAINER, "racwdl", "bm90IHRoZSBrZXk=");
    let r = with_storage(&em, &bad, &["apply", "--yes", "--read", "export", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("BlobContainerValidationError"),
        "{}",
        r.stderr
    );
    outputs.push((r, sig(&bad)));
    // Under auto (a paced hub whose API read is over --export-above) the plan falls back.
    let r = with_storage(
        &em,
        &bad,
        &[
            "plan",
            "--tier",
            "S1",
            "--export-above",
            "0s",
            "--detailed-exitcode",
            p,
        ],
    );
    assert_eq!(r.code, 2, "planned by the API read: {r:?}");
    assert!(
        r.stderr
            .contains("Reading the hub by queries and GETs: the export failed"),
        "{}",
        r.stderr
    );
    outputs.push((r, sig(&bad)));

    // A job already running (another client's).
    hold(&em, true).await;
    let other = em
        .call(
            Method::POST,
            "/jobs/create",
            Some(json!({"type": "export", "outputBlobContainerUri": url,
                        "excludeKeysInExport": true, "outputBlobName": "theirs.txt"})),
            &[],
        )
        .await;
    assert_eq!(other.status, 200, "{other:?}");
    let r = with_storage(&em, &url, &["plan", "--read", "export", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("another import or export job is running"),
        "{}",
        r.stderr
    );
    outputs.push((r, sig(&url)));
    let cancelled = em
        .call(
            Method::DELETE,
            &format!("/jobs/{}", other.body["jobId"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert!(cancelled.status < 300, "{cancelled:?}");

    // A job that does not finish in time is cancelled.
    let r = with_storage(
        &em,
        &url,
        &["plan", "--read", "export", "--export-timeout", "1s", p],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("did not finish within --export-timeout 1s; it was cancelled"),
        "{}",
        r.stderr
    );
    outputs.push((r, sig(&url)));
    let jobs = em.get("/jobs").await.body;
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] != "running" && j["status"] != "enqueued"),
        "{jobs}"
    );

    // A job that fails (its store goes away while it runs) says why.
    let cmd = {
        let mut c = command(&em, &["plan", "--read", "export", p]);
        c.env("TWINOPS_STORAGE", &url);
        c
    };
    let plan = std::thread::spawn(move || run(cmd));
    eventually(
        "twinops's job is running",
        Duration::from_secs(30),
        async || em.get("/jobs").await.body,
        |jobs| {
            jobs.as_array()
                .unwrap()
                .iter()
                .any(|j| j["status"] == "running")
        },
    )
    .await;
    drop(az);
    hold(&em, false).await;
    let r = plan.join().unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("the export job failed:"), "{}", r.stderr);
    outputs.push((r, sig(&url)));

    assert_eq!(writes(&em.stats().await), before, "nothing written");
    for (r, secret) in &outputs {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn bad_read_flags_are_refused_before_any_request() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET_B)]);
    let p = d.path().to_str().unwrap();
    for (args, words) in [
        (
            vec!["plan", "--read", "export", p],
            "--read export needs --storage",
        ),
        (
            vec!["plan", "--storage", "http://example.com/c?sig=x", p],
            "https",
        ),
        (
            vec![
                "export",
                "--read",
                "export",
                "--storage",
                "https://a.blob.core.windows.net/c?sig=x",
                "--query",
                "SELECT * FROM devices",
            ],
            "--query cannot be used with --read export",
        ),
    ] {
        let r = twinops(&em, &args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains(words), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("sig=x"), "{}", r.stderr);
    }
    assert_eq!(em.stats().await["total"], 0, "nothing sent");
}
