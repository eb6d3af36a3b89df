//! Conversion of wire twins (GET or query rows) into the planner's [`twinops_core::model`] observations.
//! Keys never pass through here: twins carry none.

use serde_json::Value;

use twinops_core::model::{
    DeviceStatus, ObservedAuth, ObservedDevice, ObservedModule, ObservedTwin,
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

pub fn twin(t: &Twin) -> ObservedTwin {
    let props = t.properties.as_ref();
    let (desired, desired_version) = strip(props.and_then(|p| p.desired.as_ref()));
    let (reported, _) = strip(props.and_then(|p| p.reported.as_ref()));
    ObservedTwin {
        etag: t.etag.clone().unwrap_or_default(),
        tags: t.tags.clone().unwrap_or_default(),
        desired,
        desired_version,
        reported,
        configurations: t.configurations.clone().unwrap_or_default(),
    }
}

fn auth(t: &Twin) -> ObservedAuth {
    let x = t.x509_thumbprint.clone().unwrap_or_default();
    ObservedAuth {
        kind: t
            .authentication_type
            .clone()
            .unwrap_or_else(|| "sas".into()),
        primary_thumbprint: x.primary_thumbprint,
        secondary_thumbprint: x.secondary_thumbprint,
    }
}

pub fn device(t: &Twin) -> ObservedDevice {
    ObservedDevice {
        id: t.device_id.clone(),
        identity_etag: t.device_etag.clone().unwrap_or_default(),
        status: match t.status.as_deref() {
            Some("disabled") => DeviceStatus::Disabled,
            _ => DeviceStatus::Enabled,
        },
        status_reason: t.status_reason.clone().filter(|s| !s.is_empty()),
        auth: auth(t),
        edge: t.capabilities.as_ref().is_some_and(|c| c.iot_edge),
        device_scope: t.device_scope.clone().filter(|s| !s.is_empty()),
        parent_scopes: t.parent_scopes.clone().unwrap_or_default(),
        twin: twin(t),
        modules: Default::default(),
    }
}

pub fn module(t: &Twin) -> ObservedModule {
    ObservedModule {
        id: t.module_id.clone().unwrap_or_default(),
        auth: auth(t),
        twin: twin(t),
    }
}

/// Reads a query row as a twin.
pub fn row(v: Value) -> Result<Twin, serde_json::Error> {
    serde_json::from_value(v)
}
