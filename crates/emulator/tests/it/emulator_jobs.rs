//! Export jobs (SPEC §17): the jobs API over HTTPS, writing IoT Hub's export format to a real blob
//! store, Azurite, through the Azure Blob REST API with container SAS URLs.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Azurite, Emulator, PATIENCE, Resp, eventually};

const CONTAINER: &str = "exports";

async fn create_job(hub: &Emulator, body: Value) -> Resp {
    hub.call(Method::POST, "/jobs/create", Some(body), &[])
        .await
}

/// An export job of `sas` without keys, as twinops asks for one.
fn export(sas: &str, blob: &str) -> Value {
    json!({"type": "export", "outputBlobContainerUri": sas, "excludeKeysInExport": true,
           "outputBlobName": blob})
}

/// Waits for job `id` to reach `status` and returns its record.
async fn job_reaches(hub: &Emulator, id: &str, status: &str, within: Duration) -> Value {
    let r = eventually(
        &format!("job {id} {status}"),
        within,
        async || hub.get(&format!("/jobs/{id}")).await,
        |r| r.body["status"] == status || r.body["status"] == "failed",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], status, "{:#}", r.body);
    r.body
}

async fn hold(hub: &Emulator, on: bool) {
    let r = hub
        .raw(
            Method::PUT,
            "/_emulator/jobs/hold",
            Some(json!({ "hold": on }).to_string().into_bytes()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// An export blob read back: the first line when it is no JSON (the warning), and the identity
/// lines keyed by `id` or `id/moduleId`.
fn read_export(bytes: &[u8]) -> (Option<String>, BTreeMap<String, Value>) {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut lines = text.lines().peekable();
    let warning = lines.next_if(|l| !l.starts_with('{')).map(str::to_string);
    let mut rows = BTreeMap::new();
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let key = match v["moduleId"].as_str() {
            Some(m) => format!("{}/{m}", v["id"].as_str().unwrap()),
            None => v["id"].as_str().unwrap().to_string(),
        };
        assert!(rows.insert(key.clone(), v).is_none(), "{key} twice");
    }
    (warning, rows)
}

/// A running job's blob, once the job completed.
async fn exported(
    hub: &Emulator,
    storage: &Azurite,
    id: &str,
    blob: &str,
) -> (Option<String>, BTreeMap<String, Value>) {
    job_reaches(hub, id, "completed", PATIENCE).await;
    let bytes = storage
        .blob(CONTAINER, blob)
        .await
        .unwrap_or_else(|| panic!("job {id} completed without writing {blob}"));
    read_export(&bytes)
}

async fn storage() -> Azurite {
    let s = Azurite::start();
    s.create_container(CONTAINER).await;
    s
}

#[tokio::test]
async fn an_export_writes_every_device_and_module_in_iot_hubs_format_without_keys() {
    let (hub, storage) = (Emulator::start(), storage().await);
    hub.create_device("plain").await;
    assert_eq!(
        hub.patch(
            "/twins/plain",
            json!({"tags": {"site": "b"}, "properties": {"desired": {"fw": {"v": 2}}}}),
            None
        )
        .await
        .status,
        200
    );
    let r = hub
        .raw(
            Method::PATCH,
            "/_emulator/twins/plain/reported",
            Some(json!({"fw": {"v": 1}}).to_string().into_bytes()),
            &[("authorization", hub.owner_token())],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    hub.create_module("plain", "m1").await;
    hub.patch(
        "/twins/plain/modules/m1",
        json!({"tags": {"role": "x"}}),
        None,
    )
    .await;
    let thumbs = ("AB".repeat(20), "cd".repeat(32));
    let cam = hub
        .put(
            "/devices/cam",
            json!({"deviceId": "cam", "status": "disabled", "statusReason": "lost in transit",
                   "authentication": {"type": "selfSigned", "x509Thumbprint":
                       {"primaryThumbprint": thumbs.0, "secondaryThumbprint": thumbs.1}}}),
            None,
        )
        .await;
    assert_eq!(cam.status, 200, "{cam:?}");
    let gw = hub
        .put(
            "/devices/gw",
            json!({"deviceId": "gw", "capabilities": {"iotEdge": true}}),
            None,
        )
        .await;
    assert_eq!(gw.status, 200, "{gw:?}");
    let gw_scope = gw.body["deviceScope"].as_str().unwrap().to_string();
    let leaf = hub
        .put(
            "/devices/leaf",
            json!({"deviceId": "leaf", "deviceScope": gw_scope}),
            None,
        )
        .await;
    assert_eq!(leaf.status, 200, "{leaf:?}");

    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    let r = create_job(
        &hub,
        json!({"type": "export", "outputBlobContainerUri": sas, "excludeKeysInExport": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["type"], "export");
    assert_eq!(r.body["status"], "enqueued");
    assert_eq!(r.body["excludeKeysInExport"], true);
    assert!(
        r.body.get("outputBlobContainerUri").is_none(),
        "the container URI is not echoed: {:#}",
        r.body
    );
    let id = r.body["jobId"].as_str().unwrap().to_string();
    let (warning, rows) = exported(&hub, &storage, &id, "devices.txt").await;
    let done = hub.get(&format!("/jobs/{id}")).await.body;
    assert_eq!(done["progress"], 100, "{done:#}");
    assert!(done["endTimeUtc"].is_string(), "{done:#}");
    assert!(!done.to_string().contains("sig="), "{done:#}");

    let warning = warning.expect("a keyless export starts with a plain-text warning line");
    assert!(warning.to_lowercase().contains("keys"), "{warning}");
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        [
            "cam",
            "gw",
            "gw/$edgeAgent",
            "gw/$edgeHub",
            "leaf",
            "plain",
            "plain/m1"
        ]
    );
    let text = String::from_utf8(storage.blob(CONTAINER, "devices.txt").await.unwrap()).unwrap();
    for (key, row) in &rows {
        let (device, module) = match key.split_once('/') {
            Some((d, m)) => (d, Some(m)),
            None => (key.as_str(), None),
        };
        let (identity, twin) = match module {
            Some(m) => (
                hub.get(&format!(
                    "/devices/{device}/modules/{}",
                    crate::support::seg(m)
                ))
                .await,
                hub.get(&format!(
                    "/twins/{device}/modules/{}",
                    crate::support::seg(m)
                ))
                .await,
            ),
            None => (
                hub.get(&format!("/devices/{device}")).await,
                hub.get(&format!("/twins/{device}")).await,
            ),
        };
        assert_eq!(row["eTag"], identity.body["etag"], "{key}");
        assert_eq!(row["twinETag"], twin.body["etag"], "{key}");
        assert_eq!(row["tags"], twin.body["tags"], "{key}");
        assert_eq!(row["properties"], twin.body["properties"], "{key}");
        let auth = &row["authentication"];
        assert_eq!(
            auth["type"], identity.body["authentication"]["type"],
            "{key}"
        );
        assert_eq!(auth["symmetricKey"]["primaryKey"], Value::Null, "{key}");
        assert_eq!(auth["symmetricKey"]["secondaryKey"], Value::Null, "{key}");
        for k in ["primaryKey", "secondaryKey"] {
            if let Some(secret) = identity.body["authentication"]["symmetricKey"][k].as_str() {
                assert!(!text.contains(secret), "{key}'s {k} is in the export");
            }
        }
    }
    let plain = &rows["plain"];
    assert_eq!(plain["status"], "enabled");
    assert_eq!(plain["tags"], json!({"site": "b"}));
    assert_eq!(plain["properties"]["desired"]["fw"], json!({"v": 2}));
    assert_eq!(plain["properties"]["reported"]["fw"], json!({"v": 1}));
    assert!(plain["properties"]["desired"]["$metadata"]["fw"]["$lastUpdated"].is_string());
    assert_eq!(plain["properties"]["desired"]["$version"], 2);
    assert_eq!(plain["properties"]["reported"]["$version"], 2);
    assert_eq!(plain["capabilities"], json!({"iotEdge": false}));
    assert_eq!(rows["plain/m1"]["id"], "plain");
    assert_eq!(rows["plain/m1"]["tags"], json!({"role": "x"}));

    let cam = &rows["cam"];
    assert_eq!(cam["status"], "disabled");
    assert_eq!(cam["statusReason"], "lost in transit");
    assert_eq!(cam["authentication"]["type"], "selfSigned");
    assert_eq!(
        cam["authentication"]["x509Thumbprint"],
        json!({"primaryThumbprint": thumbs.0, "secondaryThumbprint": thumbs.1})
    );

    assert_eq!(rows["gw"]["capabilities"], json!({"iotEdge": true}));
    assert_eq!(rows["gw"]["deviceScope"], gw_scope.as_str());
    assert_eq!(rows["gw/$edgeAgent"]["authentication"]["type"], "none");
    assert_eq!(rows["leaf"]["deviceScope"], gw_scope.as_str());
    assert_eq!(rows["leaf"]["parentScopes"], json!([gw_scope]));
    assert_eq!(rows["leaf"]["capabilities"], json!({"iotEdge": false}));
}

#[tokio::test]
async fn keys_are_exported_when_not_excluded_under_the_blob_name_asked_for() {
    let (hub, storage) = (Emulator::start(), storage().await);
    let d = hub.create_device("d").await;
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    let r = create_job(
        &hub,
        json!({"type": "export", "outputBlobContainerUri": sas, "outputBlobName": "runs/with-keys.txt"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["excludeKeysInExport"], false);
    let id = r.body["jobId"].as_str().unwrap();
    let (warning, rows) = exported(&hub, &storage, id, "runs/with-keys.txt").await;
    assert_eq!(warning, None, "no warning line when keys are in the file");
    assert_eq!(
        rows["d"]["authentication"]["symmetricKey"],
        d["authentication"]["symmetricKey"]
    );
    assert_eq!(storage.blob(CONTAINER, "devices.txt").await, None);
}

#[tokio::test]
async fn jobs_go_enqueued_running_completed_one_at_a_time_and_are_listed() {
    let (hub, storage) = (Emulator::start(), storage().await);
    hub.create_device("d").await;
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    hold(&hub, true).await;
    let a = create_job(&hub, export(&sas, "a.txt")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "enqueued");
    let a = a.body["jobId"].as_str().unwrap().to_string();
    let running = job_reaches(&hub, &a, "running", PATIENCE).await;
    assert!(running["startTimeUtc"].is_string(), "{running:#}");
    assert!(running.get("endTimeUtc").is_none(), "{running:#}");

    let second = create_job(&hub, export(&sas, "b.txt")).await;
    assert_eq!(second.status, 403, "{second:?}");
    assert_eq!(second.code(), Some("JobQuotaExceeded"));
    let listed = hub.get("/jobs").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()], "the refused job is not a job");

    hold(&hub, false).await;
    job_reaches(&hub, &a, "completed", PATIENCE).await;
    let b = create_job(&hub, export(&sas, "b.txt")).await;
    assert_eq!(b.status, 200, "the slot is free once a job ended: {b:?}");
    let b = b.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &b, "completed", PATIENCE).await;
    let listed = hub.get("/jobs").await.body;
    let seen: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["jobId"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(a.as_str(), "completed"), (b.as_str(), "completed")]);

    let unknown = hub.get("/jobs/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.code(), Some("JobNotFound"));
    let stats = hub.stats().await;
    assert!(
        stats["by_class"]["jobs"].as_u64().unwrap() >= 7,
        "{stats:#}"
    );
}

#[tokio::test]
async fn cancelling_is_immediate_writes_nothing_and_frees_the_slot() {
    let (hub, storage) = (Emulator::start(), storage().await);
    hub.create_device("d").await;
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    hold(&hub, true).await;
    let a = create_job(&hub, export(&sas, "cancelled.txt")).await;
    let a = a.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &a, "running", PATIENCE).await;
    let r = hub.delete(&format!("/jobs/{a}"), None).await;
    assert_eq!(r.status, 204, "{r:?}");
    let now = hub.get(&format!("/jobs/{a}")).await.body;
    assert_eq!(now["status"], "cancelled", "{now:#}");
    assert!(now["endTimeUtc"].is_string(), "{now:#}");

    hold(&hub, false).await;
    let b = create_job(&hub, export(&sas, "after.txt")).await;
    assert_eq!(b.status, 200, "a cancelled job frees the slot: {b:?}");
    let b = b.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &b, "completed", PATIENCE).await;
    assert_eq!(
        hub.get(&format!("/jobs/{a}")).await.body["status"],
        "cancelled",
        "a cancelled job stays cancelled"
    );
    let names = storage.blob_names(CONTAINER).await;
    assert_eq!(names, ["after.txt"], "the cancelled job wrote nothing");
    let r = hub.delete(&format!("/jobs/{b}"), None).await;
    assert_eq!(
        r.status, 204,
        "cancelling an ended job changes nothing: {r:?}"
    );
    assert_eq!(
        hub.get(&format!("/jobs/{b}")).await.body["status"],
        "completed"
    );
    let unknown = hub.delete("/jobs/nope", None).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.code(), Some("JobNotFound"));
}

#[tokio::test]
async fn a_container_the_hub_cannot_use_is_refused_at_once_and_starts_no_job() {
    let (hub, storage) = (Emulator::start(), storage().await);
    hub.create_device("d").await;
    let wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let refused = [
        (
            "a wrong signature",
            storage.container_sas_url_signed_with(CONTAINER, "racwdl", wrong_key),
        ),
        (
            "a container that does not exist",
            storage.container_sas_url("missing", "racwdl"),
        ),
        (
            "a SAS without delete permission",
            storage.container_sas_url(CONTAINER, "rwl"),
        ),
        (
            "plain http off loopback",
            "http://storage.invalid/devstoreaccount1/exports?sig=x".to_string(),
        ),
    ];
    for (what, sas) in &refused {
        let r = create_job(&hub, export(sas, "devices.txt")).await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_eq!(r.code(), Some("BlobContainerValidationError"), "{what}");
        let said = r.body.to_string();
        assert!(!said.contains("sig="), "{what}: the SAS is echoed: {said}");
    }
    assert_eq!(hub.get("/jobs").await.body, json!([]));
    assert_eq!(storage.blob_names(CONTAINER).await, Vec::<String>::new());
    let ok = create_job(
        &hub,
        export(
            &storage.container_sas_url(CONTAINER, "racwdl"),
            "devices.txt",
        ),
    )
    .await;
    assert_eq!(ok.status, 200, "refusals hold no slot: {ok:?}");
}

#[tokio::test]
async fn what_the_emulator_does_not_serve_says_so() {
    let hub = Emulator::start();
    let sas = "http://127.0.0.1:9/devstoreaccount1/exports?sig=x";
    for (body, says) in [
        (
            json!({"type": "export", "outputBlobContainerUri": sas,
                   "storageAuthenticationType": "identityBased"}),
            "identity-based",
        ),
        (
            json!({"type": "import", "inputBlobContainerUri": sas, "outputBlobContainerUri": sas}),
            "import",
        ),
    ] {
        let r = create_job(&hub, body).await;
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.code(), Some("ArgumentInvalid"));
        let message = r.body["Message"].as_str().unwrap();
        assert!(
            message.contains(says) && message.contains("emulator"),
            "{message}"
        );
    }
}

/// As every other body over its limit: the emulator reads (and drops) the rest of the body, so a
/// client still sending gets the 413 rather than a connection reset. A hub that stops reading at
/// the limit resets most such requests, not all: three of them.
#[tokio::test]
async fn an_oversized_job_is_413_message_too_large() {
    let hub = Emulator::start();
    let body = json!({"type": "export", "outputBlobContainerUri": "x".repeat(15 * 1024 * 1024)});
    for _ in 0..3 {
        let r = create_job(&hub, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (413, Some("MessageTooLarge")),
            "{r:?}"
        );
    }
    assert_eq!(hub.get("/jobs").await.body, json!([]), "no job was started");
}

/// A body that does not decode is refused without quoting it: a value may hold the SAS.
#[tokio::test]
async fn a_job_that_does_not_decode_is_refused_without_echoing_a_sas() {
    let hub = Emulator::start();
    let sas = "http://127.0.0.1:9/devstoreaccount1/exports?sig=secret";
    for body in [
        json!({"type": "export", "outputBlobContainerUri": sas, "excludeKeysInExport": sas}),
        json!({"type": "export", "outputBlobContainerUri": [sas]}),
        json!([sas]),
    ] {
        let r = create_job(&hub, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("DeserializationError")),
            "{body}: {r:?}"
        );
        let said = r.body.to_string();
        assert!(!said.contains("sig="), "{body}: the SAS is echoed: {said}");
    }
}

#[tokio::test]
async fn a_large_fleet_is_written_in_blocks_as_it_is_read() {
    let (hub, storage) = (Emulator::start(), storage().await);
    // About 3.5 KB a line: 2,500 twins make a blob of about 9 MB.
    let pad = "x".repeat(3200);
    for batch in 0..25 {
        let rows: Vec<Value> = (0..100)
            .map(|i| {
                json!({"id": format!("d{:05}", batch * 100 + i), "importMode": "create",
                            "tags": {"pad": pad}})
            })
            .collect();
        let r = hub
            .call(Method::POST, "/devices", Some(Value::Array(rows)), &[])
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    let r = create_job(&hub, export(&sas, "fleet.txt")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body["jobId"].as_str().unwrap();
    job_reaches(&hub, id, "completed", PATIENCE * 6).await;
    let blocks = storage.committed_blocks(CONTAINER, "fleet.txt").await;
    assert!(
        blocks.len() >= 2,
        "one block would be the whole file: {blocks:?}"
    );
    for size in &blocks {
        assert!(
            *size <= 4 * 1024 * 1024,
            "a block of {size} bytes: {blocks:?}"
        );
    }
    let bytes = storage.blob(CONTAINER, "fleet.txt").await.unwrap();
    assert_eq!(bytes.len() as u64, blocks.iter().sum::<u64>());
    let (warning, rows) = read_export(&bytes);
    assert!(warning.is_some());
    assert_eq!(rows.len(), 2500);
    assert!(rows.values().all(|r| r["tags"]["pad"] == pad.as_str()));
}

#[tokio::test]
async fn the_export_is_the_hub_as_it_was_when_the_job_started() {
    let (hub, storage) = (Emulator::start(), storage().await);
    hub.create_device("kept").await;
    let before = hub.get("/twins/kept").await.body;
    hub.create_device("removed").await;
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    hold(&hub, true).await;
    let r = create_job(&hub, export(&sas, "devices.txt")).await;
    let id = r.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &id, "running", PATIENCE).await;
    hub.patch("/twins/kept", json!({"tags": {"late": true}}), None)
        .await;
    hub.create_device("late").await;
    assert_eq!(hub.delete("/devices/removed", Some("*")).await.status, 204);
    hold(&hub, false).await;
    let (_, rows) = exported(&hub, &storage, &id, "devices.txt").await;
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["kept", "removed"]);
    assert_eq!(rows["kept"]["twinETag"], before["etag"]);
    assert_eq!(rows["kept"]["tags"], json!({}));
}

/// With `--index-lag`, an export sees what queries see: a device deleted since the index was taken
/// is still there, one created since is not.
#[tokio::test]
async fn the_export_follows_the_query_index_lag() {
    let storage = storage().await;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Emulator::start_on(dir.path());
    hub.create_device("old").await;
    hub.create_device("gone").await;
    assert!(hub.terminate().success());
    let state = dir.path().to_str().unwrap();
    let hub = Emulator::start_with(&["--state", state, "--index-lag", "1h"]);
    hub.create_device("new").await;
    assert_eq!(hub.delete("/devices/gone", Some("*")).await.status, 204);
    assert_eq!(hub.get("/devices/gone").await.status, 404);
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    let r = create_job(&hub, export(&sas, "devices.txt")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (_, rows) = exported(
        &hub,
        &storage,
        r.body["jobId"].as_str().unwrap(),
        "devices.txt",
    )
    .await;
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        ["gone", "old"],
        "the export reads the lagging index: a ghost, and no new device"
    );
}

#[tokio::test]
async fn jobs_need_registry_read() {
    let running = twinops_emulator::start(twinops_emulator::Config::default())
        .await
        .unwrap();
    let client = crate::support::client_trusting(running.ca_pem_path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (policy, status) in [
        ("registryRead", 200),
        ("service", 401),
        ("iothubowner", 200),
    ] {
        let key = running.policy_key(policy).unwrap();
        let token =
            twinops_iothub::sas::sign(running.host(), key, Some(policy), now + 600).unwrap();
        let r = client
            .get(format!("{}/jobs?{}", running.url(), crate::support::API))
            .header("authorization", token.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{policy}");
    }
}

#[tokio::test]
async fn job_records_outlive_a_restart_and_a_job_cut_short_has_failed() {
    let storage = storage().await;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Emulator::start_on(dir.path());
    hub.create_device("d").await;
    let sas = storage.container_sas_url(CONTAINER, "racwdl");
    let done = create_job(&hub, export(&sas, "done.txt")).await;
    let done = done.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &done, "completed", PATIENCE).await;
    hold(&hub, true).await;
    let cut = create_job(&hub, export(&sas, "cut.txt")).await;
    let cut = cut.body["jobId"].as_str().unwrap().to_string();
    job_reaches(&hub, &cut, "running", PATIENCE).await;
    assert!(hub.terminate().success());

    let hub = Emulator::start_on(dir.path());
    let jobs = hub.get("/jobs").await.body;
    let seen: Vec<(&str, &str)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["jobId"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [(done.as_str(), "completed"), (cut.as_str(), "failed")]
    );
    let cut = hub.get(&format!("/jobs/{cut}")).await.body;
    assert!(
        cut["failureReason"].as_str().unwrap().contains("stopped"),
        "{cut:#}"
    );
    assert!(
        !std::fs::read(dir.path().join("hub.redb"))
            .unwrap()
            .windows(4)
            .any(|w| w == b"sig="),
        "no SAS is kept in the state"
    );
    let next = create_job(&hub, export(&sas, "next.txt")).await;
    assert_eq!(
        next.status, 200,
        "the slot is free after a restart: {next:?}"
    );
    assert_eq!(storage.blob(CONTAINER, "cut.txt").await, None);
}
