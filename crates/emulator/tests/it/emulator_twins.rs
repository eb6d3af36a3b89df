//! Device and module twins over HTTPS: merge patch and replace, etags and versions on every write
//! (reported writes included), metadata, read-only fields in bodies, and IoT Hub's twin limits as a
//! live hub applies them (`iothub::twin_rules`), on every path that writes a twin.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::{Emulator, Resp};
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
async fn a_null_desired_section_clears_desired_and_keeps_tags() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    hub.create_module("d", "m").await;
    for path in ["/twins/d", "/twins/d/modules/m"] {
        let r = hub
            .patch(
                path,
                json!({"tags": {"site": "b"}, "properties": {"desired": {"foo": 1, "bar": {"baz": 2}}}}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let before = r.body;
        for (if_match, step) in [(None, 1), (Some("*".to_string()), 2)] {
            let r = hub
                .patch(
                    path,
                    json!({"tags": null, "properties": {"desired": null}}),
                    if_match.as_deref(),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            let desired = &r.body["properties"]["desired"];
            let v = before["properties"]["desired"]["$version"]
                .as_i64()
                .unwrap()
                + step;
            assert_eq!(desired["$version"], v, "{desired}");
            let meta = &desired["$metadata"];
            assert_eq!(
                meta.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["$lastUpdated", "$lastUpdatedVersion"],
                "{meta}"
            );
            assert_eq!(meta["$lastUpdatedVersion"], v);
            let values: Vec<&String> = desired
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !k.starts_with('$'))
                .collect();
            assert!(values.is_empty(), "desired keeps {values:?}");
            assert_eq!(
                r.body["tags"],
                json!({"site": "b"}),
                "`tags: null` resets nothing"
            );
            assert_eq!(
                r.body["version"],
                before["version"].as_i64().unwrap() + step
            );
            assert_eq!(hub.get(path).await.body, r.body, "the answer is the twin");
        }
    }
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
    // `deep` is the section itself: eleven objects inside it, one more than the hub allows.
    let mut deep = json!(1);
    for _ in 0..12 {
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

/// `{"l1": {"l2": … {"l<levels>": 1}}}`: `levels` key levels, `levels - 1` objects inside the section.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for i in (1..=levels).rev() {
        v = json!({ format!("l{i}"): v });
    }
    v
}

/// A 400 in IoT Hub's legacy error format: code header, `ErrorCode:<code>;` message, tracking ID.
#[track_caller]
fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (400, Some("ArgumentInvalid")),
        "{what}: {r:?}"
    );
    let message = r.body["Message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("ErrorCode:ArgumentInvalid;"),
        "{what}: {r:?}"
    );
    let exception = r.body["ExceptionMessage"].as_str().unwrap_or_default();
    assert!(exception.starts_with("Tracking ID:"), "{what}: {r:?}");
}

/// What the live hub refuses in a section, one rule per body.
fn refused_sections() -> Vec<(&'static str, Value)> {
    vec![
        ("`#` in a key", json!({"a#b": 1})),
        ("`.` in a key", json!({"a.b": 1})),
        ("`$` in a key", json!({"$x": 1})),
        ("a space in a key", json!({"a b": 1})),
        ("a control character in a key", json!({"a\u{1}b": 1})),
        ("a key over 1024 bytes", json!({"k".repeat(1025): 1})),
        ("a string over 4096 bytes", json!({"s": "x".repeat(4097)})),
        ("eleven objects deep", nested(12)),
        ("null inside an array", json!({"a": [1, null]})),
        (
            "null inside an object inside an array",
            json!({"a": [{"b": null}]}),
        ),
        ("-2^52", json!({"n": -4_503_599_627_370_496_i64})),
        ("2^52", json!({"n": 4_503_599_627_370_496_i64})),
    ]
}

/// What the live hub accepts in a section, all in one body.
fn accepted_section() -> Value {
    let mut v = nested(11);
    let m = v.as_object_mut().unwrap();
    m.insert("".into(), json!({"": "empty keys"}));
    m.insert("température".into(), json!("non-ASCII"));
    m.insert("温度".into(), json!(21));
    m.insert("max".into(), json!(4_503_599_627_370_495_i64));
    m.insert("min".into(), json!(-4_503_599_627_370_495_i64));
    m.insert("one".into(), json!(1));
    m.insert("oneFloat".into(), json!(1.0));
    m.insert("k".repeat(1024), json!("x".repeat(4096)));
    v
}

/// The values of a section without `$metadata` and `$version`.
fn values(section: &Value) -> Value {
    let m: serde_json::Map<String, Value> = section
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "$metadata" && *k != "$version")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(m)
}

#[track_caller]
fn assert_accepted_verbatim(section: &Value) {
    assert_eq!(values(section), accepted_section());
    // `1` stays an integer and `1.0` a float, as the live hub round-trips them.
    assert_eq!(section["one"].to_string(), "1");
    assert_eq!(section["oneFloat"].to_string(), "1.0");
}

#[tokio::test]
async fn patch_and_put_refuse_what_the_live_hub_refuses() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    for (what, section) in refused_sections() {
        for body in [
            json!({"tags": section.clone()}),
            json!({"properties": {"desired": section.clone()}}),
        ] {
            assert_refused(&hub.patch("/twins/d", body.clone(), None).await, what);
            assert_refused(&hub.put("/twins/d", body, None).await, what);
        }
    }
    let t = hub.get("/twins/d").await.body;
    assert_eq!(t["etag"], "AAAAAAAAAAE=", "refused writes change nothing");
}

#[tokio::test]
async fn patch_and_put_accept_what_the_live_hub_accepts_verbatim() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    let body = json!({"tags": accepted_section(), "properties": {"desired": accepted_section()}});
    let r = hub.patch("/twins/d", body.clone(), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_accepted_verbatim(&r.body["tags"]);
    assert_accepted_verbatim(&r.body["properties"]["desired"]);
    let r = hub.put("/twins/d", body, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = hub.get("/twins/d").await.body;
    assert_accepted_verbatim(&t["tags"]);
    assert_accepted_verbatim(&t["properties"]["desired"]);
}

#[tokio::test]
async fn reported_writes_follow_the_same_rules() {
    let hub = Emulator::start();
    hub.create_device("d").await;
    for (what, section) in refused_sections() {
        assert_refused(&report(&hub, section).await, what);
    }
    let r = report(&hub, accepted_section()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_accepted_verbatim(&r.body["properties"]["reported"]);
}

/// A reported-property patch of device `d`, as the device would send it.
async fn report(hub: &Emulator, body: Value) -> Resp {
    hub.raw(
        reqwest::Method::PATCH,
        "/_emulator/twins/d/reported",
        Some(body.to_string().into_bytes()),
        &[("authorization", hub.owner_token())],
    )
    .await
}

#[tokio::test]
async fn bulk_create_rows_follow_the_same_rules() {
    let hub = Emulator::start();
    let rows: Vec<Value> = refused_sections()
        .into_iter()
        .enumerate()
        .map(|(i, (_, section))| json!({"id": format!("bad{i}"), "importMode": "create", "tags": section}))
        .collect();
    let count = rows.len();
    let r = hub
        .call(
            reqwest::Method::POST,
            "/devices",
            Some(Value::Array(rows)),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), count, "{r:?}");
    assert!(
        errors.iter().all(|e| e["errorCode"] == "ArgumentInvalid"),
        "{r:?}"
    );
    for i in 0..count {
        assert_eq!(hub.get(&format!("/devices/bad{i}")).await.status, 404);
    }
    let good = json!([{"id": "good", "importMode": "create",
        "tags": accepted_section(), "properties": {"desired": accepted_section()}}]);
    let r = hub
        .call(reqwest::Method::POST, "/devices", Some(good), &[])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let t = hub.get("/twins/good").await.body;
    assert_accepted_verbatim(&t["tags"]);
    assert_accepted_verbatim(&t["properties"]["desired"]);
}
