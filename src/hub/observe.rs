//! Conversion of wire twins (GET or query rows) into the planner's [`twinops_core::model`] observations.
//! Keys never pass through here: twins carry none. A twin the planner could not act on safely (no
//! etag, an ID that breaks IoT Hub's rules) is an [`Error::Invalid`], never a default value: an empty
//! etag would be sent as `If-Match: ""`.

use serde_json::Value;

use super::Error;
use twinops_core::model::{
    DeviceId, DeviceStatus, ETag, ModuleId, ObservedAuth, ObservedConfiguration, ObservedDevice,
    ObservedModule, ObservedTwin,
};
use twinops_iothub::wire::{JsonMap, Twin};

/// A section without its `$metadata` and `$version`.
fn strip(section: Option<&JsonMap>) -> (JsonMap, i64) {
    let mut out = JsonMap::new();
    let mut version = 0;
    if let Some(m) = section {
        for (k, v) in m {
            match k.as_str() {
                "$version" => version = v.as_i64().unwrap_or(0),
                k if k.starts_with('$') => {}
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    (out, version)
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

pub(super) fn twin(t: &Twin) -> Result<ObservedTwin, Error> {
    let props = t.properties.as_ref();
    let (desired, desired_version) = strip(props.and_then(|p| p.desired.as_ref()));
    let (reported, _) = strip(props.and_then(|p| p.reported.as_ref()));
    Ok(ObservedTwin {
        etag: etag(t, t.etag.as_ref(), "an etag")?,
        tags: t.tags.clone().unwrap_or_default(),
        desired,
        desired_version,
        reported,
        configurations: t.configurations.clone().unwrap_or_default(),
    })
}

fn auth(t: &Twin) -> Result<ObservedAuth, Error> {
    let x = t.x509_thumbprint.clone().unwrap_or_default();
    Ok(ObservedAuth {
        kind: t.authentication_type.unwrap_or_default(),
        primary_thumbprint: x.primary_thumbprint,
        secondary_thumbprint: x.secondary_thumbprint,
    })
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

pub(super) fn device(t: &Twin) -> Result<ObservedDevice, Error> {
    Ok(ObservedDevice {
        id: device_id(&t.device_id)?,
        identity_etag: etag(t, t.device_etag.as_ref(), "a deviceEtag")?,
        status: status(t.status.as_deref()),
        status_reason: t.status_reason.clone().filter(|s| !s.is_empty()),
        auth: auth(t)?,
        edge: t.capabilities.as_ref().is_some_and(|c| c.iot_edge),
        device_scope: t.device_scope.clone().filter(|s| !s.is_empty()),
        parent_scopes: t.parent_scopes.clone().unwrap_or_default(),
        twin: twin(t)?,
        modules: Default::default(),
    })
}

pub(super) fn module(t: &Twin) -> Result<ObservedModule, Error> {
    let id = t.module_id.as_deref().ok_or_else(|| {
        Error::Invalid(format!("module twin of `{}` has no moduleId", t.device_id))
    })?;
    Ok(ObservedModule {
        id: module_id(id)?,
        identity_etag: etag(t, t.device_etag.as_ref(), "a deviceEtag")?,
        auth: auth(t)?,
        twin: twin(t)?,
    })
}

/// A configuration as drift sees it: the desired keys its content writes, and its priority.
pub(super) fn configuration(c: twinops_iothub::wire::Configuration) -> ObservedConfiguration {
    let mut o = twinops_core::plan::drift::content_keys(&c.content.unwrap_or_default());
    o.id = c.id;
    o.priority = c.priority.unwrap_or(0);
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
        let e = twin(&t).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(e.to_string().contains("without an etag"), "{e}");
        let t: Twin =
            serde_json::from_value(serde_json::json!({"deviceId": "d1", "etag": ""})).unwrap();
        assert!(matches!(twin(&t), Err(Error::Invalid(_))));
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
            let d = device(&t).unwrap();
            assert_eq!(d.auth.primary_thumbprint.as_deref(), Some("AB"), "{key}");
            assert_eq!(d.auth.secondary_thumbprint.as_deref(), Some("CD"), "{key}");
        }
    }
}
