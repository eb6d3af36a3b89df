//! SAS negatives that `emulator_auth.rs` does not already cover: tampered tokens (a widened scope,
//! a later expiry, another policy name, all keeping the old signature), the five-minute skew at
//! its edge, scopes that share a prefix without sharing a segment, each policy outside its
//! permissions on every route class, device-key tokens signed with the device's real key, bearer
//! look-alikes, no header at all; and that neither error bodies nor the emulator's stderr (at
//! trace level) ever contain a token, a signature or a key.

use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{API, Emulator, Resp};

const UNAUTHORIZED: (u16, Option<&str>) = (401, Some("IotHubUnauthorizedAccess"));

/// A GET of `path` with `authorization` as given.
async fn get_with(hub: &Emulator, path: &str, authorization: &str) -> Resp {
    hub.raw(
        Method::GET,
        &format!("{path}?{API}"),
        None,
        &[("authorization", authorization.to_string())],
    )
    .await
}

async fn call_with(
    hub: &Emulator,
    method: Method,
    path: &str,
    body: Option<Value>,
    authorization: &str,
) -> Resp {
    hub.raw(
        method,
        &format!("{path}?{API}"),
        body.map(|b| b.to_string().into_bytes()),
        &[
            ("authorization", authorization.to_string()),
            ("if-match", "*".to_string()),
        ],
    )
    .await
}

/// Replaces the value of one `name=` field of a token, keeping the rest (and the signature).
fn with_field(token: &str, name: &str, value: &str) -> String {
    let rest = token
        .strip_prefix("SharedAccessSignature ")
        .expect("a SAS token");
    let fields: Vec<String> = rest
        .split('&')
        .map(|f| match f.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => f.to_string(),
        })
        .collect();
    format!("SharedAccessSignature {}", fields.join("&"))
}

fn field(token: &str, name: &str) -> String {
    token
        .strip_prefix("SharedAccessSignature ")
        .and_then(|r| {
            r.split('&')
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
        })
        .expect("the field")
        .to_string()
}

fn enc(s: &str) -> String {
    twinops_iothub::sas::encode(s)
}

#[tokio::test]
async fn tampered_tokens_keep_no_power() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    hub.create_device("d2").await;
    let scoped = hub.token(
        Some("iothubowner"),
        &hub.owner_key,
        Some(&format!("{}/devices/d1", hub.host)),
        600,
    );
    assert_eq!(get_with(&hub, "/devices/d1", &scoped).await.status, 200);
    let short = hub.token(Some("iothubowner"), &hub.owner_key, None, 60);
    let se: u64 = field(&short, "se").parse().expect("se");
    let cases = [
        (
            "scope widened to the hub",
            with_field(&scoped, "sr", &enc(&hub.host)),
        ),
        (
            "scope moved to another device",
            with_field(&scoped, "sr", &enc(&format!("{}/devices/d2", hub.host))),
        ),
        (
            "expiry extended",
            with_field(&short, "se", &(se + 86_400).to_string()),
        ),
        (
            "expiry with a leading zero",
            with_field(&short, "se", &format!("0{se}")),
        ),
        (
            "policy renamed",
            with_field(&short, "skn", "registryReadWrite"),
        ),
        ("signature emptied", with_field(&short, "sig", "")),
        ("signature not base64", with_field(&short, "sig", "%%%%")),
        (
            "signature of another length",
            with_field(&short, "sig", "AAAA"),
        ),
        (
            "sr escapes lower-cased",
            with_field(&short, "sr", &enc(&hub.host).to_lowercase()),
        ),
        ("se negative", with_field(&short, "se", "-1")),
        (
            "se overflowing",
            with_field(&short, "se", "99999999999999999999999"),
        ),
        ("no se", short.replace(&format!("&se={se}"), "")),
        ("no sig", with_field(&short, "sig", "").replace("&sig=", "")),
        (
            "prefix lower-cased",
            short.replacen("SharedAccessSignature", "sharedaccesssignature", 1),
        ),
    ];
    for (what, token) in cases {
        let target = if what.contains("device") {
            "/devices/d2"
        } else {
            "/devices/d1"
        };
        let r = get_with(&hub, target, &token).await;
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{what}");
        assert_eq!(
            r.body["Message"], "ErrorCode:IotHubUnauthorizedAccess;Unauthorized",
            "{what}"
        );
    }
}

#[tokio::test]
async fn expiry_skew_is_five_minutes_not_more() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    // A few seconds of margin either side of the 300 s edge, for the time the requests take.
    let within = hub.token(Some("iothubowner"), &hub.owner_key, None, -285);
    assert_eq!(get_with(&hub, "/devices/d1", &within).await.status, 200);
    let beyond = hub.token(Some("iothubowner"), &hub.owner_key, None, -315);
    let r = get_with(&hub, "/devices/d1", &beyond).await;
    assert_eq!((r.status, r.code()), UNAUTHORIZED);
    let ancient = hub.token(Some("iothubowner"), &hub.owner_key, None, -1_000_000_000);
    let r = get_with(&hub, "/devices/d1", &ancient).await;
    assert_eq!((r.status, r.code()), UNAUTHORIZED);
}

#[tokio::test]
async fn scopes_cover_whole_segments_of_this_hub_only() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    hub.create_device("d10").await;
    let (name, port) = hub.host.rsplit_once(':').expect("host:port");
    for (what, sr, path) in [
        ("devicesX", format!("{}/devicesX", hub.host), "/devices/d1"),
        (
            "devices prefix d",
            format!("{}/devices/d", hub.host),
            "/devices/d1",
        ),
        (
            "d1 is not d10",
            format!("{}/devices/d1", hub.host),
            "/devices/d10",
        ),
        (
            "twins is no device scope",
            format!("{}/twins", hub.host),
            "/devices/d1",
        ),
        ("host prefix", format!("{name}x:{port}"), "/devices/d1"),
        ("host suffix", format!("x{}", hub.host), "/devices/d1"),
        (
            "subdomain",
            format!("{name}.evil.example:{port}"),
            "/devices/d1",
        ),
        (
            "other hub",
            "myhub.azure-devices.net".to_string(),
            "/devices/d1",
        ),
        ("empty resource", String::new(), "/devices/d1"),
        (
            "module scope for its device",
            format!("{}/devices/d1/modules/m", hub.host),
            "/devices/d1",
        ),
        (
            "d1 scope on a query",
            format!("{}/devices/d1", hub.host),
            "/devices/query",
        ),
    ] {
        let token = hub.token(Some("iothubowner"), &hub.owner_key, Some(&sr), 600);
        let r = if path == "/devices/query" {
            call_with(
                &hub,
                Method::POST,
                path,
                Some(json!({"query": "SELECT * FROM devices"})),
                &token,
            )
            .await
        } else {
            get_with(&hub, path, &token).await
        };
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{what}");
    }
    // The scopes that do cover, for contrast.
    for sr in [
        format!("{}/devices", hub.host),
        format!("{}/devices/d10", hub.host),
        format!("{}/", hub.host),
        name.to_string(),
    ] {
        let token = hub.token(Some("iothubowner"), &hub.owner_key, Some(&sr), 600);
        assert_eq!(
            get_with(&hub, "/devices/d10", &token).await.status,
            200,
            "{sr}"
        );
    }
}

/// Signs a hub-wide token for a policy with its key (from the in-process emulator).
fn policy_token(running: &twinops_emulator::Running, policy: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let key = running.policy_key(policy).expect("a policy key");
    twinops_iothub::sas::sign(running.host(), key, Some(policy), now + 600)
        .expect("signing")
        .expose()
        .to_string()
}

#[tokio::test]
async fn policies_are_refused_outside_their_permissions_on_every_route_class() {
    let running = twinops_emulator::start(twinops_emulator::Config::default())
        .await
        .expect("starting");
    let client = crate::support::client_trusting(running.ca_pem_path());
    let send = |method: Method, path: &str, token: String, body: Option<Value>| {
        let mut req = client
            .request(method.clone(), format!("{}{path}?{API}", running.url()))
            .header("authorization", token);
        if method == Method::DELETE {
            req = req.header("if-match", "*");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.expect("request");
            let code = r
                .headers()
                .get("iothub-errorcode")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (r.status().as_u16(), code)
        }
    };
    let owner = policy_token(&running, "iothubowner");
    let ok = send(Method::PUT, "/devices/d1", owner.clone(), Some(json!({}))).await;
    assert_eq!(ok.0, 200);
    let ok = send(
        Method::PUT,
        "/devices/d1/modules/m1",
        owner.clone(),
        Some(json!({})),
    )
    .await;
    assert_eq!(ok.0, 200);
    let query = json!({"query": "SELECT * FROM devices"});
    let rows = json!([{"id": "b1", "importMode": "create"}]);
    let refused = [
        ("registryRead", Method::PUT, "/devices/x", Some(json!({}))),
        ("registryRead", Method::DELETE, "/devices/d1", None),
        (
            "registryRead",
            Method::PUT,
            "/devices/d1/modules/m2",
            Some(json!({})),
        ),
        (
            "registryRead",
            Method::DELETE,
            "/devices/d1/modules/m1",
            None,
        ),
        ("registryRead", Method::POST, "/devices", Some(rows.clone())),
        ("registryRead", Method::GET, "/twins/d1", None),
        (
            "registryRead",
            Method::PATCH,
            "/twins/d1",
            Some(json!({"tags": {"a": 1}})),
        ),
        (
            "registryRead",
            Method::POST,
            "/devices/query",
            Some(query.clone()),
        ),
        ("service", Method::PUT, "/devices/x", Some(json!({}))),
        ("service", Method::DELETE, "/devices/d1", None),
        (
            "service",
            Method::PUT,
            "/devices/d1/modules/m2",
            Some(json!({})),
        ),
        ("service", Method::DELETE, "/devices/d1/modules/m1", None),
        ("service", Method::GET, "/devices/d1/modules", None),
        ("service", Method::GET, "/devices", None),
        ("service", Method::POST, "/devices", Some(rows.clone())),
        (
            "registryReadWrite",
            Method::PATCH,
            "/twins/d1",
            Some(json!({"tags": {"a": 1}})),
        ),
        (
            "registryReadWrite",
            Method::PUT,
            "/twins/d1/modules/m1",
            Some(json!({"tags": {}})),
        ),
        (
            "registryReadWrite",
            Method::POST,
            "/devices/query",
            Some(query.clone()),
        ),
    ];
    for (policy, method, path, body) in refused {
        let got = send(method.clone(), path, policy_token(&running, policy), body).await;
        assert_eq!(
            (got.0, got.1.as_deref()),
            UNAUTHORIZED,
            "{policy} {method} {path}"
        );
    }
    for policy in ["service", "registryRead", "registryReadWrite"] {
        let r = client
            .get(format!("{}/_emulator/stats", running.url()))
            .header("authorization", policy_token(&running, policy))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 401, "{policy} on /_emulator");
    }
    // Nothing the refused requests tried happened.
    let d = send(Method::GET, "/devices/d1/modules", owner.clone(), None).await;
    assert_eq!(d.0, 200);
    let x = send(Method::GET, "/devices/x", owner.clone(), None).await;
    assert_eq!(x.0, 404);
    let b = send(Method::GET, "/devices/b1", owner, None).await;
    assert_eq!(b.0, 404);
    running.shutdown().await;
}

#[tokio::test]
async fn device_key_tokens_and_bearer_lookalikes_are_refused() {
    let hub = Emulator::start_with(&["--bearer-token", "the-right-bearer-token"]);
    let device = hub.create_device("d1").await;
    let module = hub.create_module("d1", "m1").await;
    let device_key = device["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a device key")
        .to_string();
    let module_key = module["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a module key")
        .to_string();
    let device_sr = format!("{}/devices/d1", hub.host);
    let module_sr = format!("{}/devices/d1/modules/m1", hub.host);
    let device_token = hub.token(None, &device_key, Some(&device_sr), 600);
    let module_token = hub.token(None, &module_key, Some(&module_sr), 600);
    // A device key used as if it were a policy's.
    let as_policy = hub.token(Some("iothubowner"), &device_key, None, 600);
    for (what, token, path) in [
        ("device token, own identity", &device_token, "/devices/d1"),
        ("device token, own twin", &device_token, "/twins/d1"),
        (
            "device token, own modules",
            &device_token,
            "/devices/d1/modules",
        ),
        (
            "module token, own identity",
            &module_token,
            "/devices/d1/modules/m1",
        ),
        (
            "module token, own twin",
            &module_token,
            "/twins/d1/modules/m1",
        ),
        ("device key as owner", &as_policy, "/devices/d1"),
    ] {
        let r = get_with(&hub, path, token).await;
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{what}");
    }
    for (what, header) in [
        ("no token", "Bearer"),
        ("empty token", "Bearer "),
        ("wrong token", "Bearer the-wrong-bearer-token"),
        ("prefix of the token", "Bearer the-right-bearer"),
        ("token with a suffix", "Bearer the-right-bearer-tokenX"),
        ("another scheme", "Basic the-right-bearer-token"),
        ("token without a scheme", "the-right-bearer-token"),
        (
            "the owner key as a bearer",
            &format!("Bearer {}", hub.owner_key),
        ),
        ("the owner key bare", &hub.owner_key),
        (
            "a token in the wrong scheme",
            &format!("Bearer {}", hub.owner_token()),
        ),
    ] {
        let r = get_with(&hub, "/devices/d1", header).await;
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{what}");
    }
    assert_eq!(
        get_with(&hub, "/devices/d1", "Bearer the-right-bearer-token")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn every_route_class_needs_an_authorization_header() {
    let hub = Emulator::start();
    hub.create_device("d1").await;
    for (method, path, body) in [
        (Method::GET, "/devices/d1", None),
        (Method::GET, "/devices", None),
        (Method::PUT, "/devices/d2", Some(json!({}))),
        (Method::DELETE, "/devices/d1", None),
        (Method::GET, "/devices/d1/modules", None),
        (Method::GET, "/twins/d1", None),
        (Method::PATCH, "/twins/d1", Some(json!({"tags": {"a": 1}}))),
        (
            Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT * FROM devices"})),
        ),
        (
            Method::POST,
            "/devices",
            Some(json!([{"id": "b", "importMode": "create"}])),
        ),
    ] {
        let r = hub
            .raw(
                method.clone(),
                &format!("{path}?{API}"),
                body.map(|b| b.to_string().into_bytes()),
                &[("if-match", "*".to_string())],
            )
            .await;
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{method} {path}");
    }
    for (method, path) in [
        (Method::GET, "/_emulator/stats"),
        (Method::PATCH, "/_emulator/twins/d1/reported"),
    ] {
        let r = hub
            .raw(method.clone(), path, Some(b"{}".to_vec()), &[])
            .await;
        assert_eq!((r.status, r.code()), UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(hub.get("/twins/d1").await.body["version"], 2);
}

#[tokio::test]
async fn tokens_and_keys_never_appear_in_error_bodies_or_stderr() {
    let bearer = "bearer-secret-4f1c9a7e";
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).expect("stderr file");
    let mut hub = Emulator::spawn(
        &["--bearer-token", bearer],
        &[("RUST_LOG", "trace")],
        Stdio::from(file),
    );
    let device = hub.create_device("d1").await;
    let device_key = device["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a device key")
        .to_string();
    let other_key = "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=";
    let tokens = vec![
        hub.token(Some("iothubowner"), other_key, None, 600),
        hub.token(Some("iothubowner"), &hub.owner_key, None, -1000),
        hub.token(
            Some("iothubowner"),
            &hub.owner_key,
            Some("elsewhere.example"),
            600,
        ),
        hub.token(Some("nobody"), &hub.owner_key, None, 600),
        hub.token(
            None,
            &device_key,
            Some(&format!("{}/devices/d1", hub.host)),
            600,
        ),
        hub.token(Some("registryRead"), &hub.owner_key, None, 600),
        format!("Bearer {bearer}-wrong"),
        format!("SharedAccessSignature sr={}&sig=&se=x", hub.owner_key),
        format!("Basic {}", hub.owner_key),
    ];
    let mut bodies = Vec::new();
    for token in &tokens {
        for (method, path, body) in [
            (Method::GET, "/devices/d1", None),
            (Method::PATCH, "/twins/d1", Some(json!({"tags": {"a": 1}}))),
            (
                Method::POST,
                "/devices/query",
                Some(json!({"query": "SELECT * FROM devices"})),
            ),
            (Method::GET, "/_emulator/stats", None),
        ] {
            let r = call_with(&hub, method, path, body, token).await;
            assert_eq!(r.status, 401, "{path}");
            bodies.push(r.body.to_string());
        }
    }
    // Requests that succeed, and that fail for other reasons, with a good token.
    let good = hub.owner_token();
    for (method, path, body) in [
        (Method::GET, "/devices/d1", None),
        (Method::GET, "/devices/none", None),
        (Method::PUT, "/devices/d1", Some(json!({"deviceId": "d1"}))),
        (
            Method::POST,
            "/devices/query",
            Some(json!({"query": "SELEKT"})),
        ),
        (
            Method::PATCH,
            "/twins/d1",
            Some(json!({"tags": {"bad key": 1}})),
        ),
    ] {
        let r = call_with(&hub, method, path, body, &good).await;
        // Identity GETs show the identity's keys, as IoT Hub's do; error bodies never may.
        if r.status >= 400 {
            bodies.push(r.body.to_string());
        }
    }
    let mut secrets: Vec<String> = vec![
        hub.owner_key.clone(),
        device_key.clone(),
        bearer.to_string(),
        other_key.to_string(),
        good.clone(),
        field(&good, "sig"),
    ];
    for t in &tokens {
        secrets.push(t.clone());
        if t.starts_with("SharedAccessSignature sr=") && !t.contains("&sig=&") {
            secrets.push(field(t, "sig"));
        }
    }
    // Stop the emulator so that everything it would log is in the file.
    hub.kill();
    let stderr = std::fs::read_to_string(&log).expect("reading stderr");
    assert!(
        stderr.contains("request refused"),
        "trace logging reached the file:\n{stderr}"
    );
    for secret in &secrets {
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "an error body shows a secret: {body}"
            );
        }
        assert!(
            !stderr.contains(secret.as_str()),
            "the emulator's stderr shows a secret:\n{stderr}"
        );
        // Also not in its percent-encoded form.
        let encoded = enc(secret);
        assert!(!stderr.contains(&encoded), "stderr shows an encoded secret");
    }
}
