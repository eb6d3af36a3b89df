//! Unit tests of the planner: ledger, patches, adoption, conflicts, ignore/sensitive, prune, targets.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::model::{
    AuthSpec, DeviceSpec, DeviceStatus, Fleet, JsonMap, Location, ModuleSpec, Observed,
    ObservedDevice, ObservedModule, ObservedTwin, PropertyPath, Section, TwinSpec,
};

fn map(v: Value) -> JsonMap {
    v.as_object().cloned().unwrap_or_default()
}

fn loc() -> Location {
    Location {
        file: Arc::from("m.yaml"),
        line: 1,
        column: 1,
    }
}

fn device(id: &str, tags: Value, desired: Value) -> DeviceSpec {
    DeviceSpec {
        id: id.into(),
        status: DeviceStatus::Enabled,
        status_reason: None,
        auth: AuthSpec::Sas,
        edge: false,
        parent: None,
        twin: TwinSpec {
            tags: map(tags),
            desired: map(desired),
            ..TwinSpec::default()
        },
        modules: Vec::new(),
        location: loc(),
    }
}

fn fleet(devices: Vec<DeviceSpec>) -> Fleet {
    Fleet {
        owner: "me".into(),
        devices,
        digest: "0".repeat(64).as_str().into(),
        rollout: None,
    }
}

fn seen(id: &str, tags: Value, desired: Value) -> ObservedDevice {
    ObservedDevice {
        id: id.into(),
        identity_etag: "ie".into(),
        auth: crate::model::ObservedAuth {
            kind: "sas".into(),
            ..Default::default()
        },
        twin: ObservedTwin {
            etag: "e1".into(),
            tags: map(tags),
            desired: map(desired),
            ..ObservedTwin::default()
        },
        ..ObservedDevice::default()
    }
}

fn observed(devices: Vec<ObservedDevice>) -> Observed {
    Observed {
        devices: devices.into_iter().map(|d| (d.id.clone(), d)).collect(),
        complete: true,
    }
}

fn ledger(tags: &[&str], desired: &[&str]) -> Value {
    let obj = |k: &[&str]| Value::Object(k.iter().map(|k| (k.to_string(), json!(true))).collect());
    json!({"owner": "me", "tags": obj(tags), "desired": obj(desired)})
}

fn plan(f: &Fleet, o: &Observed) -> Plan {
    diff(f, o, "hub", &Options::default())
}

#[test]
fn missing_device_is_created_with_its_twin_content() {
    let mut d = device("d1", json!({"site": "b"}), json!({"t": 1}));
    d.modules.push(ModuleSpec {
        id: "m1".into(),
        managed_by: None,
        auth: AuthSpec::Sas,
        twin: TwinSpec::default(),
        location: loc(),
    });
    let p = plan(&fleet(vec![d]), &observed(vec![]));
    assert_eq!(p.summary.create, 2);
    assert_eq!(p.changes[0].kind(), Kind::CreateDevice);
    assert_eq!(
        p.changes[0].to_doc().patch["twin"]["tags"]["twinops"],
        ledger(&["site"], &["t"])
    );
    assert_eq!(
        p.changes[0].to_doc().patch["twin"]["properties"]["desired"]["t"],
        1
    );
    assert_eq!(p.changes[1].kind(), Kind::CreateModule);
}

#[test]
fn matching_twin_is_unchanged() {
    let f = fleet(vec![device("d1", json!({"site": "b"}), json!({"t": 1}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"site": "b", "twinops": ledger(&["site"], &["t"]), "theirs": 1}),
        json!({"t": 1, "other": 2}),
    )]);
    let p = plan(&f, &o);
    assert!(!p.has_differences());
    assert_eq!(p.summary.unchanged, 1);
}

#[test]
fn changed_value_gives_minimal_patch_with_etag_and_base() {
    let f = fleet(vec![device(
        "d1",
        json!({}),
        json!({"t": 2, "n": {"a": 1}}),
    )]);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &["t", "n"])}),
        json!({"t": 1, "n": {"a": 1, "b": 2}, "other": 5}),
    )]);
    let p = plan(&f, &o);
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(c.kind(), Kind::UpdateDeviceTwin);
    assert_eq!(c.to_doc().if_match.as_deref(), Some("e1"));
    assert_eq!(
        c.to_doc().patch,
        json!({"properties": {"desired": {"t": 2, "n": {"b": null}}}})
    );
    assert_eq!(c.to_doc().base.unwrap().desired["t"], 1);
}

#[test]
fn key_dropped_from_manifest_is_removed_but_unowned_keys_stay() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &["t", "gone"])}),
        json!({"t": 1, "gone": 3, "theirs": 4}),
    )]);
    let p = plan(&f, &o);
    assert_eq!(
        p.changes[0].to_doc().patch,
        json!({"tags": {"twinops": {"desired": {"gone": null}}}, "properties": {"desired": {"gone": null}}})
    );
}

#[test]
fn twin_without_ledger_is_adopted() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen("d1", json!({"x": 1}), json!({"t": 1, "u": 2}))]);
    let p = plan(&f, &o);
    assert_eq!(
        p.changes[0].to_doc().patch,
        json!({"tags": {"twinops": ledger(&[], &["t"])}})
    );
}

#[test]
fn twin_owned_by_another_owner_is_a_conflict_unless_adopted() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": {"owner": "them", "tags": {}, "desired": {"t": true}}}),
        json!({"t": 9}),
    )]);
    let p = plan(&f, &o);
    assert!(p.changes.is_empty());
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.conflicts[0].reason.contains("them"));
    let p = diff(
        &f,
        &o,
        "hub",
        &Options {
            adopt: true,
            ..Options::default()
        },
    );
    assert_eq!(p.changes[0].to_doc().patch["properties"]["desired"]["t"], 1);
}

#[test]
fn ignored_paths_are_never_planned() {
    let mut d = device("d1", json!({}), json!({"cal": {"gain": 1, "offset": 0}}));
    d.twin.ignore.push(PropertyPath {
        section: Section::Desired,
        keys: vec!["cal".into(), "offset".into()],
    });
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &["cal"])}),
        json!({"cal": {"gain": 1, "offset": 7}}),
    )]);
    assert!(!plan(&fleet(vec![d]), &o).has_differences());
}

#[test]
fn sensitive_values_are_digests_in_base_target_and_diff() {
    let mut d = device("d1", json!({}), json!({"token": "s3cret"}));
    d.twin.sensitive.push(PropertyPath {
        section: Section::Desired,
        keys: vec!["token".into()],
    });
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &["token"])}),
        json!({"token": "old-s3cret"}),
    )]);
    let p = plan(&fleet(vec![d]), &o);
    let c = &p.changes[0];
    let doc = c.to_doc();
    let shown = serde_json::to_string(&(&doc.base, &doc.target, &doc.diff)).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(is_sensitive_digest(&doc.target.unwrap().desired["token"]));
}

#[test]
fn identity_status_change_is_its_own_change() {
    let mut d = device("d1", json!({}), json!({}));
    d.status = DeviceStatus::Disabled;
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &[])}),
        json!({}),
    )]);
    let p = plan(&fleet(vec![d]), &o);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].kind(), Kind::UpdateDevice);
    assert_eq!(p.changes[0].to_doc().patch, json!({"status": "disabled"}));
    assert_eq!(p.changes[0].to_doc().if_match.as_deref(), Some("ie"));
}

#[test]
fn prune_deletes_only_owned_undeclared_identities() {
    let f = fleet(vec![device("keep", json!({}), json!({}))]);
    let mut keep = seen("keep", json!({"twinops": ledger(&[], &[])}), json!({}));
    keep.modules.insert(
        "old".into(),
        ObservedModule {
            id: "old".into(),
            twin: ObservedTwin {
                etag: "me1".into(),
                tags: map(json!({"twinops": ledger(&[], &[])})),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    keep.modules.insert(
        "$edgeAgent".into(),
        ObservedModule {
            id: "$edgeAgent".into(),
            ..Default::default()
        },
    );
    let gone = seen("gone", json!({"twinops": ledger(&[], &[])}), json!({}));
    let foreign = seen("foreign", json!({}), json!({}));
    let o = observed(vec![keep, gone, foreign]);
    let p = diff(
        &f,
        &o,
        "hub",
        &Options {
            prune: true,
            ..Options::default()
        },
    );
    let kinds: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.kind(), c.address().to_string()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::DeleteModule, "keep/old".to_string()),
            (Kind::DeleteDevice, "gone".to_string())
        ]
    );
    assert_eq!(deletion_count(&p), 2);
}

#[test]
fn targets_limit_the_plan() {
    let f = fleet(vec![
        device("a", json!({}), json!({"t": 1})),
        device("b", json!({}), json!({"t": 1})),
    ]);
    let p = diff(
        &f,
        &observed(vec![]),
        "hub",
        &Options {
            targets: Targets::new(&["b".to_string()]),
            ..Options::default()
        },
    );
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].device_id(), "b");
}
