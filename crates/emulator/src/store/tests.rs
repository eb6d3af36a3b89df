//! The store's rules as a client sees them, on an in-memory store (and one on disk).

use std::ops::ControlFlow;

use super::*;
use crate::identity;
use serde_json::json;

fn store() -> Store {
    Store::open(None).unwrap()
}

fn device(id: &str) -> wire::Device {
    wire::Device {
        device_id: id.into(),
        ..Default::default()
    }
}

fn module(d: &str, m: &str) -> wire::Module {
    wire::Module {
        device_id: d.into(),
        module_id: m.into(),
        ..Default::default()
    }
}

fn etag(e: &str) -> IfMatch {
    IfMatch::Etag(e.into())
}

#[test]
fn if_match_accepts_quoted_bare_and_star_forms() {
    assert_eq!(IfMatch::parse(None), IfMatch::Absent);
    assert_eq!(IfMatch::parse(Some("*")), IfMatch::Any);
    assert_eq!(IfMatch::parse(Some("\"*\"")), IfMatch::Any);
    assert_eq!(IfMatch::parse(Some("\"AAAA=\"")), etag("AAAA="));
    assert_eq!(IfMatch::parse(Some("AAAA=")), etag("AAAA="));
    assert!(!etag("a").allows("b"));
}

#[test]
fn device_put_is_create_only_without_if_match() {
    let s = store();
    let d = s.put_device("d1", &device("d1"), &IfMatch::Absent).unwrap();
    assert_eq!(d.status, "enabled");
    assert_eq!(d.twin.etag(), "AAAAAAAAAAE=");
    assert!(matches!(
        s.put_device("d1", &device("d1"), &IfMatch::Absent),
        Err(Error::DeviceAlreadyExists(_))
    ));
    assert!(matches!(
        s.put_device("d2", &device("d2"), &IfMatch::Any),
        Err(Error::DeviceNotFound(_))
    ));
    assert!(matches!(
        s.put_device("d1", &device("d1"), &etag("stale")),
        Err(Error::PreconditionFailed(_))
    ));
    let mut body = device("d1");
    body.status = Some("disabled".into());
    let u = s.put_device("d1", &body, &etag(&d.etag)).unwrap();
    assert_ne!(u.etag, d.etag);
    assert_eq!(u.status, "disabled");
    assert_ne!(
        u.auth.primary_key, d.auth.primary_key,
        "an update without authentication mints new keys, as live hubs do"
    );
    assert_eq!(u.generation_id, d.generation_id);
    assert_ne!(u.status_updated_time, identity::NEVER);
}

#[test]
fn invalid_ids_are_refused() {
    let s = store();
    assert!(matches!(
        s.put_device("has space", &device(""), &IfMatch::Absent),
        Err(Error::ArgumentInvalid(_))
    ));
    assert!(matches!(
        s.put_device("a", &device("b"), &IfMatch::Absent),
        Err(Error::ArgumentInvalid(_))
    ));
}

#[test]
fn delete_needs_if_match_and_takes_modules_along() {
    let s = store();
    let d = s.put_device("d1", &device("d1"), &IfMatch::Absent).unwrap();
    s.put_module("d1", "m1", &module("d1", "m1"), &IfMatch::Absent)
        .unwrap();
    s.put_device("d10", &device("d10"), &IfMatch::Absent)
        .unwrap();
    s.put_module("d10", "m1", &module("d10", "m1"), &IfMatch::Absent)
        .unwrap();
    assert!(matches!(
        s.delete_device("d1", &IfMatch::Absent),
        Err(Error::PreconditionFailed(_))
    ));
    assert!(matches!(
        s.delete_device("d1", &etag("nope")),
        Err(Error::PreconditionFailed(_))
    ));
    s.delete_device("d1", &etag(&d.etag)).unwrap();
    assert!(matches!(s.device("d1"), Err(Error::DeviceNotFound(_))));
    assert!(matches!(
        s.module("d1", "m1"),
        Err(Error::DeviceNotFound(_))
    ));
    assert_eq!(
        s.modules("d10").unwrap().len(),
        1,
        "other devices keep theirs"
    );
    assert!(matches!(
        s.delete_device("d1", &IfMatch::Any),
        Err(Error::DeviceNotFound(_))
    ));
}

#[test]
fn module_rules_follow_iot_hub() {
    let s = store();
    assert!(matches!(
        s.put_module("nod", "m", &module("nod", "m"), &IfMatch::Absent),
        Err(Error::DeviceNotFound(_))
    ));
    s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
    let (m, created) = s
        .put_module("d", "m", &module("d", "m"), &IfMatch::Absent)
        .unwrap();
    assert!(created);
    assert!(matches!(
        s.put_module("d", "m", &module("d", "m"), &IfMatch::Absent),
        Err(Error::ModuleAlreadyExists { .. })
    ));
    let (u, created) = s
        .put_module("d", "m", &module("d", "m"), &etag(&m.etag))
        .unwrap();
    assert!(!created);
    assert_ne!(u.auth, m.auth, "a module PUT is a full replace: new keys");
    assert!(matches!(
        s.put_module("d", "x", &module("d", "x"), &IfMatch::Any),
        Err(Error::ModuleNotFound { .. })
    ));
    assert!(matches!(
        s.put_module(
            "d",
            "$edgeAgent",
            &module("d", "$edgeAgent"),
            &IfMatch::Absent
        ),
        Err(Error::ArgumentInvalid(_))
    ));
    assert!(matches!(
        s.put_module("d", "$mine", &module("d", "$mine"), &IfMatch::Absent),
        Err(Error::ArgumentInvalid(_))
    ));
    for i in 1..50 {
        let id = format!("m{i:02}");
        s.put_module("d", &id, &module("d", &id), &IfMatch::Absent)
            .unwrap();
    }
    assert!(matches!(
        s.put_module("d", "one-too-many", &module("d", ""), &IfMatch::Absent),
        Err(Error::TooManyModules(_))
    ));
    let ids: Vec<String> = s
        .modules("d")
        .unwrap()
        .into_iter()
        .map(|m| m.module_id)
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn edge_devices_get_system_modules_and_a_scope_children_can_use() {
    let s = store();
    let mut gw = device("gw");
    gw.capabilities = Some(wire::Capabilities { iot_edge: true });
    let gw = s.put_device("gw", &gw, &IfMatch::Absent).unwrap();
    let scope = gw.device_scope.clone().unwrap();
    assert_eq!(
        scope,
        format!("ms-azure-iot-edge://gw-{}", gw.generation_id)
    );
    let mods = s.modules("gw").unwrap();
    assert_eq!(
        mods.iter()
            .map(|m| m.module_id.as_str())
            .collect::<Vec<_>>(),
        ["$edgeAgent", "$edgeHub"]
    );
    assert_eq!(
        mods[0].auth.kind,
        twinops_iothub::wire::AuthenticationType::None
    );
    assert_eq!(mods[0].managed_by.as_deref(), Some("iotEdge"));
    let twin = s
        .twin(&Target::Module("gw".into(), "$edgeAgent".into()))
        .unwrap();
    assert_eq!(twin["authenticationType"], "none");

    let mut leaf = device("leaf");
    leaf.device_scope = Some(scope.clone());
    let leaf = s.put_device("leaf", &leaf, &IfMatch::Absent).unwrap();
    assert_eq!(leaf.parent_scopes, vec![scope.clone()]);
    let mut bad = device("bad");
    bad.device_scope = Some("ms-azure-iot-edge://nobody-1".into());
    assert!(matches!(
        s.put_device("bad", &bad, &IfMatch::Absent),
        Err(Error::ArgumentInvalid(_))
    ));
    assert!(matches!(
        s.delete_module("gw", "$edgeHub", &IfMatch::Any),
        Err(Error::SystemModule(_))
    ));
}

#[test]
fn twin_writes_check_etags_and_render_the_full_twin() {
    let s = store();
    s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
    let t = Target::Device("d".into());
    let write = ServiceWrite {
        tags: Some(json!({"site": "berlin"}).as_object().unwrap().clone()),
        desired: crate::twin::Desired::Set(
            json!({"telemetryInterval": 122})
                .as_object()
                .unwrap()
                .clone(),
        ),
    };
    let doc = s
        .write_twin(&t, false, write.clone(), &etag("AAAAAAAAAAE="))
        .unwrap();
    assert_eq!(doc["etag"], "AAAAAAAAAAI=");
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["tags"]["site"], "berlin");
    assert_eq!(doc["properties"]["desired"]["telemetryInterval"], 122);
    assert_eq!(doc["properties"]["desired"]["$version"], 2);
    assert!(matches!(
        s.write_twin(&t, false, write, &etag("AAAAAAAAAAE=")),
        Err(Error::PreconditionFailed(_))
    ));
    let rep = json!({"temp": 20}).as_object().unwrap().clone();
    let doc = s.patch_reported(&t, &rep).unwrap();
    assert_eq!(doc["etag"], "AAAAAAAAAAM=");
    assert_eq!(doc["properties"]["reported"]["$version"], 2);
    assert_eq!(doc["properties"]["reported"]["temp"], 20);
    for key in [
        "deviceId",
        "etag",
        "deviceEtag",
        "version",
        "status",
        "statusUpdateTime",
        "connectionState",
        "lastActivityTime",
        "cloudToDeviceMessageCount",
        "authenticationType",
        "x509Thumbprint",
        "modelId",
        "capabilities",
        "tags",
        "properties",
    ] {
        assert!(doc.get(key).is_some(), "{key}");
    }
    assert!(matches!(
        s.twin(&Target::Module("d".into(), "m".into())),
        Err(Error::DeviceNotFound(_))
    ));
}

#[test]
fn scan_pages_in_key_order_after_a_key() {
    let s = store();
    for id in ["b", "a", "c"] {
        s.put_device(id, &device(id), &IfMatch::Absent).unwrap();
    }
    let mut seen = Vec::new();
    s.scan(false, Some("a"), |k, twin| {
        seen.push((
            k.to_string(),
            twin["deviceId"].as_str().unwrap().to_string(),
        ));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            ("b".to_string(), "b".to_string()),
            ("c".to_string(), "c".to_string())
        ]
    );
}

#[test]
fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(Some(dir.path())).unwrap();
        s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
        assert_eq!(s.meta_or_init("hub_id", || "x".into()).unwrap(), "x");
    }
    let s = Store::open(Some(dir.path())).unwrap();
    assert!(s.device("d").is_ok());
    assert_eq!(s.meta_or_init("hub_id", || "y".into()).unwrap(), "x");
}

#[test]
fn regenerating_keys_rotates_sas_identities_and_reports_the_others_with_iot_hubs_codes() {
    use super::actions::RegenerateRow;
    let s = store();
    let before = s.put_device("d1", &device("d1"), &IfMatch::Absent).unwrap();
    let mut gw = device("gw");
    gw.capabilities = Some(wire::Capabilities { iot_edge: true });
    s.put_device("gw", &gw, &IfMatch::Absent).unwrap();
    let row = |id: &str, module: Option<&str>| RegenerateRow {
        id: id.into(),
        module_id: module.map(str::to_string),
    };
    let req = RegenerateRequest {
        policy_key: "primaryKey".into(),
        devices: vec![
            row("d1", None),
            row("ghost", None),
            row("d1", Some("nope")),
            row("gw", Some("$edgeAgent")),
        ],
    };
    let r = s.regenerate_keys(&req).unwrap();
    let after = s.device("d1").unwrap();
    assert_eq!(r.rotated_keys.len(), 1);
    assert_eq!(
        after.auth.primary_key,
        Some(r.rotated_keys[0].primary_key.clone())
    );
    assert_ne!(after.auth.primary_key, before.auth.primary_key);
    assert_eq!(after.auth.secondary_key, before.auth.secondary_key);
    assert_ne!(after.etag, before.etag, "a key change is an identity write");
    assert_eq!(
        serde_json::to_value(&r.errors).unwrap(),
        json!([
            {"id": "ghost", "errorCode": "DeviceNotFound", "errorStatus": "ghost does not exist"},
            {"id": "d1", "moduleId": "nope", "errorCode": "ModuleNotFound",
             "errorStatus": "d1/nope does not exist"},
            {"id": "gw", "moduleId": "$edgeAgent", "errorCode": "ArgumentInvalid",
             "errorStatus": "only identities with SAS authentication have keys to regenerate"},
        ])
    );
}
