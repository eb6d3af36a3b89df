//! Unit tests of the planner: ledger, patches, adoption, conflicts, ignore/sensitive, prune, targets.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::model::{
    AuthSpec, AuthenticationType, DeviceSpec, DeviceStatus, Fleet, JsonMap, Location, ModuleSpec,
    Observed, ObservedConfiguration, ObservedDevice, ObservedModule, ObservedTwin, PropertyPath,
    Section, TwinSpec,
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

/// A device that declares no identity field (SPEC §15: none is managed) and these twin sections.
fn device(id: &str, tags: Value, desired: Value) -> DeviceSpec {
    DeviceSpec {
        id: id.into(),
        status: None,
        status_reason: None,
        auth: None,
        edge: None,
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
        configurations: Vec::new(),
        deployments: Vec::new(),
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

fn keys(k: &[&str]) -> Value {
    Value::Object(k.iter().map(|k| (k.to_string(), json!(true))).collect())
}

/// A ledger in which `me` manages these keys and no identity field.
fn ledger(tags: &[&str], desired: &[&str]) -> Value {
    entries(&[("me", &[], tags, desired)])
}

/// One owner's entry: `(owner, fields, tags, desired)`.
type OwnerEntry<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);

/// A ledger of these owners' entries.
fn entries(owners: &[OwnerEntry<'_>]) -> Value {
    let owners: serde_json::Map<String, Value> = owners
        .iter()
        .map(|(o, f, t, d)| {
            let e = json!({"fields": keys(f), "tags": keys(t), "desired": keys(d)});
            (o.to_string(), e)
        })
        .collect();
    json!({"version": 2, "owners": owners})
}

/// A ledger as twinops wrote it before several owners (form 1).
fn v1(tags: &[&str], desired: &[&str]) -> Value {
    json!({"owner": "me", "tags": keys(tags), "desired": keys(desired)})
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
        auth: None,
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
        json!({"tags": {"twinops": {"owners": {"me": {"desired": {"gone": null}}}}},
            "properties": {"desired": {"gone": null}}})
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
    assert_eq!(doc(&p.changes[0])["adopt"], true);
    assert_eq!(doc(&p.changes[0])["adopted"], json!(["desired.t"]));
}

#[test]
fn a_key_another_owner_manages_is_a_conflict_naming_it_unless_forced() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": {"owner": "them", "tags": {}, "desired": {"t": true}}}),
        json!({"t": 9}),
    )]);
    let p = plan(&f, &o);
    assert!(p.changes.is_empty());
    assert_eq!(p.conflicts.len(), 1);
    assert!(
        p.conflicts[0]
            .reason
            .contains("desired.t is managed by `them`"),
        "{}",
        p.conflicts[0].reason
    );
    assert_eq!(p.conflicts[0].keys, ["desired.t"]);
    let p = diff(
        &f,
        &o,
        "hub",
        &Options {
            force_conflicts: true,
            ..Options::default()
        },
    );
    let c = doc(&p.changes[0]);
    assert_eq!(c["patch"]["properties"]["desired"]["t"], 1);
    // In the same write, `them` gives the key up and `me` takes it; `them`'s form-1 entry keeps
    // the identity fields it managed then.
    let mut after = json!({"owner": "them", "tags": {}, "desired": {"t": true}});
    json_patch::merge(&mut after, &c["patch"]["tags"]["twinops"]);
    assert_eq!(
        after,
        json!({"version": 2, "owners": {
            "me": {"fields": {}, "tags": {}, "desired": {"t": true}},
            "them": {"tags": {}, "desired": {}}}}),
        "{c}"
    );
    assert_eq!(c["forced"], json!([{"path": "desired.t", "owner": "them"}]));
    // A form-2 entry emptied by the force is removed.
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": entries(&[("them", &[], &[], &["t"])])}),
        json!({"t": 9}),
    )]);
    let forced = Options {
        force_conflicts: true,
        ..Options::default()
    };
    let c = doc(&diff(&f, &o, "hub", &forced).changes[0]);
    assert_eq!(
        c["patch"]["tags"]["twinops"],
        json!({"owners": {"me": {"fields": {}, "tags": {}, "desired": {"t": true}}, "them": null}})
    );
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
            {"path": "desired.creds.pass", "digest": secret::DigestKey::default().digest(&json!("new-pass"))},
            {"path": "desired.token", "digest": secret::DigestKey::default().digest(&json!("new-token")), "ref": "${env:TOKEN}"},
        ])
    );
    let back = saved(&p)
        .resolve(&env("new-token"), Some(&f), Default::default())
        .unwrap();
    assert_eq!(back, p);
}

#[test]
fn resolving_refuses_a_changed_missing_or_empty_variable_and_names_the_path() {
    let f = secret_fleet("new-token", json!({"pass": "p"}));
    let p = plan(&f, &observed(vec![]));
    let problems =
        |env: &dyn crate::manifest::Env| match saved(&p).resolve(env, Some(&f), Default::default())
        {
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
        saved(&p).resolve(&env("t"), None, Default::default()),
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
            saved(&p).resolve(&env("t"), Some(f), Default::default()),
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
            .resolve(&crate::manifest::NoEnv, None, Default::default())
            .unwrap(),
        plain
    );
}

#[test]
fn identity_status_change_is_its_own_change() {
    let mut d = device("d1", json!({}), json!({}));
    d.status = Some(DeviceStatus::Disabled);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": entries(&[("me", &["status"], &[], &[])])}),
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
        auth: None,
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
            json!({"owners": {"me": {"rollout": {"id": r.id, "wave": wave, "desired": {"t": true}}}}}),
            "{}",
            t.address
        );
        assert_eq!(
            t.target.tags["twinops"]["owners"]["me"]["rollout"]["wave"],
            json!(wave)
        );
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

/// A device as an SDK made it: disabled, self-signed X.509, an edge gateway under a parent.
fn brownfield(id: &str, tags: Value) -> ObservedDevice {
    let mut d = seen(id, tags, json!({}));
    d.status = DeviceStatus::Disabled;
    d.status_reason = Some("maintenance".into());
    d.auth = crate::model::ObservedAuth {
        kind: AuthenticationType::SelfSigned,
        primary_thumbprint: Some("AB".repeat(20)),
        secondary_thumbprint: None,
    };
    d.edge = true;
    d.device_scope = Some(format!("ms-azure-iot-edge://{id}-1"));
    d.parent_scopes = vec!["ms-azure-iot-edge://gw-1-7".into()];
    d
}

#[test]
fn an_existing_identity_keeps_every_field_the_manifests_do_not_declare() {
    // Only tags are declared: no identity change, however far the identity is from the defaults.
    let f = fleet(vec![device("bf", json!({"site": "munich"}), json!({}))]);
    let p = plan(&f, &observed(vec![brownfield("bf", json!({}))]));
    let kinds: Vec<Kind> = p.changes.iter().map(Change::kind).collect();
    assert_eq!(kinds, [Kind::UpdateDeviceTwin], "{p:#?}");
    let c = doc(&p.changes[0]);
    assert_eq!(c["adopted"], json!(["tags.site"]));
    assert_eq!(p.summary.disruptive, 0);
}

#[test]
fn a_declared_field_is_adopted_when_it_matches_and_updated_when_it_differs() {
    let mut d = device("bf", json!({}), json!({}));
    d.status = Some(DeviceStatus::Disabled);
    d.edge = Some(true);
    let p = plan(
        &fleet(vec![d.clone()]),
        &observed(vec![brownfield("bf", json!({}))]),
    );
    // Both match: the ledger records them, the identity is not written.
    let kinds: Vec<Kind> = p.changes.iter().map(Change::kind).collect();
    assert_eq!(kinds, [Kind::UpdateDeviceTwin]);
    assert_eq!(doc(&p.changes[0])["adopted"], json!(["status", "edge"]));
    // `status: enabled` differs: exactly that field is written, and it is an adoption.
    d.status = Some(DeviceStatus::Enabled);
    let p = plan(
        &fleet(vec![d]),
        &observed(vec![brownfield("bf", json!({}))]),
    );
    let update = p
        .changes
        .iter()
        .find(|c| c.kind() == Kind::UpdateDevice)
        .expect("an identity update");
    assert_eq!(doc(update)["patch"], json!({"status": "enabled"}));
    assert_eq!(doc(update)["adopt"], true);
}

#[test]
fn a_field_that_leaves_the_manifests_is_released_and_stays_as_it_is() {
    let f = fleet(vec![device("bf", json!({}), json!({}))]);
    let managed = json!({"twinops": entries(&[("me", &["status"], &[], &[])])});
    let p = plan(&f, &observed(vec![brownfield("bf", managed)]));
    assert_eq!(p.changes.len(), 1, "{p:#?}");
    assert_eq!(p.changes[0].kind(), Kind::ReleaseDevice);
    assert_eq!(p.summary.release, 1);
    let c = doc(&p.changes[0]);
    assert_eq!(c["action"], "release");
    assert_eq!(
        c["released"],
        json!([{"field": "status", "stays": "disabled"}])
    );
    // Nothing but the ledger is written.
    assert_eq!(
        c["patch"],
        json!({"tags": {"twinops": {"owners": {"me": {"fields": {"status": null}}}}}})
    );
    let mut text = Vec::new();
    crate::render::text::plan(&mut text, &p).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("release status (stays \"disabled\")"),
        "{text}"
    );
}

#[test]
fn a_form_1_ledger_plans_as_a_no_op_and_is_rewritten_on_the_next_change() {
    let f = fleet(vec![device("d1", json!({"site": "b"}), json!({"t": 1}))]);
    let old = |t: i64| {
        observed(vec![seen(
            "d1",
            json!({"site": "b", "twinops": v1(&["site"], &["t"])}),
            json!({"t": t}),
        )])
    };
    assert!(!plan(&f, &old(1)).has_differences());
    let p = plan(&f, &old(0));
    let mut ledger_after = v1(&["site"], &["t"]);
    json_patch::merge(
        &mut ledger_after,
        &doc(&p.changes[0])["patch"]["tags"]["twinops"],
    );
    assert_eq!(ledger_after, ledger(&["site"], &["t"]));
}

#[test]
fn owners_with_disjoint_keys_share_a_twin_each_writing_only_its_own_entry() {
    let both = json!({"site": "b", "twinops": entries(&[
        ("me", &[], &["site"], &[]),
        ("app", &[], &[], &["telemetry"]),
    ])});
    let o = observed(vec![seen("d1", both, json!({"telemetry": 5}))]);
    // `me` adds a tag: only its entry is in the patch, `app`'s is not touched.
    let f = fleet(vec![device(
        "d1",
        json!({"site": "b", "kind": "gw"}),
        json!({}),
    )]);
    let p = plan(&f, &o);
    assert!(p.conflicts.is_empty());
    let c = doc(&p.changes[0]);
    assert_eq!(
        c["patch"]["tags"]["twinops"],
        json!({"owners": {"me": {"tags": {"kind": true}}}})
    );
    assert!(
        !c["base"]["tags"]["twinops"]["owners"]
            .as_object()
            .unwrap()
            .contains_key("app")
    );
    // A resend after `app` changed its entry writes the same intent into the new ledger.
    let Change::UpdateTwin(u) = &p.changes[0] else {
        panic!()
    };
    let mut moved = o.devices["d1"].twin.clone();
    moved.tags["twinops"]["owners"]["app"]["desired"]["mode"] = json!(true);
    assert_eq!(
        owned_view(&u.base, &u.ignore, &u.sensitive, u.key, &moved),
        u.base
    );
    assert_eq!(
        u.patch_for(&moved).tags["twinops"],
        json!({"owners": {"me": {"tags": {"kind": true}}}})
    );
}

#[test]
fn prune_releases_a_device_another_owner_shares_and_deletes_modules_only_it_managed() {
    let f = fleet(vec![]);
    let mut shared = seen(
        "shared",
        json!({"site": "b", "twinops": entries(&[("me", &[], &["site"], &[]), ("app", &[], &[], &["t"])])}),
        json!({"t": 1}),
    );
    let module = |ledger: Value| ObservedModule {
        id: "m".into(),
        twin: ObservedTwin {
            etag: "me1".into(),
            tags: map(json!({"twinops": ledger})),
            ..Default::default()
        },
        ..Default::default()
    };
    shared.modules.insert(
        "mine".into(),
        ObservedModule {
            id: "mine".into(),
            ..module(ledger(&[], &[]))
        },
    );
    shared.modules.insert(
        "both".into(),
        ObservedModule {
            id: "both".into(),
            ..module(entries(&[("me", &[], &[], &[]), ("app", &[], &[], &["x"])]))
        },
    );
    let alone = seen("alone", json!({"twinops": ledger(&[], &[])}), json!({}));
    let p = diff(
        &f,
        &observed(vec![shared, alone]),
        "hub",
        &Options {
            prune: true,
            ..Options::default()
        },
    );
    let kinds: Vec<(Kind, String)> = p
        .changes
        .iter()
        .map(|c| (c.kind(), c.address().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::ReleaseDevice, "shared".to_string()),
            (Kind::ReleaseModule, "shared/both".to_string()),
            (Kind::DeleteModule, "shared/mine".to_string()),
            (Kind::DeleteDevice, "alone".to_string()),
        ]
    );
    // The release removes what `me` managed and its entry; `app`'s stays.
    let c = doc(&p.changes[0]);
    assert_eq!(c["patch"]["tags"]["site"], Value::Null);
    assert_eq!(
        c["patch"]["tags"]["twinops"],
        json!({"owners": {"me": null}})
    );
    assert_eq!(deletion_count(&p), 2, "--max-deletes counts deletions only");
}

#[test]
fn disruptive_identity_changes_are_marked_and_counted() {
    let mut d = device("gw", json!({}), json!({}));
    d.edge = Some(false);
    d.auth = Some(AuthSpec::Sas);
    let mut child = seen("child", json!({}), json!({}));
    child.parent_scopes = vec!["ms-azure-iot-edge://gw-1".into()];
    let mut gw = brownfield(
        "gw",
        json!({"twinops": entries(&[("me", &["edge", "auth"], &[], &[])])}),
    );
    gw.device_scope = Some("ms-azure-iot-edge://gw-1".into());
    gw.parent_scopes.clear();
    let p = plan(
        &fleet(vec![d.clone()]),
        &observed(vec![gw.clone(), child.clone()]),
    );
    let update = p
        .changes
        .iter()
        .find(|c| c.kind() == Kind::UpdateDevice)
        .unwrap();
    // Auth first: it is what disconnects this very device.
    assert_eq!(update.disruptive(), Some(Disruption::Credentials));
    assert_eq!(p.summary.disruptive, 1);
    d.auth = None;
    let p = plan(&fleet(vec![d]), &observed(vec![gw, child]));
    let update = p
        .changes
        .iter()
        .find(|c| c.kind() == Kind::UpdateDevice)
        .unwrap();
    assert_eq!(update.disruptive(), Some(Disruption::ChildrenLoseParent));
    assert_eq!(
        doc(update)["disruptive"],
        "its child devices lose their parent"
    );
    let mut text = Vec::new();
    crate::render::text::plan(&mut text, &p).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("! disruptive: its child devices lose their parent"),
        "{text}"
    );
    assert!(text.contains(", 1 disruptive."), "{text}");
}

#[test]
fn a_demotion_disrupts_only_a_device_with_read_or_declared_children() {
    // gw-a has a child in the hub, gw-b one in the manifests only, gw-c none (its scope is not the
    // parent of any device read), all three are demoted.
    let demoted = |id: &str| {
        let mut d = device(id, json!({}), json!({}));
        d.edge = Some(false);
        d
    };
    let mut declared_child = device("child-b", json!({}), json!({}));
    declared_child.parent = Some(DeviceId::new("gw-b").unwrap());
    let gateway = |id: &str| {
        let mut gw = brownfield(
            id,
            json!({"twinops": entries(&[("me", &["edge"], &[], &[])])}),
        );
        gw.device_scope = Some(format!("ms-azure-iot-edge://{id}-1"));
        gw.parent_scopes.clear();
        gw
    };
    let mut read_child = seen("child-a", json!({}), json!({}));
    read_child.parent_scopes = vec!["ms-azure-iot-edge://gw-a-1".into()];
    let mut orphan = seen("orphan", json!({}), json!({}));
    orphan.parent_scopes = vec!["ms-azure-iot-edge://gone-1".into()];
    let p = plan(
        &fleet(vec![
            demoted("gw-a"),
            demoted("gw-b"),
            demoted("gw-c"),
            declared_child,
        ]),
        &observed(vec![
            gateway("gw-a"),
            gateway("gw-b"),
            gateway("gw-c"),
            read_child,
            orphan,
        ]),
    );
    let disruptive: Vec<(String, Option<Disruption>)> = p
        .changes
        .iter()
        .filter(|c| c.kind() == Kind::UpdateDevice)
        .map(|c| (c.address().to_string(), c.disruptive()))
        .collect();
    assert_eq!(
        disruptive,
        vec![
            ("gw-a".into(), Some(Disruption::ChildrenLoseParent)),
            ("gw-b".into(), Some(Disruption::ChildrenLoseParent)),
            ("gw-c".into(), None),
        ]
    );
}

#[test]
fn a_newer_ledger_is_a_conflict_never_written_even_when_forced() {
    let f = fleet(vec![device("d1", json!({}), json!({"t": 1}))]);
    let o = observed(vec![seen(
        "d1",
        json!({"twinops": {"version": 3, "owners": {}}}),
        json!({}),
    )]);
    for force in [false, true] {
        let p = diff(
            &f,
            &o,
            "hub",
            &Options {
                force_conflicts: force,
                ..Options::default()
            },
        );
        assert!(p.changes.is_empty());
        assert!(
            p.conflicts[0].reason.contains("newer twinops"),
            "{:?}",
            p.conflicts
        );
    }
}

#[test]
fn declared_twins_with_applied_configurations_are_kept_for_naming_their_writers() {
    let mut d = device("d1", json!({}), json!({"interval": 10, "mode": "eco"}));
    d.modules.push(ModuleSpec {
        id: "m".into(),
        auth: None,
        managed_by: None,
        twin: TwinSpec {
            desired: map(json!({"route": "a"})).into(),
            ..TwinSpec::default()
        },
        location: loc(),
    });
    let f = fleet(vec![d, device("d2", json!({}), json!({"interval": 10}))]);
    let mut s1 = seen("d1", json!({}), json!({"interval": 30, "mode": "eco"}));
    s1.twin.configurations = map(json!({
        "thermostat-v3": {"status": "Applied"}, "lost": {"status": "Targeted"}}));
    s1.modules.insert(
        "m".into(),
        ObservedModule {
            id: "m".into(),
            twin: ObservedTwin {
                desired: map(json!({"route": "a"})),
                ..ObservedTwin::default()
            },
            ..ObservedModule::default()
        },
    );
    // d2: nothing applied, nothing kept.
    let (_, kept) = diff_seen(
        &f,
        &observed(vec![s1, seen("d2", json!({}), json!({"interval": 10}))]),
        "hub",
        &Options::default(),
    );
    let got: Vec<_> = kept
        .configured
        .iter()
        .map(|c| {
            (
                c.address.to_string(),
                c.applied.clone(),
                c.deployments.clone(),
                c.declared.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "d1".to_string(),
                vec!["thermostat-v3".to_string()],
                vec![],
                [("interval".to_string(), false), ("mode".to_string(), true)].into()
            ),
            // The module twin: the device's applied configurations may be edge deployments.
            (
                "d1/m".to_string(),
                vec![],
                vec!["thermostat-v3".to_string()],
                [("route".to_string(), true)].into()
            ),
        ]
    );
    let confs = [(
        "thermostat-v3".to_string(),
        ObservedConfiguration {
            id: "thermostat-v3".into(),
            priority: 10,
            device_keys: ["interval".to_string()].into(),
            ..ObservedConfiguration::default()
        },
    )]
    .into();
    let w = writers::writers(&kept.configured, &confs);
    assert_eq!(
        w.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "desired.interval is also written by configuration `thermostat-v3` (priority 10), which differs from the manifest"
        ]
    );
}
