//! Device and module twins over HTTPS: merge patch and replace, etags and versions on every write
//! (reported writes included), metadata, read-only fields in bodies, and IoT Hub's twin limits.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::Emulator;
use serde_json::{Value, json};

fn quoted(v: &Value) -> String {
    format!("\"{}\"", v.as_str().unwrap())
}

#[tokio::test]
async fn fresh_twin_has_the_documented_shape() {
    let hub = Emulator::start();
    let d = hub.create_device("d").await;
    let t = hub.get("/twins/d").await;
    assert_eq!(t.status, 200);
    let b = &t.body;
    assert_eq!(b["deviceId"], "d");
    assert_eq!(b["etag"], "AAAAAAAAAAE=");
    assert_eq!(b["deviceEtag"], d["etag"]);
    assert_eq!(b["version"], 2);
    assert_eq!(b["status"], "enabled");
    assert_eq!(b["statusUpdateTime"], "0001-01-01T00:00:00Z");
    assert_eq!(b["connectionState"], "Disconnected");
    assert_eq!(b["authenticationType"], "sas");
    assert_eq!(
        b["x509Thumbprint"],
        json!({"PrimaryThumbprint": null, "SecondaryThumbprint": null})
    );
    for absent in [
        "connectionStateUpdatedTime",
        "generationId",
        "deviceScope",
        "parentScopes",
    ] {
        assert!(b.get(absent).is_none(), "{absent} in {b}");
    }
    assert_eq!(b["modelId"], "");
    assert_eq!(b["capabilities"], json!({"iotEdge": false}));
    assert_eq!(b["tags"], json!({}));
    assert_eq!(b["properties"]["desired"]["$version"], 1);
    assert_eq!(b["properties"]["reported"]["$version"], 1);
    assert!(b["properties"]["desired"]["$metadata"]["$lastUpdated"].is_string());
}

#[tokio::test]
async fn patch_merges_and_moves_etag_and_versions() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    let t0 = hub.get("/twins/d").await.body;
    let r = hub
        .patch(
            "/twins/d",
            json!({"tags": {"site": "berlin", "loc": {"floor": 1, "room": 2}},
                   "properties": {"desired": {"telemetryInterval": 30, "cfg": {"a": 1, "b": [1, 2]}}}}),
            Some(&quoted(&t0["etag"])),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["etag"], "AAAAAAAAAAI=");
    assert_eq!(r.body["version"], 3);
    assert_eq!(r.body["properties"]["desired"]["$version"], 2);
    let r2 = hub
        .patch(
            "/twins/d",
            json!({"tags": {"loc": {"room": null}}, "properties": {"desired": {"cfg": {"a": null, "b": [3]}, "telemetryInterval": null}}}),
            None,
        )
        .await;
    assert_eq!(r2.status, 200);
    assert_eq!(
        r2.body["tags"],
        json!({"site": "berlin", "loc": {"floor": 1}})
    );
    let desired = &r2.body["properties"]["desired"];
    assert_eq!(desired["cfg"], json!({"b": [3]}));
    assert!(desired.get("telemetryInterval").is_none());
    assert_eq!(desired["$version"], 3);
    assert_eq!(desired["$metadata"]["cfg"]["b"]["$lastUpdatedVersion"], 3);
    assert_eq!(desired["$metadata"]["$lastUpdatedVersion"], 3);
    let stale = hub
        .patch(
            "/twins/d",
            json!({"tags": {"x": 1}}),
            Some(&quoted(&t0["etag"])),
        )
        .await;
    assert_eq!(
        (stale.status, stale.code()),
        (412, Some("PreconditionFailed"))
    );
    assert_eq!(hub.get("/twins/d").await.body["tags"].get("x"), None);
}

#[tokio::test]
async fn put_replaces_tags_and_desired_and_ignores_read_only_parts() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    hub.patch(
        "/twins/d",
        json!({"tags": {"a": 1}, "properties": {"desired": {"x": 1, "y": 2}}}),
        None,
    )
    .await;
    let mut full = hub.get("/twins/d").await.body;
    full["tags"] = json!({"b": 2});
    full["properties"]["desired"]["z"] = json!(3);
    full["properties"]["desired"]
        .as_object_mut()
        .unwrap()
        .remove("x");
    full["properties"]["reported"]["hacked"] = json!(true);
    full["deviceId"] = json!("someone-else");
    let etag = quoted(&full["etag"]);
    let r = hub.put("/twins/d", full, Some(&etag)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["deviceId"], "d");
    assert_eq!(r.body["tags"], json!({"b": 2}));
    let desired: serde_json::Map<String, Value> = r.body["properties"]["desired"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(Value::Object(desired), json!({"y": 2, "z": 3}));
    assert!(
        r.body["properties"]["reported"].get("hacked").is_none(),
        "reported is never written here"
    );
    let nulls = hub
        .put("/twins/d", json!({"tags": {"a": null}}), None)
        .await;
    assert_eq!((nulls.status, nulls.code()), (400, Some("ArgumentInvalid")));
    // A PUT replaces both parts: one the body lacks is emptied.
    let r = hub
        .put(
            "/twins/d",
            json!({"properties": {"desired": {"k": 1}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["tags"], json!({}), "a PUT without tags clears them");
    let r = hub.put("/twins/d", json!({"tags": {"t": 1}}), None).await;
    assert_eq!(r.body["tags"], json!({"t": 1}));
    assert!(r.body["properties"]["desired"].get("k").is_none(), "{r:?}");
}

#[tokio::test]
async fn reported_writes_move_the_etag_and_reported_version() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    hub.create_module("d", "m").await;
    let before = hub.get("/twins/d/modules/m").await.body;
    let r = hub
        .raw(
            reqwest::Method::PATCH,
            "/_emulator/twins/d/modules/m/reported",
            Some(
                json!({"temp": 21.5, "fw": {"v": "1.0"}})
                    .to_string()
                    .into_bytes(),
            ),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.body["etag"], before["etag"]);
    assert_eq!(r.body["version"], before["version"].as_i64().unwrap() + 1);
    assert_eq!(r.body["properties"]["reported"]["$version"], 2);
    assert_eq!(r.body["properties"]["reported"]["fw"], json!({"v": "1.0"}));
    assert_eq!(r.body["properties"]["desired"]["$version"], 1);
    assert!(
        r.body["properties"]["reported"]["$metadata"]["temp"]
            .get("$lastUpdatedVersion")
            .is_none()
    );
    let stale = hub
        .patch(
            "/twins/d/modules/m",
            json!({"properties": {"desired": {"x": 1}}}),
            Some(&quoted(&before["etag"])),
        )
        .await;
    assert_eq!(stale.status, 412, "a device write makes an old etag stale");
    let device_level = hub
        .raw(
            reqwest::Method::PATCH,
            "/_emulator/twins/d/reported",
            Some(b"{\"on\": true}".to_vec()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(device_level.status, 200);
    assert_eq!(device_level.body["properties"]["reported"]["on"], true);
}

#[tokio::test]
async fn twin_limits_answer_argument_invalid() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    let mut deep = json!(1);
    for _ in 0..11 {
        deep = json!({"k": deep});
    }
    let big_tags: serde_json::Map<String, Value> = (0..3)
        .map(|i| (format!("t{i}"), json!("x".repeat(3000))))
        .collect();
    let big_desired: serde_json::Map<String, Value> = (0..9)
        .map(|i| (format!("d{i}"), json!("x".repeat(4000))))
        .collect();
    let cases = [
        json!({"tags": {"a.b": 1}}),
        json!({"tags": {"$x": 1}}),
        json!({"tags": {"a b": 1}}),
        json!({"properties": {"desired": {"long": "x".repeat(4097)}}}),
        json!({"properties": {"desired": {"n": 4503599627370496_i64}}}),
        json!({"properties": {"desired": {"arr": [1, null]}}}),
        json!({"properties": {"desired": deep}}),
        json!({"tags": big_tags}),
        json!({"properties": {"desired": big_desired}}),
    ];
    for body in cases {
        let r = hub.patch("/twins/d", body.clone(), None).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("ArgumentInvalid")),
            "{body:.80}"
        );
    }
    let t = hub.get("/twins/d").await.body;
    assert_eq!(t["etag"], "AAAAAAAAAAE=", "refused writes change nothing");
}

#[tokio::test]
async fn twins_of_missing_identities_are_404() {
    let hub = Emulator::start();
    let r = hub.get("/twins/nope").await;
    assert_eq!((r.status, r.code()), (404, Some("DeviceNotFound")));
    hub.create_device("d").await;
    let r = hub
        .patch("/twins/d/modules/m", json!({"tags": {}}), None)
        .await;
    // Live hubs answer `DeviceNotFound` for a missing module twin.
    assert_eq!((r.status, r.code()), (404, Some("DeviceNotFound")));
}

#[tokio::test]
async fn twins_mirror_the_identity_as_live_hubs_do() {
    let hub = Emulator::start();
    let thumb = "ABCDEF0123456789abcdef0123456789ABCDEF01";
    let d = hub
        .put(
            "/devices/x",
            json!({"deviceId": "x", "authentication": {"type": "selfSigned",
                   "x509Thumbprint": {"primaryThumbprint": thumb}}}),
            None,
        )
        .await;
    assert_eq!(d.status, 200, "{d:?}");
    // The identity keeps camelCase keys; the twin capitalises them.
    assert_eq!(
        d.body["authentication"]["x509Thumbprint"]["primaryThumbprint"],
        thumb
    );
    let t = hub.get("/twins/x").await.body;
    assert_eq!(
        t["x509Thumbprint"],
        json!({"PrimaryThumbprint": thumb, "SecondaryThumbprint": null})
    );
    let m = hub.create_module("x", "m").await;
    let mt = hub.get("/twins/x/modules/m").await.body;
    assert_eq!(
        mt["deviceEtag"], m["etag"],
        "a module twin mirrors the module etag"
    );
    assert!(mt.get("connectionStateUpdatedTime").is_none(), "{mt}");
    assert!(mt.get("generationId").is_none(), "{mt}");
    let q = hub
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT * FROM devices"})),
            &[],
        )
        .await;
    assert_eq!(q.status, 200, "{q:?}");
    let row = &q.body[0];
    assert_eq!(row["x509Thumbprint"]["PrimaryThumbprint"], thumb);
    assert!(row.get("parentScopes").is_none(), "{row}");
}
