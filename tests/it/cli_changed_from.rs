//! Change-scoped plans (`--changed-from REF`, SPEC §12): the manifests at a git revision are read
//! through git, compared with the working tree's, and only the twins that differ are read and
//! planned. The tests make their own repositories with the `git` command (on every machine that
//! runs this suite: CI checks the repository out with it).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cli::{class, dir, manifests, other_writer, twinops, writes};
use crate::support::Emulator;

/// Runs git in `repo` with a fixed identity and no user or system configuration.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=twinops test",
            "-c",
            "user.email=test@example.com",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("running git (the test suite needs the git command)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository whose manifests live in `sub/manifests` (PATHS in a subdirectory of the repo);
/// returns the commit id.
fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "--allow-empty", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn init(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q"]);
}

fn requests(stats: &Value) -> u64 {
    stats["total"].as_u64().unwrap()
}

/// 2,000 devices × 5 modules (12,000 twins); the last `tail` devices use the template `tail`,
/// identical to `unit` until `changed` edits its modules' desired values.
fn fleet(tail: usize, changed: bool) -> String {
    let devices = 2000;
    let mut t = String::from("owner: scale\ntemplates:\n");
    for (name, interval) in [("unit", 60), ("tail", if changed { 90 } else { 60 })] {
        t.push_str(&format!(
            "  {name}:\n    tags: {{site: berlin, name: \"${{device}}\"}}\n    desired: {{setpoint: 21}}\n    modules:\n"
        ));
        for m in 0..5 {
            t.push_str(&format!(
                "      m{m}:\n        desired: {{interval: {interval}, unit: celsius}}\n"
            ));
        }
    }
    t.push_str(&format!(
        "devices:\n  \"d-{{00000..{:05}}}\":\n    templates: [unit]\n  \"d-{{{:05}..{:05}}}\":\n    templates: [tail]\n",
        devices - tail - 1,
        devices - tail,
        devices - 1
    ));
    t
}

#[tokio::test]
async fn a_one_percent_change_reads_only_its_twins_and_plans_what_a_full_plan_plans_for_them() {
    let em = Emulator::start();
    let d = dir();
    let repo = d.path().join("repo");
    init(&repo);
    let m = repo.join("sub/manifests");
    // 24 devices × 5 modules = 120 twins, 1% of 12,000.
    manifests(&m, &[("fleet.yaml", &fleet(24, false))]);
    let base = commit_all(&repo, "base");
    let path = m.to_str().unwrap();
    let r = twinops(&em, &["apply", "--yes", "--quiet", path]);
    assert_eq!(r.code, 0, "{r:?}");
    // Someone else moves an owned value of a twin the change does not touch: a full plan puts it
    // back, a change-scoped plan leaves it to drift.
    other_writer(
        &em,
        "d-00000/m0",
        serde_json::json!({"properties": {"desired": {"interval": 5}}}),
    )
    .await;
    manifests(&m, &[("fleet.yaml", &fleet(24, true))]);

    let full = twinops(&em, &["plan", "--format", "json", path]);
    assert_eq!(full.code, 0, "{full:?}");
    let full = full.json();
    let before = em.stats().await;
    let r = twinops(
        &em,
        &["plan", "--format", "json", "--changed-from", "HEAD", path],
    );
    let after = em.stats().await;
    assert_eq!(r.code, 0, "{r:?}");
    let scoped = r.json();

    // It read only the changed twins: requests ≤ 2 × ⌈120/100⌉ + 10, and wrote nothing.
    let sent = requests(&after) - requests(&before);
    assert!(sent <= 14, "{sent} requests: {after} vs {before}");
    assert_eq!(writes(&after) - writes(&before), 0);
    assert_eq!(
        scoped["scope"],
        serde_json::json!({"changed_from": base, "twins": 120})
    );
    // Exactly the changes the full plan lists for those twins, etags and bases included.
    let in_scope = |c: &&Value| {
        let d = c["device_id"].as_str().unwrap();
        d >= "d-01976" && c["module_id"].is_string()
    };
    let expected: Vec<&Value> = full["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(in_scope)
        .collect();
    let got: Vec<&Value> = scoped["changes"].as_array().unwrap().iter().collect();
    assert_eq!(expected.len(), 120);
    assert_eq!(got, expected);
    assert_eq!(
        full["changes"].as_array().unwrap().len(),
        121,
        "the drifted twin too"
    );
    assert_eq!(scoped["summary"]["update"], 120);
    assert!(scoped["conflicts"].as_array().unwrap().is_empty());

    // apply --changed-from writes those 120 twins and nothing else.
    let before = em.stats().await;
    let r = twinops(
        &em,
        &["apply", "--yes", "--quiet", "--changed-from", &base, path],
    );
    let after = em.stats().await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        class(&after, "twin_write") - class(&before, "twin_write"),
        120
    );
    let r = twinops(&em, &["plan", "--format", "json", path]);
    let changes = r.json()["changes"].as_array().unwrap().clone();
    assert_eq!(
        changes.len(),
        1,
        "only the drifted twin is left: {changes:?}"
    );
    assert_eq!(changes[0]["module_id"], "m0");
    assert_eq!(changes[0]["device_id"], "d-00000");
}

const SMALL: &str = r#"
owner: team-a
devices:
  "dev-{1..3}":
    tags: {site: berlin}
    modules:
      sensor:
        desired: {unit: celsius}
"#;

#[tokio::test]
async fn removed_devices_are_hinted_without_prune_and_deleted_with_it() {
    let em = Emulator::start();
    let d = dir();
    let repo = d.path().join("repo");
    init(&repo);
    let m = repo.join("manifests");
    manifests(&m, &[("fleet.yaml", SMALL)]);
    let base = commit_all(&repo, "three devices");
    let path = m.to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", "--quiet", path]).code, 0);
    // dev-3 goes, dev-4 comes, dev-1's module changes.
    let edited = r#"
owner: team-a
devices:
  dev-1:
    tags: {site: berlin}
    modules:
      sensor:
        desired: {unit: kelvin}
  dev-2:
    tags: {site: berlin}
    modules:
      sensor:
        desired: {unit: celsius}
  dev-4:
    tags: {site: berlin}
"#;
    manifests(&m, &[("fleet.yaml", edited)]);

    let r = twinops(
        &em,
        &["plan", "--format", "json", "--changed-from", &base, path],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let p = r.json();
    // dev-1/sensor, dev-3, dev-3/sensor, dev-4; dev-2 untouched.
    assert_eq!(p["scope"]["twins"], 4, "{p}");
    let kinds: Vec<(String, String)> = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                twinops_core::model::address(
                    c["device_id"].as_str().unwrap(),
                    c["module_id"].as_str(),
                ),
            )
        })
        .collect();
    let kinds: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("create_device", "dev-4"),
            ("update_module_twin", "dev-1/sensor")
        ]
    );
    assert_eq!(p["no_longer_declared"], serde_json::json!(["dev-3"]));
    assert_eq!(p["summary"]["unchanged"], 0);

    let r = twinops(
        &em,
        &[
            "plan",
            "--format",
            "json",
            "--prune",
            "--changed-from",
            &base,
            path,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let p = r.json();
    let delete = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "delete_device")
        .unwrap_or_else(|| panic!("no delete: {p}"));
    assert_eq!(delete["device_id"], "dev-3");
    assert_eq!(p["summary"]["delete"], 2, "dev-3 and its module");
    let r = twinops(
        &em,
        &["apply", "--yes", "--prune", "--changed-from", &base, path],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", path]);
    assert_eq!(r.code, 0, "the full plan agrees: {r:?}");
}

#[tokio::test]
async fn a_bad_ref_or_manifests_at_ref_that_do_not_validate_exit_1_with_nothing_sent() {
    let em = Emulator::start();
    let d = dir();
    let repo = d.path().join("repo");
    init(&repo);
    let m = repo.join("manifests");
    manifests(&m, &[("fleet.yaml", &SMALL.replace("tags:", "tagz:"))]);
    let broken = commit_all(&repo, "a typo");
    manifests(&m, &[("fleet.yaml", SMALL)]);
    let path = m.to_str().unwrap();
    let before = em.stats().await;

    let r = twinops(&em, &["plan", "--changed-from", "no-such-branch", path]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("`no-such-branch` is not a commit")
            && r.stderr.contains("nothing was sent"),
        "{}",
        r.stderr
    );
    let r = twinops(&em, &["apply", "--yes", "--changed-from", "-x", path]);
    assert_eq!(
        r.code, 1,
        "a REF that looks like an option is no commit either: {r:?}"
    );

    let r = twinops(&em, &["plan", "--changed-from", "HEAD", path]);
    assert_eq!(r.code, 1, "{r:?}");
    // The loader's location names the revision and the file's path in the repository.
    assert!(
        r.stderr.contains("HEAD:manifests/fleet.yaml:5:5") && r.stderr.contains(&broken),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("nothing was sent to the hub"),
        "{}",
        r.stderr
    );
    let r = twinops(
        &em,
        &["apply", "--yes", "--changed-from", &broken[..10], path],
    );
    assert_eq!(r.code, 1, "{r:?}");

    // Outside a repository.
    let loose = d.path().join("loose");
    manifests(&loose, &[("fleet.yaml", SMALL)]);
    let r = twinops(
        &em,
        &["plan", "--changed-from", "HEAD", loose.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("git"), "{}", r.stderr);

    assert_eq!(
        requests(&em.stats().await),
        requests(&before),
        "nothing was sent"
    );
}

#[tokio::test]
async fn manifests_added_since_ref_are_all_in_scope() {
    let em = Emulator::start();
    let d = dir();
    let repo = d.path().join("repo");
    init(&repo);
    let base = commit_all(&repo, "empty");
    let m = repo.join("manifests");
    manifests(
        &m,
        &[("fleet.yaml", SMALL), (".hidden.yaml", "nonsense: [")],
    );
    let r = twinops(
        &em,
        &[
            "plan",
            "--format",
            "json",
            "--changed-from",
            &base,
            m.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["scope"]["twins"], 6);
    assert_eq!(r.json()["summary"]["create"], 6);
}

#[tokio::test]
async fn a_paced_plan_prints_its_read_estimate_first_and_records_both_times() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", SMALL)]);
    let path = m.to_str().unwrap();
    let paced = [
        "--rate",
        "query=600/min",
        "--rate",
        "twin_read=100/s",
        "--format",
        "json",
    ];
    let mut args = vec!["plan"];
    args.extend(paced);
    args.push(path);
    let r = twinops(&em, &args);
    assert_eq!(r.code, 0, "{r:?}");
    let estimate = r
        .stderr
        .lines()
        .position(|l| l.starts_with("Reading ") && l.contains("estimated"))
        .unwrap_or_else(|| panic!("no estimate line: {}", r.stderr));
    let measured = r
        .stderr
        .lines()
        .position(|l| l.starts_with("Read the hub with") && l.contains("(estimated"))
        .unwrap_or_else(|| panic!("no measured line: {}", r.stderr));
    assert!(estimate < measured, "{}", r.stderr);
    let p = r.json();
    assert!(p["estimated_read_seconds"].as_f64().is_some(), "{p}");
    assert!(p["read_seconds"].as_f64().is_some(), "{p}");
    // Unpaced (a loopback hub without --rate): no estimate line, no estimate in the plan.
    let r = twinops(&em, &["plan", "--format", "json", path]);
    assert!(!r.stderr.contains("Reading "), "{}", r.stderr);
    assert!(r.json().get("estimated_read_seconds").is_none());
    // A saved plan is applied as reviewed: --changed-from cannot reshape it.
    let r = twinops(
        &em,
        &["apply", "--plan", "p.json", "--changed-from", "HEAD"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--changed-from"), "{}", r.stderr);
}
