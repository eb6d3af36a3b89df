//! twinops' own hub client against the real emulator over HTTPS: every endpoint and every error path it
//! classifies (never a mock of the client).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::Emulator;
use serde_json::json;
use twinops::hub::{ClientOptions, Error, Rest as Hub};
use twinops_core::model::ETag;
use twinops_iothub::connection_string::{Secret, ServiceConnectionString};
use twinops_iothub::wire::{Device, ExportImportDevice, Module};

fn client(em: &Emulator) -> Hub {
    let cs = ServiceConnectionString::parse(&em.connection_string).unwrap();
    Hub::new(
        &cs,
        None,
        ClientOptions {
            ca_pem: Some(std::fs::read(&em.ca_path).unwrap()),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

fn etag(text: &str) -> ETag {
    ETag::new(text).unwrap()
}

fn device(id: &str) -> Device {
    Device {
        device_id: id.into(),
        ..Device::default()
    }
}

#[tokio::test]
async fn device_identity_crud_and_errors() {
    let em = Emulator::start();
    let hub = client(&em);
    let d = hub.create_device(&device("d1")).await.unwrap();
    let keys = d.authentication.clone().unwrap().symmetric_key.unwrap();
    assert_eq!(keys.primary_key.as_ref().map(String::len), Some(44));
    assert!(
        matches!(hub.create_device(&device("d1")).await, Err(Error::AlreadyExists { code, .. }) if code == "DeviceAlreadyExists")
    );
    let mut got = hub.get_device("d1").await.unwrap();
    let e = etag(got.etag.as_deref().unwrap());
    got.status = Some("disabled".into());
    let updated = hub.update_device(&got, &e).await.unwrap();
    assert_eq!(updated.status.as_deref(), Some("disabled"));
    assert_eq!(
        updated
            .authentication
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key,
        keys.primary_key,
        "an update echoing auth keeps keys"
    );
    assert!(matches!(
        hub.update_device(&got, &e).await,
        Err(Error::PreconditionFailed { .. })
    ));
    assert!(
        matches!(hub.get_device("nope").await, Err(Error::NotFound { code, .. }) if code == "DeviceNotFound")
    );
    assert!(matches!(
        hub.delete_device("d1", &etag("stale")).await,
        Err(Error::PreconditionFailed { .. })
    ));
    hub.delete_device("d1", &etag("*")).await.unwrap();
    assert!(hub.get_device("d1").await.unwrap_err().is_not_found());
    // IDs are percent-encoded as one path segment.
    hub.create_device(&device("a#b?c%d$e")).await.unwrap();
    assert_eq!(
        hub.get_device("a#b?c%d$e").await.unwrap().device_id,
        "a#b?c%d$e"
    );
}

#[tokio::test]
async fn module_identity_crud_and_errors() {
    let em = Emulator::start();
    let hub = client(&em);
    hub.create_device(&device("d1")).await.unwrap();
    let m = Module {
        device_id: "d1".into(),
        module_id: "m1".into(),
        managed_by: Some("ops".into()),
        ..Module::default()
    };
    hub.create_module(&m).await.unwrap();
    assert!(
        matches!(hub.create_module(&m).await, Err(Error::AlreadyExists { code, .. }) if code == "ModuleAlreadyExistsOnDevice")
    );
    let got = hub.get_module("d1", "m1").await.unwrap();
    assert_eq!(got.managed_by.as_deref(), Some("ops"));
    let listed = hub.list_modules("d1").await.unwrap();
    assert_eq!(listed.len(), 1);
    hub.update_module(&got, &etag(got.etag.as_deref().unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        hub.update_module(&got, &etag(got.etag.as_deref().unwrap()))
            .await,
        Err(Error::PreconditionFailed { .. })
    ));
    assert!(
        matches!(hub.get_module("d1", "zz").await, Err(Error::NotFound { code, .. }) if code == "ModuleNotFound")
    );
    hub.delete_module("d1", "m1", &etag("*")).await.unwrap();
    assert!(
        hub.delete_module("d1", "m1", &etag("*"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn twins_patch_and_replace_under_quoted_etags() {
    let em = Emulator::start();
    let hub = client(&em);
    hub.create_device(&device("d1")).await.unwrap();
    hub.create_module(&Module {
        device_id: "d1".into(),
        module_id: "m1".into(),
        ..Module::default()
    })
    .await
    .unwrap();
    for module in [None, Some("m1")] {
        let t = hub.get_twin("d1", module).await.unwrap();
        let before = etag(t.etag.as_deref().unwrap());
        let patched = hub
            .patch_twin(
                "d1",
                module,
                &json!({"tags": {"a": {"b": 1}}, "properties": {"desired": {"x": 1}}}),
                &before,
            )
            .await
            .unwrap();
        assert_ne!(patched.etag.as_deref(), Some(before.as_str()));
        assert!(matches!(
            hub.patch_twin("d1", module, &json!({"tags": {"a": null}}), &before)
                .await,
            Err(Error::PreconditionFailed { .. })
        ));
        let replaced = hub
            .replace_twin(
                "d1",
                module,
                &json!({"tags": {"only": true}, "properties": {"desired": {"y": 2}}}),
                &etag(patched.etag.as_deref().unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(
            replaced.tags.unwrap(),
            json!({"only": true}).as_object().unwrap().clone()
        );
        let desired = replaced.properties.unwrap().desired.unwrap();
        assert!(desired.get("x").is_none() && desired.get("y").is_some());
    }
    assert!(
        hub.get_twin("ghost", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let e = hub
        .patch_twin("d1", None, &json!({"tags": {"bad.key": 1}}), &etag("*"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 400, .. }), "{e:?}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn query_pages_follow_continuations_and_bulk_reports_rows() {
    let em = Emulator::start();
    let hub = client(&em);
    let rows: Vec<ExportImportDevice> = (0..100)
        .map(|i| ExportImportDevice {
            id: format!("q{i:03}"),
            import_mode: "create".into(),
            tags: Some(json!({"n": i}).as_object().unwrap().clone()),
            ..ExportImportDevice::default()
        })
        .collect();
    let r = hub.bulk(&rows).await.unwrap();
    assert!(r.is_successful, "{r:?}");
    let more: Vec<ExportImportDevice> = (100..250)
        .map(|i| ExportImportDevice {
            id: format!("q{i:03}"),
            import_mode: "create".into(),
            ..ExportImportDevice::default()
        })
        .collect();
    for chunk in more.chunks(100) {
        hub.bulk(chunk).await.unwrap();
    }
    let page = hub
        .query_page("SELECT * FROM devices", 1000, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 100, "the hub caps the page at 100");
    assert_eq!(page.item_type.as_deref(), Some("Twin"));
    assert!(page.continuation.is_some());
    let mut seen = 0;
    hub.query_all("SELECT * FROM devices", 1000, |rows| {
        seen += rows.len();
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(seen, 250);
    let before = hub.counts().snapshot();
    assert_eq!(
        before.get(&twinops::hub::OpClass::Query),
        Some(&4),
        "1 page + 3 pages"
    );
    let count = hub
        .query_page(
            "SELECT COUNT() AS n FROM devices WHERE tags.n >= 50",
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(count.items, vec![json!({"n": 50})]);
    // A create row for an existing device fails alone; the others apply.
    let mixed = vec![
        ExportImportDevice {
            id: "q000".into(),
            import_mode: "create".into(),
            ..ExportImportDevice::default()
        },
        ExportImportDevice {
            id: "fresh".into(),
            import_mode: "create".into(),
            ..ExportImportDevice::default()
        },
    ];
    let r = hub.bulk(&mixed).await.unwrap();
    assert!(!r.is_successful);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].error_code, "DeviceAlreadyExists");
    hub.get_device("fresh").await.unwrap();
    let e = hub
        .query_page("SELEKT nonsense", 10, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 400, .. }), "{e:?}");
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_bearer_tokens_work() {
    let em = Emulator::start_with(&["--bearer-token", "tok"]);
    let bad = ServiceConnectionString::parse(&format!(
        "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey=cGFzc3dvcmRwYXNzd29yZA==",
        em.host
    ))
    .unwrap();
    let ca = std::fs::read(&em.ca_path).unwrap();
    let hub = Hub::new(
        &bad,
        None,
        ClientOptions {
            ca_pem: Some(ca.clone()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let e = hub.get_device("x").await.unwrap_err();
    assert!(
        matches!(e, Error::Unauthorized { ref code, .. } if code == "IotHubUnauthorizedAccess"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("cGFzc3dvcmRwYXNzd29yZA"));
    let host_only = ServiceConnectionString::parse(&format!("HostName={}", em.host)).unwrap();
    let hub = Hub::new(
        &host_only,
        Some(Secret::new("tok")),
        ClientOptions {
            ca_pem: Some(ca),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    hub.create_device(&device("via-bearer")).await.unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_fails_at_once_with_a_hint() {
    let em = Emulator::start();
    let cs = ServiceConnectionString::parse(&em.connection_string).unwrap();
    let hub = Hub::new(&cs, None, ClientOptions::default()).unwrap();
    let e = hub.get_device("x").await.unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("--ca-cert"), "{e}");
    // The one-line form that outcomes and logs carry is words too, never rustls' enums.
    let line = e.chain().to_string();
    assert!(
        line.contains("not signed by a CA this machine trusts")
            && !line.contains('{')
            && !line.contains("UnknownIssuer")
            && !line.contains("Context"),
        "{line}"
    );
    assert_eq!(
        hub.counts().total(),
        1,
        "a certificate error is not retried"
    );
}
