//! Which twins a change-scoped plan covers (`plan::scope::changed`): the expanded declarations of two
//! manifest sets compared twin by twin.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use twinops_core::manifest::{self, Source};
use twinops_core::model::Fleet;
use twinops_core::plan::scope::changed;

fn load(files: &[(&str, &str)]) -> Fleet {
    let sources: Vec<Source> = files
        .iter()
        .map(|(path, text)| Source {
            path: path.to_string(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    match manifest::load(&sources, &manifest::NoEnv) {
        Ok(fleet) => fleet,
        Err(errors) => panic!("expected a valid set, got:\n{errors}"),
    }
}

fn addresses(before: &Fleet, after: &Fleet) -> Vec<String> {
    changed(before, after)
        .addresses()
        .map(|a| a.to_string())
        .collect()
}

const BASE: &str = r#"
owner: team
templates:
  unit:
    tags: {site: berlin, name: "${device}"}
    desired: {interval: 30}
    modules:
      sensor:
        desired: {unit: celsius}
devices:
  "d-{1..4}":
    templates: [unit]
  gw:
    edge: true
"#;

#[test]
fn identical_sets_change_nothing_even_when_files_are_split_or_keys_reordered() {
    let before = load(&[("a.yaml", BASE)]);
    let after = load(&[
        (
            "a.yaml",
            "owner: team\ntemplates:\n  unit:\n    desired: {interval: 30}\n    tags: {name: \"${device}\", site: berlin}\n    modules:\n      sensor:\n        desired: {unit: celsius}\n",
        ),
        (
            "b.yaml",
            "devices:\n  gw:\n    edge: true\n  \"d-{1..4}\":\n    templates: [unit]\n",
        ),
    ]);
    assert!(changed(&before, &after).is_empty());
}

#[test]
fn a_template_change_touches_every_twin_it_reaches_and_no_other() {
    let before = load(&[("a.yaml", BASE)]);
    let after = load(&[("a.yaml", &BASE.replace("unit: celsius", "unit: kelvin"))]);
    assert_eq!(
        addresses(&before, &after),
        ["d-1/sensor", "d-2/sensor", "d-3/sensor", "d-4/sensor"]
    );
}

#[test]
fn added_and_removed_devices_bring_their_modules() {
    let before = load(&[("a.yaml", BASE)]);
    let after = load(&[("a.yaml", &BASE.replace("d-{1..4}", "d-{2..5}"))]);
    assert_eq!(
        addresses(&before, &after),
        ["d-1", "d-1/sensor", "d-5", "d-5/sensor"]
    );
}

#[test]
fn identity_fields_ignore_and_sensitive_paths_count_as_changes() {
    let before = load(&[("a.yaml", BASE)]);
    let edited = BASE.replace(
        "  gw:\n    edge: true\n",
        "  gw:\n    edge: true\n    status: disabled\n  d-2:\n    templates: [unit]\n    ignore: [desired.interval]\n  d-3:\n    templates: [unit]\n    sensitive: [tags.name]\n",
    )
    .replace("d-{1..4}", "d-{1..1}");
    let edited = format!(
        "{edited}  d-4:\n    templates: [unit]\n    modules:\n      sensor:\n        auth: ca\n"
    );
    let after = load(&[("a.yaml", &edited)]);
    assert_eq!(
        addresses(&before, &after),
        ["d-2", "d-3", "d-4/sensor", "gw"]
    );
}

#[test]
fn a_new_owner_changes_every_twin() {
    let before = load(&[("a.yaml", BASE)]);
    let after = load(&[("a.yaml", &BASE.replace("owner: team", "owner: other"))]);
    assert_eq!(changed(&before, &after).twins(), 9);
}
