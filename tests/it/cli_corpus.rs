//! The hostile manifest corpus through the real binary: every case exits 1 with a `file:line:column`
//! message, and not one request reaches the hub. (The loader-level checks, timings and generated huge
//! inputs live in `manifest_corpus.rs`.)
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use crate::cli::twinops;
use crate::support::Emulator;

#[tokio::test]
async fn every_hostile_manifest_exits_1_with_a_location_and_sends_nothing() {
    let em = Emulator::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/hostile");
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let mut cases = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (case, location) = (cols[0], cols[1]);
        let path = dir.join(case);
        let r = twinops(&em, &["plan", path.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{case}: {r:?}");
        // Locations are relative to the corpus directory; the binary names files as given.
        let shown = format!(
            "{}:",
            dir.join(location.split(':').next().unwrap()).display()
        );
        assert!(
            r.stderr.contains(&shown),
            "{case}: no `{shown}` in {}",
            r.stderr
        );
        let loc_tail = location.split_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            r.stderr.contains(&format!(":{loc_tail}: ")),
            "{case}: no location {loc_tail} in {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("nothing was sent to the hub"),
            "{case}: {}",
            r.stderr
        );
        cases += 1;
    }
    assert!(cases >= 60, "only {cases} cases");
    assert_eq!(
        em.stats().await["total"],
        0,
        "a hostile manifest reached the hub"
    );
}
