//! Unit tests of the planner: ledger, patches, adoption, conflicts, ignore/sensitive, prune, targets.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::model::{
    AuthSpec, AuthenticationType, DeviceSpec, DeviceStatus, Fleet, JsonMap, Location, ModuleSpec,
    Observed, ObservedDevice, ObservedModule, ObservedTwin, PropertyPath, Section, TwinSpec,
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
            tags: map(tags).into(),
            desired: map(desired).into(),
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
            kind: AuthenticationType::Sas,
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

/// A change as the plan document holds it.
fn doc(c: &Change) -> Value {
    serde_json::to_value(c).unwrap()
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
        doc(&p.changes[0])["patch"]["twin"]["tags"]["twinops"],
        ledger(&["site"], &["t"])
    );
    assert_eq!(
        doc(&p.changes[0])["patch"]["twin"]["properties"]["desired"]["t"],
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
    assert_eq!(doc(c)["if_match"], "e1");
    assert_eq!(
        doc(c)["patch"],
        json!({"properties": {"desired": {"t": 2, "n": {"b": null}}}})
    );
    assert_eq!(doc(c)["base"]["desired"]["t"], 1);
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
        doc(&p.changes[0])["patch"],
        json!({"tags": {"twinops": {"desired": {"gone": null}}}, "properties": {"desired": {"gone": null}}})
    );
}

#[test]
fn twin_without_ledger_is_adopted() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen("d1", json!({"x": 1}), json!({"t": 1, "u": 2}))]);
    let p = plan(&f, &o);
    assert_eq!(
        doc(&p.changes[0])["patch"],
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
    assert_eq!(doc(&p.changes[0])["patch"]["properties"]["desired"]["t"], 1);
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
    let doc = doc(c);
    let shown = serde_json::to_string(&(&doc["base"], &doc["target"], &doc["diff"])).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(is_sensitive_digest(&doc["target"]["desired"]["token"]));
}

/// A fleet of one device whose `desired.token` is `${env:TOKEN}` (value `token`) and whose
/// `desired.creds` is written inline under `sensitive`.
fn secret_fleet(token: &str, creds: Value) -> Fleet {
    let mut d = device("d1", json!({}), json!({"token": token, "creds": creds}));
    let token_path = PropertyPath::parse("desired.token").unwrap();
    d.twin.sensitive = vec![
        PropertyPath::parse("desired.creds").unwrap(),
        token_path.clone(),
    ];
    d.twin.refs = vec![crate::model::EnvRef {
        path: token_path,
        name: "TOKEN".into(),
    }];
    fleet(vec![d])
}

/// The plan as a file holds it, read back.
fn saved(p: &Plan) -> SavedPlan {
    serde_json::from_value(serde_json::to_value(p).unwrap()).unwrap()
}

fn env(token: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name: &str| (name == "TOKEN").then(|| token.to_string())
}

#[test]
fn a_saved_plan_conceals_sensitive_values_and_resolving_gets_the_same_patch_back() {
    let f = secret_fleet("new-token", json!({"user": "svc", "pass": "new-pass"}));
    // The hub holds other values: the patch of `creds` is a partial merge patch.
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": ledger(&[], &["token", "creds"])}),
        json!({"token": "old-token", "creds": {"user": "svc", "pass": "old-pass", "extra": 1}}),
    )]);
    let p = plan(&f, &o);
    let Change::UpdateTwin(u) = &p.changes[0] else {
        panic!("{:?}", p.changes)
    };
    assert_eq!(
        u.patch.desired,
        map(json!({"token": "new-token", "creds": {"pass": "new-pass", "extra": null}}))
    );
    let doc = serde_json::to_value(&p).unwrap();
    let text = doc.to_string();
    assert!(!text.contains("new-") && !text.contains("old-"), "{text}");
    let c = &doc["changes"][0];
    assert_eq!(
        c["patch"]["properties"]["desired"],
        json!({"token": "(sensitive)", "creds": {"pass": "(sensitive)", "extra": null}})
    );
    assert_eq!(
        c["secrets"],
        json!([
            {"path": "desired.creds.pass", "digest": secret::digest(&json!("new-pass"))},
            {"path": "desired.token", "digest": secret::digest(&json!("new-token")), "ref": "${env:TOKEN}"},
        ])
    );
    let back = saved(&p).resolve(&env("new-token"), Some(&f)).unwrap();
    assert_eq!(back, p);
}

#[test]
fn resolving_refuses_a_changed_missing_or_empty_variable_and_names_the_path() {
    let f = secret_fleet("new-token", json!({"pass": "p"}));
    let p = plan(&f, &observed(vec![]));
    let problems = |env: &dyn crate::manifest::Env| match saved(&p).resolve(env, Some(&f)) {
        Err(ReadError::Secrets(problems)) => problems,
        other => panic!("{other:?}"),
    };
    let at = |name: &str| {
        (
            String::from("d1"),
            String::from("desired.token"),
            name.to_string(),
        )
    };
    let (address, path, name) = at("TOKEN");
    assert_eq!(
        problems(&env("other-token")),
        [SecretProblem::EnvDiffers {
            address,
            path,
            name
        }]
    );
    let (address, path, name) = at("TOKEN");
    assert_eq!(
        problems(&crate::manifest::NoEnv),
        [SecretProblem::Unset {
            address,
            path,
            name
        }]
    );
    let (address, path, name) = at("TOKEN");
    assert_eq!(
        problems(&env("")),
        [SecretProblem::Empty {
            address,
            path,
            name
        }]
    );
    let shown = problems(&env("other-token"))[0].to_string();
    assert!(shown.contains("`d1` desired.token"), "{shown}");
    assert!(
        !shown.contains("other-token") && !shown.contains("new-token"),
        "{shown}"
    );
}

#[test]
fn inline_values_need_the_manifests_and_must_match_them() {
    let f = secret_fleet("t", json!({"pass": "p"}));
    let p = plan(&f, &observed(vec![]));
    assert_eq!(
        saved(&p).resolve(&env("t"), None),
        Err(ReadError::NeedsManifests {
            count: 1,
            address: "d1".into(),
            path: "desired.creds.pass".into(),
        })
    );
    let changed = secret_fleet("t", json!({"pass": "other"}));
    let gone = fleet(vec![device("d2", json!({}), json!({}))]);
    for (f, problem) in [
        (
            &changed,
            SecretProblem::InlineDiffers {
                address: "d1".into(),
                path: "desired.creds.pass".into(),
            },
        ),
        (
            &gone,
            SecretProblem::NotDeclared {
                address: "d1".into(),
                path: "desired.creds.pass".into(),
            },
        ),
    ] {
        assert_eq!(
            saved(&p).resolve(&env("t"), Some(f)),
            Err(ReadError::Secrets(vec![problem]))
        );
    }
    // A plan without concealed values resolves without manifests or variables.
    let plain = plan(
        &fleet(vec![device("d1", json!({"a": 1}), json!({}))]),
        &observed(vec![]),
    );
    assert_eq!(
        saved(&plain)
            .resolve(&crate::manifest::NoEnv, None)
            .unwrap(),
        plain
    );
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
    assert_eq!(doc(&p.changes[0])["patch"], json!({"status": "disabled"}));
    assert_eq!(doc(&p.changes[0])["if_match"], "ie");
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

fn rollout_spec(first: Option<Value>) -> crate::model::RolloutSpec {
    crate::model::RolloutSpec {
        waves: vec![crate::model::Step::All],
        first: first.map(map),
        bake: std::time::Duration::ZERO,
        timeout: std::time::Duration::from_secs(600),
        halt: crate::model::Halt::default(),
        on_halt: crate::model::OnHalt::Stop,
        location: loc(),
    }
}

fn wave_names(p: &Plan) -> Vec<Vec<String>> {
    p.rollout
        .as_ref()
        .map(|r| {
            r.waves
                .iter()
                .map(|w| w.twins.iter().map(ToString::to_string).collect())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn only_desired_updates_of_existing_twins_are_rolled_out() {
    let owned = ledger(&["site"], &["t"]);
    let mut with_module = device("mod-host", json!({"site": "b"}), json!({"t": 1}));
    with_module.modules.push(ModuleSpec {
        id: "m1".into(),
        managed_by: None,
        auth: AuthSpec::Sas,
        twin: TwinSpec {
            desired: map(json!({"t": 2})).into(),
            ..TwinSpec::default()
        },
        location: loc(),
    });
    let mut f = fleet(vec![
        device("desired", json!({"site": "b"}), json!({"t": 2})),
        device("tags-only", json!({"site": "c"}), json!({"t": 1})),
        device("new", json!({"site": "b"}), json!({"t": 2})),
        with_module,
    ]);
    f.rollout = Some(rollout_spec(None));
    let mut host = seen(
        "mod-host",
        json!({"site": "b", "twinops": owned}),
        json!({"t": 1}),
    );
    host.modules.insert(
        "m1".into(),
        ObservedModule {
            id: "m1".into(),
            twin: ObservedTwin {
                tags: map(json!({"twinops": ledger(&[], &["t"])})),
                desired: map(json!({"t": 1})),
                ..ObservedTwin::default()
            },
            ..ObservedModule::default()
        },
    );
    let o = observed(vec![
        seen(
            "desired",
            json!({"site": "b", "twinops": owned}),
            json!({"t": 1}),
        ),
        seen(
            "tags-only",
            json!({"site": "b", "twinops": owned}),
            json!({"t": 1}),
        ),
        host,
    ]);
    let p = plan(&f, &o);
    let mut rolled: Vec<String> = wave_names(&p).concat();
    rolled.sort();
    assert_eq!(rolled, ["desired", "mod-host/m1"]);
    assert_eq!(p.summary.create, 1);
    assert_eq!(p.summary.update, 3);
}

#[test]
fn first_matches_declared_tags_over_observed_ones() {
    let owned = ledger(&["ring"], &["t"]);
    let mut f = fleet(vec![
        // Declared canary.
        device("a-declared", json!({"ring": "canary"}), json!({"t": 2})),
        // Canary in the hub, by a tag twinops does not own.
        device("b-observed", json!({}), json!({"t": 2})),
        // Canary in the hub, but the manifests move it out of the ring.
        device("c-moved", json!({"ring": "main"}), json!({"t": 2})),
        device("d-plain", json!({}), json!({"t": 2})),
    ]);
    f.rollout = Some(rollout_spec(Some(json!({"ring": "canary"}))));
    let o = observed(vec![
        seen(
            "a-declared",
            json!({"ring": "canary", "twinops": owned}),
            json!({"t": 1}),
        ),
        seen(
            "b-observed",
            json!({"ring": "canary", "twinops": ledger(&[], &["t"])}),
            json!({"t": 1}),
        ),
        seen(
            "c-moved",
            json!({"ring": "canary", "twinops": owned}),
            json!({"t": 1}),
        ),
        seen(
            "d-plain",
            json!({"twinops": ledger(&[], &["t"])}),
            json!({"t": 1}),
        ),
    ]);
    let p = plan(&f, &o);
    let waves = wave_names(&p);
    assert_eq!(waves[0], ["a-declared", "b-observed"]);
    let mut rest = waves[1].clone();
    rest.sort();
    assert_eq!(rest, ["c-moved", "d-plain"]);
}

#[test]
fn a_plan_without_a_rollout_block_or_without_desired_changes_has_no_rollout() {
    let owned = ledger(&["site"], &["t"]);
    let f = fleet(vec![device("d1", json!({"site": "b"}), json!({"t": 2}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"site": "b", "twinops": owned}),
        json!({"t": 1}),
    )]);
    assert_eq!(plan(&f, &o).rollout, None);
    let mut with_block = f.clone();
    with_block.rollout = Some(rollout_spec(None));
    assert!(plan(&with_block, &o).rollout.is_some());
    let tags_only = fleet(vec![device("d1", json!({"site": "c"}), json!({"t": 1}))]);
    let mut tags_only = tags_only;
    tags_only.rollout = Some(rollout_spec(None));
    assert_eq!(plan(&tags_only, &o).rollout, None);
}

#[test]
fn the_rollout_id_is_the_same_on_a_re_plan_and_changes_with_a_target_value() {
    let owned = ledger(&[], &["t"]);
    let make = |t: i64| {
        let mut f = fleet(
            (0..20)
                .map(|i| device(&format!("d{i:02}"), json!({}), json!({"t": t})))
                .collect(),
        );
        f.rollout = Some(rollout_spec(None));
        f
    };
    let o = observed(
        (0..20)
            .map(|i| {
                seen(
                    &format!("d{i:02}"),
                    json!({"twinops": owned}),
                    json!({"t": 1}),
                )
            })
            .collect(),
    );
    let a = plan(&make(2), &o).rollout.unwrap();
    let again = plan(&make(2), &o).rollout.unwrap();
    assert_eq!(a, again);
    let other = plan(&make(3), &o).rollout.unwrap();
    assert_ne!(a.id, other.id);
    // The order is by owner/address, so the same twins keep their waves.
    assert_eq!(a.waves, other.waves);
}

/// Twenty devices `d00`..`d19` wanting `t`, with waves 10% / all.
fn twenty(t: i64) -> Fleet {
    let mut f = fleet(
        (0..20)
            .map(|i| device(&format!("d{i:02}"), json!({}), json!({"t": t})))
            .collect(),
    );
    let mut spec = rollout_spec(None);
    spec.waves = vec![
        crate::model::Step::Share(crate::model::Share::parse("10%").unwrap()),
        crate::model::Step::All,
    ];
    f.rollout = Some(spec);
    f
}

/// The hub after `written` twins took the patch of `p` (desired and ledger as planned).
fn after_writes(o: &Observed, p: &Plan, written: &[TwinAddress]) -> Observed {
    let mut o = o.clone();
    for c in &p.changes {
        let Change::UpdateTwin(t) = c else { continue };
        if !written.contains(&t.address) {
            continue;
        }
        let twin = &mut o.devices.get_mut(&t.address.device).unwrap().twin;
        let mut tags = Value::Object(twin.tags.clone());
        json_patch::merge(&mut tags, &Value::Object(t.patch.tags.clone()));
        twin.tags = tags.as_object().unwrap().clone();
        let mut desired = Value::Object(twin.desired.clone());
        json_patch::merge(&mut desired, &Value::Object(t.patch.desired.clone()));
        twin.desired = desired.as_object().unwrap().clone();
    }
    o
}

fn twenty_seen() -> Observed {
    observed(
        (0..20)
            .map(|i| {
                seen(
                    &format!("d{i:02}"),
                    json!({"twinops": ledger(&[], &["t"])}),
                    json!({"t": 1}),
                )
            })
            .collect(),
    )
}

#[test]
fn each_rolled_out_update_writes_the_rollout_id_and_its_wave_in_the_ledger() {
    let p = plan(&twenty(2), &twenty_seen());
    let r = p.rollout.clone().unwrap();
    assert_eq!(r.written, None);
    for c in &p.changes {
        let Change::UpdateTwin(t) = c else { continue };
        let wave = r.wave_of(&t.address).unwrap();
        assert_eq!(
            t.patch.tags["twinops"],
            json!({"rollout": {"id": r.id, "wave": wave, "desired": {"t": true}}}),
            "{}",
            t.address
        );
        assert_eq!(t.target.tags["twinops"]["rollout"]["wave"], json!(wave));
        // The diff people read shows the values, not the ledger's bookkeeping.
        assert!(t.diff.iter().all(|d| d.path != "tags.twinops"));
    }
}

#[test]
fn a_re_plan_after_a_wave_continues_the_rollout_with_the_same_waves() {
    let o = twenty_seen();
    let first = plan(&twenty(2), &o);
    let r = first.rollout.clone().unwrap();
    let wave0 = r.waves[0].twins.clone();
    assert_eq!(wave0.len(), 2);
    let o1 = after_writes(&o, &first, &wave0);
    let again = plan(&twenty(2), &o1);
    let r1 = again.rollout.clone().unwrap();
    assert_eq!(r1.id, r.id, "the same rollout");
    assert_eq!(r1.waves, r.waves, "the same waves");
    assert_eq!(r1.written, Some(0));
    // Only the twins still to write are changes.
    assert_eq!(again.changes.len(), 18);
    // A plan after every wave was written has nothing to roll out.
    let all: Vec<TwinAddress> = r.waves.iter().flat_map(|w| w.twins.clone()).collect();
    let done = after_writes(&o, &first, &all);
    let last = plan(&twenty(2), &done);
    assert!(last.changes.is_empty());
    assert_eq!(last.rollout, None);
}

#[test]
fn a_changed_target_value_after_a_wave_starts_a_new_rollout() {
    let o = twenty_seen();
    let first = plan(&twenty(2), &o);
    let r = first.rollout.clone().unwrap();
    let o1 = after_writes(&o, &first, &r.waves[0].twins);
    let fixed = plan(&twenty(3), &o1);
    let r2 = fixed.rollout.unwrap();
    assert_ne!(r2.id, r.id);
    assert_eq!(r2.written, None);
    assert_eq!(
        r2.twin_count(),
        20,
        "the fix goes to every twin, wave 0 included"
    );
}
