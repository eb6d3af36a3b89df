//! Quota simulation (`--throttle`) and fault injection (`--faults`) against the real binary:
//! IoT Hub's 429 shape, counting in the stats, dropped connections before and after the write,
//! latency, and the `/_emulator/` routes that are never affected.

use std::time::{Duration, Instant};

use crate::support::{API, Emulator, Resp};
use reqwest::Method;
use serde_json::{Value, json};

/// Sends an owner-authorized request and returns the transport error, if any, instead of panicking.
async fn try_call(
    hub: &Emulator,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<u16, reqwest::Error> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = hub
        .client
        .request(method, format!("{}{path}{sep}{API}", hub.url))
        .header("authorization", hub.owner_token());
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    resp.bytes().await?;
    Ok(status)
}

fn assert_throttling_shape(r: &Resp, operation: &str) {
    assert_throttled_as(r, "ThrottlingException", operation);
}

fn assert_throttled_as(r: &Resp, code: &str, operation: &str) {
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.code(), Some(code));
    let message = r.body["Message"].as_str().expect("a Message string");
    assert_eq!(
        message,
        format!(
            "ErrorCode:{code};The request has been throttled. Wait 10 seconds and try again. Operation type: {operation}"
        )
    );
    assert!(
        r.body["ExceptionMessage"]
            .as_str()
            .expect("an ExceptionMessage string")
            .starts_with("Tracking ID:")
    );
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "live hubs close the connection after a 429"
    );
}

#[tokio::test]
async fn over_quota_requests_get_iot_hubs_429_and_are_counted() {
    let hub = Emulator::start_with(&["--throttle", "twin_read=5/s"]);
    hub.create_device("d").await;
    let mut throttled = Vec::new();
    for _ in 0..30 {
        let r = hub.get("/twins/d").await;
        if r.status == 429 {
            throttled.push(r);
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(!throttled.is_empty(), "30 reads in a burst exceed 5/s");
    assert_throttling_shape(&throttled[0], "TwinRead");
    assert!(
        throttled[0].header("retry-after").is_none(),
        "IoT Hub sends no Retry-After"
    );
    let stats = hub.stats().await;
    assert_eq!(stats["throttled"], throttled.len());
    assert_eq!(
        stats["by_class"]["twin_read"], 30,
        "throttled requests count once in their class"
    );
    assert_eq!(
        stats["by_class"]["registry_write"], 1,
        "other classes are not throttled"
    );
}

/// live-hub.md: "a throttled configuration write was answered 429 `ThrottlingBacklogTimeout`".
#[tokio::test]
async fn throttled_configuration_writes_answer_throttling_backlog_timeout() {
    let body = json!({"content": {"deviceContent": {"properties.desired.x": 1}},
                      "targetCondition": "tags.env = 'prod'"});
    let hub = Emulator::start_with(&["--throttle", "configuration=1/min"]);
    let first = hub.put("/configurations/c1", body.clone(), None).await;
    assert_eq!(first.status, 200, "{first:?}");
    let refused = hub.put("/configurations/c2", body.clone(), None).await;
    assert_throttled_as(&refused, "ThrottlingBacklogTimeout", "ConfigurationWrite");
    assert!(refused.header("retry-after").is_none(), "{refused:?}");
    let deleted = hub.delete("/configurations/c1", None).await;
    assert_throttled_as(&deleted, "ThrottlingBacklogTimeout", "ConfigurationWrite");
    let read = hub.get("/configurations/c1").await;
    assert_throttling_shape(&read, "Configurations");
    assert_eq!(hub.stats().await["throttled"], 3);

    // An injected 429 on a configuration write has the same shape.
    let hub = Emulator::start_with(&["--faults", "429:1"]);
    let r = hub.put("/configurations/c1", body, None).await;
    assert_throttled_as(&r, "ThrottlingBacklogTimeout", "ConfigurationWrite");
}

#[tokio::test]
async fn a_client_under_the_rate_is_never_throttled() {
    let hub = Emulator::start_with(&["--throttle", "S1:1"]);
    hub.create_device("d").await;
    for _ in 0..20 {
        assert_eq!(hub.get("/twins/d").await.status, 200);
        // The behaviour under test: a client that paces itself under the rate.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hub.stats().await["throttled"], 0);
}

#[tokio::test]
async fn bulk_rows_draw_from_the_registry_write_quota() {
    let hub = Emulator::start_with(&["--throttle", "registry_write=10/s"]);
    let rows: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("b{i}"), "importMode": "create"}))
        .collect();
    let r = hub
        .call(Method::POST, "/devices", Some(Value::Array(rows)), &[])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let next = hub.put("/devices/x", json!({"deviceId": "x"}), None).await;
    assert_throttling_shape(&next, "CRUD");
    let stats = hub.stats().await;
    assert_eq!(stats["by_class"]["bulk"], 1);
    assert_eq!(stats["throttled"], 1);
}

#[tokio::test]
async fn injected_errors_have_iot_hubs_shapes() {
    for (spec, status, code, retry_after) in [
        ("429:1", 429, "ThrottlingException", None),
        ("429ra:1", 429, "ThrottlingException", Some("1")),
        ("500:1", 500, "ServerError", None),
        ("503:1", 503, "ServiceUnavailable", None),
    ] {
        let hub = Emulator::start_with(&["--faults", spec]);
        let r = hub.get("/devices/x").await;
        assert_eq!(r.status, status, "{spec}: {r:?}");
        assert_eq!(r.code(), Some(code), "{spec}");
        assert_eq!(r.header("retry-after"), retry_after, "{spec}");
        if status == 429 {
            assert_throttling_shape(&r, "CRUD");
        }
        // `/_emulator/` is never faulted (`stats()` asserts a 200).
        let stats = hub.stats().await;
        let kind = spec.trim_end_matches(":1");
        assert_eq!(stats["faults"][kind], 1, "{spec}: {stats}");
        assert_eq!(stats["throttled"], u64::from(status == 429), "{spec}");
        assert_eq!(stats["by_class"]["registry_read"], 1);
    }
}

#[tokio::test]
async fn reset_drops_the_connection_before_the_write() {
    let hub = Emulator::start_with(&["--faults", "reset:1"]);
    let err = try_call(
        &hub,
        Method::PUT,
        "/devices/d",
        Some(json!({"deviceId": "d"})),
    )
    .await
    .expect_err("the connection is dropped without an answer");
    assert!(!err.is_status(), "{err:?}");
    // The emulator's own routes still answer: the device was never created.
    let r = hub
        .raw(
            Method::PATCH,
            "/_emulator/twins/d/reported",
            Some(b"{\"x\":1}".to_vec()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(hub.stats().await["faults"]["reset"], 1);
}

#[tokio::test]
async fn reset_after_commits_the_write_then_drops_the_connection() {
    let hub = Emulator::start_with(&["--faults", "reset-after:1"]);
    let err = try_call(
        &hub,
        Method::PUT,
        "/devices/d",
        Some(json!({"deviceId": "d"})),
    )
    .await
    .expect_err("the answer is lost");
    assert!(!err.is_status(), "{err:?}");
    let r = hub
        .raw(
            Method::PATCH,
            "/_emulator/twins/d/reported",
            Some(b"{\"x\":1}".to_vec()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 200, "the device exists: {r:?}");
    assert_eq!(hub.stats().await["faults"]["reset-after"], 1);
}

#[tokio::test]
async fn seeded_faults_hit_some_requests_and_spare_others() {
    let hub = Emulator::start_with(&["--faults", "503:0.5", "--faults-seed", "42"]);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(
            try_call(&hub, Method::GET, "/devices/x", None)
                .await
                .unwrap(),
        );
    }
    assert!(
        statuses.contains(&503) && statuses.contains(&404),
        "{statuses:?}"
    );
    let again = Emulator::start_with(&["--faults", "503:0.5", "--faults-seed", "42"]);
    let mut replay = Vec::new();
    for _ in 0..20 {
        replay.push(
            try_call(&again, Method::GET, "/devices/x", None)
                .await
                .unwrap(),
        );
    }
    assert_eq!(statuses, replay, "the same seed gives the same sequence");
}

#[tokio::test]
async fn latency_delays_hub_requests_only() {
    let hub = Emulator::start_with(&["--faults", "latency:150-200ms"]);
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(hub.get("/devices/x").await.status, 404);
        // A lower bound only: the injected latency must delay the answer.
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
    let stats = hub.stats().await;
    assert_eq!(
        stats["faults"]["latency"], 3,
        "/_emulator/ is not delayed: {stats}"
    );
}

#[tokio::test]
async fn duration_flags_take_bare_seconds_and_hours() {
    let hub = Emulator::start_with(&[
        "--config-interval",
        "90",
        "--mqtt",
        "127.0.0.1:0",
        "--simulate-devices",
        "all:1h",
    ]);
    assert_eq!(hub.get("/devices/x").await.status, 404);
}

#[test]
fn bad_specs_are_refused_at_startup_naming_the_bad_part() {
    for (flag, spec, part) in [
        ("--faults", "418:0.1", "418"),
        ("--faults", "latency:5-50xs", "xs"),
        ("--throttle", "twin_writes=5/s", "twin_writes"),
        ("--config-interval", "5sec", "`sec`"),
    ] {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["--listen", "127.0.0.1:0", flag, spec])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {spec}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(part), "{flag} {spec}: {stderr}");
    }
}
