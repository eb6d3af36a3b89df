//! The query API (paging, continuation, item types, errors) and the bulk registry call over HTTPS.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::Emulator;
use serde_json::{Value, json};

async fn query(
    hub: &Emulator,
    sql: &str,
    page: Option<&str>,
    token: Option<&str>,
) -> crate::support::Resp {
    let mut headers = Vec::new();
    if let Some(p) = page {
        headers.push(("x-ms-max-item-count", p));
    }
    if let Some(t) = token {
        headers.push(("x-ms-continuation", t));
    }
    hub.call(
        reqwest::Method::POST,
        "/devices/query",
        Some(json!({"query": sql})),
        &headers,
    )
    .await
}

async fn bulk(hub: &Emulator, rows: Value) -> crate::support::Resp {
    hub.call(reqwest::Method::POST, "/devices", Some(rows), &[])
        .await
}

#[tokio::test]
async fn query_pages_with_continuation_until_the_last_page() {
    let hub = Emulator::start();
    let rows: Vec<Value> = (0..25)
        .map(|i| json!({"id": format!("d{i:02}"), "importMode": "create", "tags": {"even": i % 2 == 0}}))
        .collect();
    assert_eq!(bulk(&hub, Value::Array(rows)).await.status, 200);
    let mut token: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = query(&hub, "SELECT * FROM devices", Some("10"), token.as_deref()).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-ms-item-type"), Some("Twin"));
        pages += 1;
        ids.extend(
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["deviceId"].as_str().unwrap().to_string()),
        );
        match r.header("x-ms-continuation") {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, (0..25).map(|i| format!("d{i:02}")).collect::<Vec<_>>());

    let filtered = query(
        &hub,
        "SELECT * FROM devices WHERE tags.even = true",
        None,
        None,
    )
    .await;
    assert_eq!(filtered.body.as_array().unwrap().len(), 13);
    assert!(filtered.header("x-ms-continuation").is_none());
    let count = query(&hub, "SELECT COUNT() AS total FROM devices", None, None).await;
    assert_eq!(count.body, json!([{"total": 25}]));
    assert_eq!(count.header("x-ms-item-type"), Some("Raw"));
    let proj = query(
        &hub,
        "SELECT deviceId FROM devices WHERE deviceId = 'd03'",
        None,
        None,
    )
    .await;
    assert_eq!(proj.body, json!([{"deviceId": "d03"}]));
    assert_eq!(proj.header("x-ms-item-type"), Some("Raw"));
}

#[tokio::test]
async fn page_size_defaults_to_100_and_is_capped() {
    let hub = Emulator::start_with(&["--query-page-max", "7"]);
    let rows: Vec<Value> = (0..9)
        .map(|i| json!({"id": format!("d{i}"), "importMode": "create"}))
        .collect();
    bulk(&hub, Value::Array(rows)).await;
    for asked in [None, Some("-1"), Some("0"), Some("1000")] {
        let r = query(&hub, "SELECT * FROM devices", asked, None).await;
        assert_eq!(r.body.as_array().unwrap().len(), 7, "{asked:?}");
        assert!(r.header("x-ms-continuation").is_some());
    }
}

#[tokio::test]
async fn module_twins_page_in_device_then_module_order() {
    let hub = Emulator::start();
    for d in ["b", "a"] {
        hub.create_device(d).await;
        for m in ["y", "x"] {
            hub.create_module(d, m).await;
        }
    }
    let r = query(&hub, "SELECT * FROM devices.modules", None, None).await;
    let keys: Vec<(String, String)> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["deviceId"].as_str().unwrap().into(),
                t["moduleId"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn bad_queries_are_refused() {
    let hub = Emulator::start();
    for bad in [
        "SELECT * FROM nowhere",
        "SELECT * FROM devices WHERE",
        "SELEKT 1",
    ] {
        let r = query(&hub, bad, None, None).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("ArgumentInvalid")),
            "{bad}"
        );
        assert_eq!(
            r.body["Message"], "ErrorCode:ArgumentInvalid;BadRequest",
            "live hubs answer a bare BadRequest: {bad}"
        );
    }
    let long = format!(
        "SELECT * FROM devices WHERE deviceId = '{}'",
        "x".repeat(8200)
    );
    let r = query(&hub, &long, None, None).await;
    assert_eq!(r.status, 412, "over-long queries fail as on IoT Hub");
    let r = hub
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"q": 1})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = query(&hub, "SELECT * FROM devices", None, Some("garbage")).await;
    assert_eq!((r.status, r.code()), (400, Some("ArgumentInvalid")));
}

#[tokio::test]
async fn bulk_applies_rows_and_reports_failures_with_400() {
    let hub = Emulator::start();
    let ok = bulk(
        &hub,
        json!([
            {"id": "b1", "importMode": "create", "status": "enabled",
             "authentication": {"symmetricKey": {"primaryKey": null, "secondaryKey": null}, "type": "sas"},
             "tags": {"site": "x"}, "properties": {"desired": {"interval": 5}}},
            {"id": "b1", "moduleId": "m1", "importMode": "create"},
        ]),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.body,
        json!({"isSuccessful": true, "errors": [], "warnings": []})
    );
    let twin = hub.get("/twins/b1").await.body;
    assert_eq!(twin["tags"]["site"], "x");
    assert_eq!(twin["properties"]["desired"]["interval"], 5);
    assert_eq!(hub.get("/devices/b1/modules/m1").await.status, 200);

    let mixed = bulk(
        &hub,
        json!([
            {"id": "b1", "importMode": "create"},
            {"id": "b2", "importMode": "create"},
            {"id": "b3", "importMode": "delete"},
            {"id": "b1", "moduleId": "m1", "importMode": "updateTwinIfMatchETag", "twinETag": "stale", "tags": {"a": 1}},
        ]),
    )
    .await;
    assert_eq!(mixed.status, 400);
    assert_eq!(mixed.body["isSuccessful"], false);
    let codes: Vec<&str> = mixed.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "DeviceAlreadyExists",
            "DeviceNotFound",
            "PreconditionFailed"
        ]
    );
    assert_eq!(mixed.body["errors"][2]["moduleId"], "m1");
    assert_eq!(
        hub.get("/devices/b2").await.status,
        200,
        "good rows are applied"
    );

    let dup = bulk(
        &hub,
        json!([{"id": "c", "importMode": "create"}, {"id": "c", "importMode": "create"}]),
    )
    .await;
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body["errors"][0]["errorCode"],
        "DeviceDefinedMultipleTimes"
    );
    assert_eq!(hub.get("/devices/c").await.status, 404);

    let many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("m{i}"), "importMode": "create"}))
        .collect();
    let r = bulk(&hub, Value::Array(many)).await;
    assert_eq!((r.status, r.code()), (413, Some("TooManyDevices")));

    let del = bulk(
        &hub,
        json!([{"id": "b1", "importMode": "delete"}, {"id": "b2", "importMode": "delete"}]),
    )
    .await;
    assert_eq!(del.status, 200);
    // Under SAS a module identity under a missing device answers 401.
    assert_eq!(hub.get("/devices/b1/modules/m1").await.status, 401);
    assert_eq!(hub.get("/twins/b1/modules/m1").await.status, 404);
}
