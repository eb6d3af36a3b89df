//! api-version, SAS and bearer authorization, policy permissions and the stats endpoint, against
//! the binary and against the in-process library API (`emulator::start`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::{API, Emulator};
use reqwest::Method;
use serde_json::json;
use twinops_emulator::{Config, start};
use twinops_iothub::connection_string::ServiceConnectionString;

#[tokio::test]
async fn api_version_is_required_on_iot_hub_routes() {
    let hub = Emulator::start();
    let auth = [("authorization", hub.owner_token())];
    for path in [
        "/devices/d1",
        "/devices/d1?api-version=1999-01-01",
        "/twins/d1?api-version=",
    ] {
        let r = hub.raw(Method::GET, path, None, &auth).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("InvalidProtocolVersion")),
            "{path}"
        );
        assert_eq!(
            r.body["Message"],
            "ErrorCode:InvalidProtocolVersion;BadRequest"
        );
    }
    for v in ["2021-04-12", "2020-09-30", "2024-03-31"] {
        let r = hub
            .raw(
                Method::GET,
                &format!("/devices/d1?api-version={v}"),
                None,
                &auth,
            )
            .await;
        assert_eq!(r.status, 404, "{v}");
    }
}

#[tokio::test]
async fn bad_tokens_are_401_iot_hub_unauthorized_access() {
    let hub = Emulator::start();
    let other_key = "cGFzc3dvcmRwYXNzd29yZA==";
    let host_no_port = hub.host.split(':').next().unwrap().to_string();
    let cases = [
        ("no header", None),
        (
            "garbage",
            Some("SharedAccessSignature nonsense".to_string()),
        ),
        (
            "wrong key",
            Some(hub.token(Some("iothubowner"), other_key, None, 3600)),
        ),
        (
            "expired",
            Some(hub.token(Some("iothubowner"), &hub.owner_key, None, -400)),
        ),
        (
            "other hub",
            Some(hub.token(
                Some("iothubowner"),
                &hub.owner_key,
                Some("otherhub.azure-devices.net"),
                3600,
            )),
        ),
        (
            "other device",
            Some(hub.token(
                Some("iothubowner"),
                &hub.owner_key,
                Some(&format!("{}/devices/d2", hub.host)),
                3600,
            )),
        ),
        (
            "device key",
            Some(hub.token(
                None,
                &hub.owner_key,
                Some(&format!("{}/devices/d1", hub.host)),
                3600,
            )),
        ),
        (
            "unknown policy",
            Some(hub.token(Some("nobody"), &hub.owner_key, None, 3600)),
        ),
        ("bearer without flag", Some("Bearer abc".to_string())),
    ];
    for (name, header) in cases {
        let headers: Vec<(&str, String)> =
            header.map(|h| ("authorization", h)).into_iter().collect();
        let r = hub
            .raw(Method::GET, &format!("/devices/d1?{API}"), None, &headers)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (401, Some("IotHubUnauthorizedAccess")),
            "{name}"
        );
        assert_eq!(
            r.body["Message"], "ErrorCode:IotHubUnauthorizedAccess;Unauthorized",
            "{name}"
        );
    }
    // Within the five minutes of allowed skew, and with or without the port, tokens pass.
    for t in [
        hub.token(Some("iothubowner"), &hub.owner_key, None, -200),
        hub.token(
            Some("iothubowner"),
            &hub.owner_key,
            Some(&host_no_port),
            3600,
        ),
        hub.token(
            Some("iothubowner"),
            &hub.owner_key,
            Some(&format!("{}/devices/d1", hub.host)),
            3600,
        ),
    ] {
        let r = hub
            .raw(
                Method::GET,
                &format!("/devices/d1?{API}"),
                None,
                &[("authorization", t)],
            )
            .await;
        assert_eq!(r.status, 404);
    }
}

#[tokio::test]
async fn policies_grant_their_permissions_only() {
    let running = start(Config::default()).await.unwrap();
    let cs = ServiceConnectionString::parse(running.connection_string().expose()).unwrap();
    assert_eq!(cs.host, running.host());
    assert_eq!(cs.key_name.as_deref(), Some("iothubowner"));
    assert!(running.ca_pem().contains("BEGIN CERTIFICATE"));
    let client = crate::support::client_trusting(running.ca_pem_path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |policy: &str| {
        let key = running.policy_key(policy).unwrap();
        twinops_iothub::sas::sign(running.host(), key, Some(policy), now + 600)
            .unwrap()
            .expose()
            .to_string()
    };
    let call = |method: Method, path: &str, policy: &str, body: Option<serde_json::Value>| {
        let mut req = client
            .request(method, format!("{}{path}?{API}", running.url()))
            .header("authorization", token(policy));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        call(
            Method::PUT,
            "/devices/d",
            "registryReadWrite",
            Some(json!({}))
        )
        .await,
        200
    );
    assert_eq!(
        call(Method::PUT, "/devices/e", "registryRead", Some(json!({}))).await,
        401
    );
    assert_eq!(
        call(Method::PUT, "/devices/e", "service", Some(json!({}))).await,
        401
    );
    assert_eq!(
        call(Method::GET, "/devices/d", "registryRead", None).await,
        200
    );
    assert_eq!(call(Method::GET, "/devices/d", "service", None).await, 401);
    assert_eq!(call(Method::GET, "/twins/d", "service", None).await, 200);
    assert_eq!(
        call(Method::GET, "/twins/d", "registryReadWrite", None).await,
        401
    );
    assert_eq!(
        call(
            Method::PATCH,
            "/twins/d",
            "service",
            Some(json!({"tags": {"a": 1}}))
        )
        .await,
        200
    );
    let q = Some(json!({"query": "SELECT * FROM devices"}));
    assert_eq!(
        call(Method::POST, "/devices/query", "service", q.clone()).await,
        200
    );
    assert_eq!(
        call(Method::POST, "/devices/query", "registryRead", q).await,
        401
    );
    let rows = Some(json!([{"id": "b", "importMode": "create"}]));
    assert_eq!(
        call(Method::POST, "/devices", "registryReadWrite", rows.clone()).await,
        200
    );
    assert_eq!(call(Method::POST, "/devices", "service", rows).await, 401);
    let stats = client
        .get(format!("{}/_emulator/stats", running.url()))
        .header("authorization", token("registryReadWrite"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status().as_u16(), 401, "/_emulator needs iothubowner");
    running.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_owner_access_when_configured() {
    let hub = Emulator::start_with(&["--bearer-token", "test-token-123"]);
    let ok = hub
        .raw(
            Method::PUT,
            &format!("/devices/d?{API}"),
            Some(b"{}".to_vec()),
            &[("authorization", "Bearer test-token-123".into())],
        )
        .await;
    assert_eq!(ok.status, 200);
    let bad = hub
        .raw(
            Method::GET,
            &format!("/devices/d?{API}"),
            None,
            &[("authorization", "Bearer test-token-12".into())],
        )
        .await;
    assert_eq!(bad.status, 401);
    let stats = hub
        .raw(
            Method::GET,
            "/_emulator/stats",
            None,
            &[("authorization", "Bearer test-token-123".into())],
        )
        .await;
    assert_eq!(stats.status, 200);
}

#[tokio::test]
async fn stats_count_every_request_once_in_its_class() {
    let hub = Emulator::start();
    hub.create_device("d").await; // registry_write
    hub.get("/devices/d").await; // registry_read
    hub.get("/devices/nope").await; // registry_read (404 still counts)
    hub.get("/twins/d").await; // twin_read
    hub.patch("/twins/d", json!({"tags": {"a": 1}}), Some("\"wrong\""))
        .await; // twin_write (412)
    hub.call(
        Method::POST,
        "/devices/query",
        Some(json!({"query": "SELECT * FROM devices"})),
        &[],
    )
    .await;
    hub.call(
        Method::POST,
        "/devices",
        Some(json!([{"id": "x", "importMode": "create"}, {"id": "y", "importMode": "create"}])),
        &[],
    )
    .await; // one bulk request
    hub.raw(Method::GET, "/devices/d", None, &[]).await; // registry_read (no api-version, no auth)
    let s = hub.stats().await;
    assert_eq!(
        s,
        json!({"total": 8, "by_class": {"registry_read": 3, "registry_write": 1, "bulk": 1, "twin_read": 1,
               "twin_write": 1, "query": 1, "configuration": 0, "jobs": 0}, "throttled": 0,
               "faults": {"429": 0, "429ra": 0, "500": 0, "503": 0, "reset": 0, "reset-after": 0, "latency": 0}})
    );
    let again = hub.stats().await;
    assert_eq!(again["total"], 8, "stats requests are not counted");
}

#[tokio::test]
async fn fixed_owner_key_is_used() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let hub = Emulator::start_with(&["--owner-key", key]);
    assert_eq!(hub.owner_key, key);
    assert_eq!(hub.create_device("d").await["deviceId"], "d");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_iot_hub_error_bodies() {
    let hub = Emulator::start();
    let r = hub.get("/nothing/here").await;
    assert_eq!(r.status, 404);
    assert!(
        r.body["Message"]
            .as_str()
            .unwrap()
            .starts_with("ErrorCode:")
    );
    let r = hub
        .call(Method::POST, "/twins/d", Some(json!({})), &[])
        .await;
    assert_eq!(r.status, 405);
}
