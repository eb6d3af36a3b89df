//! What people read, snapshotted: text and markdown renderings of plans, reports and drift, built from
//! fixed values (no hub), plus the pull-request comment size limit.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use serde_json::json;
use twinops_core::model::{
    Address, AuthSpec, DeviceId, DeviceStatus, Digest, ETag, ModuleId, Owner, PropertyPath,
    TwinAddress,
};
use twinops_core::plan::drift;
use twinops_core::plan::{
    Change, Conflict, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity,
    FieldDiff, IdentityUpdate, Kind, OwnedValues, Plan, SavedPlan, Summary, TwinPatch,
    UpdateDevice, UpdateModule, UpdateTwin, is_sensitive_digest,
};
use twinops_core::report::{Outcome, Reason, Report, Status};

/// A change of `kind` whose shown diff is `diff` (a create's diff is its content).
fn change(kind: Kind, device: &str, module: Option<&str>, diff: Vec<FieldDiff>) -> Change {
    if kind == Kind::CreateDevice {
        let mut twin = TwinPatch::default();
        let mut sensitive = Vec::new();
        for d in &diff {
            let (section, key) = d.path.split_once('.').unwrap();
            let mut value = d.after.clone().unwrap();
            if is_sensitive_digest(&value) {
                sensitive.push(PropertyPath::parse(&d.path).unwrap());
                value = json!("a secret value");
            }
            match section {
                "tags" => twin.tags.insert(key.into(), value),
                _ => twin.desired.insert(key.into(), value),
            };
        }
        return Change::CreateDevice(Box::new(CreateDevice {
            id: DeviceId::new(device).unwrap(),
            identity: DeviceIdentity {
                status: DeviceStatus::Enabled,
                status_reason: None,
                auth: AuthSpec::Sas,
                edge: false,
                parent: None,
            },
            twin,
            sensitive,
            refs: vec![],
            key: Default::default(),
        }));
    }
    let device = DeviceId::new(device).unwrap();
    let module = module.map(|m| ModuleId::new(m).unwrap());
    let if_match = ETag::new("AAAAAAAAAAE=").unwrap();
    match kind {
        Kind::CreateDevice => unreachable!("returned above"),
        Kind::CreateModule => Change::CreateModule(Box::new(CreateModule {
            device,
            module: module.unwrap(),
            managed_by: None,
            auth: AuthSpec::Sas,
            twin: TwinPatch::default(),
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
        })),
        Kind::UpdateDevice => Change::UpdateDevice(UpdateDevice {
            id: device,
            if_match,
            set: IdentityUpdate::default(),
            diff,
            adopt: false,
            disruptive: None,
        }),
        Kind::UpdateModule => Change::UpdateModule(UpdateModule {
            device,
            module: module.unwrap(),
            if_match,
            auth: AuthSpec::Sas,
            diff,
            adopt: false,
            disruptive: None,
        }),
        Kind::UpdateDeviceTwin
        | Kind::UpdateModuleTwin
        | Kind::ReleaseDevice
        | Kind::ReleaseModule => Change::UpdateTwin(Box::new(UpdateTwin {
            address: TwinAddress { device, module },
            if_match,
            base: OwnedValues::default(),
            target: OwnedValues::default(),
            patch: TwinPatch::default(),
            diff,
            ignore: vec![],
            sensitive: vec![],
            refs: vec![],
            key: Default::default(),
            adopted: vec![],
            released: vec![],
            forced: vec![],
        })),
        Kind::DeleteModule => Change::DeleteModule(DeleteModule {
            device,
            module: module.unwrap(),
            if_match,
        }),
        Kind::DeleteDevice => Change::DeleteDevice(DeleteDevice {
            id: device,
            if_match,
            modules: vec![],
        }),
        other => unreachable!("{other:?} is a managed object's kind, not a twin change's"),
    }
}

fn fd(
    path: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> FieldDiff {
    FieldDiff {
        path: path.into(),
        before,
        after,
    }
}

fn sample() -> Plan {
    Plan {
        format_version: 1,
        hub: "contoso.azure-devices.net".into(),
        owner: Owner::new("berlin-plant").unwrap(),
        manifest_digest: Digest::new("ab".repeat(32)).unwrap(),
        summary: Summary {
            create: 1,
            update: 2,
            delete: 1,
            unchanged: 7,
            conflicts: 1,
            ..Summary::default()
        },
        changes: vec![
            change(
                Kind::CreateDevice,
                "therm-001",
                None,
                vec![
                    fd("tags.site", None, Some(json!("berlin"))),
                    fd(
                        "desired.apiToken",
                        None,
                        Some(json!("(sensitive) sha256:00ff")),
                    ),
                ],
            ),
            change(
                Kind::UpdateModuleTwin,
                "myFirstDevice",
                Some("myFirstModule"),
                vec![
                    fd(
                        "desired.telemetryInterval",
                        Some(json!(60)),
                        Some(json!(122)),
                    ),
                    fd(
                        "desired.thresholds",
                        Some(json!({"high": 28.5, "low": 16})),
                        Some(json!({"high": 30, "low": 16})),
                    ),
                    fd("desired.legacy", Some(json!(true)), None),
                ],
            ),
            change(
                Kind::UpdateDevice,
                "gateway-1",
                None,
                vec![fd(
                    "status",
                    Some(json!("enabled")),
                    Some(json!("disabled")),
                )],
            ),
            change(Kind::DeleteModule, "therm-002", Some("old"), vec![]),
        ],
        conflicts: vec![Conflict {
            address: TwinAddress::device(DeviceId::new("therm-003").unwrap()),
            reason: "owned by `munich-plant` (use --adopt to take it over)".into(),
            keys: vec![],
        }],
        requests: Default::default(),
        estimated_apply_seconds: None,
        estimated_read_seconds: None,
        read_seconds: None,
        scope: None,
        no_longer_declared: vec![],
        rollout: None,
        warnings: vec![],
        read: None,
        digest_key: None,
        objects: Default::default(),
        awaiting: vec![],
    }
}

fn text(p: &Plan) -> String {
    let mut b = Vec::new();
    twinops_core::render::text::plan(&mut b, p).unwrap();
    String::from_utf8(b).unwrap()
}

fn markdown(p: &Plan) -> String {
    let mut b = Vec::new();
    twinops_core::render::markdown::plan(&mut b, p).unwrap();
    String::from_utf8(b).unwrap()
}

#[test]
fn text_plan_reads_like_terraform() {
    insta::assert_snapshot!(text(&sample()));
}

#[test]
fn text_plan_without_changes_says_so() {
    let mut p = sample();
    p.changes.clear();
    p.conflicts.clear();
    p.summary = Summary {
        unchanged: 12,
        ..Summary::default()
    };
    insta::assert_snapshot!(text(&p), @"No changes. 12 twins match the manifests.");
}

#[test]
fn markdown_plan_has_a_summary_table_and_collapsed_details() {
    insta::assert_snapshot!(markdown(&sample()));
}

#[test]
fn markdown_plan_of_a_thousand_changes_fits_one_comment() {
    let mut p = sample();
    p.changes = (0..1000)
        .map(|i| {
            change(
                Kind::UpdateDeviceTwin,
                &format!("therm-{i:04}"),
                None,
                vec![
                    fd(
                        "desired.telemetryInterval",
                        Some(json!(60)),
                        Some(json!(122)),
                    ),
                    fd(
                        "desired.thresholds",
                        Some(json!({"high": 28.5, "low": 16, "note": "x".repeat(40)})),
                        Some(json!({"high": 30})),
                    ),
                ],
            )
        })
        .collect();
    // Identical changes are one block unless expanded ...
    let grouped = markdown(&p);
    assert!(grouped.contains("update 1,000 device twins"), "{grouped}");
    assert!(grouped.contains("therm-0000, therm-0001, therm-0002, … and 997 more"));
    assert!(!grouped.contains("**Truncated:**"));
    // ... and expanded, the plan is truncated to fit one comment.
    let mut b = Vec::new();
    twinops_core::render::markdown::plan_with(&mut b, &p, true).unwrap();
    let md = String::from_utf8(b).unwrap();
    assert!(
        md.chars().count() < 65_536,
        "{} characters",
        md.chars().count()
    );
    assert!(
        md.contains("**Truncated:**"),
        "a 1,000-change plan should be truncated"
    );
    assert!(
        md.contains("plan.json"),
        "the note points to the JSON artifact"
    );
}

/// The sample plan with a rollout of three waves over a device twin and twelve more.
fn with_rollout() -> Plan {
    let mut p = sample();
    let rest: Vec<String> = (4..16).map(|i| format!("therm-{i:03}")).collect();
    p.rollout = Some(
        serde_json::from_value(json!({
            "id": "3f".repeat(32),
            "waves": [
                {"index": 0, "step": "first", "twins": ["canary-1", "canary-1/sensor"]},
                {"index": 1, "step": "25%", "twins": ["myFirstDevice/myFirstModule", "therm-003"]},
                {"index": 2, "step": "100%", "twins": rest},
            ],
            "bake_seconds": 120,
            "timeout_seconds": 600,
            "halt": {"rejected": "0%", "pending": "5%"},
            "on_halt": "revert",
        }))
        .unwrap(),
    );
    p
}

#[test]
fn text_plan_shows_one_line_per_wave() {
    insta::assert_snapshot!(text(&with_rollout()));
}

#[test]
fn markdown_plan_shows_a_wave_table() {
    insta::assert_snapshot!(markdown(&with_rollout()));
}

#[test]
fn json_plan_has_a_rollout_only_when_the_manifests_have_one() {
    let plain = serde_json::to_value(sample()).unwrap();
    assert!(plain.get("rollout").is_none(), "{plain}");
    // A plan saved before rollouts existed reads back as a plan without one.
    let old: SavedPlan = serde_json::from_value(plain).unwrap();
    assert_eq!(old, sample().to_saved());

    let rolled = serde_json::to_value(with_rollout()).unwrap();
    assert_eq!(
        rolled["rollout"]["waves"][1],
        json!({"index": 1, "step": "25%", "twins": ["myFirstDevice/myFirstModule", "therm-003"]})
    );
    let keys: Vec<&str> = rolled["rollout"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "waves",
            "bake_seconds",
            "timeout_seconds",
            "halt",
            "on_halt"
        ]
    );
    assert_eq!(rolled["rollout"]["bake_seconds"], json!(120.0));
    assert_eq!(
        rolled["rollout"]["halt"],
        json!({"rejected": "0%", "pending": "5%"})
    );
    assert_eq!(rolled["rollout"]["on_halt"], json!("revert"));
    let back: SavedPlan = serde_json::from_value(rolled).unwrap();
    assert_eq!(back, with_rollout().to_saved());
}

#[test]
fn text_apply_report_lists_every_outcome() {
    let o = |kind, dev: &str, status, reason: Option<Reason>, keys: Vec<&str>| Outcome {
        kind,
        address: Address::Twin(dev.parse().unwrap()),
        status,
        reason,
        keys: keys.into_iter().map(str::to_string).collect(),
    };
    let r = Report {
        outcomes: vec![
            o(
                Kind::CreateDevice,
                "therm-001",
                Status::Applied,
                None,
                vec![],
            ),
            o(
                Kind::CreateDevice,
                "therm-002",
                Status::Adopted,
                Some(Reason::ExistedContentApplied),
                vec![],
            ),
            o(
                Kind::UpdateDeviceTwin,
                "therm-003",
                Status::Conflict,
                Some(Reason::OwnedKeysChanged),
                vec!["desired.telemetryInterval"],
            ),
            o(
                Kind::UpdateDeviceTwin,
                "therm-004",
                Status::Unchanged,
                Some(Reason::AlreadyAtTarget),
                vec![],
            ),
        ],
        interrupted: false,
        rollout: None,
        wait: None,
    };
    let mut b = Vec::new();
    twinops_core::render::text::report(&mut b, &r).unwrap();
    insta::assert_snapshot!(String::from_utf8(b).unwrap());
}

#[test]
fn text_apply_report_of_a_halted_rollout_shows_the_waves_and_the_rejecting_twins() {
    use twinops_core::report::{
        GateTwin, HaltReason, HaltReport, RolloutReport, WaveReport, WaveState,
    };
    let o = |dev: &str, status| {
        Outcome::new(
            Kind::UpdateDeviceTwin,
            dev.parse::<TwinAddress>().unwrap(),
            status,
        )
    };
    let wave = |index, twins, acknowledged, rejected, pending, state| WaveReport {
        index,
        twins,
        acknowledged,
        rejected,
        pending,
        state,
        earlier: false,
        polls: 1,
        gets: twins,
        query_pages: 0,
    };
    let r = Report {
        outcomes: vec![
            o("therm-001", Status::Reverted),
            o("therm-002", Status::Reverted),
        ],
        interrupted: false,
        wait: None,
        rollout: Some(RolloutReport {
            id: "0123456789abcdef".repeat(4),
            waves: vec![
                wave(0, 2, 1, 1, 0, WaveState::Failed),
                wave(1, 18, 0, 0, 0, WaveState::NotStarted),
            ],
            halted: Some(HaltReport {
                wave: 0,
                reason: HaltReason::Rejected,
                message: "rollout halted at wave 0 of 2: 1 of 2 twin(s) rejected the change".into(),
            }),
            rejected: vec![GateTwin {
                address: Address::Twin("therm-002".parse().unwrap()),
                ad: Some("desired.telemetryInterval: out of range".into()),
            }],
            pending: Vec::new(),
        }),
    };
    let mut b = Vec::new();
    twinops_core::render::text::report(&mut b, &r).unwrap();
    insta::assert_snapshot!(String::from_utf8(b).unwrap());
}

#[test]
fn drift_renders_in_text_and_markdown() {
    let r = drift::Report {
        format_version: 1,
        hub: "contoso.azure-devices.net".into(),
        owner: "berlin-plant".into(),
        in_sync: false,
        counts: [
            ("changed_in_hub", 1),
            ("not_acknowledged", 1),
            ("configuration", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        items: vec![
            drift::Item {
                address: Address::Twin("therm-001".parse().unwrap()),
                class: drift::Class::ChangedInHub,
                detail: "owned values differ from the manifest".into(),
                keys: vec!["desired.telemetryInterval".into()],
            },
            drift::Item {
                address: Address::Twin("therm-002/sensor".parse().unwrap()),
                class: drift::Class::NotAcknowledged,
                detail: "desired $version 4 not reported back".into(),
                keys: vec!["desired.unit".into()],
            },
            drift::Item {
                address: Address::Twin("therm-003".parse().unwrap()),
                class: drift::Class::Configuration,
                detail: "configuration `fw-rollout` also writes these keys".into(),
                keys: vec!["desired.firmware".into()],
            },
        ],
    };
    let mut t = Vec::new();
    twinops_core::render::text::drift(&mut t, &r).unwrap();
    insta::assert_snapshot!("drift_text", String::from_utf8(t).unwrap());
    let mut m = Vec::new();
    twinops_core::render::markdown::drift(&mut m, &r).unwrap();
    insta::assert_snapshot!("drift_markdown", String::from_utf8(m).unwrap());
}

#[test]
fn a_markdown_plan_writes_creates_and_removals_as_the_text_plan_does_and_the_ledger_as_one_line() {
    let mut p = sample();
    p.changes.push(change(
        Kind::UpdateDeviceTwin,
        "therm-004",
        None,
        vec![
            fd("desired.mode", Some(json!("eco")), None),
            fd(
                "tags.twinops",
                None,
                Some(json!({"owners": {"berlin-plant": {"tags": {"site": true}}}})),
            ),
        ],
    ));
    let md = markdown(&p);
    assert!(md.contains("    + tags.site = \"berlin\""), "{md}");
    assert!(md.contains("    - desired.mode (was \"eco\")"), "{md}");
    assert!(md.contains("    ~ ownership ledger (tags.twinops)"), "{md}");
    assert!(!md.contains('∅'), "{md}");
    assert!(!md.contains("\"owners\""), "no raw ledger: {md}");
}

fn delete_device(id: &str, modules: &[&str]) -> Change {
    Change::DeleteDevice(DeleteDevice {
        id: DeviceId::new(id).unwrap(),
        if_match: ETag::new("AAAAAAAAAAE=").unwrap(),
        modules: modules.iter().map(|m| ModuleId::new(*m).unwrap()).collect(),
    })
}

#[test]
fn grouped_device_deletes_list_the_modules_deleted_with_them() {
    let mut p = sample();
    p.changes = vec![
        delete_device("old-1", &["a", "b"]),
        delete_device("old-2", &[]),
        delete_device("old-3", &["c"]),
    ];
    let t = text(&p);
    assert!(t.contains("- delete 3 devices"), "{t}");
    assert!(
        t.contains("- with their 3 module(s): old-1/a, old-1/b, old-3/c"),
        "{t}"
    );
    let md = markdown(&p);
    assert!(
        md.contains("- with their 3 module(s): old-1/a, old-1/b, old-3/c"),
        "{md}"
    );
    p.changes = vec![delete_device("old-1", &["a", "b"])];
    assert!(markdown(&p).contains("- with its 2 module(s): a, b"));
}

#[test]
fn a_truncated_markdown_plan_names_every_kind_of_change_it_leaves_out() {
    let mut p = sample();
    // Distinct updates first (they sort first), then 10,000 module creates that no block shows.
    let mut changes: Vec<Change> = (0..3000)
        .map(|i| {
            change(
                Kind::UpdateDeviceTwin,
                &format!("a-{i:04}"),
                None,
                vec![fd("desired.n", Some(json!(i)), Some(json!(i + 1)))],
            )
        })
        .collect();
    changes.extend((0..10_000).map(|i| {
        change(
            Kind::CreateModule,
            &format!("z-{:04}", i / 10),
            Some(&format!("m{i}")),
            vec![],
        )
    }));
    p.changes = changes;
    let md = markdown(&p);
    assert!(md.contains("**Truncated:**"), "{}", md.len());
    let note = md.lines().find(|l| l.contains("**Truncated:**")).unwrap();
    assert!(note.contains("10,000 create modules"), "{note}");
    assert!(note.contains("update device twins"), "{note}");
}

/// A device update with the same diff as another: disruptive or not, adopting or not.
fn demotion(id: &str, disruptive: bool, adopt: bool) -> Change {
    match change(
        Kind::UpdateDevice,
        id,
        None,
        vec![fd("iotEdge", Some(json!(true)), Some(json!(false)))],
    ) {
        Change::UpdateDevice(mut u) => {
            u.disruptive = disruptive.then_some(twinops_core::plan::Disruption::ChildrenLoseParent);
            u.adopt = adopt;
            Change::UpdateDevice(u)
        }
        other => other,
    }
}

#[test]
fn identical_diffs_group_apart_when_only_some_disrupt_or_adopt() {
    let mut p = sample();
    // Only edge-a has children: its demotion disrupts them, edge-b's and edge-c's do not.
    p.changes = vec![
        demotion("edge-b", false, false),
        demotion("edge-a", true, false),
        demotion("edge-c", false, false),
        demotion("edge-d", false, true),
    ];
    let mark = "! disruptive: its child devices lose their parent";
    let t = text(&p);
    assert_eq!(t.matches(mark).count(), 1, "{t}");
    // The mark is on edge-a's own block, right under its head line.
    assert!(
        t.contains(&format!("~ update device identity edge-a\n      {mark}\n")),
        "{t}"
    );
    assert!(
        t.contains("~ update 2 device identitys\n      (edge-b, edge-c)"),
        "{t}"
    );
    assert!(t.contains("~ update device identity edge-d (adopt)"), "{t}");
    let md = markdown(&p);
    assert_eq!(md.matches(mark).count(), 1, "{md}");
    assert!(
        md.contains("~ update device identity edge-a\n  ! disruptive"),
        "{md}"
    );
    assert!(
        md.contains("~ update device identity edge-d (adopt)"),
        "{md}"
    );
}
