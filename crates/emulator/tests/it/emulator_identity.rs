//! Device and module identities over HTTPS against the real emulator binary: status codes, etag
//! preconditions, keys, edge devices and IoT Hub's error responses.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::{Emulator, seg};
use base64::Engine;
use serde_json::json;

#[tokio::test]
async fn device_create_answers_200_with_generated_keys() {
    let hub = Emulator::start();
    let r = hub
        .put(
            "/devices/d1",
            json!({"deviceId": "d1", "status": "enabled",
                   "authentication": {"symmetricKey": {"primaryKey": "", "secondaryKey": ""}, "type": "sas"},
                   "capabilities": {"iotEdge": false}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let keys = &r.body["authentication"]["symmetricKey"];
    for k in ["primaryKey", "secondaryKey"] {
        let key = keys[k].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .unwrap()
                .len(),
            32
        );
    }
    assert_eq!(r.body["authentication"]["type"], "sas");
    assert_eq!(r.body["status"], "enabled");
    assert_eq!(r.body["connectionState"], "Disconnected");
    assert!(
        r.body["generationId"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    let etag = r.body["etag"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(etag)
        .unwrap();
    assert!(
        String::from_utf8(decoded).unwrap().parse::<u64>().is_ok(),
        "etag is base64 of a counter"
    );

    let g = hub.get("/devices/d1").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, r.body);
}

#[tokio::test]
async fn device_put_without_if_match_on_existing_is_409() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    let r = hub
        .put("/devices/d1", json!({"deviceId": "d1"}), None)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), Some("DeviceAlreadyExists"));
    let msg = r.body["Message"].as_str().unwrap();
    assert!(msg.starts_with("ErrorCode:DeviceAlreadyExists;"), "{msg}");
    let em = r.body["ExceptionMessage"].as_str().unwrap();
    assert!(
        em.starts_with("Tracking ID:") && em.contains("-G:0-TimeStamp:"),
        "{em}"
    );
}

#[tokio::test]
async fn device_update_checks_the_etag() {
    let hub = Emulator::start();
    let d = hub.create_device("d1").await;
    let etag = d["etag"].as_str().unwrap();
    let stale = hub
        .put(
            "/devices/d1",
            json!({"deviceId": "d1", "status": "disabled"}),
            Some("\"bm9wZQ==\""),
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.code(), Some("PreconditionFailed"));
    let ok = hub
        .put(
            "/devices/d1",
            json!({"deviceId": "d1", "status": "disabled", "statusReason": "maintenance"}),
            Some(&format!("\"{etag}\"")),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["status"], "disabled");
    assert_eq!(ok.body["statusReason"], "maintenance");
    assert_ne!(ok.body["etag"], d["etag"]);
    assert_ne!(
        ok.body["authentication"], d["authentication"],
        "an update without authentication mints new keys, as live hubs do"
    );
    for star in ["\"*\"", "*"] {
        let r = hub
            .put("/devices/d1", json!({"deviceId": "d1"}), Some(star))
            .await;
        assert_eq!(r.status, 200, "{star}");
    }
    let missing = hub
        .put("/devices/nope", json!({"deviceId": "nope"}), Some("\"*\""))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), Some("DeviceNotFound"));
}

#[tokio::test]
async fn device_delete_answers_204_and_removes_modules() {
    let hub = Emulator::start();
    let d = hub.create_device("d1").await;
    hub.create_module("d1", "m1").await;
    let stale = hub.delete("/devices/d1", Some("\"c3RhbGU=\"")).await;
    assert_eq!(stale.status, 412);
    let no_header = hub.delete("/devices/d1", None).await;
    assert_eq!(no_header.status, 412, "live hubs answer `Etag missing`");
    let r = hub
        .delete(
            "/devices/d1",
            Some(&format!("\"{}\"", d["etag"].as_str().unwrap())),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, serde_json::Value::Null);
    assert_eq!(hub.get("/devices/d1").await.status, 404);
    assert_eq!(
        hub.get("/devices/d1/modules/m1").await.code(),
        Some("IotHubUnauthorizedAccess"),
        "under SAS, module identities of a missing device are 401"
    );
    assert_eq!(
        hub.get("/twins/d1/modules/m1").await.code(),
        Some("DeviceNotFound")
    );
    assert_eq!(hub.get("/twins/d1").await.status, 404);
    let again = hub.delete("/devices/d1", Some("\"*\"")).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.code(), Some("DeviceNotFound"));
}

#[tokio::test]
async fn invalid_ids_and_keys_are_argument_invalid() {
    let hub = Emulator::start();
    let long = "a".repeat(129);
    for id in [long.as_str(), "bad id", "ü"] {
        let r = hub
            .put(&format!("/devices/{}", seg(id)), json!({}), None)
            .await;
        assert_eq!(r.status, 400, "{id}");
        assert_eq!(r.code(), Some("ArgumentInvalid"));
    }
    let short_key = base64::engine::general_purpose::STANDARD.encode([1u8; 8]);
    let r = hub
        .put(
            "/devices/d1",
            json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": short_key}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), Some("ArgumentInvalid"));
    let given = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
    let r = hub
        .put(
            "/devices/d2",
            json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": given, "secondaryKey": null}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "symmetric keys are both or neither");
    let r = hub
        .put(
            "/devices/d2",
            json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": given, "secondaryKey": given}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["authentication"]["symmetricKey"]["primaryKey"],
        given.as_str()
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_cleanly() {
    let hub = Emulator::start();
    let r = hub
        .raw(
            reqwest::Method::PUT,
            &format!("/devices/d1?{}", crate::support::API),
            Some(b"{not json".to_vec()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), Some("DeserializationError"));
    let big = vec![b' '; 300 * 1024];
    let r = hub
        .raw(
            reqwest::Method::PUT,
            &format!("/devices/d1?{}", crate::support::API),
            Some(big),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), Some("MessageTooLarge"));
    assert_eq!(hub.get("/devices/d1").await.status, 404);
}

#[tokio::test]
async fn module_lifecycle_follows_iot_hub() {
    let hub = Emulator::start();
    // Under SAS a module under a missing device is 401, as on live hubs.
    let r = hub.put("/devices/nod/modules/m", json!({}), None).await;
    assert_eq!(
        (r.status, r.code()),
        (401, Some("IotHubUnauthorizedAccess"))
    );
    hub.create_device("d").await;
    let created = hub
        .put(
            "/devices/d/modules/m",
            json!({"moduleId": "m", "managedBy": "mgr", "deviceId": "d",
                   "authentication": {"symmetricKey": {"primaryKey": "", "secondaryKey": ""}, "type": "sas"}}),
            None,
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.body["managedBy"], "mgr");
    assert!(
        created.body.get("status").is_none(),
        "modules have no status"
    );
    let dup = hub.put("/devices/d/modules/m", json!({}), None).await;
    assert_eq!(
        (dup.status, dup.code()),
        (409, Some("ModuleAlreadyExistsOnDevice"))
    );
    let etag = created.body["etag"].as_str().unwrap();
    let upd = hub
        .put(
            "/devices/d/modules/m",
            json!({"moduleId": "m", "deviceId": "d"}),
            Some(&format!("\"{etag}\"")),
        )
        .await;
    assert_eq!(upd.status, 200);
    // A module PUT is a full replace: omitted authentication mints keys, omitted managedBy clears.
    assert_ne!(upd.body["authentication"], created.body["authentication"]);
    assert!(
        upd.body
            .get("managedBy")
            .is_none_or(serde_json::Value::is_null)
    );
    let stale = hub
        .put(
            "/devices/d/modules/m",
            json!({}),
            Some(&format!("\"{etag}\"")),
        )
        .await;
    assert_eq!(stale.status, 412);
    let missing = hub.get("/devices/d/modules/x").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, Some("ModuleNotFound"))
    );
    let list = hub.get("/devices/d/modules").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let del = hub.delete("/devices/d/modules/m", Some("\"*\"")).await;
    assert_eq!(del.status, 204);
    assert_eq!(hub.get("/devices/d/modules/m").await.status, 404);
}

#[tokio::test]
async fn a_device_holds_at_most_50_modules() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    for i in 0..50 {
        hub.create_module("d", &format!("m{i:02}")).await;
    }
    let r = hub.put("/devices/d/modules/m50", json!({}), None).await;
    assert_eq!((r.status, r.code()), (413, Some("TooManyModulesOnDevice")));
}

#[tokio::test]
async fn edge_devices_get_system_modules_and_scopes() {
    let hub = Emulator::start();
    let gw = hub
        .put(
            "/devices/gw",
            json!({"deviceId": "gw", "capabilities": {"iotEdge": true}}),
            None,
        )
        .await;
    assert_eq!(gw.status, 200);
    let scope = gw.body["deviceScope"].as_str().unwrap().to_string();
    assert_eq!(
        scope,
        format!(
            "ms-azure-iot-edge://gw-{}",
            gw.body["generationId"].as_str().unwrap()
        )
    );
    let list = hub.get("/devices/gw/modules").await;
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["$edgeAgent", "$edgeHub"]);
    assert_eq!(list.body[0]["managedBy"], "iotEdge", "as live hubs set it");
    let agent = hub.get("/twins/gw/modules/%24edgeAgent").await;
    assert_eq!(agent.status, 200);
    assert_eq!(agent.body["moduleId"], "$edgeAgent");
    assert_eq!(agent.body["authenticationType"], "none");
    let by_hand = hub
        .put("/devices/gw/modules/%24edgeAgent", json!({}), Some("\"*\""))
        .await;
    assert_eq!(by_hand.status, 401);
    let reserved = hub
        .put("/devices/gw/modules/%24mine", json!({}), None)
        .await;
    assert_eq!(reserved.status, 400);

    let leaf = hub
        .put(
            "/devices/leaf",
            json!({"deviceId": "leaf", "deviceScope": scope}),
            None,
        )
        .await;
    assert_eq!(leaf.status, 200, "{leaf:?}");
    assert_eq!(leaf.body["parentScopes"], json!([scope]));
    let orphan = hub
        .put(
            "/devices/orphan",
            json!({"deviceScope": "ms-azure-iot-edge://nobody-1"}),
            None,
        )
        .await;
    assert_eq!(
        (orphan.status, orphan.code()),
        (400, Some("ArgumentInvalid"))
    );
}

#[tokio::test]
async fn a_device_named_query_is_still_a_device() {
    let hub = Emulator::start();
    let r = hub
        .put("/devices/query", json!({"deviceId": "query"}), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(hub.get("/devices/query").await.body["deviceId"], "query");
    assert_eq!(hub.delete("/devices/query", Some("*")).await.status, 204);
}

#[tokio::test]
async fn an_unknown_authentication_type_is_400_argument_invalid_naming_the_allowed_ones() {
    let hub = Emulator::start();
    let d = hub.create_device("d").await;
    let weird = json!({"type": "weird"});
    for (path, body, if_match) in [
        (
            "/devices/x",
            json!({"deviceId": "x", "authentication": weird}),
            None,
        ),
        (
            "/devices/d",
            json!({"deviceId": "d", "authentication": weird}),
            d["etag"].as_str(),
        ),
        (
            "/devices/d/modules/m",
            json!({"deviceId": "d", "moduleId": "m", "authentication": weird}),
            None,
        ),
    ] {
        let r = hub.put(path, body, if_match).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("ArgumentInvalid")),
            "{path}: {r:?}"
        );
        let message = r.body["Message"].as_str().unwrap();
        assert_eq!(
            message,
            "ErrorCode:ArgumentInvalid;authentication type `weird` is not one of sas, \
             selfSigned, certificateAuthority, none",
            "{path}"
        );
    }
    // In a bulk call such a row fails alone, with the same answer; the other rows are applied.
    let r = hub
        .call(
            reqwest::Method::POST,
            "/devices",
            Some(json!([
                {"id": "x", "importMode": "create", "authentication": weird},
                {"id": "y", "importMode": "create"},
            ])),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["isSuccessful"], false, "{r:?}");
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r:?}");
    assert_eq!(errors[0]["deviceId"], "x");
    assert_eq!(errors[0]["errorCode"], "ArgumentInvalid");
    assert_eq!(
        errors[0]["errorStatus"],
        "authentication type `weird` is not one of sas, selfSigned, certificateAuthority, none"
    );
    assert_eq!(
        hub.get("/devices/y").await.status,
        200,
        "the valid row applies"
    );
    assert_eq!(
        hub.get("/devices/x").await.status,
        404,
        "the refused row does not"
    );
    // Any other row that does not decode refuses the whole call.
    let r = hub
        .call(
            reqwest::Method::POST,
            "/devices",
            Some(json!([
                {"id": "z", "importMode": "create"},
                {"id": 5, "importMode": "create"},
            ])),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, Some("DeserializationError")),
        "{r:?}"
    );
    assert_eq!(hub.get("/devices/z").await.status, 404, "nothing created");
    assert_eq!(
        hub.get("/devices/d").await.body["etag"],
        d["etag"],
        "nothing changed"
    );
    assert_eq!(hub.get("/devices/d/modules/m").await.status, 404);
}
