//! Automatic configurations over HTTPS: CRUD with IoT Hub's status codes, content applied to the
//! twins a target condition selects (priority, statuses, metrics), and module configurations.

use std::time::Duration;

use crate::support::{Emulator, PATIENCE, eventually};
use serde_json::{Value, json};

fn quoted(v: &Value) -> String {
    format!("\"{}\"", v.as_str().expect("an etag string"))
}

async fn tag(hub: &Emulator, id: &str, env: &str) {
    let r = hub
        .patch(&format!("/twins/{id}"), json!({"tags": {"env": env}}), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn configuration_crud_answers_with_iot_hubs_codes() {
    let hub = Emulator::start();
    let body = json!({
        "id": "c1",
        "content": {"deviceContent": {"properties.desired.a": 1}},
        "targetCondition": "tags.env='prod'",
        "priority": 1,
        "labels": {"team": "ops"},
        "metrics": {"queries": {"prod": "SELECT deviceId FROM devices WHERE tags.env = 'prod'"}}
    });
    let created = hub.put("/configurations/c1", body.clone(), None).await;
    assert_eq!(created.status, 200, "{created:?}");
    let c = &created.body;
    assert_eq!(c["id"], "c1");
    assert_eq!(c["priority"], 1);
    assert_eq!(c["labels"], json!({"team": "ops"}));
    assert!(
        c["schemaVersion"].is_null(),
        "null unless set, as on live hubs"
    );
    assert!(c["etag"].is_string());
    assert!(c["createdTimeUtc"].is_string());
    assert!(c["systemMetrics"]["results"]["targetedCount"].is_number());
    assert!(
        c["metrics"]["queries"]["prod"]
            .as_str()
            .unwrap()
            .contains("tags.env")
    );

    let again = hub.put("/configurations/c1", body.clone(), None).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), Some("ConfigurationAlreadyExists"));
    let stale = hub
        .put("/configurations/c1", body.clone(), Some("\"nope\""))
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.code(), Some("PreconditionFailed"));
    let mut other = body.clone();
    other["id"] = json!("c2");
    let missing = hub.put("/configurations/c2", other, Some("*")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), Some("ConfigurationNotFound"));

    let mut update = body.clone();
    update["priority"] = json!(7);
    update["targetCondition"] = json!("tags.env='dev'");
    update["labels"] = json!({"team": "dev"});
    update["content"] = json!({"deviceContent": {"properties.desired.a": 2}});
    let updated = hub
        .put("/configurations/c1", update, Some(&quoted(&c["etag"])))
        .await;
    assert_eq!(updated.status, 200, "{updated:?}");
    let u = &updated.body;
    assert_eq!(u["priority"], 7);
    assert_eq!(u["targetCondition"], "tags.env='dev'");
    assert_eq!(u["labels"], json!({"team": "dev"}));
    assert_eq!(
        u["content"], c["content"],
        "content is immutable: an update keeps it"
    );
    assert_eq!(u["createdTimeUtc"], c["createdTimeUtc"]);
    assert_ne!(u["etag"], c["etag"]);

    let got = hub.get("/configurations/c1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["priority"], 7);
    let list = hub.get("/configurations?top=10").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let nothing = hub.get("/configurations/nope").await;
    assert_eq!(nothing.status, 404);
    assert_eq!(nothing.code(), Some("ConfigurationNotFound"));

    let bad_content = hub
        .put(
            "/configurations/bad",
            json!({"content": {"deviceContent": {"tags.x": 1}}, "targetCondition": "*"}),
            None,
        )
        .await;
    assert_eq!(bad_content.status, 400);
    assert_eq!(bad_content.code(), Some("InvalidConfigurationContent"));
    let bad_condition = hub
        .put(
            "/configurations/bad",
            json!({"content": {"deviceContent": {"properties.desired.x": 1}}, "targetCondition": "tags.x = "}),
            None,
        )
        .await;
    assert_eq!(bad_condition.status, 400);

    let etag = quoted(&u["etag"]);
    assert_eq!(
        hub.delete("/configurations/c1", Some("\"nope\""))
            .await
            .status,
        412
    );
    assert_eq!(
        hub.delete("/configurations/c1", Some(&etag)).await.status,
        204
    );
    assert_eq!(hub.get("/configurations/c1").await.status, 404);
    assert_eq!(
        hub.delete("/configurations/c1", Some("*")).await.status,
        404
    );

    let stats = hub.stats().await;
    assert_eq!(stats["by_class"]["configuration"], 14);
}

#[tokio::test]
async fn device_configurations_write_desired_into_targeted_twins_by_priority() {
    let hub = Emulator::start_with(&["--config-interval", "200ms"]);
    for (id, env) in [("d1", "prod"), ("d2", "dev")] {
        hub.create_device(id).await;
        tag(&hub, id, env).await;
    }
    // The winner first, so the loser is never applied on its own in between.
    let high = hub
        .put(
            "/configurations/high",
            json!({"content": {"deviceContent": {"properties.desired": {"settings": {"rate": 99}}}},
                   "targetCondition": "tags.env = 'prod'", "priority": 5}),
            None,
        )
        .await;
    assert_eq!(high.status, 200, "{high:?}");
    let low = hub
        .put(
            "/configurations/low",
            json!({"content": {"deviceContent": {"properties.desired.settings.rate": 10, "properties.desired.mode": "eco"}},
                   "targetCondition": "tags.env='prod'", "priority": 1}),
            None,
        )
        .await;
    assert_eq!(low.status, 200, "{low:?}");

    let twin = eventually(
        "d1's configurations: high applied, low targeted",
        PATIENCE,
        async || hub.get("/twins/d1").await.body,
        |t| {
            t["configurations"]["high"]["status"] == "Applied"
                && t["configurations"]["low"]["status"] == "Targeted"
        },
    )
    .await;
    let desired = &twin["properties"]["desired"];
    assert_eq!(desired["settings"], json!({"rate": 99}));
    assert!(
        desired.get("mode").is_none(),
        "a configuration that loses a path is not applied at all"
    );
    assert!(desired["$version"].as_i64().unwrap() >= 3, "{desired}");
    let other = hub.get("/twins/d2").await.body;
    assert!(other.get("configurations").is_none(), "{other}");
    assert!(other["properties"]["desired"].get("settings").is_none());

    // An idle hub does not rewrite values that already agree. Nothing shows that a pass ran
    // without a change, so this sleep is the behaviour under test: three passes of 200 ms.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = hub.get("/twins/d1").await.body;
    assert_eq!(later["etag"], twin["etag"]);

    let metrics = eventually(
        "high's system metrics count d1 applied",
        PATIENCE,
        async || {
            let h = hub.get("/configurations/high").await.body;
            let l = hub.get("/configurations/low").await.body;
            (h, l)
        },
        |(h, _)| h["systemMetrics"]["results"]["appliedCount"] == 1,
    )
    .await;
    assert_eq!(metrics.0["systemMetrics"]["results"]["targetedCount"], 1);
    assert_eq!(metrics.1["systemMetrics"]["results"]["targetedCount"], 1);
    assert_eq!(metrics.1["systemMetrics"]["results"]["appliedCount"], 0);

    let rows = hub
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT deviceId FROM devices WHERE configurations.[[high]].status = 'Applied'"})),
            &[],
        )
        .await;
    assert_eq!(rows.body, json!([{"deviceId": "d1"}]));

    // Leaving the target drops the status but keeps the values.
    tag(&hub, "d1", "dev").await;
    let left = eventually(
        "d1 no longer targeted",
        PATIENCE,
        async || hub.get("/twins/d1").await.body,
        |t| t.get("configurations").is_none(),
    )
    .await;
    assert_eq!(
        left["properties"]["desired"]["settings"],
        json!({"rate": 99})
    );

    // A twin whose value was changed by someone else gets it back at the next pass.
    tag(&hub, "d2", "prod").await;
    eventually(
        "high applied to d2 (desired rate 99)",
        PATIENCE,
        async || hub.get("/twins/d2").await.body,
        |t| t["properties"]["desired"]["settings"]["rate"] == 99,
    )
    .await;
    hub.patch(
        "/twins/d2",
        json!({"properties": {"desired": {"settings": {"rate": 1}}}}),
        None,
    )
    .await;
    eventually(
        "high re-applied to d2 (desired rate 99 again)",
        PATIENCE,
        async || hub.get("/twins/d2").await.body,
        |t| t["properties"]["desired"]["settings"]["rate"] == 99,
    )
    .await;
}

#[tokio::test]
async fn module_configurations_target_module_twins() {
    let hub = Emulator::start_with(&["--config-interval", "200ms"]);
    hub.create_device("d").await;
    hub.create_module("d", "m1").await;
    hub.create_module("d", "m2").await;
    let r = hub
        .put(
            "/configurations/mods",
            json!({"content": {"moduleContent": {"properties.desired.x": 1}},
                   "targetCondition": "FROM devices.modules WHERE moduleId = 'm1'"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let twin = eventually(
        "mods applied to m1",
        PATIENCE,
        async || hub.get("/twins/d/modules/m1").await.body,
        |t| t["configurations"]["mods"]["status"] == "Applied",
    )
    .await;
    assert_eq!(twin["properties"]["desired"]["x"], 1);
    let m2 = hub.get("/twins/d/modules/m2").await.body;
    assert!(m2.get("configurations").is_none());
    let d = hub.get("/twins/d").await.body;
    assert!(d.get("configurations").is_none());

    // Deleting the configuration removes the status; the value stays.
    let etag = quoted(&hub.get("/configurations/mods").await.body["etag"]);
    assert_eq!(
        hub.delete("/configurations/mods", Some(&etag)).await.status,
        204
    );
    let after = eventually(
        "m1 without the deleted configuration's status",
        PATIENCE,
        async || hub.get("/twins/d/modules/m1").await.body,
        |t| t.get("configurations").is_none(),
    )
    .await;
    assert_eq!(after["properties"]["desired"]["x"], 1);
}

/// A module configuration writes a value exactly, as a device configuration does: an object
/// replaces the object at its path (members it lacks go), and an idle hub leaves the twin alone.
#[tokio::test]
async fn module_configurations_write_objects_exactly() {
    let hub = Emulator::start_with(&["--config-interval", "200ms"]);
    hub.create_device("d").await;
    hub.create_module("d", "m").await;
    let r = hub
        .patch(
            "/twins/d/modules/m",
            json!({"properties": {"desired": {"settings": {"rate": 1, "old": true}}}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = hub
        .put(
            "/configurations/mods",
            json!({"content": {"moduleContent": {"properties.desired.settings": {"rate": 99}}},
                   "targetCondition": "FROM devices.modules WHERE moduleId = 'm'"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let twin = eventually(
        "m's settings replaced by the configuration's",
        PATIENCE,
        async || hub.get("/twins/d/modules/m").await.body,
        |t| t["properties"]["desired"]["settings"] == json!({"rate": 99}),
    )
    .await;
    assert_eq!(twin["configurations"]["mods"]["status"], "Applied");
    // Three passes of 200 ms without a change: the sleep is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        hub.get("/twins/d/modules/m").await.body["etag"],
        twin["etag"]
    );
}

/// live-hub.md: "`schemaVersion` may be changed by an update".
#[tokio::test]
async fn an_update_may_change_the_schema_version() {
    let hub = Emulator::start();
    let body = json!({"schemaVersion": "1.0",
                      "content": {"deviceContent": {"properties.desired.x": 1}},
                      "targetCondition": "tags.env = 'prod'"});
    let c = hub.put("/configurations/c", body.clone(), None).await;
    assert_eq!(
        (c.status, &c.body["schemaVersion"]),
        (200, &json!("1.0")),
        "{c:?}"
    );
    let mut update = c.body.clone();
    update["schemaVersion"] = json!("2.0");
    let etag = c.header("etag").unwrap().to_string();
    let u = hub.put("/configurations/c", update, Some(&etag)).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["schemaVersion"], "2.0");
    assert_eq!(
        hub.get("/configurations/c").await.body["schemaVersion"],
        "2.0"
    );
    // Like `labels`, an update without it leaves it null.
    let mut update = u.body.clone();
    update.as_object_mut().unwrap().remove("schemaVersion");
    let etag = u.header("etag").unwrap().to_string();
    let u = hub.put("/configurations/c", update, Some(&etag)).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert!(u.body["schemaVersion"].is_null(), "{u:?}");
}

#[tokio::test]
async fn configurations_follow_live_hubs() {
    let hub = Emulator::start();
    let body = json!({"content": {"deviceContent": {"properties.desired.x": 1}},
                      "targetCondition": "tags.env = 'prod'"});
    let upper = hub.put("/configurations/Upper", body.clone(), None).await;
    assert_eq!((upper.status, upper.code()), (400, Some("ArgumentInvalid")));
    let odd = hub
        .put("/configurations/a-b+c%25_*!'", body.clone(), None)
        .await;
    assert_eq!(odd.status, 200, "{odd:?}");

    let c = hub.put("/configurations/c", body.clone(), None).await;
    assert_eq!(c.status, 200, "{c:?}");
    let etag = c.body["etag"].as_str().unwrap().to_string();
    assert!(!etag.starts_with('"'), "the body etag is unquoted");
    assert_eq!(c.header("etag"), Some(format!("\"{etag}\"").as_str()));
    assert!(c.body["schemaVersion"].is_null(), "{c:?}");
    assert!(c.body["labels"].is_null(), "{c:?}");
    assert_eq!(c.body["priority"], 0);
    let results = &c.body["systemMetrics"]["results"];
    for m in [
        "targetedCount",
        "appliedCount",
        "reportedSuccessfulCount",
        "reportedFailedCount",
    ] {
        assert!(results[m].is_number(), "{m}: {results}");
    }
    let got = hub.get("/configurations/c").await;
    assert_eq!(got.header("etag"), Some(format!("\"{etag}\"").as_str()));

    let dup = hub.put("/configurations/c", body.clone(), None).await;
    assert_eq!(
        (dup.status, dup.code()),
        (409, Some("ConfigurationAlreadyExists"))
    );
    let unquoted = hub
        .put("/configurations/c", body.clone(), Some(&etag))
        .await;
    assert_eq!(
        unquoted.status, 409,
        "only a quoted If-Match works: {unquoted:?}"
    );
    let no_content = hub
        .put(
            "/configurations/c",
            json!({"targetCondition": "tags.env = 'dev'"}),
            Some(&format!("\"{etag}\"")),
        )
        .await;
    assert_eq!(no_content.status, 400, "content is required on update too");
    let changed = hub
        .put(
            "/configurations/c",
            json!({"content": {"deviceContent": {"properties.desired.x": 2}},
                   "targetCondition": "tags.env = 'dev'", "labels": {"a": "b"}}),
            Some(&format!("\"{etag}\"")),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        changed.body["content"]["deviceContent"]["properties.desired.x"], 1,
        "a content change is silently ignored"
    );
    assert_eq!(changed.body["targetCondition"], "tags.env = 'dev'");
    assert_eq!(changed.body["labels"], json!({"a": "b"}));
    let listed = hub.get("/configurations?top=1").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2, "?top is ignored");

    for (cond, ok) in [
        ("deviceId = 'd'", true),
        ("properties.reported.x = 1", true),
        ("properties.desired.x = 1", false),
        ("status = 'enabled'", false),
    ] {
        let r = hub
            .put(
                "/configurations/t",
                json!({"content": {"deviceContent": {"properties.desired.x": 1}},
                       "targetCondition": cond}),
                None,
            )
            .await;
        assert_eq!(r.status == 200, ok, "{cond}: {r:?}");
        if ok {
            assert_eq!(hub.delete("/configurations/t", None).await.status, 204);
        }
    }
    for content in [
        json!({"deviceContent": {"tags.x": 1}}),
        json!({"deviceContent": {"properties.desiredx": 1}}),
        json!({"modulesContent": {"$edgeHub": {"properties.desired": {}}}}),
    ] {
        let r = hub
            .put(
                "/configurations/bad",
                json!({"content": content, "targetCondition": "*"}),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("InvalidConfigurationContent")),
            "{content}"
        );
    }
    assert_eq!(
        hub.delete("/configurations/c", None).await.status,
        204,
        "no If-Match needed"
    );
}
