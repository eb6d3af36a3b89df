//! The manifest JSON Schema checked by a real validator (the `jsonschema` crate, draft 2020-12): it is a
//! valid schema, every manifest the loader accepts validates, and the hostile cases that break the shape
//! (unknown keys, wrong types, bad enums, ID and twin-key syntax) are rejected. Cases that break only rules
//! spanning documents or files (duplicates, cycles, unknown templates, sizes, counts, depth) are the
//! loader's alone, and parse errors never reach the schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use twinops_core::manifest::{self, Source, schema};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> Validator {
    let schema = schema::manifest();
    jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("not a valid schema: {e}"));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// Every `*.yaml`/`*.yml` file under `dir`, as the loader reads them.
fn files(dir: &Path) -> Vec<Source> {
    manifest::read(&[dir.to_path_buf()]).unwrap()
}

/// The schema's complaints about every document of `source`; `None` when the file does not parse.
fn complaints(v: &Validator, source: &Source) -> Option<Vec<String>> {
    let documents = manifest::documents(source).ok()?;
    Some(
        documents
            .iter()
            .flat_map(|d| {
                v.iter_errors(d)
                    .map(|e| format!("{}: {e}", e.instance_path()))
            })
            .collect(),
    )
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema::manifest();
    assert_eq!(schema["$schema"], schema::DRAFT);
    assert!(jsonschema::meta::is_valid(&schema));
}

#[test]
fn every_manifest_the_loader_accepts_validates() {
    let v = validator();
    let mut checked = Vec::new();
    for dir in ["manifests", "tests/manifests"] {
        for source in files(&root().join(dir)) {
            if manifest::load(std::slice::from_ref(&source), &manifest::NoEnv).is_err() {
                continue;
            }
            let found = complaints(&v, &source).unwrap();
            assert!(found.is_empty(), "{}:\n{}", source.path, found.join("\n"));
            checked.push(source.path);
        }
    }
    // The example fleet, the valid corpus, and the halves of the multi-file hostile cases, which
    // load alone.
    assert!(checked.len() >= 3, "{checked:?}");
    assert!(checked.iter().any(|p| p.ends_with("manifests/fleet.yaml")));
    assert!(
        checked
            .iter()
            .any(|p| p.ends_with("valid/hub-objects.yaml"))
    );
}

/// A manifest that writes every key the loader knows, in each of its forms, `null` included.
const EVERY_KEY: &str = r#"
owner: berlin-plant.team_1
rollout:
  waves: [5%, 12.5%, 100%]
  first: {tags: {ring: canary}}
  bake: 2m
  timeout: 600
  halt: {rejected: 0%, pending: 2.5%}
  on_halt: revert
templates:
  base: null
  thermostat:
    extends: [base]
    status: disabled
    statusReason: "maintenance"
    auth: {x509: {primary: 0123456789abcdef0123456789ABCDEF01234567, secondary: null}}
    edge: null
    parent: null
    tags: {site: berlin, plant: {line: 1, "": empty-key-is-fine, "ü": 2}}
    desired: {telemetryInterval: 60, table: [0, 1.5, "x", {a: [1]}], off: {a: null}}
    ignore: [desired.calibration]
    sensitive: null
    modules:
      sensor: {desired: {unit: celsius}, auth: ca, managedBy: "", ignore: [tags.a.b], sensitive: []}
      old: null
devices:
  "therm-{001..250}":
    templates: [thermostat]
    tags: {name: "${device}"}
  "{1..3}-x": null
  "gw:1.a+b%c_d#e*f?g!h(i)j,k=l@m;n$o'p":
    edge: true
    auth: sas
    status: enabled
    modules: null
  child:
    parent: "gw:1.a+b%c_d#e*f?g!h(i)j,k=l@m;n$o'p"
    templates: null
    modules:
      m: {tags: {role: "${module} of ${device}"}}
---
---
devices:
  counted:
    auth: {x509: {primary: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}}
configurations:
  "thermo-1+%_*!'":
    target: "tags.kind = 'thermostat' AND properties.reported.fw = '1.2' AND deviceId != 'x'"
    priority: 2147483647
    labels: {team: platform, "a-:.+%_#*?!(),=@;'": "v-:.+%_#*?!(),=@;'", version: 2, canary: false}
    device: {desired: {interval: 30, table: [1, {a: "$${literal}"}], deep: {a: {b: 1}}}}
    metrics: {acked: "SELECT deviceId FROM devices WHERE properties.reported.interval = 30"}
  sensor:
    target: "FROM devices.modules WHERE moduleId = 'sensor-1:a' AND tags.x = 1"
    priority: 0
    labels: null
    module: {name: "sensor-1:a", desired: {unit: celsius}}
    metrics: null
  everyone: {target: "*", device: {desired: {a: 1}}}
deployments:
  base:
    target: "tags.role = 'gateway'"
    layered: false
    runtime: {edgeAgent: "agent:1.5", edgeHub: "hub:1.5"}
    labels: {team: edge}
    modules:
      "opc-ua_1:a+b%c*d?e!f(g)h,i=j@k;l'm":
        image: "opc:2.9"
        createOptions: {HostConfig: {Privileged: false, "Binds": ["/a:/b"]}, "Labels": {"com.example.x": "y"}, Nothing: null}
        env: {LOG_LEVEL: info, PORT: 8080, DEBUG: true, EMPTY: ""}
        restartPolicy: on-failure
        status: stopped
        desired: {interval: 1000}
      minimal: {image: "m:1", env: null}
    routes: {upstream: "FROM /messages/* INTO $upstream", lower: "  from /messages/* into $upstream"}
    metrics: {ok: "SELECT deviceId FROM devices WHERE properties.reported.lastDesiredStatus.code = 200"}
  bare: {target: "*", runtime: {edgeAgent: a, edgeHub: b}, modules: null, routes: null}
  layer:
    target: "tags.role = 'gateway'"
    priority: 5
    layered: true
    modules: {extra: {image: "x:1", restartPolicy: never}}
  routes-only: {target: "*", layered: true, routes: {r: "FROM /messages/* INTO $upstream"}}
---
configurations: null
deployments: null
"#;

#[test]
fn a_manifest_with_every_key_in_every_form_validates() {
    let source = Source {
        path: "every-key.yaml".into(),
        bytes: EVERY_KEY.as_bytes().to_vec(),
    };
    if let Err(e) = manifest::load(std::slice::from_ref(&source), &manifest::NoEnv) {
        panic!("the loader refuses it:\n{e}");
    }
    let found = complaints(&validator(), &source).unwrap();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The hostile cases the schema rejects, by class.
const REJECTED: &[&str] = &[
    // unknown keys
    "unknown-device-key.yaml",
    "unknown-module-key.yaml",
    "unknown-template-key.yaml",
    "unknown-top-level-key.yaml",
    "unknown-x509-key.yaml",
    // wrong types
    "desired-is-a-string.yaml",
    "device-is-a-string.yaml",
    "devices-is-a-sequence.yaml",
    "edge-is-a-string.yaml",
    "extends-holds-a-mapping.yaml",
    "ignore-is-a-string.yaml",
    "managed-by-is-a-number.yaml",
    "modules-is-a-sequence.yaml",
    "owner-is-a-number.yaml",
    "root-scalar.yaml",
    "root-sequence.yaml",
    "status-is-a-boolean.yaml",
    "tags-is-a-sequence.yaml",
    "template-list-is-a-string.yaml",
    "templates-is-a-string.yaml",
    // values outside an enum or a pattern: status, auth, owner, thumbprints, IDs, ranges, twin keys, paths
    "auth-unknown.yaml",
    "device-id-empty.yaml",
    "device-id-non-ascii.yaml",
    "device-id-too-long.yaml",
    "device-id-with-slash.yaml",
    "device-id-with-space.yaml",
    "ignore-path-empty-key.yaml",
    "ignore-path-reported.yaml",
    "ignore-path-section-only.yaml",
    "module-id-invalid.yaml",
    "module-id-too-long.yaml",
    "owner-empty.yaml",
    "owner-invalid-characters.yaml",
    "owner-too-long.yaml",
    "parent-id-invalid.yaml",
    "range-bound-too-long.yaml",
    "range-empty-bound.yaml",
    "range-letters.yaml",
    "range-negative.yaml",
    "range-two-ranges.yaml",
    "range-unclosed.yaml",
    "sensitive-path-bad-key.yaml",
    "status-invalid.yaml",
    "status-reason-too-long.yaml",
    "twin-key-too-long.yaml",
    "twin-key-with-control-character.yaml",
    "twin-key-with-dollar.yaml",
    "twin-key-with-dot.yaml",
    "twin-key-with-hash.yaml",
    "twin-key-with-space.yaml",
    "x509-thumbprint-not-hex.yaml",
    "x509-thumbprint-too-short.yaml",
    "x509-without-primary.yaml",
    // twin values: the reserved tag, `null` inside an array
    "null-in-array.yaml",
    "reserved-tag-in-module.yaml",
    "reserved-tag-in-template.yaml",
    "reserved-tag.yaml",
    // hub objects: a name outside IoT Hub's lowercase IDs, a system module's name, a base
    // deployment without its runtime
    "configuration-name-uppercase.yaml",
    "deployment-module-named-like-a-system-module.yaml",
    "deployment-without-runtime.yaml",
];

#[test]
fn the_schema_rejects_the_hostile_cases_that_break_the_shape() {
    let v = validator();
    let dir = root().join("tests/manifests/hostile");
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let mut rejected = BTreeSet::new();
    let mut must = BTreeSet::new();
    for row in expected.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = row.split('\t').collect();
        let [case, _, message] = cols[..] else {
            continue;
        };
        let found: Vec<String> = files(&dir.join(case))
            .iter()
            .filter_map(|s| complaints(&v, s))
            .flatten()
            .collect();
        if !found.is_empty() {
            rejected.insert(case.to_string());
        }
        if message.contains("unknown key") || message.contains("must be a") {
            must.insert(case.to_string());
        }
    }
    let missed: Vec<_> = must.difference(&rejected).collect();
    assert!(
        missed.is_empty(),
        "unknown keys and wrong types the schema accepts: {missed:?}"
    );
    let listed: BTreeSet<String> = REJECTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        rejected, listed,
        "the schema rejects another set of cases than REJECTED lists"
    );
}

#[test]
fn the_schema_rejects_hub_objects_of_the_wrong_shape() {
    let v = validator();
    let config = |fields: &str| format!("configurations:\n  c: {{{fields}}}");
    let deploy = |fields: &str| format!("deployments:\n  d: {{{fields}}}");
    for bad in [
        "configurations: [c]".to_string(),
        "configurations:\n  Upper: {target: '*', device: {desired: {a: 1}}}".to_string(),
        config("device: {desired: {a: 1}}"),
        config("target: '*'"),
        config("target: '*', device: {desired: {a: 1}}, module: {name: m, desired: {a: 1}}"),
        config("target: '*', device: {desired: {}}"),
        config("target: '*', device: {desired: {a: null}}"),
        config("target: '*', device: {desired: {a.b: 1}}"),
        config("target: '*', device: {}"),
        config("target: '', device: {desired: {a: 1}}"),
        config("target: '*', priority: -1, device: {desired: {a: 1}}"),
        config("target: '*', priority: 1.5, device: {desired: {a: 1}}"),
        config("target: '*', labels: {twinops-owner: x}, device: {desired: {a: 1}}"),
        config("target: '*', labels: {a: 'has space'}, device: {desired: {a: 1}}"),
        config("target: '*', module: {name: $edgeAgent, desired: {a: 1}}"),
        config("target: '*', module: {desired: {a: 1}}"),
        config(&format!(
            "target: '*', device: {{desired: {{a: 1}}}}, metrics: {{{}}}",
            (0..6)
                .map(|i| format!("m{i}: q"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        deploy("runtime: {edgeAgent: a, edgeHub: b}"),
        deploy("target: '*'"),
        deploy("target: '*', layered: false"),
        deploy("target: '*', layered: true, runtime: {edgeAgent: a, edgeHub: b}"),
        deploy("target: '*', runtime: {edgeAgent: a}"),
        deploy("target: '*', runtime: {edgeAgent: 'a b', edgeHub: b}"),
        deploy("target: '*', layered: 'yes', modules: {m: {image: a}}"),
        deploy("target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {m: {}}"),
        deploy("target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {a.b: {image: a}}"),
        deploy("target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {$edgeHub: {image: a}}"),
        deploy(
            "target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {m: {image: a, restartPolicy: sometimes}}",
        ),
        deploy(
            "target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {m: {image: a, status: paused}}",
        ),
        deploy(
            "target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {m: {image: a, createOptions: '{}'}}",
        ),
        deploy(
            "target: '*', runtime: {edgeAgent: a, edgeHub: b}, modules: {m: {image: a, env: {A: 1.5}}}",
        ),
        deploy("target: '*', runtime: {edgeAgent: a, edgeHub: b}, routes: {r: 'INTO $upstream'}"),
        deploy("target: '*', runtime: {edgeAgent: a, edgeHub: b}, version: 2"),
        format!(
            "deployments:\n  d:\n    target: '*'\n    runtime: {{edgeAgent: a, edgeHub: b}}\n    modules:\n{}",
            (0..51)
                .map(|i| format!("      m{i}: {{image: a}}\n"))
                .collect::<String>()
        ),
    ] {
        let source = Source {
            path: "bad.yaml".into(),
            bytes: bad.as_bytes().to_vec(),
        };
        assert!(
            manifest::load(std::slice::from_ref(&source), &manifest::NoEnv).is_err(),
            "the loader takes {bad}"
        );
        let found = complaints(&v, &source).unwrap();
        assert!(!found.is_empty(), "the schema takes {bad}");
    }
}

#[test]
fn the_schema_rejects_a_rollout_block_of_the_wrong_shape() {
    let v = validator();
    for bad in [
        "rollout: {waves: [100%], pace: 1}",
        "rollout: {bake: 2m}",
        "rollout: {waves: []}",
        "rollout: {waves: [0, all]}",
        "rollout: {waves: [five, all]}",
        "rollout: {waves: [100%], on_halt: pause}",
        "rollout: {waves: [100%], halt: {rejected: 5}}",
        "rollout: {waves: [100%], halt: {failed: 5%}}",
        "rollout: {waves: [100%], first: {tags: {}}}",
        "rollout: {waves: [100%], first: {devices: [a]}}",
        "rollout: {waves: [100%], bake: [2m]}",
        "rollout: null",
    ] {
        let source = Source {
            path: "bad.yaml".into(),
            bytes: bad.as_bytes().to_vec(),
        };
        assert!(
            manifest::load(std::slice::from_ref(&source), &manifest::NoEnv).is_err(),
            "the loader takes {bad}"
        );
        let found = complaints(&v, &source).unwrap();
        assert!(!found.is_empty(), "the schema takes {bad}");
    }
}

/// Twin keys and paths refuse exactly the characters the loader refuses as control characters
/// (C0, DEL, C1: `char::is_control`), and nothing else of Unicode: the schema spells them as
/// `\u` ranges that Python's `re` and ECMA-262 engines compile too (`tests/it/schema_tools.rs`).
#[test]
fn twin_keys_and_paths_refuse_exactly_the_control_characters() {
    let v = validator();
    for c in [
        '\u{0}', '\u{7}', '\u{1f}', '\u{20}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{a0}',
        'é', '\u{2028}',
    ] {
        let refused = c.is_control() || c == ' ';
        let key = format!("a{c}b");
        let document = serde_json::json!({"devices": {"d1": {
            "tags": {key.clone(): 1},
            "ignore": [format!("desired.{key}")],
        }}});
        let errors: Vec<String> = v.iter_errors(&document).map(|e| e.to_string()).collect();
        assert_eq!(
            errors.len(),
            if refused { 2 } else { 0 },
            "U+{:04X}: {errors:?}",
            c as u32
        );
    }
}
