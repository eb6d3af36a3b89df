//! Replays every input the fuzzers ever found a bug with (`tests/fuzz-regressions/<target>/`)
//! through the same checks the fuzz targets run (`fuzz/src/lib.rs`, included here by path so the
//! two cannot drift apart), plus each target's seed corpus (`fuzz/seeds/<target>/`). A panic is
//! a regression. See docs/fuzzing.md.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Runs `check` on every regression input and seed of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = inputs(&root.join("tests/fuzz-regressions").join(target));
    files.extend(inputs(&root.join("fuzz/seeds").join(target)));
    assert!(!files.is_empty(), "no inputs for {target}");
    for file in files {
        let data = std::fs::read(&file).expect("reading an input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", file.display());
    }
}

#[test]
fn manifest_load_regressions_stay_fixed() {
    replay("manifest_load", checks::manifest_load);
}

#[test]
fn connection_string_regressions_stay_fixed() {
    replay("connection_string", checks::connection_string);
}

#[test]
fn sas_token_regressions_stay_fixed() {
    replay("sas_token", checks::sas_token);
}

#[test]
fn query_regressions_stay_fixed() {
    replay("query", checks::query);
}
