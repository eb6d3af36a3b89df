//! `twinops validate` refuses exactly what a live IoT Hub refuses in a twin and accepts what it
//! accepts (`iothub::twin_rules`, shared with the emulator): the refusals exit 1 with
//! `file:line:column`, and the accepted manifest validates and then applies to the emulator, which
//! enforces the same rules, so acceptance here is the hub's and not only the validator's.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use serde_json::json;

use crate::cli::{manifests, twin, twinops, twinops_bare};
use crate::support::Emulator;

#[test]
fn validate_refuses_a_hash_key_a_null_in_an_array_and_minus_2_pow_52() {
    let d = tempfile::tempdir().unwrap();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "devices:\n  d1:\n    tags: {\"site#1\": berlin}\n    desired:\n      list: [1, null]\n      n: -4503599627370496\n",
        )],
    );
    let r = twinops_bare(&["validate", d.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    let file = d.path().join("fleet.yaml");
    for (at, what) in [
        ("3:12", "twin key `site#1` contains `#`"),
        ("5:17", "`null` inside an array is refused by IoT Hub"),
        ("6:10", "integer is outside the range IoT Hub accepts"),
    ] {
        let line = format!("{}:{at}: {what}", file.display());
        assert!(r.stderr.contains(&line), "no `{line}` in:\n{}", r.stderr);
    }
}

/// Empty and non-ASCII keys, ten objects inside `desired` with a value in the tenth, ±(2^52 − 1)
/// and `1.0`: all of it what the live hub accepts.
const ACCEPTED: &str = r#"
owner: team-a
devices:
  d1:
    tags: {"": empty, größe: {"": 1}}
    desired:
      l1: {l2: {l3: {l4: {l5: {l6: {l7: {l8: {l9: {l10: {l11: deepest}}}}}}}}}}
      温度: {max: 4503599627370495, min: -4503599627370495, one: 1, oneFloat: 1.0}
"#;

#[tokio::test]
async fn what_the_hub_accepts_validates_and_applies() {
    let em = Emulator::start();
    let d = tempfile::tempdir().unwrap();
    manifests(d.path(), &[("fleet.yaml", ACCEPTED)]);
    let p = d.path().to_str().unwrap();
    let r = twinops_bare(&["validate", p]);
    assert_eq!(r.code, 0, "{r:?}");

    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let t = twin(&em, "d1").await;
    assert_eq!(t["tags"][""], "empty");
    assert_eq!(t["tags"]["größe"], json!({"": 1}));
    let desired = &t["properties"]["desired"];
    let mut at = &desired["l1"];
    for i in 2..=11 {
        at = &at[format!("l{i}")];
    }
    assert_eq!(at, "deepest");
    assert_eq!(
        desired["温度"],
        json!({"max": 4_503_599_627_370_495_i64, "min": -4_503_599_627_370_495_i64, "one": 1, "oneFloat": 1.0})
    );
    assert_eq!(desired["温度"]["oneFloat"].to_string(), "1.0");

    // What was applied reads back as the manifest: nothing left to do.
    let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
    assert_eq!(r.code, 0, "{r:?}");
}
