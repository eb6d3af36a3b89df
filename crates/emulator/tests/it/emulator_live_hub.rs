//! The behaviours `live-hub.md` records from a live IoT Hub, which the emulator imitates so that
//! tests punish a client relying on kinder behaviour: module identity operations on missing or
//! disabled devices under SAS, identity writes as full replaces, deletes that need `If-Match`,
//! parent and child scopes.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::{API, Emulator, PATIENCE, Resp, eventually};
use reqwest::Method;
use serde_json::{Value, json};

fn etag(v: &Value) -> String {
    format!("\"{}\"", v["etag"].as_str().unwrap())
}

async fn bearer(hub: &Emulator, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut headers = vec![("authorization", "Bearer entra".to_string())];
    if method == Method::DELETE {
        headers.push(("if-match", "*".into()));
    }
    hub.raw(
        method,
        &format!("{path}?{API}"),
        body.map(|b| b.to_string().into_bytes()),
        &headers,
    )
    .await
}

#[tokio::test]
async fn module_identity_operations_on_missing_or_disabled_devices_are_401_under_sas() {
    let hub = Emulator::start_with(&["--bearer-token", "entra"]);
    hub.create_device("off").await;
    hub.create_module("off", "m").await;
    let d = hub.get("/devices/off").await.body;
    let off = hub
        .put(
            "/devices/off",
            json!({"deviceId": "off", "status": "disabled", "authentication": d["authentication"]}),
            Some(&etag(&d)),
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    for device in ["nobody", "off"] {
        let calls = [
            hub.get(&format!("/devices/{device}/modules")).await,
            hub.get(&format!("/devices/{device}/modules/m")).await,
            hub.put(&format!("/devices/{device}/modules/n"), json!({}), None)
                .await,
            hub.delete(&format!("/devices/{device}/modules/m"), Some("*"))
                .await,
        ];
        for r in calls {
            assert_eq!(r.status, 401, "{device}: {r:?}");
            assert_eq!(r.code(), Some("IotHubUnauthorizedAccess"));
            let msg = r.body["Message"].as_str().unwrap();
            assert!(
                msg.starts_with("ErrorCode:IotHubUnauthorizedAccess;"),
                "{msg}"
            );
            assert_eq!(
                twinops_iothub::error_code::ErrorCode::IotHubUnauthorizedAccess.number(),
                Some(401002)
            );
        }
    }
    // Module twins are unaffected: a disabled device's module twin works, a missing one is 404.
    assert_eq!(hub.get("/twins/off/modules/m").await.status, 200);
    let missing = hub.get("/twins/nobody/modules/m").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, Some("DeviceNotFound"))
    );
    let missing = hub.get("/twins/off/modules/zz").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, Some("DeviceNotFound"))
    );

    // Under Entra ID a missing device is 404 and a disabled one works.
    let r = bearer(&hub, Method::GET, "/devices/nobody/modules", None).await;
    assert_eq!((r.status, r.code()), (404, Some("DeviceNotFound")));
    let r = bearer(&hub, Method::GET, "/devices/off/modules/m", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = bearer(&hub, Method::PUT, "/devices/off/modules/n", Some(json!({}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = bearer(&hub, Method::DELETE, "/devices/off/modules/n", None).await;
    assert_eq!(r.status, 204, "{r:?}");
}

#[tokio::test]
async fn identity_deletes_need_if_match() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    hub.create_module("d", "m").await;
    for path in ["/devices/d/modules/m", "/devices/d"] {
        let r = hub.delete(path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (412, Some("PreconditionFailed")),
            "{path}"
        );
        assert!(r.body["Message"].as_str().unwrap().contains("Etag missing"));
    }
    let r = hub.delete("/devices/nobody", Some("*")).await;
    assert_eq!((r.status, r.code()), (404, Some("DeviceNotFound")));
    assert_eq!(
        hub.delete("/devices/d/modules/m", Some("*")).await.status,
        204
    );
    assert_eq!(hub.delete("/devices/d", Some("*")).await.status, 204);
}

#[tokio::test]
async fn identity_puts_are_full_replaces_that_mint_keys() {
    let hub = Emulator::start();
    let d = hub.create_device("d").await;
    let r = hub
        .put("/devices/d", json!({"deviceId": "d"}), Some(&etag(&d)))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let key = |v: &Value| v["authentication"]["symmetricKey"]["primaryKey"].clone();
    assert_ne!(
        key(&r.body),
        key(&d),
        "an update without authentication mints new keys"
    );
    let missing = hub
        .put("/devices/nobody", json!({"deviceId": "nobody"}), Some("*"))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, Some("DeviceNotFound"))
    );

    // Device authentication rules.
    let k = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let colons = ["AB"; 20].join(":");
    let bad = [
        json!({"type": "none"}),
        json!({"type": "sas", "symmetricKey": {"primaryKey": k, "secondaryKey": ""}}),
        json!({"type": "selfSigned", "x509Thumbprint":
               {"primaryThumbprint": colons}}),
    ];
    for auth in bad {
        let r = hub
            .put(
                "/devices/x",
                json!({"deviceId": "x", "authentication": auth}),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("ArgumentInvalid")),
            "{auth}"
        );
    }
    let r = hub
        .put(
            "/devices/x",
            json!({"deviceId": "x", "authentication": {"type": "selfSigned"}}),
            None,
        )
        .await;
    assert_eq!(
        r.status, 200,
        "selfSigned without a thumbprint is accepted: {r:?}"
    );

    // Module rules: create answers 200, PUT is a full replace, `none` becomes `sas`, `$` IDs 400.
    let m = hub
        .put(
            "/devices/d/modules/m",
            json!({"moduleId": "m", "managedBy": "someone"}),
            None,
        )
        .await;
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.body["managedBy"], "someone");
    let u = hub
        .put(
            "/devices/d/modules/m",
            json!({"moduleId": "m", "authentication": {"type": "none"}}),
            Some(&etag(&m.body)),
        )
        .await;
    assert_eq!(u.status, 200, "{u:?}");
    assert!(u.body.get("managedBy").is_none_or(Value::is_null), "{u:?}");
    assert_eq!(u.body["authentication"]["type"], "sas");
    assert_ne!(key(&u.body), key(&m.body));
    let dup = hub.put("/devices/d/modules/m", json!({}), None).await;
    assert_eq!(
        (dup.status, dup.code()),
        (409, Some("ModuleAlreadyExistsOnDevice"))
    );
    for id in ["%24edgeAgent", "%24mine"] {
        let r = hub
            .put(&format!("/devices/d/modules/{id}"), json!({}), None)
            .await;
        assert_eq!((r.status, r.code()), (400, Some("ArgumentInvalid")), "{id}");
    }
}

#[tokio::test]
async fn parent_and_child_scopes_follow_live_hubs() {
    let hub = Emulator::start();
    let gw = hub
        .put(
            "/devices/gw",
            json!({"deviceId": "gw", "capabilities": {"iotEdge": true}}),
            None,
        )
        .await
        .body;
    let scope = gw["deviceScope"].as_str().unwrap().to_string();
    assert_eq!(
        scope,
        format!(
            "ms-azure-iot-edge://gw-{}",
            gw["generationId"].as_str().unwrap()
        )
    );
    // A leaf takes the parent's scope as deviceScope; parentScopes alone attaches nothing.
    let leaf = hub
        .put(
            "/devices/leaf",
            json!({"deviceId": "leaf", "deviceScope": scope}),
            None,
        )
        .await
        .body;
    assert_eq!(leaf["parentScopes"], json!([scope]));
    let loose = hub
        .put(
            "/devices/loose",
            json!({"deviceId": "loose", "parentScopes": [scope]}),
            None,
        )
        .await
        .body;
    assert!(loose["deviceScope"].is_null(), "{loose}");
    assert_eq!(loose["parentScopes"], json!([]));

    // An edge child attaches through parentScopes; an update must send its own scope back.
    let child = hub
        .put(
            "/devices/child",
            json!({"deviceId": "child", "capabilities": {"iotEdge": true}, "parentScopes": [scope]}),
            None,
        )
        .await
        .body;
    assert_eq!(child["parentScopes"], json!([scope]));
    let own = child["deviceScope"].clone();
    for bad in [json!(null), json!("")] {
        let mut body = json!({"deviceId": "child", "capabilities": {"iotEdge": true},
                              "parentScopes": [scope]});
        if !bad.is_null() {
            body["deviceScope"] = bad.clone();
        }
        let r = hub.put("/devices/child", body, Some("*")).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(
            r.body["Message"]
                .as_str()
                .unwrap()
                .contains("Device scope is immutable")
        );
    }
    let kept = hub
        .put(
            "/devices/child",
            json!({"deviceId": "child", "capabilities": {"iotEdge": true}, "deviceScope": own}),
            Some("*"),
        )
        .await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(
        kept.body["parentScopes"],
        json!([]),
        "omitting parentScopes detaches"
    );

    // Leaf → edge: the parent's scope as deviceScope is a 503; a blank one with parentScopes works.
    let to_edge = json!({"deviceId": "leaf", "capabilities": {"iotEdge": true}, "deviceScope": scope,
                         "parentScopes": [scope]});
    let r = hub.put("/devices/leaf", to_edge, Some("*")).await;
    assert_eq!(r.status, 503, "{r:?}");
    let r = hub
        .put(
            "/devices/leaf",
            json!({"deviceId": "leaf", "capabilities": {"iotEdge": true}, "deviceScope": "",
                   "parentScopes": [scope]}),
            Some("*"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["deviceScope"],
        format!(
            "ms-azure-iot-edge://leaf-{}",
            leaf["generationId"].as_str().unwrap()
        )
    );
    assert_eq!(r.body["parentScopes"], json!([scope]));

    // Edge → leaf loses the parent in the toggling write.
    let r = hub
        .put(
            "/devices/leaf",
            json!({"deviceId": "leaf", "capabilities": {"iotEdge": false}, "deviceScope": scope}),
            Some("*"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["deviceScope"].is_null(), "{r:?}");
    assert_eq!(r.body["parentScopes"], json!([]));
}

async fn query_rows(hub: &Emulator, sql: &str) -> Vec<Value> {
    let r = hub
        .call(
            Method::POST,
            "/devices/query",
            Some(json!({"query": sql})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body.as_array().unwrap().clone()
}

/// `--index-lag 1500ms`.
const LAG: std::time::Duration = std::time::Duration::from_millis(1500);

#[tokio::test]
async fn index_lag_delays_new_rows_and_keeps_ghosts() {
    let hub = Emulator::start_with(&["--index-lag", "1500ms"]);
    hub.create_device("d").await;
    assert_eq!(hub.get("/devices/d").await.status, 200);
    assert!(query_rows(&hub, "SELECT * FROM devices").await.is_empty());
    // Waiting out the lag is the behaviour under test; then the index catches up at its next
    // snapshot, which a loaded machine may take a while to run.
    tokio::time::sleep(LAG).await;
    let rows = eventually(
        "the query index lists the device",
        PATIENCE,
        async || query_rows(&hub, "SELECT * FROM devices").await,
        |rows| rows.len() == 1,
    )
    .await;
    assert_eq!(rows.len(), 1, "the write shows after the lag");
    assert_eq!(hub.delete("/devices/d", Some("*")).await.status, 204);
    assert_eq!(hub.get("/devices/d").await.status, 404);
    let ghosts = query_rows(&hub, "SELECT * FROM devices").await;
    assert_eq!(
        ghosts.len(),
        1,
        "a deleted device stays in query results for the lag"
    );
    let count = query_rows(&hub, "SELECT COUNT() AS n FROM devices").await;
    assert_eq!(count[0]["n"], 1, "COUNT() counts ghosts");
    // The ghost stays for the lag (the behaviour under test), then goes.
    tokio::time::sleep(LAG).await;
    let rows = eventually(
        "the query index drops the deleted device",
        PATIENCE,
        async || query_rows(&hub, "SELECT * FROM devices").await,
        |rows| rows.is_empty(),
    )
    .await;
    assert!(rows.is_empty());
}

#[tokio::test]
async fn without_index_lag_queries_see_every_write() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    assert_eq!(query_rows(&hub, "SELECT * FROM devices").await.len(), 1);
}

#[tokio::test]
async fn twin_reads_need_service_connect_and_the_policies_are_written_for_people() {
    let state = tempfile::tempdir().unwrap();
    let hub = Emulator::start_on(state.path());
    hub.create_device("d").await;
    let path = state.path().join(twinops_emulator::CONNECTION_STRINGS_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds keys");
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split(';')
                .find_map(|p| p.strip_prefix("SharedAccessKeyName="))
                .unwrap()
        })
        .collect();
    for want in [
        "iothubowner",
        "service",
        "registryRead",
        "registryReadWrite",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let rw = text
        .lines()
        .find(|l| l.contains("SharedAccessKeyName=registryReadWrite;"))
        .unwrap();
    let cs = twinops_iothub::connection_string::ServiceConnectionString::parse(rw).unwrap();
    assert_eq!(cs.host, hub.host);
    let key = cs.key.unwrap().expose().to_string();
    let token = hub.token(Some("registryReadWrite"), &key, None, 3600);
    let get = |path: &'static str| {
        let token = token.clone();
        let hub = &hub;
        async move {
            hub.raw(
                Method::GET,
                &format!("{path}?{API}"),
                None,
                &[("authorization", token)],
            )
            .await
        }
    };
    let twin = get("/twins/d").await;
    assert_eq!(
        (twin.status, twin.code()),
        (401, Some("IotHubUnauthorizedAccess")),
        "twin reads need ServiceConnect"
    );
    assert_eq!(get("/devices/d").await.status, 200, "identity reads work");
}
