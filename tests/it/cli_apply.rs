//! plan/apply end to end: the real binary against a real emulator (issue: manifests, plan and apply).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::cli::{class, dir, manifests, other_writer, report, twin, twinops, twinops_env, writes};
use crate::support::{Emulator, eventually};
use serde_json::{Value, json};
use std::time::Duration;

const FLEET: &str = r#"
owner: team-a
templates:
  thermostat:
    tags: {kind: thermostat}
    desired:
      telemetryInterval: 60
      thresholds: {high: 28.5, low: 16}
    modules:
      sensor:
        desired: {telemetryInterval: 122}
devices:
  myFirstDevice:
    tags: {site: berlin}
    desired: {telemetryInterval: 30}
    modules:
      myFirstModule:
        desired: {telemetryInterval: 122}
  "therm-{01..03}":
    templates: [thermostat]
    tags: {name: "${device}"}
"#;

#[tokio::test]
async fn fleet_is_created_from_empty_and_second_apply_is_a_no_op() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("Plan: 8 to create, 0 to update, 0 to delete, 0 unchanged."),
        "{}",
        r.stdout
    );
    let t = twin(&em, "therm-02/sensor").await;
    assert_eq!(t["properties"]["desired"]["telemetryInterval"], 122);
    let t = twin(&em, "therm-02").await;
    assert_eq!(t["tags"]["name"], "therm-02");
    assert!(t["tags"]["twinops"]["owners"]["team-a"].is_object(), "{t}");
    assert_eq!(t["properties"]["desired"]["thresholds"]["high"], 28.5);

    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("No changes. 8 twins match the manifests."),
        "{}",
        r.stdout
    );
    let after = em.stats().await;
    assert_eq!(
        writes(&after),
        writes(&before),
        "a second apply must not write"
    );

    let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn editing_one_desired_value_sends_exactly_one_minimal_patch() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    manifests(
        d.path(),
        &[("fleet.yaml", &FLEET.replace("high: 28.5", "high: 30"))],
    );
    let r = twinops(
        &em,
        &[
            "plan",
            "--detailed-exitcode",
            "--format",
            "json",
            "--target",
            "therm-01",
            p,
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    let plan = r.json();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1);
    assert_eq!(
        plan["changes"][0]["patch"],
        json!({"properties": {"desired": {"thresholds": {"high": 30}}}})
    );
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let after = em.stats().await;
    // Three thermostats changed: three twin writes and nothing else.
    assert_eq!(
        class(&after, "twin_write") - class(&before, "twin_write"),
        3
    );
    assert_eq!(writes(&after) - writes(&before), 3);
    let t = twin(&em, "therm-03").await;
    assert_eq!(
        t["properties"]["desired"]["thresholds"],
        json!({"high": 30, "low": 16})
    );
}

#[tokio::test]
async fn removed_key_is_removed_while_someone_elses_key_stays() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    other_writer(
        &em,
        "myFirstDevice",
        json!({"tags": {"team": "ops"}, "properties": {"desired": {"fan": "auto"}}}),
    )
    .await;
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &FLEET.replace("    tags: {site: berlin}\n", ""),
        )],
    );
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let t = twin(&em, "myFirstDevice").await;
    assert!(t["tags"].get("site").is_none(), "{t}");
    assert_eq!(t["tags"]["team"], "ops");
    assert_eq!(t["properties"]["desired"]["fan"], "auto");
    assert_eq!(t["tags"]["twinops"]["owners"]["team-a"]["tags"], json!({}));
}

#[tokio::test]
async fn reported_write_between_plan_and_apply_is_resent_and_succeeds() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &FLEET.replace("telemetryInterval: 30", "telemetryInterval: 45"),
        )],
    );
    let plan_dir = dir();
    let plan = plan_dir.path().join("plan.json");
    let plan_path = plan.to_str().unwrap();
    let r = twinops(&em, &["plan", "--out", plan_path, p]);
    assert_eq!(r.code, 0, "{r:?}");
    report(
        &em,
        "myFirstDevice",
        json!({"telemetryInterval": 30, "battery": 80}),
    )
    .await;
    other_writer(&em, "myFirstDevice", json!({"tags": {"unrelated": 1}})).await;
    let r = twinops(
        &em,
        &["apply", "--yes", "--plan", plan_path, "--format", "json"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.json();
    assert_eq!(out["outcomes"][0]["status"], "applied");
    assert!(
        out["outcomes"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("resent"),
        "{out}"
    );
    let t = twin(&em, "myFirstDevice").await;
    assert_eq!(t["properties"]["desired"]["telemetryInterval"], 45);
    assert_eq!(t["properties"]["reported"]["battery"], 80);
    assert_eq!(t["tags"]["unrelated"], 1);
}

#[tokio::test]
async fn owned_key_changed_between_plan_and_apply_is_a_conflict_and_not_overwritten() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &FLEET
                .replace("telemetryInterval: 30", "telemetryInterval: 45")
                .replace("telemetryInterval: 60", "telemetryInterval: 65"),
        )],
    );
    let plan_dir = dir();
    let plan = plan_dir.path().join("plan.json");
    let plan_path = plan.to_str().unwrap();
    assert_eq!(twinops(&em, &["plan", "--out", plan_path, p]).code, 0);
    other_writer(
        &em,
        "myFirstDevice",
        json!({"properties": {"desired": {"telemetryInterval": 99}}}),
    )
    .await;
    let r = twinops(
        &em,
        &["apply", "--yes", "--plan", plan_path, "--format", "json"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let out = r.json();
    let outcomes = out["outcomes"].as_array().unwrap();
    let mine = outcomes
        .iter()
        .find(|o| o["device_id"] == "myFirstDevice")
        .unwrap();
    assert_eq!(mine["status"], "conflict");
    assert_eq!(mine["keys"], json!(["desired.telemetryInterval"]));
    // The rest of the saved plan applied.
    assert_eq!(
        outcomes.iter().filter(|o| o["status"] == "applied").count(),
        3
    );
    let t = twin(&em, "myFirstDevice").await;
    assert_eq!(t["properties"]["desired"]["telemetryInterval"], 99);
    assert_eq!(
        twin(&em, "therm-01").await["properties"]["desired"]["telemetryInterval"],
        65
    );
}

#[tokio::test]
async fn keys_another_owner_manages_are_a_conflict_naming_it_unless_forced() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let other = FLEET
        .replace("owner: team-a", "owner: team-b")
        .replace("telemetryInterval: 30", "telemetryInterval: 31");
    manifests(d.path(), &[("fleet.yaml", &other)]);
    let r = twinops(
        &em,
        &[
            "plan",
            "--detailed-exitcode",
            "--target",
            "myFirstDevice",
            p,
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains(
            "! conflict myFirstDevice: tags.site is managed by `team-a`; desired.telemetryInterval is managed by `team-a`"
        ),
        "{}",
        r.stdout
    );
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", "--target", "myFirstDevice", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(writes(&em.stats().await), writes(&before));
    // `--adopt` is the deprecated alias of `--force-conflicts`: it warns and takes the keys over.
    let r = twinops(
        &em,
        &["apply", "--yes", "--adopt", "--target", "myFirstDevice", p],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("--adopt is deprecated"), "{}", r.stderr);
    let t = twin(&em, "myFirstDevice").await;
    let owners = &t["tags"]["twinops"]["owners"];
    assert_eq!(owners["team-b"]["tags"], json!({"site": true}), "{t}");
    assert_eq!(
        owners["team-b"]["desired"],
        json!({"telemetryInterval": true})
    );
    assert!(
        owners["team-a"].is_null(),
        "team-a's emptied entry is removed: {t}"
    );
    assert_eq!(t["properties"]["desired"]["telemetryInterval"], 31);
}

#[tokio::test]
async fn twin_without_ledger_is_adopted_leaving_other_keys() {
    let em = Emulator::start();
    em.create_device("myFirstDevice").await;
    other_writer(&em, "myFirstDevice", json!({"tags": {"legacy": true}, "properties": {"desired": {"telemetryInterval": 5, "mode": "x"}}})).await;
    let d = dir();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "devices:\n  myFirstDevice:\n    desired: {telemetryInterval: 30}\n",
        )],
    );
    let r = twinops(&em, &["apply", "--yes", d.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let t = twin(&em, "myFirstDevice").await;
    assert_eq!(t["properties"]["desired"]["telemetryInterval"], 30);
    assert_eq!(t["properties"]["desired"]["mode"], "x");
    assert_eq!(t["tags"]["legacy"], true);
    assert_eq!(
        t["tags"]["twinops"],
        json!({"version": 2, "owners": {"default": {"fields": {}, "tags": {}, "desired": {"telemetryInterval": true}}}})
    );
}

#[tokio::test]
async fn invalid_manifests_send_nothing_to_the_hub() {
    let em = Emulator::start();
    let d = dir();
    manifests(
        d.path(),
        &[("bad.yaml", "devices:\n  ok: {}\n  \"bad id\": {}\n")],
    );
    for cmd in ["plan", "apply", "drift"] {
        let r = twinops(
            &em,
            &[cmd, "--yes", d.path().to_str().unwrap()]
                .iter()
                .copied()
                .filter(|a| cmd == "apply" || *a != "--yes")
                .collect::<Vec<_>>(),
        );
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("bad.yaml:3:3"), "{}", r.stderr);
    }
    assert_eq!(em.stats().await["total"], 0);
}

#[tokio::test]
async fn apply_without_terminal_refuses_without_yes() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let r = twinops(&em, &["apply", d.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("pass --yes"), "{}", r.stderr);
    assert_eq!(writes(&em.stats().await), 0);
}

#[test]
fn missing_hub_names_both_forms_and_exits_1() {
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let r = crate::cli::twinops_bare(&["plan", d.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("HostName=") && r.stderr.contains("--hub local"),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    let r = crate::cli::twinops_bare(&["plan", "--no-such-flag"]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[tokio::test]
async fn apply_wait_returns_when_devices_acknowledge_and_times_out_naming_the_rest() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &FLEET.replace("telemetryInterval: 30", "telemetryInterval: 45"),
        )],
    );
    // The wait covers the declared twins in scope that have not acknowledged (SPEC §18): here the
    // device and its module, whose module acknowledges what it was given.
    let module = twin(&em, "myFirstDevice/myFirstModule").await["properties"]["desired"].clone();
    let mut answer = module.as_object().unwrap().clone();
    answer.retain(|k, _| !k.starts_with('$'));
    report(&em, "myFirstDevice/myFirstModule", Value::Object(answer)).await;
    // Nobody reports back for the device: the wait times out and names the twin.
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--wait=1s",
            "--target",
            "myFirstDevice",
            &p,
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not acknowledged: myFirstDevice"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("NO (timed out)"), "{}", r.stdout);
    // A device that reports the value once apply has written it is waited for.
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            &FLEET.replace("telemetryInterval: 30", "telemetryInterval: 50"),
        )],
    );
    let em = std::sync::Arc::new(em);
    let em2 = em.clone();
    let apply = tokio::task::spawn_blocking(move || {
        twinops(
            &em2,
            &[
                "apply",
                "--yes",
                "--wait=30s",
                "--target",
                "myFirstDevice",
                &p,
            ],
        )
    });
    eventually(
        "apply writes the desired value 50",
        Duration::from_secs(30),
        async || twin(&em, "myFirstDevice").await["properties"]["desired"].clone(),
        |desired| desired["telemetryInterval"] == 50,
    )
    .await;
    report(&em, "myFirstDevice", json!({"telemetryInterval": 50})).await;
    let r = apply.await.unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("Acknowledged: 1 of 1 twins."),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn a_bad_wait_duration_is_refused_before_anything_is_sent() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    let r = twinops(&em, &["apply", "--yes", "--wait=abc", &p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("`abc`"), "{}", r.stderr);
    assert_eq!(em.stats().await["total"], 0, "nothing may be sent");
}

#[tokio::test]
async fn a_child_becomes_an_edge_device_and_back_keeping_its_parent() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    let fleet = |child_edge: bool| {
        format!(
            "devices:\n  gw:\n    edge: true\n  child:\n    edge: {child_edge}\n    parent: gw\n"
        )
    };
    manifests(d.path(), &[("fleet.yaml", &fleet(false))]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    let gw_scope = em.get("/devices/gw").await.body["deviceScope"]
        .as_str()
        .unwrap()
        .to_string();
    // Leaf -> edge: the hub refuses the parent's scope as the new edge's own scope (503 on a live
    // hub), so twinops sends an empty one and keeps the parent in parentScopes.
    manifests(d.path(), &[("fleet.yaml", &fleet(true))]);
    let r = twinops(&em, &["apply", "--yes", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let child = em.get("/devices/child").await.body;
    assert_eq!(child["capabilities"]["iotEdge"], true, "{child}");
    assert_eq!(child["parentScopes"], json!([gw_scope]), "{child}");
    let own = child["deviceScope"].as_str().unwrap();
    assert!(own.starts_with("ms-azure-iot-edge://child-"), "{child}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "no change left after leaf -> edge: {r:?}");
    // Edge -> leaf: the toggling write detaches the parent; twinops attaches it again.
    manifests(d.path(), &[("fleet.yaml", &fleet(false))]);
    let r = twinops(&em, &["apply", "--yes", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let child = em.get("/devices/child").await.body;
    assert_eq!(child["capabilities"]["iotEdge"], false, "{child}");
    assert_eq!(child["parentScopes"], json!([gw_scope]), "{child}");
    assert_eq!(child["deviceScope"], json!(gw_scope), "{child}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "no change left after edge -> leaf: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_service_connect_is_named_with_the_permission_it_lacks() {
    let hub = twinops_emulator::start(twinops_emulator::Config::default())
        .await
        .unwrap();
    let key = hub
        .policy_key("registryReadWrite")
        .unwrap()
        .expose()
        .to_string();
    let cs = format!(
        "HostName={};SharedAccessKeyName=registryReadWrite;SharedAccessKey={key}",
        hub.host()
    );
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(["plan", d.path().to_str().unwrap()])
        .env("TWINOPS_HUB", &cs)
        .env("TWINOPS_CA_CERT", hub.ca_pem_path())
        .env_remove("IOTHUB_CONNECTION_STRING")
        .env("NO_COLOR", "1");
    let r = tokio::task::spawn_blocking(move || crate::cli::run(cmd))
        .await
        .unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("needs the ServiceConnect permission")
            && r.stderr.contains("`registryReadWrite`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&key), "the key must never be printed");
    hub.shutdown().await;
}

/// `iothubowner` has every permission, so its 401 is a wrong (or rotated) key, never a
/// permission it "may lack".
#[tokio::test]
async fn a_wrong_iothubowner_key_is_named_as_a_wrong_or_rotated_key() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    // Another well-formed key of the same length.
    let wrong: String = em
        .owner_key
        .chars()
        .map(|c| {
            if c == 'A' {
                'B'
            } else if c.is_ascii_alphanumeric() {
                'A'
            } else {
                c
            }
        })
        .collect();
    assert_ne!(wrong, em.owner_key);
    let cs = em.connection_string.replace(&em.owner_key, &wrong);
    let r = twinops_env(
        &em,
        &["plan", d.path().to_str().unwrap()],
        &[("TWINOPS_HUB", cs.as_str())],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("`iothubowner` has every permission")
            && r.stderr.contains("key is wrong or was rotated"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("may lack"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(&wrong) && !r.stderr.contains(&em.owner_key),
        "no key is printed"
    );
}

#[tokio::test]
async fn apply_format_json_wait_prints_exactly_one_json_document() {
    let em = Emulator::start_with(&["--mqtt", "127.0.0.1:0", "--simulate-devices", "j-*:50ms"]);
    let d = dir();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: json\ndevices:\n  \"j-{1..3}\":\n    desired: {telemetryInterval: 5}\n",
        )],
    );
    let p = d.path().to_str().unwrap().to_string();
    let r = twinops(
        &em,
        &["apply", "--yes", "--format", "json", "--wait=60s", &p],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The whole of stdout is one document: no table after it, nothing before it.
    let doc: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", r.stdout));
    assert_eq!(doc["outcomes"].as_array().unwrap().len(), 3, "{doc}");
    let waited = doc["wait"]["twins"].as_array().unwrap();
    assert_eq!(waited.len(), 3, "{doc}");
    for w in waited {
        assert!(w["acknowledged_after_seconds"].is_number(), "{w}");
        assert!(w["twin"].as_str().unwrap().starts_with("j-"), "{w}");
    }
    assert_eq!(doc["wait"]["limit_seconds"], json!(60.0));
}
