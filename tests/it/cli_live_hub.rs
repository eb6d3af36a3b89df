//! twinops against the behaviours a live IoT Hub was observed to have (docs/live-hub.md), which the
//! emulator reproduces: thumbprint casing in twins, module operations on disabled devices under SAS,
//! query rows that lag behind deletions. The real binary against a real emulator.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::cli::{dir, manifests, outcome, twinops, twinops_env};
use crate::support::{Emulator, eventually};
use serde_json::json;
use std::time::Duration;

const THUMB: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

#[tokio::test]
async fn an_x509_device_plans_no_change_right_after_its_apply() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    let fleet = format!(
        "devices:\n  cam-1:\n    auth: {{x509: {{primary: {THUMB}}}}}\n    modules:\n      m:\n        auth: {{x509: {{primary: {THUMB}}}}}\n"
    );
    manifests(d.path(), &[("fleet.yaml", &fleet)]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    let twin = em.get("/twins/cam-1").await.body;
    assert_eq!(twin["x509Thumbprint"]["PrimaryThumbprint"], THUMB, "{twin}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn a_new_disabled_device_gets_its_modules_and_ends_disabled() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "devices:\n  off-1:\n    status: disabled\n    statusReason: retired\n    modules:\n      m:\n        desired: {a: 1}\n",
        )],
    );
    let r = twinops(&em, &["apply", "--yes", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let dev = em.get("/devices/off-1").await.body;
    assert_eq!(dev["status"], "disabled", "{dev}");
    assert_eq!(dev["statusReason"], "retired", "{dev}");
    let twin = em.get("/twins/off-1/modules/m").await;
    assert_eq!(twin.status, 200, "{:?}", twin.body);
    assert_eq!(twin.body["properties"]["desired"]["a"], 1);
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn module_changes_on_a_disabled_device_under_sas_are_named_and_token_auth_applies_them() {
    let em = Emulator::start_with(&["--bearer-token", "ci-token-123"]);
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    let fleet = |auth: &str| {
        format!(
            "devices:\n  off-2:\n    status: disabled\n    modules:\n      m:\n        auth: {auth}\n"
        )
    };
    manifests(d.path(), &[("fleet.yaml", &fleet("sas"))]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    // The module's authentication changes while its device is disabled: under SAS the hub refuses
    // module identity operations on a disabled device (401).
    let x509 = format!("{{x509: {{primary: {THUMB}}}}}");
    manifests(d.path(), &[("fleet.yaml", &fleet(&x509))]);
    let r = twinops(&em, &["plan", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("device `off-2` is disabled") && r.stderr.contains("--auth token"),
        "{}",
        r.stderr
    );
    let r = twinops(&em, &["apply", "--yes", "--format", "json", &p]);
    assert_eq!(r.code, 1, "{r:?}");
    let out = r.json();
    let o = &out["outcomes"][0];
    assert_eq!(o["kind"], "update_module", "{out}");
    assert_eq!(o["status"], "failed", "{out}");
    let detail = o["detail"].as_str().unwrap();
    assert!(detail.contains("device `off-2` is disabled"), "{o}");
    assert!(
        !detail.starts_with("unauthorized"),
        "the probe leads, not a bare 401: {o}"
    );
    // The way out the message names works: Entra ID may change modules of a disabled device.
    let hub = format!("HostName={}", em.host);
    let env = [
        ("TWINOPS_HUB", hub.as_str()),
        ("TWINOPS_ACCESS_TOKEN", "ci-token-123"),
    ];
    let r = twinops_env(&em, &["apply", "--yes", "--auth", "token", &p], &env);
    assert_eq!(r.code, 0, "{r:?}");
    let m = em.get("/devices/off-2/modules/m").await;
    assert_eq!(m.status, 401, "still refused under SAS: {:?}", m.body);
    let twin = em.get("/twins/off-2/modules/m").await.body;
    assert_eq!(twin["authenticationType"], "selfSigned", "{twin}");
    assert_eq!(em.get("/devices/off-2").await.body["status"], "disabled");
}

/// `connection-string DEVICE/MODULE` reads the module identity, which a live hub refuses with 401
/// under SAS when the device is disabled or missing: it says so the way apply does, and the way
/// out it names works.
#[tokio::test]
async fn connection_string_of_a_module_names_a_disabled_or_missing_device() {
    let em = Emulator::start_with(&["--bearer-token", "ci-token-456"]);
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "devices:\n  off-3:\n    status: disabled\n    modules:\n      m: {}\n",
        )],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    let r = twinops(&em, &["connection-string", "off-3/m"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, "", "no key");
    assert!(
        r.stderr.contains("device `off-3` is disabled") && r.stderr.contains("--auth token"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("may lack"),
        "not a permission: {}",
        r.stderr
    );
    let r = twinops(&em, &["connection-string", "nowhere/m"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("device `nowhere` does not exist"),
        "{}",
        r.stderr
    );
    // Entra ID may read modules of a disabled device.
    let hub = format!("HostName={}", em.host);
    let env = [
        ("TWINOPS_HUB", hub.as_str()),
        ("TWINOPS_ACCESS_TOKEN", "ci-token-456"),
    ];
    let r = twinops_env(
        &em,
        &["connection-string", "--auth", "token", "off-3/m"],
        &env,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("DeviceId=off-3;ModuleId=m;"), "{r:?}");
}

/// Longer than the 3 s `--index-lag` below by a margin for a busy machine.
const LAG_CAUGHT_UP: Duration = Duration::from_secs(30);

/// The `n` a `SELECT COUNT() AS n` query answers, as the (lagging) query index sees it.
async fn indexed(em: &Emulator, sql: &str) -> u64 {
    let r = em
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"query": sql})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body[0]["n"].as_u64().unwrap()
}

#[tokio::test]
async fn a_device_deleted_behind_the_query_index_is_neither_deleted_again_nor_a_failure() {
    // Query rows keep deleted identities for 3 s (a live hub: up to 25 minutes).
    let em = Emulator::start_with(&["--index-lag", "3s"]);
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    // 45 devices: more than targeted GETs cover, so plans read through queries.
    let fleet = |value: u32, upto: u32| {
        format!("owner: lag\ndevices:\n  \"d-{{01..{upto:02}}}\":\n    desired: {{v: {value}}}\n")
    };
    manifests(d.path(), &[("fleet.yaml", &fleet(1, 45))]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    eventually(
        "the query index lists the 45 devices as applied",
        LAG_CAUGHT_UP,
        async || {
            indexed(
                &em,
                "SELECT COUNT() AS n FROM devices WHERE IS_DEFINED(tags.twinops.owners.lag) AND properties.desired.v = 1",
            )
            .await
        },
        |n| *n == 45,
    )
    .await;
    // Someone deletes d-45 and d-44 by hand; the query index still lists both.
    for id in ["d-45", "d-44"] {
        let etag = em.get(&format!("/devices/{id}")).await.body["etag"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            em.delete(&format!("/devices/{id}"), Some(&etag))
                .await
                .status,
            204
        );
    }
    let rows = em
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT * FROM devices WHERE deviceId = 'd-45'"})),
            &[],
        )
        .await;
    assert_eq!(
        rows.body.as_array().map(Vec::len),
        Some(1),
        "the ghost is still listed"
    );
    // d-45 is no longer declared: the prune plan confirms it and plans no deletion.
    manifests(d.path(), &[("fleet.yaml", &fleet(2, 44))]);
    let r = twinops(&em, &["plan", "--prune", "--format", "json", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan = r.json();
    assert!(
        !plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["device_id"] == "d-45"),
        "a deletion of a device already gone is not planned"
    );
    // d-44 is still declared and its ghost is planned as an update: the PATCH answers 404 and the
    // twin is reported missing, not failed.
    let r = twinops(&em, &["apply", "--yes", "--format", "json", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.json();
    let o = outcome(&out, "device_id", "d-44");
    assert_eq!(o["status"], "missing", "{o}");
    // Once the index has caught up (the ghosts gone, the 43 updates listed), the next run creates it.
    eventually(
        "the query index drops the deleted devices and lists the 43 updates",
        LAG_CAUGHT_UP,
        async || {
            (
                indexed(&em, "SELECT COUNT() AS n FROM devices").await,
                indexed(
                    &em,
                    "SELECT COUNT() AS n FROM devices WHERE properties.desired.v = 2",
                )
                .await,
            )
        },
        |seen| *seen == (43, 43),
    )
    .await;
    let r = twinops(&em, &["apply", "--yes", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        em.get("/twins/d-44").await.body["properties"]["desired"]["v"],
        2
    );
}

#[tokio::test]
async fn a_401_for_a_module_of_a_deleted_device_is_reported_as_a_missing_device() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    let fleet =
        |auth: &str| format!("devices:\n  gone-1:\n    modules:\n      m:\n        auth: {auth}\n");
    manifests(&m, &[("fleet.yaml", &fleet("sas"))]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    manifests(
        &m,
        &[(
            "fleet.yaml",
            &fleet(&format!("{{x509: {{primary: {THUMB}}}}}")),
        )],
    );
    let plan = d.path().join("plan.json");
    let r = twinops(
        &em,
        &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The device goes away before the reviewed plan is applied; under SAS the hub then answers the
    // module identity read with 401, not 404.
    let etag = em.get("/devices/gone-1").await.body["etag"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(em.delete("/devices/gone-1", Some(&etag)).await.status, 204);
    assert_eq!(em.get("/devices/gone-1/modules/m").await.status, 401);
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--format",
            "json",
            "--plan",
            plan.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let out = r.json();
    let o = outcome(&out, "kind", "update_module");
    assert_eq!(o["status"], "failed", "{o}");
    assert!(
        o["detail"]
            .as_str()
            .unwrap()
            .contains("device `gone-1` does not exist"),
        "{o}"
    );
}
