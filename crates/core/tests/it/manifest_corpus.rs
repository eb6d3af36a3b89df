//! The hostile corpus (`tests/manifests/hostile/`): every case must fail, with its first diagnostic at the
//! place `EXPECTED.tsv` names. Time and memory are bounded by the loader's budgets (nodes, alias copies,
//! nesting, file size), which the messages asserted here prove were hit; how long each case takes is
//! printed, not asserted (speed is measured in benchmarks). The largest inputs are generated here
//! instead of committed.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // test code: a panic is the failure report; timings are reported

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twinops_core::manifest::{self, Errors};

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/manifests/hostile")
}

struct Case {
    name: String,
    location: String,
    fragment: String,
}

fn expected() -> Vec<Case> {
    let text = std::fs::read_to_string(hostile_dir().join("EXPECTED.tsv"))
        .expect("EXPECTED.tsv is readable");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 3, "EXPECTED.tsv row needs 3 columns: {l:?}");
            Case {
                name: cols[0].to_string(),
                location: cols[1].to_string(),
                fragment: cols[2].to_string(),
            }
        })
        .collect()
}

/// Reads and loads `path`, failing the test if it loads; reports how long it took.
fn must_fail(path: &Path) -> (Errors, Duration) {
    let started = Instant::now();
    let sources = manifest::read(&[path.to_path_buf()]).expect("case is readable");
    let result = manifest::load(&sources, &manifest::NoEnv);
    let took = started.elapsed();
    eprintln!("{}: {took:?}", path.display());
    match result {
        Ok(_) => panic!("{} loaded but must fail", path.display()),
        Err(errors) => (errors, took),
    }
}

#[test]
fn corpus_has_at_least_seventy_cases_and_every_case_is_listed() {
    let cases = expected();
    assert!(cases.len() >= 70, "only {} cases", cases.len());
    let mut listed: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    listed.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir(hostile_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "EXPECTED.tsv")
        .collect();
    on_disk.sort_unstable();
    assert_eq!(listed, on_disk);
}

#[test]
fn every_hostile_case_fails_at_its_expected_place() {
    let dir = hostile_dir();
    let prefix = format!("{}/", dir.display());
    let mut wrong = Vec::new();
    for case in expected() {
        let (errors, _) = must_fail(&dir.join(&case.name));
        let first = &errors.0[0];
        let location = first.location.to_string();
        let location = location.strip_prefix(&prefix).unwrap_or(&location);
        if location != case.location || !first.message.contains(&case.fragment) {
            wrong.push(format!(
                "{}: expected {} `{}`, got {location}: {}",
                case.name, case.location, case.fragment, first.message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn file_over_16_mib_fails_at_its_first_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.yaml");
    let line = format!("# {}\n", "x".repeat(1022));
    std::fs::write(&path, line.repeat(17 * 1024)).expect("write");
    let (errors, _) = must_fail(&path);
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].location.to_string().ends_with("huge.yaml:1:1"));
    assert!(errors.0[0].message.contains("larger than 16 MiB"));
}

#[test]
fn a_million_written_nodes_hit_the_node_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flood.yaml");
    let mut text = String::from("devices:\n  d1:\n    desired:\n      flood: [");
    text.push_str(&"1,".repeat(1_050_000));
    text.push_str("1]\n");
    std::fs::write(&path, text).expect("write");
    let (errors, _) = must_fail(&path);
    assert!(errors.0[0].message.contains("yaml nodes"), "{errors}");
}

#[test]
fn hundred_thousand_open_brackets_fail_fast() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("brackets.yaml");
    std::fs::write(&path, "[".repeat(100_000)).expect("write");
    let (errors, _) = must_fail(&path);
    assert!(
        errors.0[0].message.contains("nesting is deeper than 64"),
        "{errors}"
    );
}

#[test]
fn wide_alias_bomb_fails_at_the_alias() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bomb.yaml");
    let mut text = format!("a0: &a0 [{}]\n", vec!["lol"; 1000].join(", "));
    for i in 1..6 {
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 1000].join(", ")
        ));
    }
    std::fs::write(&path, text).expect("write");
    let (errors, _) = must_fail(&path);
    assert!(
        errors.0[0].message.contains("expands past the limit"),
        "{errors}"
    );
    // Line 2 alone would copy 1000 x 1001 nodes: the budget runs out within it.
    assert!(
        errors.0[0].location.to_string().contains("bomb.yaml:2:"),
        "{errors}"
    );
}
