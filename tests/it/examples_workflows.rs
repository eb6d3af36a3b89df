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
/// redirection, pipe or list operator.
fn commands(script: &str, hub: Option<&str>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        let line = match hub {
            Some(h) => line.replace("${{ matrix.hub }}", h),
            None => line.to_string(),
        };
        let Some(start) = line.find("twinops ") else {
            continue;
        };
        if line[..start].contains("cargo install") || line[..start].contains('#') {
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
fn jobs(w: &Value) -> Vec<(Option<String>, Vec<Vec<String>>)> {
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
                    cmds.extend(commands(script, hub.as_deref()));
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
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"),
        &cwd.join("manifests"),
    );
    let hub = format!("local:{}", work.path().join("hub").display());
    let mut ran = Vec::new();
    for name in ["plan.yml", "apply.yml", "drift.yml"] {
        let w = workflow(name);
        assert!(
            w.get("on").is_some() || w.get("true").is_some(),
            "{name} has no trigger"
        );
        for (_, cmds) in jobs(&w) {
            for c in cmds {
                run(&cwd, &hub, &c);
                ran.push(c[1].clone());
            }
        }
    }
    assert!(
        cwd.join("plan.json").exists(),
        "the plan workflow saves plan.json"
    );
    assert_eq!(ran, vec!["validate", "plan", "apply", "drift"]);

    // The matrix: one embedded hub and one manifest set per hub.
    let mcwd = work.path().join("sharded");
    for hub in ["berlin", "munich"] {
        let dir = mcwd.join("manifests").join(hub);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("fleet.yaml"),
            format!("owner: {hub}\ndevices:\n  \"{hub}-{{1..3}}\":\n    tags: {{site: {hub}}}\n"),
        )
        .unwrap();
    }
    let w = workflow("matrix.yml");
    let mut shards = 0;
    for (matrix_hub, cmds) in jobs(&w) {
        let matrix_hub = matrix_hub.expect("matrix jobs name their hub");
        let hub = format!(
            "local:{}",
            work.path().join(format!("hub-{matrix_hub}")).display()
        );
        for c in cmds {
            assert_eq!(run(&mcwd, &hub, &c), 2, "a fresh hub has changes to plan");
            assert!(mcwd.join(format!("plan-{matrix_hub}.json")).exists());
            shards += 1;
        }
    }
    assert_eq!(shards, 2);
    // The connection string comes from a secret and is never echoed by a workflow.
    for name in ["plan.yml", "apply.yml", "drift.yml", "matrix.yml"] {
        let text = std::fs::read_to_string(examples().join(name)).unwrap();
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
