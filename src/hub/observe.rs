//! Conversion of wire twins (GET or query rows) into the planner's [`twinops_core::model`] observations.
//! Keys never pass through here: twins carry none. A twin the planner could not act on safely (no
//! etag, an ID that breaks IoT Hub's rules) is an [`Error::Invalid`], never a default value: an empty
//! etag would be sent as `If-Match: ""`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Error;
use twinops_core::model::{
    DeviceId, DeviceStatus, ETag, KeyMeta, ModuleId, ObservedAuth, ObservedConfiguration,
    ObservedDevice, ObservedModule, ObservedTwin,
};
use twinops_iothub::wire::{JsonMap, Twin};

/// A section without its `$metadata` and `$version` (nor any other `$` key), and its version.
fn strip(section: Option<JsonMap>) -> (JsonMap, i64) {
    let Some(mut m) = section else {
        return (JsonMap::new(), 0);
    };
    let version = m.get("$version").and_then(Value::as_i64).unwrap_or(0);
    m.retain(|k, _| !k.starts_with('$'));
    (m, version)
}

fn address(t: &Twin) -> String {
    twinops_core::model::address(&t.device_id, t.module_id.as_deref())
}

fn etag(t: &Twin, value: Option<&String>, what: &str) -> Result<ETag, Error> {
    let text = value.ok_or_else(|| {
        Error::Invalid(format!(
            "the hub sent the twin of `{}` without {what}",
            address(t)
        ))
    })?;
    ETag::new(text.clone()).map_err(|e| Error::Invalid(format!("{what} of `{}`: {e}", address(t))))
}

/// What the desired `$metadata` says of each top-level key: its `$lastUpdatedVersion` and
/// `$lastUpdated` (SPEC §11: a device acknowledges a key at that key's version).
fn desired_meta(section: Option<&JsonMap>) -> BTreeMap<String, KeyMeta> {
    let Some(Value::Object(meta)) = section.and_then(|s| s.get("$metadata")) else {
        return BTreeMap::new();
    };
    meta.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .filter_map(|(k, v)| {
            let v = v.as_object()?;
            Some((
                k.clone(),
                KeyMeta {
                    version: v.get("$lastUpdatedVersion").and_then(Value::as_i64),
                    updated: v
                        .get("$lastUpdated")
                        .and_then(Value::as_str)
                        .and_then(unix_seconds),
                },
            ))
        })
        .collect()
}

/// An IoT Hub timestamp (`2024-05-01T10:00:00.1234567Z`) as Unix seconds.
pub(crate) fn unix_seconds(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// The twin part of a wire twin, which it is taken apart for: a read of a whole hub observes
/// every twin once, and copies none of its sections.
pub(super) fn twin(t: Twin) -> Result<ObservedTwin, Error> {
    let etag = etag(&t, t.etag.as_ref(), "an etag")?;
    let (desired, reported) = t
        .properties
        .map(|p| (p.desired, p.reported))
        .unwrap_or_default();
    let desired_meta = desired_meta(desired.as_ref());
    let (desired, desired_version) = strip(desired);
    let (reported, _) = strip(reported);
    Ok(ObservedTwin {
        etag,
        tags: t.tags.unwrap_or_default(),
        desired,
        desired_version,
        desired_meta,
        reported,
        configurations: t.configurations.unwrap_or_default(),
    })
}

fn auth(t: &mut Twin) -> ObservedAuth {
    let x = t.x509_thumbprint.take().unwrap_or_default();
    ObservedAuth {
        kind: t.authentication_type.unwrap_or_default(),
        primary_thumbprint: x.primary_thumbprint,
        secondary_thumbprint: x.secondary_thumbprint,
    }
}

/// A device's `status` on the wire (absent or unknown reads as enabled, IoT Hub's default).
pub(super) fn status(wire: Option<&str>) -> DeviceStatus {
    match wire {
        Some("disabled") => DeviceStatus::Disabled,
        _ => DeviceStatus::Enabled,
    }
}

pub(super) fn device_id(text: &str) -> Result<DeviceId, Error> {
    DeviceId::new(text).map_err(|e| Error::Invalid(e.to_string()))
}

pub(super) fn module_id(text: &str) -> Result<ModuleId, Error> {
    ModuleId::new(text).map_err(|e| Error::Invalid(e.to_string()))
}

pub(super) fn device(mut t: Twin) -> Result<ObservedDevice, Error> {
    Ok(ObservedDevice {
        id: device_id(&t.device_id)?,
        identity_etag: etag(&t, t.device_etag.as_ref(), "a deviceEtag")?,
        status: status(t.status.as_deref()),
        status_reason: t.status_reason.take().filter(|s| !s.is_empty()),
        auth: auth(&mut t),
        edge: t.capabilities.as_ref().is_some_and(|c| c.iot_edge),
        device_scope: t.device_scope.take().filter(|s| !s.is_empty()),
        parent_scopes: t.parent_scopes.take().unwrap_or_default(),
        twin: twin(t)?,
        modules: Default::default(),
    })
}

pub(super) fn module(mut t: Twin) -> Result<ObservedModule, Error> {
    let id = t.module_id.as_deref().ok_or_else(|| {
        Error::Invalid(format!("module twin of `{}` has no moduleId", t.device_id))
    })?;
    Ok(ObservedModule {
        id: module_id(id)?,
        identity_etag: etag(&t, t.device_etag.as_ref(), "a deviceEtag")?,
        auth: auth(&mut t),
        twin: twin(t)?,
    })
}

/// A configuration as drift sees it: the desired keys its content writes, and its priority.
pub(super) fn configuration(c: twinops_iothub::wire::Configuration) -> ObservedConfiguration {
    keys(
        c.id,
        c.priority.unwrap_or(0),
        &c.content.unwrap_or_default(),
    )
}

/// The desired keys a hub object (as listed) writes, as [`configuration`] reads them.
pub fn written_keys(o: &twinops_core::model::ObservedObject) -> ObservedConfiguration {
    let empty = serde_json::Map::new();
    keys(
        o.id.clone(),
        o.priority,
        o.content.as_object().unwrap_or(&empty),
    )
}

fn keys(
    id: String,
    priority: i64,
    content: &serde_json::Map<String, Value>,
) -> ObservedConfiguration {
    let mut o = twinops_core::plan::drift::content_keys(content);
    o.id = id;
    o.priority = priority;
    o
}

/// Reads a query row as a twin.
pub(super) fn row(v: Value) -> Result<Twin, Error> {
    serde_json::from_value(v).map_err(|source| Error::Decode {
        what: "a twin".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twin_without_an_etag_is_an_error_not_an_empty_etag() {
        let t: Twin = serde_json::from_value(serde_json::json!({"deviceId": "d1"})).unwrap();
        let e = twin(t).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(e.to_string().contains("without an etag"), "{e}");
        let t: Twin =
            serde_json::from_value(serde_json::json!({"deviceId": "d1", "etag": ""})).unwrap();
        assert!(matches!(twin(t), Err(Error::Invalid(_))));
    }

    #[test]
    fn thumbprints_are_read_in_both_casings() {
        for key in ["primaryThumbprint", "PrimaryThumbprint"] {
            let t: Twin = serde_json::from_value(serde_json::json!({
                "deviceId": "d1", "etag": "e", "deviceEtag": "i",
                "authenticationType": "selfSigned",
                "x509Thumbprint": {key: "AB", "SecondaryThumbprint": "CD"},
            }))
            .unwrap();
            let d = device(t).unwrap();
            assert_eq!(d.auth.primary_thumbprint.as_deref(), Some("AB"), "{key}");
            assert_eq!(d.auth.secondary_thumbprint.as_deref(), Some("CD"), "{key}");
        }
    }

    #[test]
    fn each_desired_key_keeps_its_own_last_updated_version() {
        let section: JsonMap = serde_json::from_value(serde_json::json!({
            "a": 1, "b": 2, "$version": 7,
            "$metadata": {
                "$lastUpdated": "2024-05-01T10:00:07.0000000Z", "$lastUpdatedVersion": 7,
                "a": {"$lastUpdated": "2024-05-01T10:00:02.1234567Z", "$lastUpdatedVersion": 2},
                "b": {"$lastUpdated": "2024-05-01T10:00:07.0000000Z", "$lastUpdatedVersion": 7}
            }
        }))
        .unwrap_or_default();
        let meta = desired_meta(Some(&section));
        assert_eq!(meta["a"].version, Some(2));
        assert_eq!(meta["b"].version, Some(7));
        assert_eq!(meta["a"].updated, Some(1_714_557_602));
        assert_eq!(meta.len(), 2, "the section's own metadata is not a key");
    }
}
