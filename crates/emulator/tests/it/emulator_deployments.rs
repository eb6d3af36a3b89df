//! IoT Edge deployments (SPEC §16): a base and layers merged by precedence into edge devices'
//! module twins, what a removed layer or a changed target takes away, a replacement that never
//! leaves a device without a deployment, and the system and custom metrics that simulated edge
//! agents make move (`--simulate-reject` included).

use crate::support::{Emulator, PATIENCE, eventually, seg};
use serde_json::{Value, json};

/// An edge device tagged `site`.
async fn edge(hub: &Emulator, id: &str, site: &str) {
    let r = hub
        .put(
            &format!("/devices/{id}"),
            json!({"deviceId": id, "capabilities": {"iotEdge": true}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    tag(hub, id, site).await;
}

async fn tag(hub: &Emulator, id: &str, site: &str) {
    let r = hub
        .patch(
            &format!("/twins/{id}"),
            json!({"tags": {"site": site}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// A base deployment's content: `$edgeAgent` with one module, `$edgeHub` with one route.
fn base(module: &str) -> Value {
    json!({
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}
            },
            "modules": {module: {"type": "docker", "status": "running", "restartPolicy": "always",
                                 "settings": {"image": format!("example/{module}:1")}}}
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1",
                     "routes": {"upstream": "FROM /messages/* INTO $upstream"}}}
    })
}

/// A layered deployment's content: one module in `$edgeAgent`, one route, the module's twin.
fn layer(module: &str, rate: i64) -> Value {
    json!({
        "$edgeAgent": {format!("properties.desired.modules.{module}"): {
            "type": "docker", "status": "running", "restartPolicy": "always",
            "settings": {"image": format!("example/{module}:1")}}},
        "$edgeHub": {format!("properties.desired.routes.{module}"): format!("FROM /messages/modules/{module}/* INTO $upstream")},
        module: {"properties.desired.rate": rate}
    })
}

async fn deploy(hub: &Emulator, id: &str, modules: Value, target: &str, priority: i64) {
    let body = json!({"content": {"modulesContent": modules}, "targetCondition": target,
                      "priority": priority});
    let r = hub.put(&format!("/configurations/{id}"), body, None).await;
    assert_eq!(r.status, 200, "{r:?}");
}

fn module_twin(device: &str, module: &str) -> String {
    format!("/twins/{device}/modules/{}", seg(module))
}

async fn twin_until(hub: &Emulator, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("{path} with {what}"),
        PATIENCE,
        async || hub.get(path).await.body,
        ok,
    )
    .await
}

fn module_names(agent: &Value) -> Vec<String> {
    let mut names: Vec<String> = agent["properties"]["desired"]["modules"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn status(twin: &Value, id: &str) -> Value {
    twin["configurations"][id]["status"].clone()
}

#[tokio::test]
async fn a_base_and_a_layer_merge_into_edge_agent_edge_hub_and_the_module_twin() {
    let hub = Emulator::start_with(&["--config-interval", "100ms"]);
    deploy(&hub, "base", base("a"), "tags.site = 'b'", 10).await;
    deploy(&hub, "layer", layer("x", 5), "tags.site = 'b'", 20).await;
    // Tagged after the deployments exist: only a pass on the interval can apply them.
    edge(&hub, "e1", "b").await;
    hub.create_device("leaf").await;
    tag(&hub, "leaf", "b").await;

    let agent = twin_until(&hub, &module_twin("e1", "$edgeAgent"), "a and x", |t| {
        module_names(t) == ["a", "x"]
    })
    .await;
    assert_eq!(agent["properties"]["desired"]["schemaVersion"], "1.1");
    assert_eq!(status(&agent, "base"), "Applied");
    assert_eq!(status(&agent, "layer"), "Applied");
    let edge_hub = hub.get(&module_twin("e1", "$edgeHub")).await.body;
    assert_eq!(
        edge_hub["properties"]["desired"]["routes"],
        json!({"upstream": "FROM /messages/* INTO $upstream",
               "x": "FROM /messages/modules/x/* INTO $upstream"})
    );
    let x = twin_until(&hub, &module_twin("e1", "x"), "rate 5", |t| {
        t["properties"]["desired"]["rate"] == 5
    })
    .await;
    assert_eq!(x["configurations"], json!({"layer": {"status": "Applied"}}));
    let module = hub.get("/devices/e1/modules/x").await;
    assert_eq!(module.status, 200, "the hub creates the module it writes");
    assert_eq!(module.body["managedBy"], "iotEdge");
    let device = hub.get("/twins/e1").await.body;
    assert!(
        device.get("configurations").is_none(),
        "deployments record their statuses in module twins: {device}"
    );
    let leaf = hub.get("/twins/leaf").await.body;
    assert!(leaf.get("configurations").is_none(), "only edge devices");
    let c = eventually(
        "the layer's counts",
        PATIENCE,
        async || hub.get("/configurations/layer").await.body,
        |c| c["systemMetrics"]["results"]["appliedCount"] == 1,
    )
    .await;
    assert_eq!(c["systemMetrics"]["results"]["targetedCount"], 1);
}

#[tokio::test]
async fn priority_decides_and_a_tie_goes_to_the_most_recently_created() {
    let hub = Emulator::start_with(&["--config-interval", "100ms"]);
    edge(&hub, "e1", "b").await;
    deploy(&hub, "high", base("h"), "tags.site = 'b'", 9).await;
    deploy(&hub, "first", base("f"), "tags.site = 'b'", 5).await;
    let agent = twin_until(&hub, &module_twin("e1", "$edgeAgent"), "h", |t| {
        module_names(t) == ["h"] && status(t, "first") == "Targeted"
    })
    .await;
    assert_eq!(status(&agent, "high"), "Applied");
    let r = hub.delete("/configurations/high", None).await;
    assert_eq!(r.status, 204);
    deploy(&hub, "second", base("s"), "tags.site = 'b'", 5).await;
    let agent = twin_until(&hub, &module_twin("e1", "$edgeAgent"), "s", |t| {
        module_names(t) == ["s"]
    })
    .await;
    assert_eq!(status(&agent, "second"), "Applied");
    assert_eq!(status(&agent, "first"), "Targeted");
    assert!(agent["configurations"].get("high").is_none());
}

#[tokio::test]
async fn a_removed_layer_or_a_changed_target_takes_away_exactly_its_modules() {
    let hub = Emulator::start();
    edge(&hub, "e1", "b").await;
    deploy(&hub, "base", base("a"), "tags.site = 'b'", 1).await;
    deploy(&hub, "lx", layer("x", 5), "tags.site = 'b'", 2).await;
    deploy(&hub, "ly", layer("y", 7), "tags.site = 'b'", 3).await;
    twin_until(&hub, &module_twin("e1", "$edgeAgent"), "a, x, y", |t| {
        module_names(t) == ["a", "x", "y"]
    })
    .await;
    let own = hub
        .patch(
            &module_twin("e1", "x"),
            json!({"properties": {"desired": {"mine": true}}}),
            None,
        )
        .await;
    assert_eq!(own.status, 200);

    assert_eq!(hub.delete("/configurations/lx", None).await.status, 204);
    let agent = twin_until(&hub, &module_twin("e1", "$edgeAgent"), "a and y", |t| {
        module_names(t) == ["a", "y"]
    })
    .await;
    assert_eq!(agent["properties"]["desired"]["schemaVersion"], "1.1");
    let routes =
        &hub.get(&module_twin("e1", "$edgeHub")).await.body["properties"]["desired"]["routes"];
    assert!(
        routes.get("x").is_none() && routes.get("y").is_some(),
        "{routes}"
    );
    let x = twin_until(&hub, &module_twin("e1", "x"), "no rate", |t| {
        t["properties"]["desired"].get("rate").is_none()
    })
    .await;
    assert_eq!(
        x["properties"]["desired"]["mine"], true,
        "what others wrote stays"
    );
    assert!(x.get("configurations").is_none());

    let etag = hub.get("/configurations/ly").await.body["etag"].clone();
    let moved = hub
        .put(
            "/configurations/ly",
            json!({"content": {"modulesContent": layer("y", 7)}, "targetCondition": "tags.site = 'elsewhere'", "priority": 3}),
            Some(&format!("\"{}\"", etag.as_str().unwrap())),
        )
        .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    let agent = twin_until(&hub, &module_twin("e1", "$edgeAgent"), "a alone", |t| {
        module_names(t) == ["a"]
    })
    .await;
    assert!(agent["configurations"].get("ly").is_none());
    twin_until(&hub, &module_twin("e1", "y"), "no rate", |t| {
        t["properties"]["desired"].get("rate").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_replacement_never_leaves_a_targeted_device_without_a_deployment() {
    let hub = Emulator::start_with(&["--config-interval", "50ms"]);
    edge(&hub, "e1", "b").await;
    deploy(&hub, "v1", base("old"), "tags.site = 'b'", 10).await;
    twin_until(&hub, &module_twin("e1", "$edgeAgent"), "v1 applied", |t| {
        status(t, "v1") == "Applied"
    })
    .await;
    // The replacement as twinops plans it: the new deployment first, the old one deleted after.
    deploy(&hub, "v2", base("new"), "tags.site = 'b'", 10).await;
    assert_eq!(hub.delete("/configurations/v1", None).await.status, 204);
    let mut seen = Vec::new();
    let last = eventually(
        "v2 applied alone, every twin seen on the way carrying an applied deployment",
        PATIENCE,
        async || {
            let t = hub.get(&module_twin("e1", "$edgeAgent")).await.body;
            seen.push(t.clone());
            t
        },
        |t| {
            module_names(t) == ["new"]
                && t["configurations"].as_object().map(|c| c.len()) == Some(1)
        },
    )
    .await;
    assert_eq!(status(&last, "v2"), "Applied");
    for t in &seen {
        let applied = t["configurations"]
            .as_object()
            .is_some_and(|c| c.values().any(|s| s["status"] == "Applied"));
        assert!(applied, "a twin without an applied deployment: {t}");
        assert_eq!(module_names(t).len(), 1, "one base at a time: {t}");
    }
}

#[tokio::test]
async fn simulated_edge_agents_report_and_the_metrics_count_successes_and_failures() {
    let hub = Emulator::start_with(&[
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "edge-*:100ms",
        "--simulate-reject",
        "edge-bad",
    ]);
    edge(&hub, "edge-ok", "b").await;
    edge(&hub, "edge-bad", "b").await;
    let body = json!({
        "content": {"modulesContent": base("a")},
        "targetCondition": "tags.site = 'b'",
        "priority": 1,
        "metrics": {"queries": {
            "running": "SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND properties.reported.modules.a.runtimeStatus = 'running'"
        }}
    });
    assert_eq!(hub.put("/configurations/dep", body, None).await.status, 200);

    let ok = twin_until(
        &hub,
        &module_twin("edge-ok", "$edgeAgent"),
        "a 200 report",
        |t| {
            t["properties"]["reported"]["lastDesiredStatus"]["code"] == 200
                && t["properties"]["reported"]["lastDesiredVersion"]
                    == t["properties"]["desired"]["$version"]
        },
    )
    .await;
    let reported = &ok["properties"]["reported"];
    assert_eq!(reported["modules"]["a"]["runtimeStatus"], "running");
    assert_eq!(
        reported["systemModules"]["edgeHub"]["runtimeStatus"],
        "running"
    );
    let bad = twin_until(&hub, &module_twin("edge-bad", "$edgeAgent"), "a 417", |t| {
        t["properties"]["reported"]["lastDesiredStatus"]["code"] == 417
            && t["properties"]["reported"]["lastDesiredVersion"]
                == t["properties"]["desired"]["$version"]
    })
    .await;
    assert!(
        bad["properties"]["reported"]["lastDesiredStatus"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let c = eventually(
        "one success and one failure counted",
        PATIENCE,
        async || hub.get("/configurations/dep").await.body,
        |c| {
            let r = &c["systemMetrics"]["results"];
            r["reportedSuccessfulCount"] == 1 && r["reportedFailedCount"] == 1
        },
    )
    .await;
    let r = &c["systemMetrics"]["results"];
    assert_eq!(
        (r["targetedCount"].clone(), r["appliedCount"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(c["metrics"]["results"]["running"], 1, "custom metric: {c}");
    for metric in ["reportedSuccessfulCount", "reportedFailedCount"] {
        let q = c["systemMetrics"]["queries"][metric].as_str().unwrap();
        let rows = hub
            .call(
                reqwest::Method::POST,
                "/devices/query",
                Some(json!({"query": q})),
                &[],
            )
            .await;
        assert_eq!(
            rows.body.as_array().map(Vec::len),
            Some(1),
            "{metric}: {q}: {rows:?}"
        );
    }
}
