//! IoT Edge deployments as managed objects (SPEC §16), with the real binary against the emulator,
//! which evaluates deployments (a base and layers by precedence) and simulates edge agents that
//! report them as real ones do.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{command, dir, manifests, run, twinops};
use crate::support::{Emulator, eventually, seg};

/// Three edge gateways in berlin, declared by the platform team, with a base deployment and (when
/// `layer` is given) a layered one adding a module.
fn fleet(opc_image: &str, layer: Option<&str>) -> String {
    let mut y = format!(
        "owner: platform
devices:
  \"gw-{{1..3}}\":
    edge: true
    tags: {{site: berlin, role: gateway}}
deployments:
  berlin-base:
    target: \"tags.site = 'berlin' AND tags.role = 'gateway'\"
    priority: 10
    runtime: {{edgeAgent: \"mcr.microsoft.com/azureiotedge-agent:1.5\", edgeHub: \"mcr.microsoft.com/azureiotedge-hub:1.5\"}}
    modules:
      opcua:
        image: \"{opc_image}\"
        env: {{LOG_LEVEL: info}}
        desired: {{publishingInterval: 1000}}
    routes: {{upstream: \"FROM /messages/* INTO $upstream\"}}
"
    );
    if let Some(target) = layer {
        y.push_str(&format!(
            "  berlin-filter:
    target: \"{target}\"
    priority: 20
    layered: true
    modules:
      filter:
        image: \"example/filter:1\"
        desired: {{threshold: 5}}
"
        ));
    }
    y
}

const LAYER_TARGET: &str = "tags.site = 'berlin'";

async fn agent(em: &Emulator, device: &str) -> Value {
    em.get(&format!("/twins/{device}/modules/{}", seg("$edgeAgent")))
        .await
        .body
}

fn objects(plan: &Value) -> Vec<Value> {
    plan["objects"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sim(extra: &[&str]) -> Emulator {
    let mut args = vec![
        "--mqtt",
        "127.0.0.1:0",
        "--config-interval",
        "300ms",
        "--simulate-devices",
        "gw-*:100ms",
    ];
    args.extend_from_slice(extra);
    Emulator::start_with(&args)
}

#[tokio::test]
async fn a_base_and_a_layer_reach_every_gateway_and_wait_until_the_edge_agents_report() {
    let em = sim(&[]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[("fleet.yaml", &fleet("opc:2.9", Some(LAYER_TARGET)))],
    );
    let r = twinops(
        &em,
        &["apply", "--yes", "--wait=60s", "--format", "json", p],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    let waited = report["wait"]["objects"].as_array().unwrap();
    assert_eq!(waited.len(), 2, "{report}");
    for o in waited {
        assert_eq!(o["targeted"], 3, "{o}");
        assert_eq!(o["reported_successful"], 3, "{o}");
        assert!(o["done_after_seconds"].is_number(), "{o}");
    }
    for gw in ["gw-1", "gw-2", "gw-3"] {
        let a = agent(&em, gw).await;
        let modules = &a["properties"]["desired"]["modules"];
        assert_eq!(modules["opcua"]["settings"]["image"], "opc:2.9", "{a}");
        assert_eq!(
            modules["filter"]["settings"]["image"], "example/filter:1",
            "{a}"
        );
        let opc = em.get(&format!("/twins/{gw}/modules/opcua")).await.body;
        assert_eq!(opc["properties"]["desired"]["publishingInterval"], 1000);
        let filter = em.get(&format!("/twins/{gw}/modules/filter")).await.body;
        assert_eq!(filter["properties"]["desired"]["threshold"], 5);
    }
    assert_eq!(twinops(&em, &["plan", "--detailed-exitcode", p]).code, 0);
}

#[tokio::test]
async fn a_content_change_replaces_the_deployment_without_leaving_a_gateway_without_one() {
    let em = sim(&[]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet("opc:2.9", None))]);
    assert_eq!(twinops(&em, &["apply", "--yes", "--wait=60s", p]).code, 0);
    manifests(d.path(), &[("fleet.yaml", &fleet("opc:3.0", None))]);
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let o = objects(&plan);
    assert_eq!(o[0]["action"], "create");
    assert_eq!(o[1]["action"], "delete");
    assert_eq!(o[1]["replaced_by"], o[0]["id"]);
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(text.contains("± replace deployment berlin-base"), "{text}");
    assert!(
        text.contains("~ content.$edgeAgent.modules.opcua"),
        "the module's change is shown: {text}"
    );
    // While the apply runs, every gateway's agent holds a deployment's modules at every read.
    let cmd = command(&em, &["apply", "--yes", "--wait=60s", p]);
    let apply = std::thread::spawn(move || run(cmd));
    let mut seen_new = false;
    while !seen_new {
        for gw in ["gw-1", "gw-2", "gw-3"] {
            let a = agent(&em, gw).await;
            let image = a["properties"]["desired"]["modules"]["opcua"]["settings"]["image"].clone();
            assert!(image == "opc:2.9" || image == "opc:3.0", "{gw}: {a}");
            seen_new |= image == "opc:3.0";
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = apply.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let ids: Vec<String> = em
        .get("/configurations")
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [o[0]["id"].as_str().unwrap().to_string()],
        "the old one deleted"
    );
}

#[tokio::test]
async fn removing_a_layer_is_planned_with_the_modules_and_devices_it_takes_away() {
    let em = sim(&[]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[("fleet.yaml", &fleet("opc:2.9", Some(LAYER_TARGET)))],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", "--wait=60s", p]).code, 0);
    manifests(d.path(), &[("fleet.yaml", &fleet("opc:2.9", None))]);
    let plan = twinops(&em, &["plan", "--prune", "--format", "json", p]).json();
    let w = plan["objects"]["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{plan}");
    assert_eq!(w[0]["warning"], "removes_module");
    assert_eq!(w[0]["module"], "filter");
    assert_eq!(w[0]["devices"], 3);
    assert_eq!(w[0]["first"], json!(["gw-1", "gw-2", "gw-3"]));
    let text = twinops(&em, &["plan", "--prune", p]).stdout;
    assert!(
        text.contains("removes module `filter` from 3 device(s): gw-1, gw-2, gw-3"),
        "{text}"
    );
    // Without --prune the layer is named as no longer declared.
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(text.contains("no longer declared"), "{text}");
    assert_eq!(twinops(&em, &["apply", "--yes", "--prune", p]).code, 0);
    eventually(
        "the layer's module goes from the gateways",
        Duration::from_secs(30),
        async || agent(&em, "gw-1").await["properties"]["desired"]["modules"].clone(),
        |m| m.get("filter").is_none() && m.get("opcua").is_some(),
    )
    .await;
}

#[tokio::test]
async fn wait_fails_early_naming_the_gateway_whose_agent_reports_a_failure() {
    let em = sim(&["--simulate-reject", "gw-2"]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &fleet("opc:2.9", None))]);
    // Allowed 5 minutes, the wait ends as soon as an agent reports the failure.
    let r = twinops(&em, &["apply", "--yes", "--wait=5m", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("edge agents report a failed deployment")
            && r.stderr.contains("gw-2: 417"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("gw-1:"), "{}", r.stderr);
    // Drift reports the failing deployment.
    let r = twinops(&em, &["drift", "--format", "json", p]);
    assert_eq!(r.code, 2, "{r:?}");
    let items = r.json()["items"].as_array().unwrap().clone();
    assert!(
        items.iter().any(|i| i["class"] == "rejected_by_device"
            && i["deployment_id"].is_string()
            && i["detail"]
                .as_str()
                .unwrap()
                .contains("report this deployment as failed")),
        "{items:?}"
    );
}

#[tokio::test]
async fn equal_priority_deployments_that_write_a_module_differently_are_warned_about() {
    let em = sim(&[]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    let two = fleet("opc:2.9", None)
        + "  berlin-other:\n    target: \"tags.role = 'gateway'\"\n    priority: 10\n    runtime: {edgeAgent: \"mcr.microsoft.com/azureiotedge-agent:1.5\", edgeHub: \"mcr.microsoft.com/azureiotedge-hub:1.5\"}\n    modules:\n      opcua: {image: \"opc:9.9\"}\n";
    manifests(d.path(), &[("fleet.yaml", &two)]);
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    // Every plan looks at the pairs its objects take part in, changed or not.
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    let w = plan["objects"]["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w["warning"] == "equal_priority"
            && w["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "$edgeAgent.modules.opcua")),
        "{plan}"
    );
}
