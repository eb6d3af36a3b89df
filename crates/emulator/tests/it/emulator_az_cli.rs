//! The requests Microsoft's Azure CLI IoT extension (`azure-iot` 0.25.0) sends for the commands
//! SPEC §16 touches, exactly as its source builds them (`azext_iot/operations/hub.py` and the
//! generated `azext_iot/sdk/iothub/service` client: api-version 2024-03-31, its headers and
//! bodies), and what it needs back. CI cannot install the extension (it is not on a package
//! registry), so these stand in for it; `tests/sdk/az/run.sh` runs the real CLI where its source
//! is at hand.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Emulator, PATIENCE, Resp, eventually, seg};

const CLI_API: &str = "api-version=2024-03-31";

/// A request as the extension's service client sends it.
async fn az(
    hub: &Emulator,
    method: Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Resp {
    let token = hub.owner_token();
    az_as(hub, &token, method, path, body, if_match).await
}

async fn az_as(
    hub: &Emulator,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Resp {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut headers = vec![
        ("authorization", token.to_string()),
        ("accept-language", "en-US".to_string()),
        (
            "x-ms-client-request-id",
            "0f8fad5b-d9cb-469f-a165-70867728950e".to_string(),
        ),
        (
            "user-agent",
            "AZURECLI/2.65.0 IoTPlatformCliExtension/0.25.0".to_string(),
        ),
    ];
    if let Some(m) = if_match {
        headers.push(("if-match", m.to_string()));
    }
    hub.raw(
        method,
        &format!("{path}{sep}{CLI_API}"),
        body.map(|b| b.to_string().into_bytes()),
        &headers,
    )
    .await
}

/// `az iot hub device-identity create --ee` then the deployment content of the extension's own
/// live tests (`test_edge_deployment.json`, trimmed).
async fn edge_device(hub: &Emulator, id: &str) {
    let r = az(
        hub,
        Method::PUT,
        &format!("/devices/{id}"),
        Some(json!({"deviceId": id, "status": "enabled", "capabilities": {"iotEdge": true},
                    "authentication": {"type": "sas", "symmetricKey": {"primaryKey": null, "secondaryKey": null}}})),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

fn edge_content(custom: &str, extra: &str) -> Value {
    json!({
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.0",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "loggingOptions": ""}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.0", "createOptions": ""}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.0", "createOptions": ""}}},
            "modules": {extra: {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                "settings": {"image": "example/sensor", "createOptions": ""}}}
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.0", "routes": {"r": "FROM /messages/* INTO $upstream"},
                                            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
        custom: {"properties.desired": {"schemaVersion": "1.0", "TemperatureThreshold": 21}}
    })
}

fn module_ids(r: &Resp) -> Vec<String> {
    let mut ids: Vec<String> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn set_modules_applies_content_to_an_edge_device_and_lists_its_modules() {
    let hub = Emulator::start();
    edge_device(&hub, "edge1").await;
    // `az iot edge set-modules`: the content, then the device's module list.
    let r = az(
        &hub,
        Method::POST,
        "/devices/edge1/applyConfigurationContent",
        Some(json!({"modulesContent": edge_content("mymodule0", "mymodule0")})),
        None,
    )
    .await;
    assert_eq!((r.status, r.body.clone()), (204, Value::Null), "{r:?}");
    let listed = az(&hub, Method::GET, "/devices/edge1/modules", None, None).await;
    assert_eq!(
        module_ids(&listed),
        ["$edgeAgent", "$edgeHub", "mymodule0"],
        "the CLI's live test expects 3"
    );
    let r = az(
        &hub,
        Method::POST,
        "/devices/edge1/applyConfigurationContent",
        Some(json!({"modulesContent": edge_content("filtermodule", "temp-sensor-module")})),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let listed = az(&hub, Method::GET, "/devices/edge1/modules", None, None).await;
    assert_eq!(
        module_ids(&listed).len(),
        4,
        "then 4: modules are created, never removed: {listed:?}"
    );

    let agent = az(
        &hub,
        Method::GET,
        &format!("/twins/edge1/modules/{}", seg("$edgeAgent")),
        None,
        None,
    )
    .await;
    let modules = &agent.body["properties"]["desired"]["modules"];
    assert!(
        modules.get("temp-sensor-module").is_some() && modules.get("mymodule0").is_none(),
        "replaced whole: {modules}"
    );
    assert!(
        agent.body.get("configurations").is_none(),
        "a per-device deployment has no status"
    );
    let filter = az(
        &hub,
        Method::GET,
        "/twins/edge1/modules/filtermodule",
        None,
        None,
    )
    .await;
    assert_eq!(
        filter.body["properties"]["desired"]["TemperatureThreshold"],
        21
    );

    hub.create_device("leaf").await;
    let leaf = az(
        &hub,
        Method::POST,
        "/devices/leaf/applyConfigurationContent",
        Some(json!({"modulesContent": edge_content("m", "m")})),
        None,
    )
    .await;
    assert_eq!(leaf.status, 400, "{leaf:?}");
    let missing = az(
        &hub,
        Method::POST,
        "/devices/nobody/applyConfigurationContent",
        Some(json!({"modulesContent": edge_content("m", "m")})),
        None,
    )
    .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, Some("DeviceNotFound"))
    );
    let no_agent = az(
        &hub,
        Method::POST,
        "/devices/edge1/applyConfigurationContent",
        Some(json!({"modulesContent": {"$edgeHub": {"properties.desired": {}}}})),
        None,
    )
    .await;
    assert_eq!(
        (no_agent.status, no_agent.code()),
        (400, Some("InvalidConfigurationContent"))
    );
}

#[tokio::test]
async fn edge_deployment_commands_create_show_update_measure_and_delete() {
    let hub = Emulator::start();
    edge_device(&hub, "edge1").await;
    let r = az(
        &hub,
        Method::PATCH,
        "/twins/edge1",
        Some(json!({"tags": {"building": 9, "environment": "test"}})),
        Some("\"*\""),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // `az iot edge deployment create`: schemaVersion 2.0, body etag "*", no If-Match; metrics as
    // given (`--cmq` with the live tests' `select *`).
    let condition = "tags.building=9 and tags.environment='test'";
    let body = json!({"id": "dep1", "schemaVersion": "2.0", "labels": {"key0": "value0"},
        "content": {"modulesContent": edge_content("mymodule0", "mymodule0")},
        "metrics": {"queries": {"mymetric1": "select deviceId from devices where tags.location='US'", "mymetric2": "select *"}},
        "targetCondition": condition, "etag": "*", "priority": 5});
    let created = az(&hub, Method::PUT, "/configurations/dep1", Some(body), None).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.body["schemaVersion"], "2.0");
    // `--layered` sends the content unvalidated: dotted paths only.
    let layered = json!({"id": "layer1", "schemaVersion": "2.0",
        "content": {"modulesContent": {
            "$edgeAgent": {"properties.desired.modules.mymodule1": {"settings": {"image": "myimageuri", "createOptions": "{\"MemorySwap\":0}"},
                "type": "docker", "env": {"envvar0": {"value": "envvarval0"}}, "status": "running", "restartPolicy": "always", "version": "1.0"}},
            "$edgeHub": {"properties.desired.routes.route0": "from /messages/* INTO $upstream"},
            "mymodule1": {"properties.desired.settings": {"prop0": "val0"}}}},
        "metrics": {"queries": {"mymetric": "SELECT deviceId FROM devices WHERE properties.reported.lastDesiredStatus.code = 200"}},
        "targetCondition": condition, "etag": "*", "priority": 6});
    let r = az(
        &hub,
        Method::PUT,
        "/configurations/layer1",
        Some(layered),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let agent = eventually(
        "both applied",
        PATIENCE,
        async || {
            az(
                &hub,
                Method::GET,
                &format!("/twins/edge1/modules/{}", seg("$edgeAgent")),
                None,
                None,
            )
            .await
            .body
        },
        |t| {
            t["configurations"]["dep1"]["status"] == "Applied"
                && t["configurations"]["layer1"]["status"] == "Applied"
        },
    )
    .await;
    assert!(agent["properties"]["desired"]["modules"]["mymodule1"].is_object());

    // `az iot edge deployment show` / `list` (raw JSON).
    let shown = az(&hub, Method::GET, "/configurations/dep1", None, None).await;
    assert_eq!(shown.body["targetCondition"], condition);
    let listed = az(&hub, Method::GET, "/configurations", None, None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    // `az iot edge deployment update --set priority=7`: the shown document back, If-Match "*".
    let mut update = shown.body.clone();
    update["priority"] = json!(7);
    let updated = az(
        &hub,
        Method::PUT,
        "/configurations/dep1",
        Some(update),
        Some("\"*\""),
    )
    .await;
    assert_eq!(
        (updated.status, updated.body["priority"].clone()),
        (200, json!(7)),
        "{updated:?}"
    );
    // `az iot edge deployment show-metric -m appliedCount --mt system`: the query, run.
    let q = shown.body["systemMetrics"]["queries"]["appliedCount"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = eventually(
        "the applied row",
        PATIENCE,
        async || {
            az(
                &hub,
                Method::POST,
                "/devices/query",
                Some(json!({"query": q})),
                None,
            )
            .await
            .body
        },
        |b| b.as_array().map(Vec::len) == Some(1),
    )
    .await;
    assert_eq!(rows[0]["deviceId"], "edge1");
    let user = az(
        &hub,
        Method::POST,
        "/devices/query",
        Some(json!({"query": shown.body["metrics"]["queries"]["mymetric1"]})),
        None,
    )
    .await;
    assert_eq!(user.status, 200, "{user:?}");
    // `az iot edge deployment delete`: If-Match "*".
    let deleted = az(
        &hub,
        Method::DELETE,
        "/configurations/dep1",
        None,
        Some("\"*\""),
    )
    .await;
    assert_eq!(deleted.status, 204);
    let gone = az(&hub, Method::GET, "/configurations/dep1", None, None).await;
    assert_eq!(
        (gone.status, gone.code()),
        (404, Some("ConfigurationNotFound"))
    );
}

#[tokio::test]
async fn renew_key_regenerates_keys_in_bulk_as_the_cli_asks() {
    let hub = Emulator::start();
    let before = hub.create_device("d1").await;
    hub.create_device("d2").await;
    hub.create_module("d2", "m").await;
    let key = |d: &Value, k: &str| {
        d["authentication"]["symmetricKey"][k]
            .as_str()
            .unwrap()
            .to_string()
    };

    // `az iot hub device-identity renew-key -d d1 --kt primary`: the bulk call, then a show.
    let r = az(
        &hub,
        Method::POST,
        "/devices/keys/regenerate",
        Some(json!({"policyKey": "primaryKey", "devices": [{"id": "d1"}]})),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["policyKey"], "primaryKey");
    assert_eq!(r.body["errors"], json!([]));
    let after = az(&hub, Method::GET, "/devices/d1", None, None).await.body;
    assert_ne!(key(&after, "primaryKey"), key(&before, "primaryKey"));
    assert_eq!(key(&after, "secondaryKey"), key(&before, "secondaryKey"));
    assert_ne!(
        after["etag"], before["etag"],
        "a key change is an identity write"
    );
    assert_eq!(
        r.body["rotatedKeys"][0]["primaryKey"],
        after["authentication"]["symmetricKey"]["primaryKey"]
    );

    // `--kt both` for a device and (`module-identity renew-key`) a module.
    let r = az(
        &hub,
        Method::POST,
        "/devices/keys/regenerate",
        Some(
            json!({"policyKey": "both", "devices": [{"id": "d2"}, {"id": "d2", "moduleId": "m"}]}),
        ),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["rotatedKeys"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["rotatedKeys"][1]["moduleId"], "m");
    let m = az(&hub, Method::GET, "/devices/d2/modules/m", None, None)
        .await
        .body;
    assert_eq!(
        m["authentication"]["symmetricKey"]["secondaryKey"],
        r.body["rotatedKeys"][1]["secondaryKey"]
    );

    let mixed = az(
        &hub,
        Method::POST,
        "/devices/keys/regenerate",
        Some(json!({"policyKey": "secondaryKey", "devices": [{"id": "d1"}, {"id": "ghost"}]})),
        None,
    )
    .await;
    assert_eq!(mixed.status, 207, "{mixed:?}");
    assert_eq!(mixed.body["errors"][0]["id"], "ghost");
    assert_eq!(mixed.body["errors"][0]["errorCode"], "DeviceNotFound");
    let none = az(
        &hub,
        Method::POST,
        "/devices/keys/regenerate",
        Some(json!({"policyKey": "primaryKey", "devices": [{"id": "ghost"}]})),
        None,
    )
    .await;
    assert_eq!(none.status, 400, "{none:?}");
    assert_eq!(none.body["rotatedKeys"], json!([]));
    let bad = az(
        &hub,
        Method::POST,
        "/devices/keys/regenerate",
        Some(json!({"policyKey": "tertiaryKey", "devices": [{"id": "d1"}]})),
        None,
    )
    .await;
    assert_eq!((bad.status, bad.code()), (400, Some("ArgumentInvalid")));

    // `--kt swap`: a show, then a PUT of the identity with the keys swapped under If-Match "*".
    let cur = az(&hub, Method::GET, "/devices/d1", None, None).await.body;
    let mut swapped = cur.clone();
    swapped["authentication"]["symmetricKey"] =
        json!({"primaryKey": key(&cur, "secondaryKey"), "secondaryKey": key(&cur, "primaryKey")});
    let r = az(
        &hub,
        Method::PUT,
        "/devices/d1",
        Some(swapped),
        Some("\"*\""),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(key(&r.body, "primaryKey"), key(&cur, "secondaryKey"));

    // A device named `keys` keeps its routes.
    hub.create_device("keys").await;
    assert_eq!(
        az(&hub, Method::GET, "/devices/keys/modules", None, None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn both_routes_follow_iot_hubs_permissions() {
    let running = twinops_emulator::start(twinops_emulator::Config::default())
        .await
        .unwrap();
    let client = crate::support::client_trusting(running.ca_pem_path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |policy: &str, resource: &str| {
        let key = running.policy_key(policy).unwrap();
        twinops_iothub::sas::sign(resource, key, Some(policy), now + 600)
            .unwrap()
            .expose()
            .to_string()
    };
    let call = |path: &str, auth: String, body: Value| {
        let req = client
            .request(Method::POST, format!("{}{path}?{CLI_API}", running.url()))
            .header("authorization", auth)
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let host = running.host().to_string();
    let regenerate = json!({"policyKey": "both", "devices": [{"id": "edge1"}]});
    let apply = json!({"modulesContent": edge_content("m", "m")});
    for path in [
        "/devices/keys/regenerate",
        "/devices/edge1/applyConfigurationContent",
    ] {
        let body = if path.contains("keys") {
            regenerate.clone()
        } else {
            apply.clone()
        };
        assert_eq!(
            call(path, token("registryRead", &host), body.clone()).await,
            401,
            "{path}"
        );
        assert_eq!(
            call(path, token("service", &host), body).await,
            401,
            "{path}"
        );
    }
    // A token scoped to a device called `keys` does not reach the regeneration of others.
    let scoped = token("iothubowner", &format!("{host}/devices/keys"));
    assert_eq!(
        call("/devices/keys/regenerate", scoped, regenerate.clone()).await,
        401
    );
    assert_eq!(
        call(
            "/devices/keys/regenerate",
            token("registryReadWrite", &host),
            regenerate
        )
        .await,
        400,
        "registryReadWrite may regenerate (edge1 does not exist)"
    );
    running.shutdown().await;
}
