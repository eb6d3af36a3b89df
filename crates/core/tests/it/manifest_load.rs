//! What a valid manifest set loads into: layering, ranges, substitution, sizes, ordering, digest and `read`.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use serde_json::{Value, json};
use twinops_core::manifest::{self, Source};
use twinops_core::model::{AuthSpec, DeviceSpec, DeviceStatus, Fleet, PropertyPath, Section};

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(path, text)| Source {
            path: path.to_string(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect()
}

fn load(files: &[(&str, &str)]) -> Fleet {
    match manifest::load(&sources(files), &manifest::NoEnv) {
        Ok(fleet) => fleet,
        Err(errors) => panic!("expected a valid set, got:\n{errors}"),
    }
}

fn device<'a>(fleet: &'a Fleet, id: &str) -> &'a DeviceSpec {
    fleet
        .devices
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no device {id}"))
}

fn obj(v: Value) -> twinops_core::model::JsonMap {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn path(section: Section, keys: &[&str]) -> PropertyPath {
    PropertyPath {
        section,
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

#[test]
fn example_fleet_loads() {
    let read = manifest::read(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")])
        .expect("manifests/ is readable");
    let fleet = manifest::load(&read, &manifest::NoEnv).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fleet.owner, "berlin-plant");
    let first = device(&fleet, "myFirstDevice");
    let module = &first.modules[0];
    assert_eq!(module.id, "myFirstModule");
    assert_eq!(
        module.twin.desired.to_map()["telemetryInterval"],
        json!(122)
    );
    assert_eq!(
        fleet
            .devices
            .iter()
            .filter(|d| d.id.starts_with("therm-"))
            .count(),
        20
    );
    let therm = device(&fleet, "therm-007");
    assert_eq!(therm.twin.tags.to_map()["name"], json!("therm-007"));
    assert_eq!(therm.modules.len(), 2);
    assert_eq!(
        therm.twin.sensitive,
        [path(Section::Desired, &["apiToken"])]
    );
    assert_eq!(
        therm.twin.ignore,
        [path(Section::Desired, &["calibration", "offset"])]
    );
    assert_eq!(
        device(&fleet, "hall-sensor-1").parent.as_deref(),
        Some("gateway-1")
    );
    assert_eq!(device(&fleet, "gateway-1").edge, Some(true));
}

#[test]
fn templates_apply_in_order_then_device_fields() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  base: {status: disabled, statusReason: maintenance, tags: {a: base, b: base}}
  second: {tags: {b: second, c: second}, edge: true}
devices:
  d1:
    templates: [base, second]
    tags: {c: own}
",
    )]);
    let d = device(&fleet, "d1");
    assert_eq!(
        d.twin.tags.to_map(),
        obj(json!({"a": "base", "b": "second", "c": "own"}))
    );
    assert_eq!(d.status, Some(DeviceStatus::Disabled));
    assert_eq!(d.status_reason.as_deref(), Some("maintenance"));
    assert_eq!(d.edge, Some(true));
}

#[test]
fn extends_apply_before_the_template_and_a_shared_base_applies_once() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  base: {desired: {x: base, y: base}}
  a: {extends: [base], desired: {x: a}}
  b: {extends: [base], desired: {y: b}}
devices:
  d1: {templates: [a, b]}
",
    )]);
    assert_eq!(
        device(&fleet, "d1").twin.desired.to_map(),
        obj(json!({"x": "a", "y": "b"}))
    );
}

#[test]
fn objects_merge_deeply_scalars_and_arrays_replace_and_null_removes() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  t:
    desired:
      nested: {keep: 1, drop: 2, deeper: {a: 1, b: 2}}
      list: [1, 2, 3]
      gone: yes
devices:
  d1:
    templates: [t]
    desired:
      nested: {drop: null, deeper: {b: 3}, added: {n: null, m: 1}}
      list: [9]
      gone: null
",
    )]);
    assert_eq!(
        device(&fleet, "d1").twin.desired.to_map(),
        obj(json!({
            "nested": {"keep": 1, "deeper": {"a": 1, "b": 3}, "added": {"m": 1}},
            "list": [9]
        }))
    );
}

#[test]
fn null_fields_fall_back_to_defaults() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  t: {status: disabled, parent: gw, tags: {a: 1}, auth: ca}
devices:
  d1: {templates: [t], status: null, parent: null, tags: null, auth: null}
",
    )]);
    let d = device(&fleet, "d1");
    // `null` removes a template's declaration: the field is not declared (SPEC §15), so it is not
    // managed, and only a create gives it its default.
    assert_eq!(d.status, None);
    assert_eq!(d.parent, None);
    assert!(d.twin.tags.to_map().is_empty());
    assert_eq!(d.auth, None);
}

#[test]
fn modules_merge_per_module_id_and_null_removes_one() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  t:
    modules:
      sensor: {desired: {interval: 60, unit: c}, managedBy: ops}
      old: {}
devices:
  d1:
    templates: [t]
    modules:
      sensor: {desired: {interval: 5}}
      old: null
      extra: {auth: {x509: {primary: 0123456789abcdef0123456789abcdef01234567}}}
",
    )]);
    let d = device(&fleet, "d1");
    let ids: Vec<&str> = d.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["extra", "sensor"]);
    assert_eq!(
        d.modules[1].twin.desired.to_map(),
        obj(json!({"interval": 5, "unit": "c"}))
    );
    assert_eq!(d.modules[1].managed_by.as_deref(), Some("ops"));
    assert_eq!(
        d.modules[0].auth.clone().unwrap(),
        AuthSpec::X509 {
            primary: "0123456789abcdef0123456789abcdef01234567".into(),
            secondary: None
        }
    );
}

#[test]
fn ignore_and_sensitive_lists_concatenate_without_duplicates() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  t: {ignore: [desired.a, tags.b], sensitive: [desired.token]}
devices:
  d1: {templates: [t], ignore: [desired.a, desired.c.d], sensitive: [desired.token]}
",
    )]);
    let d = device(&fleet, "d1");
    assert_eq!(
        d.twin.ignore,
        [
            path(Section::Desired, &["a"]),
            path(Section::Tags, &["b"]),
            path(Section::Desired, &["c", "d"])
        ]
    );
    assert_eq!(d.twin.sensitive, [path(Section::Desired, &["token"])]);
}

#[test]
fn range_keeps_zero_padding() {
    let fleet = load(&[("a.yaml", "devices:\n  \"therm-{008..011}\": {}\n")]);
    let ids: Vec<&str> = fleet.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["therm-008", "therm-009", "therm-010", "therm-011"]);
}

#[test]
fn range_without_padding_counts_from_its_start() {
    let fleet = load(&[("a.yaml", "devices:\n  \"{1..12}-unit\": {}\n")]);
    assert_eq!(fleet.devices.len(), 12);
    assert!(fleet.devices.iter().any(|d| d.id == "12-unit"));
    assert!(fleet.devices.iter().any(|d| d.id == "1-unit"));
}

#[test]
fn substitution_expands_device_and_module_at_any_depth() {
    let fleet = load(&[(
        "a.yaml",
        "templates:
  t:
    tags: {name: \"${device}\", deep: {list: [\"x-${device}\", {k: \"${device}!\"}]}}
    modules:
      m1: {desired: {path: \"/${device}/${module}\", literal: \"$${device} costs $5\"}}
devices:
  \"d{1..2}\": {templates: [t]}
",
    )]);
    let d = device(&fleet, "d2");
    assert_eq!(
        d.twin.tags.to_map(),
        obj(json!({"name": "d2", "deep": {"list": ["x-d2", {"k": "d2!"}]}}))
    );
    assert_eq!(
        d.modules[0].twin.desired.to_map(),
        obj(json!({"path": "/d2/m1", "literal": "${device} costs $5"}))
    );
}

#[test]
fn devices_and_modules_are_sorted_by_id() {
    let fleet = load(&[
        ("b.yaml", "devices:\n  zeta: {modules: {b: {}, a: {}}}\n"),
        ("a.yaml", "devices:\n  alpha: {}\n  Mid: {}\n"),
    ]);
    let ids: Vec<&str> = fleet.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["Mid", "alpha", "zeta"]);
    let modules: Vec<&str> = device(&fleet, "zeta")
        .modules
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(modules, ["a", "b"]);
}

#[test]
fn owner_defaults_to_default() {
    assert_eq!(load(&[("a.yaml", "devices: {d: {}}\n")]).owner, "default");
}

#[test]
fn several_documents_in_one_file_form_one_set() {
    let fleet = load(&[(
        "a.yaml",
        "owner: o\n---\ntemplates: {t: {tags: {a: 1}}}\n---\ndevices: {d: {templates: [t]}}\n---\n# empty\n",
    )]);
    assert_eq!(fleet.owner, "o");
    assert_eq!(device(&fleet, "d").twin.tags.to_map(), obj(json!({"a": 1})));
}

#[test]
fn ten_nested_objects_with_a_value_in_the_tenth_are_accepted() {
    // `top` and ten `k`: eleven key levels, ten objects inside `desired` (IoT Hub's limit).
    let value = "{k: ".repeat(10) + "1" + &"}".repeat(10);
    let fleet = load(&[(
        "a.yaml",
        &format!("devices:\n  d:\n    desired: {{top: {value}}}\n"),
    )]);
    let mut at = &device(&fleet, "d").twin.desired.to_map()["top"];
    for _ in 0..10 {
        at = &at["k"];
    }
    assert_eq!(at, &json!(1));
}

#[test]
fn arrays_add_no_depth_to_twin_objects() {
    // Ten objects, each inside an array, and arrays nested twelve deep: both within IoT Hub's rule.
    let objects = "[{k: ".repeat(10) + "1" + &"}]".repeat(10);
    let arrays = "[".repeat(12) + "1" + &"]".repeat(12);
    load(&[(
        "a.yaml",
        &format!("devices:\n  d:\n    desired: {{a: {objects}, b: {arrays}}}\n"),
    )]);
}

#[test]
fn empty_and_non_ascii_twin_keys_are_accepted() {
    let fleet = load(&[(
        "a.yaml",
        "devices:\n  d:\n    tags: {\"\": 1, größe: {\"\": x}}\n    desired: {温度: 21, \"\": {\"\": true}}\n",
    )]);
    let d = device(&fleet, "d");
    assert_eq!(d.twin.tags.to_map()[""], json!(1));
    assert_eq!(d.twin.tags.to_map()["größe"], json!({"": "x"}));
    assert_eq!(d.twin.desired.to_map()["温度"], json!(21));
    assert_eq!(d.twin.desired.to_map()[""], json!({"": true}));
}

#[test]
fn integers_at_the_limits_are_accepted() {
    let fleet = load(&[(
        "a.yaml",
        "devices:\n  d: {desired: {min: -4503599627370495, max: 4503599627370495, f: 1.5e3, one: 1, oneFloat: 1.0}}\n",
    )]);
    let desired = &device(&fleet, "d").twin.desired.to_map();
    assert_eq!(desired["max"], json!(4503599627370495_i64));
    assert_eq!(desired["min"], json!(-4503599627370495_i64));
    // `1` and `1.0` stay what they are written as, as IoT Hub keeps them.
    assert_eq!(serde_json::to_string(&desired["one"]).unwrap(), "1");
    assert_eq!(serde_json::to_string(&desired["oneFloat"]).unwrap(), "1.0");
}

#[test]
fn tags_that_fit_with_the_ledger_are_accepted() {
    // The ledger as compact JSON, `,"twinops":{"version":2,"owners":{"o":{"fields":{},"tags":
    // {"t":true,"u":true},"desired":{}}}}`: 93 bytes; the tags: "t" 1 + 4049 + "u" 1 + 4048 = 8099
    // bytes; together exactly 8192.
    let (t, u) = ("x".repeat(4049), "y".repeat(4048));
    load(&[(
        "a.yaml",
        &format!("owner: o\ndevices:\n  d: {{tags: {{t: {t}, u: {u}}}}}\n"),
    )]);
}

#[test]
fn tags_one_byte_over_with_the_ledger_are_rejected() {
    let (t, u) = ("x".repeat(4049), "y".repeat(4049));
    let errors = manifest::load(
        &sources(&[(
            "a.yaml",
            &format!("owner: o\ndevices:\n  d: {{tags: {{t: {t}, u: {u}}}}}\n"),
        )]),
        &manifest::NoEnv,
    )
    .expect_err("over by one byte");
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0]
            .message
            .contains("8193 bytes with the twinops ledger"),
        "{errors}"
    );
}

#[test]
fn with_a_rollout_block_the_tags_leave_room_for_the_rollouts_mark() {
    // Fits with the ledger alone (8,192 bytes, as above), not with the mark a wave writes.
    let (t, u) = ("x".repeat(4049), "y".repeat(4048));
    let text = format!(
        "owner: o\nrollout: {{waves: [100%]}}\ndevices:\n  d: {{tags: {{t: {t}, u: {u}}}}}\n"
    );
    let errors = manifest::load(&sources(&[("a.yaml", &text)]), &manifest::NoEnv)
        .expect_err("no room for the mark");
    assert_eq!(errors.0.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!((e.location.line, e.location.column), (4, 3), "{errors}");
    assert!(
        e.message
            .contains("with the twinops ledger and the rollout's mark"),
        "{errors}"
    );
    // Room for the mark: ~150 bytes less.
    let (t, u) = ("x".repeat(3950), "y".repeat(3950));
    load(&[(
        "a.yaml",
        &format!(
            "owner: o\nrollout: {{waves: [100%]}}\ndevices:\n  d: {{tags: {{t: {t}, u: {u}}}, desired: {{k: 1}}}}\n"
        ),
    )]);
}

#[test]
fn digest_ignores_source_order_and_follows_content() {
    let a = load(&[
        ("a.yaml", "devices: {a: {}}\n"),
        ("b.yaml", "devices: {b: {}}\n"),
    ]);
    let b = load(&[
        ("b.yaml", "devices: {b: {}}\n"),
        ("a.yaml", "devices: {a: {}}\n"),
    ]);
    let c = load(&[
        ("a.yaml", "devices: {a: {}}\n"),
        ("b.yaml", "devices: {b: {}} \n"),
    ]);
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.digest, c.digest);
    assert_eq!(a.digest.len(), 64);
}

#[test]
fn errors_are_complete_and_sorted_by_place() {
    let errors = manifest::load(
        &sources(&[
            ("b.yaml", "devices:\n  d2: {status: off}\n  d3: {edge: 1}\n"),
            ("a.yaml", "devices:\n  d1: {bogus: 1}\n"),
        ]),
        &manifest::NoEnv,
    )
    .expect_err("three problems");
    let places: Vec<String> = errors.0.iter().map(|d| d.location.to_string()).collect();
    assert_eq!(places, ["a.yaml:2:8", "b.yaml:2:16", "b.yaml:3:14"]);
}

#[test]
fn read_walks_directories_in_sorted_order_and_takes_named_files_as_they_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("sub/deeper")).expect("dirs");
    for (name, text) in [
        ("b.yaml", "devices: {b: {}}\n"),
        ("a.yml", "devices: {a: {}}\n"),
        ("notes.txt", "not a manifest"),
        ("sub/deeper/c.yaml", "devices: {c: {}}\n"),
        (".hidden.yaml", "devices: {h: {}}\n"),
        ("extra.conf", "devices: {e: {}}\n"),
    ] {
        std::fs::write(root.join(name), text).expect("write");
    }
    let sources = manifest::read(&[root.to_path_buf(), root.join("extra.conf")]).expect("read");
    let names: Vec<String> = sources
        .iter()
        .map(|s| {
            s.path
                .strip_prefix(&*root.to_string_lossy())
                .unwrap_or(&s.path)
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["/a.yml", "/b.yaml", "/sub/deeper/c.yaml", "/extra.conf"]
    );
    assert_eq!(
        manifest::load(&sources, &manifest::NoEnv).map(|f| f.devices.len()),
        Ok(4)
    );
}

#[test]
fn read_names_a_missing_path() {
    let err = manifest::read(&[PathBuf::from("no/such/manifests")]).expect_err("missing");
    assert!(err.to_string().contains("no/such/manifests"), "{err}");
}

#[test]
fn read_stops_an_oversized_file_early_and_load_reports_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("huge.yaml");
    let mut text = String::from("devices:\n  d:\n    desired:\n      blob: |\n");
    let line = format!("        {}\n", "x".repeat(1000));
    while text.len() <= manifest::MAX_FILE_BYTES + 4096 {
        text.push_str(&line);
    }
    std::fs::write(&file, &text).expect("write");
    let sources = manifest::read(&[file]).expect("read");
    assert_eq!(sources[0].bytes.len(), manifest::MAX_FILE_BYTES + 1);
    let errors = manifest::load(&sources, &manifest::NoEnv).expect_err("too large");
    assert!(errors.0[0].location.to_string().ends_with("huge.yaml:1:1"));
    assert!(
        errors.0[0].message.contains("larger than 16 MiB"),
        "{errors}"
    );
}

#[test]
fn string_limit_counts_utf8_bytes_as_the_hub_does() {
    // 3,000 characters but 6,000 bytes: the hub refuses it, so validation must too.
    let long = "ü".repeat(3000);
    let errors = manifest::load(
        &sources(&[(
            "a.yaml",
            &format!("devices:\n  d1:\n    desired: {{note: \"{long}\"}}\n"),
        )]),
        &manifest::NoEnv,
    )
    .unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("string value is 6000 bytes long"),
        "{errors}"
    );
    // The section size rule is the emulator's own (`iothub::twin_rules::size`).
    let ok = load(&[(
        "a.yaml",
        "devices:\n  d1:\n    desired: {k: \"abc\", n: 1, b: true}\n",
    )]);
    let d = &ok.devices[0].twin.desired.to_map();
    assert_eq!(twinops_iothub::twin_rules::size(d), 1 + 3 + 1 + 8 + 1 + 4);
}

#[test]
fn rollout_block_loads_with_its_settings() {
    use std::time::Duration;
    use twinops_core::model::{OnHalt, Share, Step};
    let fleet = load(&[
        (
            "a.yaml",
            "owner: o\nrollout:\n  waves: [5%, 12.5%, 100%]\n  first: {tags: {ring: canary, tier: 1}}\n  bake: 2m\n  timeout: 90\n  halt: {rejected: 2.5%, pending: 10%}\n  on_halt: revert\n",
        ),
        ("b.yaml", "devices:\n  d1: {tags: {ring: canary}}\n"),
    ]);
    let r = fleet.rollout.expect("a rollout block");
    let share = |t| Share::parse(t).unwrap();
    assert_eq!(
        r.waves,
        [
            Step::Share(share("5%")),
            Step::Share(share("12.5%")),
            Step::Share(share("100%"))
        ]
    );
    assert_eq!(r.first, Some(obj(json!({"ring": "canary", "tier": 1}))));
    assert_eq!(r.bake, Duration::from_secs(120));
    assert_eq!(r.timeout, Duration::from_secs(90));
    assert_eq!(r.halt.rejected, share("2.5%"));
    assert_eq!(r.halt.pending, share("10%"));
    assert_eq!(r.on_halt, OnHalt::Revert);
    assert_eq!(r.location.to_string(), "a.yaml:2:1");
}

#[test]
fn rollout_settings_default_as_the_spec_says() {
    use std::time::Duration;
    use twinops_core::model::{OnHalt, Share, Step};
    let fleet = load(&[("a.yaml", "rollout:\n  waves: [10, 100, all]\n")]);
    let r = fleet.rollout.expect("a rollout block");
    assert_eq!(r.waves, [Step::Count(10), Step::Count(100), Step::All]);
    assert_eq!(r.first, None);
    assert_eq!(r.bake, Duration::ZERO);
    assert_eq!(r.timeout, Duration::from_secs(600));
    assert_eq!(
        (r.halt.rejected, r.halt.pending),
        (Share::ZERO, Share::ZERO)
    );
    assert_eq!(r.on_halt, OnHalt::Stop);
    assert_eq!(load(&[("a.yaml", "devices: {d1: {}}\n")]).rollout, None);
}

#[test]
fn all_may_end_a_list_of_shares() {
    use twinops_core::model::{Share, Step};
    let fleet = load(&[("a.yaml", "rollout: {waves: [1%, all]}\n")]);
    assert_eq!(
        fleet.rollout.unwrap().waves,
        [Step::Share(Share::parse("1%").unwrap()), Step::All]
    );
}

fn load_with(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Fleet, manifest::Errors> {
    let vars: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |name: &str| vars.get(name).cloned();
    manifest::load(&sources(files), &env)
}

#[test]
fn a_secret_reference_takes_the_variable_and_its_path_becomes_sensitive() {
    let fleet = load_with(
        &[(
            "a.yaml",
            concat!(
                "templates:\n",
                "  t: {desired: {auth: {token: \"${env:API_TOKEN}\"}}, sensitive: [desired.pin]}\n",
                "devices:\n",
                "  \"d-{1..3}\":\n",
                "    templates: [t]\n",
                "    tags: {name: \"${device}\", key: \"${env:SITE_KEY}\"}\n",
                "    desired: {pin: 1234}\n",
                "    modules:\n",
                "      m: {desired: {secret: \"${env:API_TOKEN}\", plain: \"${module}\"}}\n",
            ),
        )],
        &[("API_TOKEN", "t0k3n-${device}"), ("SITE_KEY", "k3y")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = device(&fleet, "d-2");
    // The value as the variable holds it: no substitution inside it.
    assert_eq!(
        d.twin.desired.to_map()["auth"],
        json!({"token": "t0k3n-${device}"})
    );
    assert_eq!(
        d.twin.tags.to_map(),
        obj(json!({"name": "d-2", "key": "k3y"}))
    );
    let sensitive: Vec<String> = d.twin.sensitive.iter().map(ToString::to_string).collect();
    assert_eq!(sensitive, ["desired.pin", "tags.key", "desired.auth.token"]);
    let refs: Vec<(String, &str)> = d
        .twin
        .refs
        .iter()
        .map(|r| (r.path.to_string(), r.name.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("tags.key".to_string(), "SITE_KEY"),
            ("desired.auth.token".to_string(), "API_TOKEN")
        ]
    );
    let m = &d.modules[0].twin;
    assert_eq!(
        m.desired.to_map(),
        obj(json!({"secret": "t0k3n-${device}", "plain": "m"}))
    );
    assert_eq!(m.sensitive, [path(Section::Desired, &["secret"])]);
}

#[test]
fn an_escaped_reference_is_the_literal_text_and_not_sensitive() {
    let fleet = load_with(
        &[(
            "a.yaml",
            "devices:\n  d:\n    desired: {a: \"$${env:X}\", b: \"x $${env:X} $${device}\", c: \"$$${env:X}\"}\n",
        )],
        &[("X", "never-used")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = device(&fleet, "d");
    assert_eq!(
        d.twin.desired.to_map(),
        obj(json!({"a": "${env:X}", "b": "x ${env:X} ${device}", "c": "$${env:X}"}))
    );
    assert!(d.twin.sensitive.is_empty() && d.twin.refs.is_empty());
}

#[test]
fn the_manifest_digest_does_not_depend_on_the_variables() {
    let files = [("a.yaml", "devices:\n  d: {desired: {t: \"${env:T}\"}}\n")];
    let a = load_with(&files, &[("T", "one")]).unwrap();
    let b = load_with(&files, &[("T", "two")]).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.devices[0].twin.desired, b.devices[0].twin.desired);
}

#[test]
fn a_missing_or_empty_variable_is_an_error_at_the_value_that_names_no_value() {
    let files = [(
        "a.yaml",
        "devices:\n  d:\n    tags: {site: b}\n    desired:\n      t: \"${env:T}\"\n",
    )];
    for env in [&[][..], &[("T", "")][..]] {
        let errors = load_with(&files, env).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let d = &errors.0[0];
        assert_eq!((d.location.line, d.location.column), (5, 10), "{errors}");
        assert!(d.message.contains("environment variable `T`"), "{errors}");
    }
}

#[test]
fn each_module_of_a_range_is_sized_with_its_own_ledger_entry() {
    // Module tags one byte under the limit with a ledger entry that manages no identity field:
    // `a` fits, `b` (whose entry also names `auth`) does not, on every device of the range, and
    // the declaration is reported once, at `b`.
    let (t, u) = ("x".repeat(4045), "y".repeat(4045));
    let text = format!(
        "devices:\n  \"d-{{1..3}}\":\n    modules:\n      a: {{tags: {{t: {t}, u: {u}}}}}\n      b: {{auth: ca, tags: {{t: {t}, u: {u}}}}}\n"
    );
    let errors = manifest::load(&sources(&[("a.yaml", &text)]), &manifest::NoEnv)
        .expect_err("b has no room for its entry");
    assert_eq!(errors.0.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.location.line, 5, "{errors}");
    assert!(
        e.message.starts_with("tags of module `d-1/b` are ")
            && e.message.contains("bytes with the twinops ledger"),
        "{errors}"
    );
}
