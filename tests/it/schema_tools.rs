//! The manifest JSON Schema (`schema/manifest.schema.json`) in the validators people use it with:
//! Python's `jsonschema` (draft 2020-12, format checks on, so every `pattern` must be a regex
//! Python compiles), `check-jsonschema` on the example manifests (as a CI job or pre-commit hook
//! would run it), and an ECMA-262 engine (Node: every `pattern` as `new RegExp(p, "u")`, and
//! ajv's draft 2020-12 build). The Rust validator (the `jsonschema` crate) checks the same schema
//! in `crates/core/tests/it/manifest_schema.rs`.
//!
//! Each validator gets the same documents: the example manifests, and twin keys and paths on both
//! sides of the control-character rule (C0, DEL and C1 refused, as the loader refuses them; other
//! Unicode allowed). The tools are installed by `scripts/schema-venv.sh` and
//! `scripts/schema-node.sh` under `target/`; when a registry cannot install them these tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use twinops_core::manifest::{self, Source};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_file() -> PathBuf {
    repo().join("schema/manifest.schema.json")
}

/// The example manifests, `manifests/*.yaml`.
fn example_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    files
}

/// A device with these tags and `ignore` paths.
fn device(tags: Value, ignore: Value) -> Value {
    json!({"devices": {"d1": {"tags": tags, "ignore": ignore}}})
}

/// A configuration `telemetry` of a device target with `content` (its `device` and `module` keys,
/// and a `target` of its own for module content) added.
fn configuration(content: Value) -> Value {
    let mut c = json!({"target": "tags.kind = 'thermostat'"});
    c.as_object_mut()
        .unwrap()
        .extend(content.as_object().unwrap().clone());
    json!({"owner": "platform", "configurations": {"telemetry": c}})
}

/// A deployment `edge` of the gateways with `fields` (`layered`, `runtime`) added.
fn deployment(fields: Value) -> Value {
    let mut d = json!({
        "target": "tags.role = 'gateway'",
        "modules": {"opcua": {"image": "mcr.microsoft.com/iotedge/opc-publisher:2.9"}},
    });
    d.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    json!({"owner": "platform", "deployments": {"edge": d}})
}

const RUNTIME: &str = r#"{"edgeAgent": "mcr.microsoft.com/azureiotedge-agent:1.5", "edgeHub": "mcr.microsoft.com/azureiotedge-hub:1.5"}"#;

/// What the loader says of a document (JSON is YAML).
fn loads(document: &Value) -> bool {
    let source = Source {
        path: "doc.yaml".into(),
        bytes: document.to_string().into_bytes(),
    };
    manifest::load(std::slice::from_ref(&source), &manifest::NoEnv).is_ok()
}

/// The documents every validator checks, each with whether it is valid; the control-character
/// cases are checked against the loader first, so the schema keeps the loader's meaning.
fn documents() -> Vec<Value> {
    let mut out = Vec::new();
    for file in example_manifests() {
        let source = manifest::read(std::slice::from_ref(&file))
            .unwrap()
            .remove(0);
        for (i, document) in manifest::documents(&source)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            out.push(json!({
                "name": format!("{}#{i}", file.display()),
                "document": document,
                "valid": true,
            }));
        }
    }
    let allowed = [
        (
            "a non-ASCII key",
            device(json!({"température": 1, "日本": 2}), json!([])),
        ),
        (
            "a no-break space (not a control character)",
            device(json!({"a\u{a0}b": 1}), json!(["tags.a\u{a0}b"])),
        ),
        ("an empty key", device(json!({"": 1}), json!([]))),
        (
            "a tab-free path of Unicode keys",
            device(json!({}), json!(["desired.é.ü"])),
        ),
        (
            "a device configuration",
            configuration(json!({"device": {"desired": {"interval": 30}}})),
        ),
        (
            "a module configuration",
            configuration(json!({
                "target": "FROM devices.modules WHERE moduleId = 'sensor'",
                "module": {"name": "sensor", "desired": {"interval": 30}},
            })),
        ),
        (
            "a base deployment",
            deployment(json!({"runtime": serde_json::from_str::<Value>(RUNTIME).unwrap()})),
        ),
        ("a layered deployment", deployment(json!({"layered": true}))),
    ];
    let refused = [
        ("a NUL in a key", device(json!({"a\u{0}b": 1}), json!([]))),
        (
            "a BEL in a key (C0)",
            device(json!({"a\u{7}b": 1}), json!([])),
        ),
        (
            "a unit separator in a key (C0)",
            device(json!({"a\u{1f}": 1}), json!([])),
        ),
        ("a DEL in a key", device(json!({"\u{7f}": 1}), json!([]))),
        (
            "a NEL in a key (C1)",
            device(json!({"a\u{85}b": 1}), json!([])),
        ),
        (
            "an APC in a key (C1)",
            device(json!({"\u{9f}": 1}), json!([])),
        ),
        (
            "a C0 control in a path",
            device(json!({}), json!(["desired.a\u{1}b"])),
        ),
        (
            "a C1 control in a path",
            device(json!({}), json!(["tags.a\u{85}"])),
        ),
        (
            "a configuration of both device and module content",
            configuration(json!({
                "device": {"desired": {"interval": 30}},
                "module": {"name": "sensor", "desired": {"interval": 30}},
            })),
        ),
        ("a configuration without content", configuration(json!({}))),
        (
            "a base deployment without a runtime",
            deployment(json!({"layered": false})),
        ),
        (
            "a layered deployment with a runtime",
            deployment(json!({
                "layered": true,
                "runtime": serde_json::from_str::<Value>(RUNTIME).unwrap(),
            })),
        ),
        ("a dot in a key", device(json!({"a.b": 1}), json!([]))),
        ("a space in a key", device(json!({"a b": 1}), json!([]))),
    ];
    for (valid, cases) in [(true, &allowed[..]), (false, &refused[..])] {
        for (name, document) in cases {
            assert_eq!(loads(document), valid, "the loader on {name}: {document}");
            out.push(json!({"name": name, "document": document, "valid": valid}));
        }
    }
    out
}

/// `documents()` written to a file in `dir`.
fn documents_file(dir: &Path) -> PathBuf {
    let path = dir.join("documents.json");
    std::fs::write(&path, Value::Array(documents()).to_string()).unwrap();
    path
}

/// Runs `cmd`; its stdout when it succeeds, else a panic with everything it printed.
fn output(mut cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// How many patterns and documents a checker script says it checked.
fn checked(summary: &str) -> (usize, usize) {
    let numbers: Vec<usize> = summary
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{summary}");
    (numbers[0], numbers[1])
}

#[test]
fn python_jsonschema_compiles_the_schema_with_format_checks_and_agrees_with_the_loader() {
    let bin = crate::support::sdk_setup("schema-venv.sh", "PyPI");
    let d = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin.join("python"));
    cmd.arg(repo().join("tests/schema/check_schema.py"))
        .arg(schema_file())
        .arg(documents_file(d.path()));
    let summary = output(cmd);
    let (patterns, documents) = checked(&summary);
    assert!(patterns >= 8, "{summary}");
    assert_eq!(documents, self::documents().len(), "{summary}");
}

#[test]
fn check_jsonschema_passes_the_example_manifests_and_fails_a_control_character_key() {
    let bin = crate::support::sdk_setup("schema-venv.sh", "PyPI");
    let check = |files: &[PathBuf]| {
        Command::new(bin.join("check-jsonschema"))
            .arg("--schemafile")
            .arg(schema_file())
            .args(files)
            .output()
            .expect("running check-jsonschema")
    };
    let out = check(&example_manifests());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same tool refuses a key with a C1 control character, as the loader does.
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.yaml");
    std::fs::write(&bad, "devices:\n  d1:\n    tags: {\"a\\u0085b\": 1}\n").unwrap();
    let out = check(&[bad]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bad.yaml"),
        "{out:?}"
    );
}

#[test]
fn node_compiles_every_pattern_as_a_unicode_regexp_and_ajv_agrees_with_the_loader() {
    let dir = crate::support::sdk_setup("schema-node.sh", "the npm registry");
    let d = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/schema/check_schema.js"))
        .arg(schema_file())
        .arg(documents_file(d.path()))
        .env("NODE_PATH", dir.join("node_modules"));
    let summary = output(cmd);
    let (patterns, documents) = checked(&summary);
    assert!(patterns >= 8, "{summary}");
    assert_eq!(documents, self::documents().len(), "{summary}");
}
