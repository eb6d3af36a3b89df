//! Automatic device management configurations as managed objects (SPEC §16), with the real binary
//! against the emulator, which evaluates configurations as IoT Hub does.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{dir, manifests, twin, twinops, writes};
use crate::support::{Emulator, eventually};

fn fleet(interval: u32, priority: u32, extra: &str) -> String {
    format!(
        "owner: platform
devices:
  \"th-{{1..4}}\":
    tags: {{kind: thermostat}}
{extra}configurations:
  telemetry:
    target: \"tags.kind = 'thermostat'\"
    priority: {priority}
    labels: {{team: platform}}
    device: {{desired: {{interval: {interval}}}}}
"
    )
}

const DEVICES: &str = "owner: platform\ndevices:\n  \"th-{1..4}\":\n    tags: {kind: thermostat}\n";

async fn configurations(em: &Emulator) -> Vec<Value> {
    let r = em.get("/configurations").await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body.as_array().unwrap().clone()
}

fn objects(plan: &Value) -> Vec<Value> {
    plan["objects"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_configuration_is_created_previewed_replaced_on_a_content_change_and_updated_in_place() {
    let em = Emulator::start_with(&["--config-interval", "200ms"]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", DEVICES)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", p]).code,
        0,
        "devices first"
    );
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 10, ""))]);

    // The plan of a new configuration shows its preview: what its target matches now.
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let o = objects(&plan);
    assert_eq!(o.len(), 1, "{plan}");
    assert_eq!(o[0]["action"], "create");
    assert_eq!(o[0]["object"], "configuration");
    let id = o[0]["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("telemetry-") && id.len() == "telemetry-".len() + 8,
        "{id}"
    );
    assert_eq!(o[0]["preview"]["targeted"], 4, "{plan}");
    assert_eq!(
        o[0]["preview"]["first"],
        json!(["th-1", "th-2", "th-3", "th-4"])
    );
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(
        text.contains(&format!("+ create configuration {id} (telemetry)")),
        "{text}"
    );
    assert!(
        text.contains("targets 4 now: th-1, th-2, th-3, th-4"),
        "{text}"
    );

    let r = twinops(&em, &["apply", "--yes", "--wait=30s", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let on_hub = configurations(&em).await;
    assert_eq!(on_hub.len(), 1);
    assert_eq!(on_hub[0]["labels"]["twinops-owner"], "platform");
    assert_eq!(on_hub[0]["labels"]["twinops-name"], "telemetry");
    assert_eq!(on_hub[0]["labels"]["team"], "platform");
    assert_eq!(
        twin(&em, "th-1").await["properties"]["desired"]["interval"],
        30,
        "applied by the hub"
    );
    assert_eq!(
        twinops(&em, &["plan", "--detailed-exitcode", p]).code,
        0,
        "a no-op"
    );

    // A content change is a replacement: the new one first, the old one deleted once applied.
    manifests(d.path(), &[("fleet.yaml", &fleet(45, 10, ""))]);
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let o = objects(&plan);
    let actions: Vec<(&str, &str)> = o
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect();
    let new = o[0]["id"].as_str().unwrap().to_string();
    assert_eq!(actions, [("create", new.as_str()), ("delete", id.as_str())]);
    assert_eq!(o[0]["replaces"], json!(id));
    assert_eq!(o[1]["replaced_by"], json!(new));
    assert_eq!(
        plan["summary"]["delete"], 0,
        "a replacement deletes nothing"
    );
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(
        text.contains(&format!(
            "± replace configuration telemetry: create {new}, then delete {id} once {new} is applied"
        )),
        "{text}"
    );
    assert!(text.contains("~ content.interval: 30 -> 45"), "{text}");
    let r = twinops(&em, &["apply", "--yes", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let ids: Vec<String> = configurations(&em)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&new), "the old one deleted");
    assert_eq!(
        twin(&em, "th-2").await["properties"]["desired"]["interval"],
        45
    );

    // Priority and labels are updated in place under the etag; the ID stays.
    manifests(d.path(), &[("fleet.yaml", &fleet(45, 20, ""))]);
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let o = objects(&plan);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0]["action"], "update");
    assert_eq!(o[0]["id"], json!(new));
    assert_eq!(o[0]["diff"][0]["path"], "priority");
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    assert_eq!(configurations(&em).await[0]["priority"], 20);
    assert_eq!(twinops(&em, &["plan", "--detailed-exitcode", p]).code, 0);

    // Changed in the portal: drift names it.
    let mut c = configurations(&em).await[0].clone();
    c["priority"] = json!(99);
    let etag = format!("\"{}\"", c["etag"].as_str().unwrap());
    let r = em
        .put(&format!("/configurations/{new}"), c, Some(&etag))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 2, "{r:?}");
    let items = r.json()["items"].as_array().unwrap().clone();
    let item = items
        .iter()
        .find(|i| i["configuration_id"] == json!(new))
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(item["class"], "changed_in_hub");
    assert_eq!(item["keys"], json!(["priority"]));
}

#[tokio::test]
async fn a_configuration_that_writes_a_key_the_manifests_declare_on_a_twin_it_targets_is_an_error()
{
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    // th-2 declares the key the configuration writes on it.
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 10, ""))]);
    let devices_only =
        "owner: platform\ndevices:\n  \"th-{1..4}\":\n    tags: {kind: thermostat}\n";
    let e = dir();
    manifests(e.path(), &[("fleet.yaml", devices_only)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", e.path().to_str().unwrap()]).code,
        0
    );
    let y = fleet(30, 10, "  th-9:\n    desired: {interval: 5}\n").replace(
        "\"th-{1..4}\":\n    tags: {kind: thermostat}\n",
        "\"th-{1..4}\":\n    tags: {kind: thermostat}\n    desired: {interval: 7}\n",
    );
    manifests(d.path(), &[("fleet.yaml", &y)]);
    let before = writes(&em.stats().await);
    let r = twinops(&em, &["plan", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("configuration `telemetry` writes desired.interval of twin `th-1`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("fleet.yaml:"),
        "both places: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("`th-9`"),
        "th-9 is not targeted: {}",
        r.stderr
    );
    assert_eq!(writes(&em.stats().await), before, "nothing written");
}

/// The check reads every twin it must: 800 declared twins that declare the key need more than one
/// `IN`-list query (IoT Hub refuses query texts over about 8 KB) and more than one page each (100
/// rows), and the last twin is named as surely as the first.
#[tokio::test]
async fn the_fight_with_yourself_is_found_on_every_twin_of_a_large_fleet() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    let devices = "owner: platform\ndevices:\n  \"th-{1..800}\":\n    tags: {kind: thermostat}\n";
    manifests(d.path(), &[("fleet.yaml", devices)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", p]).code,
        0,
        "devices first"
    );
    let y = fleet(30, 10, "").replace(
        "\"th-{1..4}\":\n    tags: {kind: thermostat}\n",
        "\"th-{1..800}\":\n    tags: {kind: thermostat}\n    desired: {interval: 7}\n",
    );
    manifests(d.path(), &[("fleet.yaml", &y)]);
    let before = writes(&em.stats().await);
    let r = twinops(&em, &["plan", p]);
    assert_eq!(r.code, 1, "{r:?}");
    let named = r
        .stderr
        .lines()
        .filter(|l| l.contains("configuration `telemetry` writes desired.interval of twin `th-"))
        .count();
    assert_eq!(named, 800, "every twin is named once: {}", r.stderr);
    assert!(
        r.stderr.contains("of twin `th-800`, which it targets"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&em.stats().await), before, "nothing written");
}

#[tokio::test]
async fn equal_priorities_that_write_different_values_are_warned_about_and_another_owners_object_is_a_conflict()
 {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    let devices_only =
        "owner: platform\ndevices:\n  \"th-{1..4}\":\n    tags: {kind: thermostat}\n";
    manifests(d.path(), &[("fleet.yaml", devices_only)]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    // Someone else's configuration (made in the portal) with the same priority, another value.
    let r = em
        .put(
            "/configurations/portal-made",
            json!({"id": "portal-made", "content": {"deviceContent": {"properties.desired.interval": 60}},
                   "targetCondition": "tags.kind = 'thermostat'", "priority": 10}),
            None,
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 10, ""))]);
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let w = plan["objects"]["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{plan}");
    assert_eq!(w[0]["warning"], "equal_priority");
    assert_eq!(w[0]["devices"], 4);
    assert_eq!(w[0]["paths"], json!(["interval"]));
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(
        text.contains("both have priority 10 and target 4 device(s) in common"),
        "{text}"
    );

    // Another owner's object under the same name is a conflict, never touched.
    let other = dir();
    let theirs = fleet(30, 10, "")
        .replace("owner: platform", "owner: app")
        .replace(
            "devices:\n  \"th-{1..4}\":\n    tags: {kind: thermostat}\n",
            "",
        );
    manifests(other.path(), &[("fleet.yaml", &theirs)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", other.path().to_str().unwrap()]).code,
        0
    );
    let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("conflict configuration telemetry")
            && r.stdout.contains("managed by `app`"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn the_hubs_cap_is_refused_before_any_write() {
    let em = Emulator::start();
    for i in 0..99 {
        let id = format!("made-elsewhere-{i:03}");
        let r = em
            .put(
                &format!("/configurations/{id}"),
                json!({"id": id, "content": {"deviceContent": {"properties.desired.x": i}},
                       "targetCondition": "tags.none = 1", "priority": 0}),
                None,
            )
            .await;
        assert!(r.status < 300, "{r:?}");
    }
    let d = dir();
    let p = d.path().to_str().unwrap();
    let two = fleet(30, 10, "")
        + "  second:\n    target: \"tags.kind = 'x'\"\n    device: {desired: {y: 1}}\n";
    manifests(d.path(), &[("fleet.yaml", &two)]);
    let before = writes(&em.stats().await);
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("would leave 101 configurations on the hub")
            && r.stderr.contains("at most 100"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&em.stats().await), before, "nothing written");
}

#[tokio::test]
async fn an_exported_configuration_plans_as_a_no_op() {
    let em = Emulator::start_with(&["--config-interval", "200ms"]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 10, ""))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    eventually(
        "the configuration is applied",
        Duration::from_secs(30),
        async || twin(&em, "th-1").await["properties"]["desired"]["interval"].clone(),
        |v| *v == 30,
    )
    .await;
    let out = dir();
    let o = out.path().join("x");
    let r = twinops(
        &em,
        &["export", "--configurations", "--out", o.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(o.join("fleet.yaml")).unwrap();
    assert!(
        text.contains("configurations:") && text.contains("telemetry:"),
        "{text}"
    );
    let r = twinops(&em, &["plan", "--format", "json", o.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(objects(&r.json()).is_empty(), "{}", r.stdout);
}

#[tokio::test]
async fn a_saved_plan_of_a_configuration_applies_as_reviewed() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet(30, 10, ""))]);
    let saved = d.path().join("plan.json");
    let r = twinops(&em, &["plan", "--out", saved.to_str().unwrap(), p]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(doc["objects"]["changes"][0]["action"], "create", "{doc}");
    let r = twinops(
        &em,
        &["apply", "--yes", "--plan", saved.to_str().unwrap(), p],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let on_hub = configurations(&em).await;
    assert_eq!(on_hub.len(), 1);
    assert_eq!(on_hub[0]["id"], doc["objects"]["changes"][0]["id"]);
    assert_eq!(twinops(&em, &["plan", "--detailed-exitcode", p]).code, 0);
}
