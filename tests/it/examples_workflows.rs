//! The example GitHub workflows under `examples/github/` parse, and every twinops command they contain
//! runs against the embedded hub (`--hub local:DIR` through `TWINOPS_HUB`), in workflow order: plan on the
//! pull request, apply of that saved plan on merge, the drift check, and the per-hub matrix.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The twinops commands in a `run:` script: each line's part that starts with `twinops`, up to a
/// redirection, pipe or list operator. `base` is the pull request's base commit.
fn commands(script: &str, hub: Option<&str>, base: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        let line = match hub {
            Some(h) => line.replace("${{ matrix.hub }}", h),
            None => line.to_string(),
        };
        let line = line.replace("\"${{ github.event.pull_request.base.sha }}\"", base);
        let Some(start) = line.find("twinops ") else {
            continue;
        };
        if line[..start].contains('#') {
            continue;
        }
        let words: Vec<String> = line[start..]
            .split_whitespace()
            .take_while(|w| !matches!(*w, ">" | "|" | "||" | "&&" | ";" | "2>"))
            .map(str::to_string)
            .collect();
        out.push(words);
    }
    out
}

fn run(cwd: &Path, hub: &str, words: &[String]) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args(&words[1..])
        .current_dir(cwd)
        .env("TWINOPS_HUB", hub)
        .env_remove("IOTHUB_CONNECTION_STRING")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || (code == 2 && matches!(words[1].as_str(), "plan" | "drift")),
        "{words:?} exited {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    code
}

fn workflow(name: &str) -> Value {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// (matrix hub name, twinops commands) per job of a workflow.
fn jobs(w: &Value, base: &str) -> Vec<(Option<String>, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    for (_, job) in w["jobs"].as_object().expect("jobs") {
        let hubs: Vec<Option<String>> = match job.pointer("/strategy/matrix/include") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i["hub"].as_str().map(str::to_string))
                .collect(),
            _ => vec![None],
        };
        for hub in hubs {
            let mut cmds = Vec::new();
            for step in job["steps"].as_array().expect("steps") {
                if let Some(script) = step["run"].as_str() {
                    cmds.extend(commands(script, hub.as_deref(), base));
                }
            }
            out.push((hub, cmds));
        }
    }
    out
}

#[test]
fn every_example_workflow_parses_and_its_twinops_commands_run_against_the_embedded_hub() {
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().join("repo");
    // A repository whose base commit has no manifests yet: the pull request adds the example fleet,
    // so the change-scoped plan covers all of it.
    std::fs::create_dir_all(&cwd).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&cwd)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("running git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "base"]);
    let base = git(&["rev-parse", "HEAD"]);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"),
        &cwd.join("manifests"),
    );
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "the pull request"]);
    let checkout = workflow("plan.yml")["jobs"]["plan"]["steps"][0].clone();
    assert_eq!(
        checkout["with"]["fetch-depth"], 0,
        "--changed-from needs the base commit in the checkout"
    );
    let hub = format!("local:{}", work.path().join("hub").display());
    let mut ran = Vec::new();
    for name in ["plan.yml", "apply.yml", "drift.yml"] {
        let w = workflow(name);
        assert!(
            w.get("on").is_some() || w.get("true").is_some(),
            "{name} has no trigger"
        );
        for (_, cmds) in jobs(&w, &base) {
            for c in cmds {
                run(&cwd, &hub, &c);
                ran.push(c[1].clone());
            }
        }
    }
    let plan: Value =
        serde_json::from_slice(&std::fs::read(cwd.join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        plan["scope"]["changed_from"], base,
        "the pull request's plan is scoped to its change"
    );
    assert!(plan["summary"]["create"].as_u64().unwrap() > 0);
    assert_eq!(ran, vec!["validate", "plan", "apply", "drift"]);

    // The matrix: one embedded hub and one manifest set per hub, added by a pull request on top of
    // the same base commit as above.
    let mcwd = cwd.clone();
    git(&["checkout", "-q", "-b", "sharded", &base]);
    for hub in ["berlin", "munich"] {
        let dir = mcwd.join("manifests").join(hub);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("fleet.yaml"),
            format!("owner: {hub}\ndevices:\n  \"{hub}-{{1..3}}\":\n    tags: {{site: {hub}}}\n"),
        )
        .unwrap();
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "two hubs"]);
    let checkout = workflow("matrix.yml")["jobs"]["plan"]["steps"][0].clone();
    assert_eq!(checkout["with"]["fetch-depth"], 0);
    let w = workflow("matrix.yml");
    let mut shards = 0;
    for (matrix_hub, cmds) in jobs(&w, &base) {
        let matrix_hub = matrix_hub.expect("matrix jobs name their hub");
        let hub = format!(
            "local:{}",
            work.path().join(format!("hub-{matrix_hub}")).display()
        );
        for c in cmds {
            assert_eq!(run(&mcwd, &hub, &c), 2, "a fresh hub has changes to plan");
            let plan: Value = serde_json::from_slice(
                &std::fs::read(mcwd.join(format!("plan-{matrix_hub}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(plan["scope"]["changed_from"], base, "{matrix_hub}");
            assert_eq!(
                plan["scope"]["twins"], 3,
                "{matrix_hub}: its own three devices"
            );
            shards += 1;
        }
    }
    assert_eq!(shards, 2);
    // The connection string comes from a secret and is never echoed by a workflow; twinops is
    // installed by this repository's action, not by a `cargo install` a user cannot run.
    for name in ["plan.yml", "apply.yml", "drift.yml", "matrix.yml"] {
        let text = std::fs::read_to_string(examples().join(name)).unwrap();
        assert!(
            !text.contains("cargo install"),
            "{name} installs with cargo"
        );
        let w = workflow(name);
        let uses_action = w["jobs"].as_object().unwrap().values().all(|job| {
            job["steps"].as_array().unwrap().iter().any(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/twinops@v1"))
            })
        });
        assert!(
            uses_action,
            "{name}: every job installs twinops with the action"
        );
        assert!(
            text.contains("${{ secrets"),
            "{name} reads the hub from a secret"
        );
        assert!(
            !text.contains("echo \"$TWINOPS_HUB") && !text.contains("echo $TWINOPS_HUB"),
            "{name} echoes the secret"
        );
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A release directory as the release workflow lays it out, holding this build of twinops.
fn release_of_this_build(dir: &Path, version: &str, corrupt: bool) {
    let target = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "x86_64-unknown-linux-gnu",
        ("linux", "aarch64") => "aarch64-unknown-linux-gnu",
        ("macos", "x86_64") => "x86_64-apple-darwin",
        ("macos", "aarch64") => "aarch64-apple-darwin",
        other => panic!("no release target for {other:?}"),
    };
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_twinops"), stage.join("twinops")).unwrap();
    let out = dir.join(version);
    std::fs::create_dir_all(&out).unwrap();
    let asset = format!("twinops-{version}-{target}.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out.join(&asset))
        .arg("-C")
        .arg(&stage)
        .arg("twinops")
        .status()
        .unwrap();
    assert!(status.success());
    let sum = Command::new("sha256sum")
        .arg(&asset)
        .current_dir(&out)
        .output()
        .unwrap();
    let mut text = String::from_utf8(sum.stdout).unwrap();
    if corrupt {
        text = format!("{}{}", "0".repeat(64), &text[64..]);
    }
    std::fs::write(out.join(format!("{asset}.sha256")), text).unwrap();
}

fn install(
    root: &Path,
    releases: &Path,
    version: &str,
    github_path: &Path,
) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/install-twinops.sh"))
        .env("TWINOPS_VERSION", version)
        .env("TWINOPS_REPO", "example/twinops")
        .env("TWINOPS_ROOT", root)
        .env("TWINOPS_RELEASES", format!("file://{}", releases.display()))
        .env("GITHUB_PATH", github_path)
        .output()
        .unwrap()
}

#[test]
fn the_action_installs_a_release_binary_checked_against_its_checksum() {
    let work = tempfile::tempdir().unwrap();
    let releases = work.path().join("releases");
    release_of_this_build(&releases, "v9.9.9", false);
    let root = work.path().join("root");
    let path_file = work.path().join("github_path");
    let out = install(&root, &releases, "v9.9.9", &path_file);
    assert!(out.status.success(), "{out:?}");
    let installed = root.join("bin/twinops");
    let v = Command::new(&installed).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("twinops "),
        "{v:?}"
    );
    let path = std::fs::read_to_string(&path_file).unwrap();
    assert_eq!(path.trim(), root.join("bin").to_str().unwrap());
    // Cached: a second run keeps the installed binary.
    let out = install(&root, &releases, "v9.9.9", &path_file);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already installed"),
        "{out:?}"
    );
    // A download whose checksum does not match is refused.
    let bad = work.path().join("bad");
    release_of_this_build(&bad, "v9.9.8", true);
    let out = install(&work.path().join("root2"), &bad, "v9.9.8", &path_file);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{out:?}"
    );
    assert!(!work.path().join("root2/bin/twinops").exists());
    // The action runs this script and passes the hub through the environment only.
    let action: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("action.yml")).unwrap())
            .unwrap();
    let steps = action["runs"]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| {
        s["run"]
            .as_str()
            .is_some_and(|r| r.contains("install-twinops.sh"))
    }));
    let text = std::fs::read_to_string(repo().join("action.yml")).unwrap();
    assert!(
        !text.contains("TWINOPS_HUB:"),
        "the action takes no hub input"
    );
}
