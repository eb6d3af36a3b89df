//! The `configurations` and `deployments` blocks (SPEC §16): what a valid set loads into, and one
//! failing manifest per validation rule with the exact messages snapshotted.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use serde_json::json;
use twinops_core::manifest::{self, Source};
use twinops_core::model::{ConfigurationContent, Fleet, ModuleRunStatus, RestartPolicy};

fn sources(files: &[(&str, &[u8])]) -> Vec<Source> {
    files
        .iter()
        .map(|(path, bytes)| Source {
            path: path.to_string(),
            bytes: bytes.to_vec(),
        })
        .collect()
}

fn load(files: &[(&str, &str)]) -> Fleet {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
    match manifest::load(&sources(&files), &manifest::NoEnv) {
        Ok(fleet) => fleet,
        Err(errors) => panic!("expected a valid set, got:\n{errors}"),
    }
}

fn errors_of(files: &[(&str, &[u8])]) -> String {
    match manifest::load(&sources(files), &manifest::NoEnv) {
        Ok(_) => panic!("expected the manifest set to be rejected"),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "errors are never empty");
            errors.to_string()
        }
    }
}

/// `rule!(name, "file" => "yaml", ...)`: a test that snapshots every diagnostic of the set.
macro_rules! rule {
    ($name:ident, $($file:literal => $text:expr),+ $(,)?) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(errors_of(&[$(($file, AsRef::<[u8]>::as_ref(&$text))),+]));
        }
    };
}

/// A valid configuration with `field` added (`target` and `device` replaced when given).
fn configuration(fields: &str) -> String {
    let mut text = String::from("configurations:\n  c:\n");
    if !fields.contains("target:") {
        text.push_str("    target: \"tags.site = 'berlin'\"\n");
    }
    if !fields.contains("device:") && !fields.contains("module:") {
        text.push_str("    device: {desired: {a: 1}}\n");
    }
    for line in fields.lines() {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

/// A valid base deployment with `fields` added (`target` and `runtime` kept unless given).
fn deployment(fields: &str) -> String {
    let mut text = String::from("deployments:\n  d:\n");
    if !fields.contains("target:") {
        text.push_str("    target: \"tags.role = 'gateway'\"\n");
    }
    if !fields.contains("runtime:") && !fields.contains("layered: true") {
        text.push_str("    runtime: {edgeAgent: agent:1.5, edgeHub: hub:1.5}\n");
    }
    for line in fields.lines() {
        text.push_str(&format!("    {line}\n"));
    }
    text
}

#[test]
fn the_example_objects_load_sorted_by_name_with_their_content() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/manifests/valid/hub-objects.yaml");
    let fleet = manifest::load(&manifest::read(&[path]).unwrap(), &manifest::NoEnv)
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = fleet
        .configurations
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["sensor-units", "thermostat-telemetry"]);
    let thermostat = &fleet.configurations[1];
    assert_eq!(thermostat.priority, 10);
    assert_eq!(thermostat.labels["revision"], "3");
    assert_eq!(
        thermostat.content(),
        json!({"deviceContent": {
            "properties.desired.telemetryInterval": 30,
            "properties.desired.thresholds": {"high": 28.5, "low": 16},
        }})
    );
    assert_eq!(
        thermostat.metrics["acked"],
        "SELECT deviceId FROM devices WHERE properties.reported.telemetryInterval = 30"
    );
    assert_eq!(
        fleet.configurations[0].content,
        ConfigurationContent::Module {
            module: "sensor".into(),
            desired: json!({"unit": "celsius"}).as_object().unwrap().clone(),
        }
    );

    let names: Vec<&str> = fleet.deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["berlin-base", "berlin-metrics"]);
    let base = &fleet.deployments[0];
    assert!(!base.layered);
    let runtime = base.runtime.as_ref().unwrap();
    assert_eq!(runtime.edge_hub, "mcr.microsoft.com/azureiotedge-hub:1.5");
    let opcua = &base.modules["opcua"];
    assert_eq!(
        opcua.create_options,
        Some(json!({"HostConfig": {"Privileged": false, "Binds": ["/data:/data"]}}))
    );
    assert_eq!(opcua.desired["publishingInterval"], json!(1000));
    assert_eq!(base.routes["upstream"], "FROM /messages/* INTO $upstream");
    let layered = &fleet.deployments[1];
    assert!(layered.layered && layered.runtime.is_none());
    let collector = &layered.modules["collector"];
    assert_eq!(collector.restart_policy, RestartPolicy::OnUnhealthy);
    assert_eq!(collector.status, ModuleRunStatus::Stopped);
    assert_eq!(collector.env["ScrapeFrequencyInSecs"], "60");
    assert_eq!(collector.env["CompressForUpload"], "true");
    assert_eq!(layered.labels["team"], "observability");
    assert_eq!(layered.metrics.len(), 1);
}

#[test]
fn objects_of_several_documents_and_files_are_merged_and_sorted() {
    let fleet = load(&[
        (
            "b.yaml",
            "configurations:\n  zeta: {target: '*', device: {desired: {a: 1}}}\n---\nconfigurations:\n  alpha: {target: '*', device: {desired: {b: 2}}}\n",
        ),
        (
            "a.yaml",
            "configurations:\n  mid: {target: '*', device: {desired: {c: 3}}}\n",
        ),
    ]);
    let names: Vec<&str> = fleet
        .configurations
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    assert_eq!(fleet.configurations[0].location.to_string(), "b.yaml:5:3");
}

#[test]
fn a_configuration_and_a_deployment_may_share_a_name() {
    let fleet = load(&[(
        "a.yaml",
        &format!(
            "{}{}",
            configuration(""),
            deployment("").replace("  d:", "  c:")
        ),
    )]);
    assert_eq!(fleet.configurations[0].name, "c");
    assert_eq!(fleet.deployments[0].name, "c");
}

#[test]
fn the_defaults_are_priority_0_a_base_deployment_and_running_modules_that_always_restart() {
    let fleet = load(&[(
        "a.yaml",
        &format!(
            "{}{}",
            configuration(""),
            deployment("modules:\n  m: {image: m:1}")
        ),
    )]);
    assert_eq!(fleet.configurations[0].priority, 0);
    assert!(fleet.configurations[0].labels.is_empty());
    let d = &fleet.deployments[0];
    assert_eq!(d.priority, 0);
    assert!(!d.layered);
    let m = &d.modules["m"];
    assert_eq!(
        (m.restart_policy, m.status),
        (RestartPolicy::Always, ModuleRunStatus::Running)
    );
    assert_eq!(m.create_options, None);
}

#[test]
fn a_star_targets_every_device() {
    let fleet = load(&[("a.yaml", &configuration("target: '*'"))]);
    assert_eq!(fleet.configurations[0].target, "*");
}

#[test]
fn a_literal_dollar_brace_is_written_with_two_dollars() {
    let fleet = load(&[(
        "a.yaml",
        &configuration("device: {desired: {greeting: \"$${device} costs $5\"}}"),
    )]);
    let ConfigurationContent::Device { desired } = &fleet.configurations[0].content else {
        panic!("not device content");
    };
    assert_eq!(desired["greeting"], json!("${device} costs $5"));
}

#[test]
fn labels_and_env_values_written_as_integers_or_booleans_are_taken_as_text() {
    let fleet = load(&[(
        "a.yaml",
        &deployment(
            "labels: {version: 2, canary: false}\nmodules:\n  m: {image: m:1, env: {PORT: 8080, DEBUG: true, NAME: x}}",
        ),
    )]);
    let d = &fleet.deployments[0];
    assert_eq!(d.labels["version"], "2");
    assert_eq!(d.labels["canary"], "false");
    let env = &d.modules["m"].env;
    assert_eq!(
        (
            env["PORT"].as_str(),
            env["DEBUG"].as_str(),
            env["NAME"].as_str()
        ),
        ("8080", "true", "x")
    );
}

#[test]
fn a_module_target_may_read_module_id_and_its_twin_fields() {
    let fleet = load(&[(
        "a.yaml",
        "configurations:\n  c:\n    target: \"from devices.modules where tags.site = 'berlin' and moduleId = 'sensor' and properties.reported.ok = true\"\n    module: {name: sensor, desired: {a: 1}}\n",
    )]);
    let c = &fleet.configurations[0];
    assert_eq!(c.writes().0, Some("sensor"));
}

#[test]
fn a_target_may_be_longer_than_a_twin_string_up_to_the_query_limit() {
    // A query may be up to 8 KB; twin strings stop at 4 KB, which binds no target.
    let target = format!("tags.note = '{}'", "n".repeat(6000));
    let fleet = load(&[("a.yaml", &configuration(&format!("target: \"{target}\"")))]);
    assert_eq!(fleet.configurations[0].target, target);
}

#[test]
fn createoptions_of_exactly_4096_bytes_fit() {
    // `{"a":"` + x + `"}` is 8 bytes of JSON around the value.
    let value = "x".repeat(4096 - 8);
    let fleet = load(&[(
        "a.yaml",
        &deployment(&format!(
            "modules:\n  m: {{image: m:1, createOptions: {{a: {value}}}}}"
        )),
    )]);
    let options = fleet.deployments[0].modules["m"]
        .create_options
        .as_ref()
        .unwrap()
        .to_string();
    assert_eq!(options.len(), 4096);
}

// --- names, duplicates and the hub's caps ---

rule!(object_names_outside_the_hub_id_alphabet_are_rejected,
"a.yaml" => format!(
    "configurations:\n  Thermo: {{target: '*', device: {{desired: {{a: 1}}}}}}\n  \"with space\": {{target: '*', device: {{desired: {{a: 1}}}}}}\n  \"\": {{target: '*', device: {{desired: {{a: 1}}}}}}\ndeployments:\n  {}: {{target: '*', runtime: {{edgeAgent: a, edgeHub: b}}}}\n  \"gw.1\": {{target: '*', runtime: {{edgeAgent: a, edgeHub: b}}}}\n",
    "d".repeat(101)
));
rule!(configuration_defined_in_two_files_names_the_first_place,
    "a.yaml" => configuration(""),
    "b.yaml" => configuration(""));
rule!(deployment_defined_in_two_documents_names_the_first_place,
    "a.yaml" => format!("{}---\n{}", deployment(""), deployment("")));
rule!(more_than_100_configurations_are_rejected,
    "a.yaml" => format!("configurations:\n{}",
        (0..101).map(|i| format!("  c{i}: {{target: '*', device: {{desired: {{a: 1}}}}}}\n")).collect::<String>()));
rule!(more_than_100_deployments_are_rejected,
    "a.yaml" => format!("deployments:\n{}",
        (0..102).map(|i| format!("  d{i}: {{target: '*', runtime: {{edgeAgent: a, edgeHub: b}}}}\n")).collect::<String>()));

// --- the shape of the blocks ---

rule!(unknown_object_keys_are_rejected,
"a.yaml" => format!(
    "{}{}",
    configuration("target: \"FROM devices.modules WHERE moduleId = 'm'\"\ncontent: {}\nmodule: {name: m, desired: {a: 1}, version: 2}"),
    deployment("runtime: {edgeAgent: a, edgeHub: b, docker: c}\nmodules:\n  m: {image: m:1, type: docker}\nschemaVersion: '1.1'")
));
rule!(object_blocks_and_fields_of_the_wrong_type_are_rejected,
    "a.yaml" => "configurations: [c]\ndeployments:\n  d:\n    target: 5\n    layered: \"no\"\n    runtime: [a, b]\n    labels: [x]\n    modules: {m: {image: [m], env: [A=1], desired: [1]}}\n    routes: FROM x\n    metrics: [q]\n");
rule!(an_object_that_is_not_a_mapping_is_rejected,
    "a.yaml" => "configurations:\n  c: null\ndeployments:\n  d: \"tags.x = 1\"\n");

// --- priority, labels, target ---

rule!(negative_and_out_of_range_priorities_are_rejected,
    "a.yaml" => format!("{}{}", configuration("priority: -1"), deployment("priority: 2147483648")));
rule!(priorities_that_are_not_whole_numbers_are_rejected,
    "a.yaml" => format!("{}{}", configuration("priority: 1.5"), deployment("priority: high")));
rule!(objects_without_a_target_are_rejected,
    "a.yaml" => "configurations:\n  c: {device: {desired: {a: 1}}}\n  m: {module: {name: sensor, desired: {a: 1}}}\ndeployments:\n  d: {runtime: {edgeAgent: a, edgeHub: b}}\n");
rule!(an_empty_target_is_rejected, "a.yaml" => configuration("target: \"  \""));
rule!(target_condition_syntax_errors_name_the_character,
"a.yaml" => format!(
    "{}{}",
    configuration("target: \"tags.site = 'berlin' AND\""),
    deployment("target: \"tags.site = 'berlin\"")
));
rule!(target_condition_over_the_8_kb_query_limit_is_rejected,
    "a.yaml" => configuration(&format!("target: \"tags.note = '{}'\"", "n".repeat(8200))));
rule!(target_conditions_that_read_other_fields_than_device_id_tags_and_reported_are_rejected,
    "a.yaml" => configuration("target: \"properties.desired.x = 1 OR status = 'enabled' OR moduleId = 'm' OR properties.desired.x = 2 OR tags.ok = 1\""));
rule!(device_targets_in_the_query_form_are_rejected,
    "a.yaml" => format!("{}{}",
        configuration("target: \"FROM devices WHERE tags.site = 'berlin'\""),
        deployment("target: \"from devices.modules where moduleId = 'x'\"")));
rule!(module_targets_must_start_with_from_devices_modules_where,
    "a.yaml" => "configurations:\n  bare:\n    target: \"moduleId = 'sensor'\"\n    module: {name: sensor, desired: {a: 1}}\n  devices:\n    target: \"FROM devices WHERE moduleId = 'sensor'\"\n    module: {name: sensor, desired: {a: 1}}\n  no-where:\n    target: \"FROM devices.modules\"\n    module: {name: sensor, desired: {a: 1}}\n  bad-syntax:\n    target: \"  FROM devices.modules WHERE moduleId = \"\n    module: {name: sensor, desired: {a: 1}}\n");
rule!(module_targets_that_do_not_name_their_module_are_rejected,
    "a.yaml" => "configurations:\n  other:\n    target: \"FROM devices.modules WHERE moduleId = 'other'\"\n    module: {name: sensor, desired: {a: 1}}\n  either:\n    target: \"FROM devices.modules WHERE moduleId = 'sensor' OR tags.x = 1\"\n    module: {name: sensor, desired: {a: 1}}\n");
rule!(reserved_and_malformed_labels_are_rejected,
    "a.yaml" => format!("{}{}",
        configuration("labels: {twinops-owner: me, twinops-name: c, \"has space\": x, ok: \"$dollar\", empty: \"\"}"),
        deployment(&format!("labels: {{version: 1.5, long: {}, list: [a]}}", "v".repeat(129)))));

// --- metrics ---

rule!(metric_queries_are_parsed_with_the_query_grammar,
    "a.yaml" => configuration("metrics:\n  ok: SELECT deviceId FROM devices WHERE tags.x = 1\n  broken: \"SELECT deviceId FROM devices WHERE tags.x = \"\n  bare: \"tags.x = 1\"\n  \"bad name\": SELECT deviceId FROM devices\n  number: 5"));
rule!(more_than_five_metrics_are_rejected,
    "a.yaml" => deployment(&format!("metrics: {{{}}}",
        (0..6).map(|i| format!("m{i}: SELECT deviceId FROM devices")).collect::<Vec<_>>().join(", "))));

// --- configuration content ---

rule!(a_configuration_writes_device_or_module_content_not_both_and_not_neither,
    "a.yaml" => "configurations:\n  both:\n    target: '*'\n    device: {desired: {a: 1}}\n    module: {name: m, desired: {a: 1}}\n  neither:\n    target: '*'\n");
rule!(module_content_needs_a_custom_module_name_and_desired,
    "a.yaml" => "configurations:\n  nameless:\n    target: \"FROM devices.modules WHERE tags.x = 1\"\n    module: {desired: {a: 1}}\n  system:\n    target: \"FROM devices.modules WHERE moduleId = '$edgeAgent'\"\n    module: {name: $edgeAgent, desired: {a: 1}}\n  bad-id:\n    target: \"FROM devices.modules WHERE tags.x = 1\"\n    module: {name: \"m/1\", desired: {a: 1}}\n  empty:\n    target: \"FROM devices.modules WHERE moduleId = 'm'\"\n    module: {name: m}\n");
rule!(content_without_desired_or_with_empty_desired_is_rejected,
    "a.yaml" => "configurations:\n  no-desired: {target: '*', device: {}}\n  empty: {target: '*', device: {desired: {}}}\ndeployments:\n  d:\n    target: '*'\n    runtime: {edgeAgent: a, edgeHub: b}\n    modules: {m: {image: m:1, desired: {}}}\n");
rule!(object_desired_values_follow_the_twin_rules,
    "a.yaml" => format!("{}{}",
        configuration(&format!(
            "device:\n  desired:\n    a.b: 1\n    $meta: 2\n    big: 4503599627370496\n    inf: .inf\n    long: {}\n    deep: {}1{}",
            "v".repeat(4097), "{k: ".repeat(11), "}".repeat(11))),
        deployment("modules:\n  m: {image: m:1, desired: {\"x y\": 1, list: [1, null]}}")));
rule!(null_in_object_content_is_rejected,
    "a.yaml" => format!("{}{}",
        configuration("device: {desired: {a: null, b: {c: ~}}}"),
        deployment("modules:\n  m: {image: m:1, desired: {gone: null}}")));
rule!(configuration_desired_over_32_kb_is_rejected,
    "a.yaml" => configuration(&format!("device:\n  desired: {{{}}}",
        (0..9).map(|i| format!("k{i}: {}", "v".repeat(4000))).collect::<Vec<_>>().join(", "))));

// --- secrets and substitutions ---

rule!(secret_references_are_refused_everywhere_in_objects,
    "a.yaml" => format!("{}{}",
        configuration("target: \"${env:TARGET}\"\ndevice: {desired: {token: \"${env:API_TOKEN}\", bearer: \"Bearer ${env:API_TOKEN}\"}}\nlabels: {owner: \"${env:OWNER}\"}"),
        deployment("modules:\n  m:\n    image: \"${env:IMAGE}\"\n    env: {TOKEN: \"${env:TOKEN}\"}\n    createOptions: {Env: [\"${env:X}\"]}\n    desired: {key: \"${env:KEY}\"}\nroutes: {r: \"${env:ROUTE}\"}\nmetrics: {m: \"${env:QUERY}\"}")));
rule!(substitutions_are_refused_in_objects,
    "a.yaml" => format!("{}{}",
        configuration("device: {desired: {name: \"${device}\", mod: \"${module}\", other: \"x-${hub}\", broken: \"${device\"}}"),
        deployment("modules:\n  m: {image: \"img:${device}\", env: {ID: \"${module}\"}}")));

// --- deployments ---

rule!(a_base_deployment_needs_a_runtime_with_both_images,
    "a.yaml" => "deployments:\n  none: {target: '*'}\n  half: {target: '*', runtime: {edgeAgent: a:1}}\n  explicit:\n    target: '*'\n    layered: false\n    modules: {m: {image: m:1}}\n");
rule!(a_layered_deployment_has_no_runtime_and_adds_something,
    "a.yaml" => "deployments:\n  with-runtime:\n    target: '*'\n    layered: true\n    runtime: {edgeAgent: a, edgeHub: b}\n    modules: {m: {image: m:1}}\n  empty:\n    target: '*'\n    layered: true\n    modules: null\n");
rule!(images_must_be_non_empty_without_whitespace,
    "a.yaml" => deployment("runtime: {edgeAgent: \"\", edgeHub: \"hub 1.5\"}\nmodules:\n  m: {image: \"my image\"}\n  n: {env: {A: b}}\n  o: {image: 7}"));
rule!(module_names_must_be_custom_module_ids_that_are_twin_keys,
    "a.yaml" => deployment("modules:\n  $edgeHub: {image: a}\n  \"a.b\": {image: a}\n  \"a#b\": {image: a}\n  \"a b\": {image: a}\n  \"a/b\": {image: a}\n  ok: {image: a}"));
rule!(more_than_50_modules_in_a_deployment_are_rejected,
    "a.yaml" => deployment(&format!("modules:\n{}",
        (0..51).map(|i| format!("  m{i}: {{image: m:1}}\n")).collect::<String>())));
rule!(restart_policy_and_status_outside_their_values_are_rejected,
    "a.yaml" => deployment("modules:\n  m: {image: a, restartPolicy: sometimes, status: paused}\n  n: {image: a, restartPolicy: [always], status: true}"));
rule!(create_options_must_be_a_mapping_of_finite_json,
    "a.yaml" => deployment("modules:\n  s: {image: a, createOptions: \"{\\\"HostConfig\\\": {}}\"}\n  n: {image: a, createOptions: {Memory: .inf, Huge: 99999999999999999999999}}"));
rule!(create_options_over_4096_bytes_are_rejected,
    "a.yaml" => deployment(&format!("modules:\n  m: {{image: m:1, createOptions: {{a: {}}}}}", "x".repeat(4096 - 7))));
rule!(edge_agent_desired_over_32_kb_is_rejected,
    "a.yaml" => deployment(&format!("modules:\n{}",
        (0..9).map(|i| format!("  m{i}: {{image: m:1, createOptions: {{a: {}}}}}\n", "x".repeat(4000))).collect::<String>())));
rule!(env_names_are_twin_keys_and_values_are_text,
    "a.yaml" => deployment("modules:\n  m:\n    image: a\n    env: {\"A.B\": x, \"\": y, RATE: 1.5, MAP: {a: 1}, NONE: null, OK: fine}"));
rule!(routes_are_named_by_twin_keys_and_start_with_from,
    "a.yaml" => deployment("routes:\n  upstream: \"FROM /messages/* INTO $upstream\"\n  lower: \"from /messages/* into $upstream\"\n  into: \"INTO $upstream\"\n  empty: \"\"\n  glued: \"FROM/messages/*\"\n  \"r.1\": \"FROM /messages/* INTO $upstream\"\n  number: 5"));
