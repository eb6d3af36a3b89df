//! The JSON plan document (`format_version` 1) is a contract with users' scripts and with plans saved
//! by earlier runs: a plan with every kind of change is written byte for byte as the pinned document
//! `plan_document.json` (written by the version that introduced this test), and that document reads
//! back into the plan it was written from.

use serde_json::{Value, json};
use twinops_core::model::{
    AuthSpec, Content, DeviceId, DeviceSpec, DeviceStatus, Digest, ETag, EnvRef, Fleet, JsonMap,
    Location, ModuleId, Owner, PropertyPath, TwinAddress, TwinSpec,
};
use twinops_core::plan::{
    Change, Conflict, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity,
    FieldDiff, IdentityUpdate, OwnedValues, Plan, SavedPlan, Summary, TwinPatch, UpdateDevice,
    UpdateModule, UpdateTwin, sensitive_digest,
};
use twinops_iothub::quota::OpClass;

/// The document `twinops plan --format json` / `--out` wrote for [`every_kind`] before the document
/// types were derived; never regenerate it to make a test pass.
const PINNED: &str = include_str!("plan_document.json");

fn device(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn module(id: &str) -> ModuleId {
    ModuleId::new(id).unwrap()
}

fn etag(e: &str) -> ETag {
    ETag::new(e).unwrap()
}

fn path(p: &str) -> PropertyPath {
    PropertyPath::parse(p).unwrap()
}

fn map(v: Value) -> JsonMap {
    v.as_object().cloned().unwrap()
}

fn fd(path: &str, before: Option<Value>, after: Option<Value>) -> FieldDiff {
    FieldDiff {
        path: path.into(),
        before,
        after,
    }
}

fn env_ref(p: &str, name: &str) -> EnvRef {
    EnvRef {
        path: path(p),
        name: name.into(),
    }
}

fn ledger(tags: &[&str], desired: &[&str]) -> Value {
    let keys = |k: &[&str]| Value::Object(k.iter().map(|k| (k.to_string(), json!(true))).collect());
    json!({"owner": "berlin-plant", "tags": keys(tags), "desired": keys(desired)})
}

/// `therm-001`'s inline sensitive value, which a plan file holds only as a digest.
fn therm_001_creds() -> Value {
    json!({"user": "svc", "pass": "inline-pass"})
}

/// `therm-003`'s inline sensitive value.
fn therm_003_creds() -> Value {
    json!({"pass": "p2", "old": null})
}

fn creates() -> Vec<Change> {
    vec![
        // Every identity field a create can carry, sensitive values referenced and inline.
        Change::CreateDevice(Box::new(CreateDevice {
            id: device("therm-001"),
            identity: DeviceIdentity {
                status: DeviceStatus::Disabled,
                status_reason: Some("commissioning".into()),
                auth: AuthSpec::X509 {
                    primary: "AB".repeat(20),
                    secondary: Some("CD".repeat(20)),
                },
                edge: true,
                parent: Some(device("gateway-1")),
            },
            twin: TwinPatch {
                tags: map(json!({
                    "site": "berlin",
                    "twinops": ledger(&["site"], &["apiToken", "creds", "interval"]),
                })),
                desired: map(json!({
                    "apiToken": "new-token",
                    "creds": therm_001_creds(),
                    "interval": 60,
                })),
            },
            sensitive: vec![path("desired.apiToken"), path("desired.creds")],
            refs: vec![env_ref("desired.apiToken", "THERM_API_TOKEN")],
            key: Default::default(),
        })),
        // The least a create carries: no reason, no parent, no twin content.
        Change::CreateDevice(Box::new(CreateDevice {
            id: device("therm-002"),
            identity: DeviceIdentity {
                status: DeviceStatus::Enabled,
                status_reason: None,
                auth: AuthSpec::Sas,
                edge: false,
                parent: None,
            },
            twin: TwinPatch::default(),
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
        })),
        Change::CreateModule(Box::new(CreateModule {
            device: device("therm-001"),
            module: module("sensor"),
            managed_by: Some("iotedge".into()),
            auth: AuthSpec::Ca,
            twin: TwinPatch {
                tags: JsonMap::new(),
                desired: map(json!({"interval": 60})),
            },
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
        })),
        Change::CreateModule(Box::new(CreateModule {
            device: device("therm-002"),
            module: module("plain"),
            managed_by: None,
            auth: AuthSpec::Sas,
            twin: TwinPatch::default(),
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
        })),
    ]
}

fn identity_updates() -> Vec<Change> {
    vec![
        // Every identity field, the parent detached.
        Change::UpdateDevice(UpdateDevice {
            id: device("gateway-1"),
            if_match: etag("AAAAAAAAAAE="),
            set: IdentityUpdate {
                status: Some(DeviceStatus::Disabled),
                status_reason: Some("maintenance".into()),
                auth: Some(AuthSpec::X509 {
                    primary: "EF".repeat(32),
                    secondary: None,
                }),
                edge: Some(true),
                parent: Some(None),
            },
            diff: vec![
                fd("status", Some(json!("enabled")), Some(json!("disabled"))),
                fd("statusReason", None, Some(json!("maintenance"))),
                fd(
                    "authentication",
                    Some(json!({"type": "sas"})),
                    Some(
                        json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "EF".repeat(32), "secondaryThumbprint": null}}),
                    ),
                ),
                fd(
                    "capabilities.iotEdge",
                    Some(json!(false)),
                    Some(json!(true)),
                ),
                fd("parent", Some(json!("core-1")), None),
            ],
            adopt: false,
            disruptive: None,
        }),
        // One field: the parent attached.
        Change::UpdateDevice(UpdateDevice {
            id: device("gateway-2"),
            if_match: etag("AAAAAAAAAAI="),
            set: IdentityUpdate {
                parent: Some(Some(device("gateway-1"))),
                ..IdentityUpdate::default()
            },
            diff: vec![fd("parent", None, Some(json!("gateway-1")))],
            adopt: false,
            disruptive: None,
        }),
        Change::UpdateModule(UpdateModule {
            device: device("gateway-1"),
            module: module("agent"),
            if_match: etag("AAAAAAAAAAM="),
            auth: AuthSpec::Sas,
            diff: vec![fd(
                "authentication",
                Some(json!({"type": "certificateAuthority"})),
                Some(json!({"type": "sas"})),
            )],
            adopt: false,
            disruptive: None,
        }),
    ]
}

fn twin_updates() -> Vec<Change> {
    let token = sensitive_digest(&Default::default(), &json!("new-token"));
    let creds = |v: Value| sensitive_digest(&Default::default(), &v);
    vec![
        // Sensitive values (referenced and inline), an ignored path, removals, the ledger.
        Change::UpdateTwin(Box::new(UpdateTwin {
            address: TwinAddress::device(device("therm-003")),
            if_match: etag("AAAAAAAAAAQ="),
            base: OwnedValues {
                tags: map(
                    json!({"twinops": ledger(&[], &["apiToken", "creds", "interval", "old"])}),
                ),
                desired: map(json!({
                    "apiToken": sensitive_digest(&Default::default(), &json!("old-token")),
                    "creds": creds(json!({"pass": "p1"})),
                    "interval": 60,
                    "old": 1,
                })),
            },
            target: OwnedValues {
                tags: map(json!({"twinops": ledger(&[], &["apiToken", "creds", "interval"])})),
                desired: map(json!({
                    "apiToken": token,
                    "creds": creds(json!({"pass": "p2"})),
                    "interval": 30,
                    "old": null,
                })),
            },
            patch: TwinPatch {
                tags: map(json!({"twinops": {"desired": {"old": null}}})),
                desired: map(json!({
                    "apiToken": "new-token",
                    "creds": therm_003_creds(),
                    "interval": 30,
                    "old": null,
                })),
            },
            diff: vec![
                fd(
                    "desired.apiToken",
                    Some(sensitive_digest(&Default::default(), &json!("old-token"))),
                    Some(token.clone()),
                ),
                fd(
                    "desired.creds",
                    Some(creds(json!({"pass": "p1"}))),
                    Some(creds(json!({"pass": "p2"}))),
                ),
                fd("desired.interval", Some(json!(60)), Some(json!(30))),
                fd("desired.old", Some(json!(1)), None),
            ],
            ignore: vec![path("desired.calibration.offset")],
            sensitive: vec![path("desired.apiToken"), path("desired.creds")],
            refs: vec![env_ref("desired.apiToken", "THERM_API_TOKEN")],
            key: Default::default(),
            adopted: vec![],
            released: vec![],
            forced: vec![],
        })),
        // Tags only, nothing sensitive.
        Change::UpdateTwin(Box::new(UpdateTwin {
            address: TwinAddress::module(device("therm-003"), module("sensor")),
            if_match: etag("AAAAAAAAAAU="),
            base: OwnedValues {
                tags: map(json!({"room": "a1"})),
                desired: JsonMap::new(),
            },
            target: OwnedValues {
                tags: map(json!({"room": "b2"})),
                desired: JsonMap::new(),
            },
            patch: TwinPatch {
                tags: map(json!({"room": "b2"})),
                desired: JsonMap::new(),
            },
            diff: vec![fd("tags.room", Some(json!("a1")), Some(json!("b2")))],
            ignore: vec![],
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
            adopted: vec![],
            released: vec![],
            forced: vec![],
        })),
    ]
}

fn deletes() -> Vec<Change> {
    vec![
        Change::DeleteModule(DeleteModule {
            device: device("therm-004"),
            module: module("old"),
            if_match: etag("AAAAAAAAAAY="),
        }),
        Change::DeleteDevice(DeleteDevice {
            id: device("therm-005"),
            if_match: etag("AAAAAAAAAAc="),
            modules: vec![module("$edgeAgent"), module("m1")],
        }),
        Change::DeleteDevice(DeleteDevice {
            id: device("therm-006"),
            if_match: etag("AAAAAAAAAAg="),
            modules: vec![],
        }),
    ]
}

/// A plan with every kind of change, in apply order.
fn every_kind() -> Plan {
    let changes: Vec<Change> = [creates(), identity_updates(), twin_updates(), deletes()]
        .into_iter()
        .flatten()
        .collect();
    Plan {
        format_version: 1,
        hub: "contoso.azure-devices.net".into(),
        owner: Owner::new("berlin-plant").unwrap(),
        manifest_digest: Digest::new("ab".repeat(32)).unwrap(),
        summary: Summary {
            create: 4,
            update: 5,
            delete: 5,
            unchanged: 7,
            conflicts: 1,
            ..Summary::default()
        },
        changes,
        conflicts: vec![Conflict {
            address: TwinAddress::module(device("therm-007"), module("sensor")),
            reason: "owned by `munich-plant` (use --adopt to take it over)".into(),
            keys: vec!["desired.interval".into()],
        }],
        requests: [(OpClass::RegistryRead, 3), (OpClass::TwinRead, 9)]
            .into_iter()
            .collect(),
        estimated_apply_seconds: Some(1.5),
        estimated_read_seconds: None,
        read_seconds: Some(0.25),
        scope: None,
        no_longer_declared: vec![
            "therm-008".parse().unwrap(),
            "therm-009/sensor".parse().unwrap(),
        ],
        rollout: None,
        warnings: vec![],
        read: None,
        digest_key: Some(twinops_core::plan::secret::DigestKey::default().fingerprint()),
        objects: Default::default(),
        awaiting: vec![],
    }
}

/// The manifests the plan was made from, as far as resolving it needs them: the inline values.
fn fleet() -> Fleet {
    let spec = |id: &str, creds: Value| DeviceSpec {
        id: device(id),
        status: Some(DeviceStatus::Enabled),
        status_reason: None,
        auth: Some(AuthSpec::Sas),
        edge: Some(false),
        parent: None,
        twin: TwinSpec {
            desired: Content::new(&map(json!({ "creds": creds }))),
            sensitive: vec![path("desired.creds")],
            ..TwinSpec::default()
        },
        modules: vec![],
        location: Location {
            file: "m.yaml".into(),
            line: 1,
            column: 1,
        },
    };
    Fleet {
        owner: Owner::new("berlin-plant").unwrap(),
        devices: vec![
            spec("therm-001", therm_001_creds()),
            spec("therm-003", therm_003_creds()),
        ],
        digest: Digest::new("ab".repeat(32)).unwrap(),
        rollout: None,
        configurations: Vec::new(),
        deployments: Vec::new(),
    }
}

/// The environment `apply --plan` runs in: the referenced values as planned.
fn env(name: &str) -> Option<String> {
    (name == "THERM_API_TOKEN").then(|| "new-token".into())
}

fn written(plan: &Plan) -> String {
    let mut out = Vec::new();
    twinops_core::render::json(&mut out, plan).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_plan_of_every_kind_is_written_as_the_pinned_document() {
    let text = written(&every_kind());
    if text != PINNED {
        panic!(
            "the plan document changed:\n{}",
            similar::TextDiff::from_lines(PINNED, &text).unified_diff()
        );
    }
}

#[test]
fn the_pinned_document_holds_no_sensitive_value() {
    for secret in ["new-token", "inline-pass", "svc", "p2"] {
        assert!(
            !PINNED.contains(&format!("\"{secret}\"")),
            "`{secret}` in the document"
        );
    }
}

#[test]
fn the_pinned_document_reads_back_as_the_plan_it_was_written_from() {
    let saved: SavedPlan = serde_json::from_str(PINNED).unwrap();
    assert_eq!(saved, every_kind().to_saved());
    let plan = saved
        .resolve(&env, Some(&fleet()), Default::default())
        .unwrap();
    for (back, planned) in plan.changes.iter().zip(&every_kind().changes) {
        assert_eq!(back, planned);
    }
    assert_eq!(plan, every_kind());
}

/// The pinned document with one change edited, read and resolved as `apply --plan` does; the error
/// of whichever step refused it.
fn read_edited(index: usize, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut doc: Value = serde_json::from_str(PINNED).unwrap();
    edit(doc["changes"][index].as_object_mut().unwrap());
    match serde_json::from_value::<SavedPlan>(doc) {
        Err(e) => e.to_string(),
        Ok(saved) => match saved.resolve(&env, Some(&fleet()), Default::default()) {
            Err(e) => e.to_string(),
            Ok(_) => "read".into(),
        },
    }
}

/// The index in the pinned document of the first change of `kind`.
fn first(kind: &str) -> usize {
    let doc: Value = serde_json::from_str(PINNED).unwrap();
    let changes = doc["changes"].as_array().unwrap();
    changes.iter().position(|c| c["kind"] == kind).unwrap()
}

const KINDS: [&str; 8] = [
    "create_device",
    "create_module",
    "update_device",
    "update_module",
    "update_device_twin",
    "update_module_twin",
    "delete_module",
    "delete_device",
];

#[test]
fn every_action_that_contradicts_its_kind_is_refused() {
    for kind in KINDS {
        for action in ["create", "update", "delete"] {
            let e = read_edited(first(kind), |c| {
                if c["action"] == action {
                    return;
                }
                c.insert("action".into(), json!(action));
            });
            let planned = kind.split('_').next().unwrap();
            if action == planned {
                assert_eq!(e, "read", "{kind}");
            } else {
                assert!(e.contains("does not match kind"), "{kind} {action}: {e}");
            }
        }
    }
}

#[test]
fn updates_and_deletes_without_an_etag_and_creates_with_one_are_refused() {
    for kind in KINDS {
        let missing = read_edited(first(kind), |c| {
            c.remove("if_match");
        });
        let empty = read_edited(first(kind), |c| {
            c.insert("if_match".into(), json!(""));
        });
        if kind.starts_with("create") {
            assert_eq!(missing, "read", "{kind}");
            assert!(empty.contains("if_match"), "{kind}: {empty}");
            let given = read_edited(first(kind), |c| {
                c.insert("if_match".into(), json!("AAAAAAAAAAE="));
            });
            assert!(given.contains("if_match"), "{kind}: {given}");
        } else {
            assert!(missing.contains("if_match"), "{kind}: {missing}");
            assert!(empty.contains("not a valid etag"), "{kind}: {empty}");
        }
    }
}

#[test]
fn module_kinds_need_a_module_id_and_device_kinds_refuse_one() {
    for kind in KINDS {
        if kind.contains("module") {
            let e = read_edited(first(kind), |c| {
                c.remove("module_id");
            });
            assert!(e.contains("module_id"), "{kind}: {e}");
            let e = read_edited(first(kind), |c| {
                c.insert("module_id".into(), json!("bad/id"));
            });
            assert!(e.contains("not a valid module ID"), "{kind}: {e}");
        } else {
            let e = read_edited(first(kind), |c| {
                c.insert("module_id".into(), json!("m1"));
            });
            assert!(e.contains("module_id"), "{kind}: {e}");
        }
        let e = read_edited(first(kind), |c| {
            c.insert("device_id".into(), json!("bad/id"));
        });
        assert!(e.contains("not a valid device ID"), "{kind}: {e}");
    }
}

#[test]
fn secrets_are_refused_on_changes_without_twin_content() {
    let secret = json!([{"path": "desired.t", "digest": format!("sha256:{}", "0".repeat(64))}]);
    for kind in [
        "update_device",
        "update_module",
        "delete_module",
        "delete_device",
    ] {
        let e = read_edited(first(kind), |c| {
            c.insert("secrets".into(), secret.clone());
        });
        assert!(e.contains("secrets"), "{kind}: {e}");
    }
}

#[test]
fn malformed_paths_are_refused() {
    let twin = first("update_device_twin");
    for field in ["ignore", "sensitive"] {
        let e = read_edited(twin, |c| {
            c.insert(field.into(), json!(["reported.x"]));
        });
        assert!(e.contains("is not a path like"), "{field}: {e}");
    }
    let e = read_edited(twin, |c| {
        c["secrets"][0]["path"] = json!("desired..x");
    });
    assert!(e.contains("is not a path like"), "{e}");
}

#[test]
fn fields_a_kind_does_not_have_are_refused_in_the_change_and_in_its_patch() {
    for kind in KINDS {
        let e = read_edited(first(kind), |c| {
            c.insert("owner".into(), json!("x"));
        });
        assert!(e.contains("unknown field `owner`"), "{kind}: {e}");
        let e = read_edited(first(kind), |c| {
            c["patch"]["extra"] = json!(1);
        });
        assert!(e.contains("unknown field `extra`"), "{kind}: {e}");
    }
    let e = read_edited(first("update_device_twin"), |c| {
        c["patch"]["properties"]["reported"] = json!({});
    });
    assert!(e.contains("unknown field `reported`"), "{e}");
}

#[test]
fn a_create_or_delete_with_a_diff_is_refused() {
    for kind in [
        "create_device",
        "create_module",
        "delete_module",
        "delete_device",
    ] {
        let e = read_edited(first(kind), |c| {
            c.insert("diff".into(), json!([{"path": "tags.a", "after": 1}]));
        });
        assert!(e.contains("empty `diff`"), "{kind}: {e}");
    }
}

#[test]
fn null_is_refused_where_a_value_is_required_and_a_null_parent_detaches() {
    let update = first("update_device");
    for field in [
        "status",
        "statusReason",
        "authentication",
        "capabilities.iotEdge",
    ] {
        let e = read_edited(update, |c| {
            c["patch"][field] = Value::Null;
        });
        assert_ne!(e, "read", "{field}");
    }
    let create = first("create_device");
    for field in ["statusReason", "parent"] {
        let e = read_edited(create, |c| {
            c["patch"][field] = Value::Null;
        });
        assert_ne!(e, "read", "{field}");
    }
    let saved: SavedPlan = serde_json::from_str(PINNED).unwrap();
    let plan = saved
        .resolve(&env, Some(&fleet()), Default::default())
        .unwrap();
    let Change::UpdateDevice(u) = &plan.changes[update] else {
        panic!("{:?}", plan.changes[update]);
    };
    assert_eq!(u.set.parent, Some(None));
}

#[test]
fn a_create_needs_every_identity_field_it_writes() {
    for field in ["status", "authentication", "capabilities", "twin"] {
        let e = read_edited(first("create_device"), |c| {
            c["patch"].as_object_mut().unwrap().remove(field);
        });
        assert!(e.contains(&format!("missing field `{field}`")), "{e}");
    }
    let e = read_edited(first("create_device"), |c| {
        c["patch"]["authentication"] = json!({"type": "selfSigned"});
    });
    assert!(e.contains("needs x509Thumbprint"), "{e}");
    let e = read_edited(first("delete_device"), |c| {
        c["patch"] = json!({});
    });
    assert!(e.contains("missing field `modules`"), "{e}");
}
