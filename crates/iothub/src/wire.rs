//! IoT Hub's JSON documents (swagger 2021-04-12), as both the client and the emulator send and read them.
//!
//! Request bodies are read leniently (unknown and read-only fields are ignored, as IoT Hub does);
//! optional fields are omitted when absent.
//!
//! Every field is `pub`, used outside this crate or not: these are the protocol's documents, serde
//! reads every field (so rustc could not report one dead anyway), and either side may need any.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type JsonMap = serde_json::Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    #[serde(default)]
    pub primary_key: Option<String>,
    #[serde(default)]
    pub secondary_key: Option<String>,
}

/// Identity documents spell `primaryThumbprint`; a live hub's twin mirror spells
/// `PrimaryThumbprint` (live-hub.md), so both are read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    #[serde(default, alias = "PrimaryThumbprint")]
    pub primary_thumbprint: Option<String>,
    #[serde(default, alias = "SecondaryThumbprint")]
    pub secondary_thumbprint: Option<String>,
}

/// `authentication` of a device or module. `type` is `sas | selfSigned | certificateAuthority | none`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AuthenticationType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

/// A device identity (`/devices/{id}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default)]
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_updated_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_updated_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
}

/// A module identity (`/devices/{id}/modules/{mid}`). Modules have no status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    #[serde(default)]
    pub module_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_updated_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// `properties` of a twin: desired and reported, each with `$metadata` and `$version` inside.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TwinProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<JsonMap>,
}

/// A device or module twin (`/twins/{id}[/modules/{mid}]`, query rows of type `Twin`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    #[serde(default)]
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<AuthenticationType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configurations: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<TwinProperties>,
}

/// `POST /devices/query` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySpecification {
    pub query: String,
}

/// One row of a bulk registry call (`POST /devices`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportImportDevice {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Set on import rows; export lines carry none.
    #[serde(default)]
    pub import_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(rename = "twinETag", default, skip_serializing_if = "Option::is_none")]
    pub twin_etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<TwinProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// One failed row of a bulk call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistryOperationError {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub error_code: crate::error_code::ErrorCode,
    #[serde(default)]
    pub error_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistryOperationWarning {
    pub device_id: String,
    pub warning_code: String,
    #[serde(default)]
    pub warning_status: String,
}

/// The answer to a bulk call (200 when every row succeeded, else 400).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistryOperationResult {
    pub is_successful: bool,
    #[serde(default)]
    pub errors: Vec<DeviceRegistryOperationError>,
    #[serde(default)]
    pub warnings: Vec<DeviceRegistryOperationWarning>,
}

/// An automatic device or module configuration (`/configurations/{id}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<JsonMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_metrics: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// An import/export job's record (`/jobs/create`, `GET /jobs/{id}`). The container URI is not
/// echoed back by IoT Hub.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProperties {
    #[serde(default)]
    pub job_id: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `enqueued`, `running`, `completed`, `failed`, `cancelled` (IoT Hub also knows `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_blob_container_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_keys_in_export: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_blob_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_authentication_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// Wraps an etag in quotes for `If-Match` unless it already is quoted or is `*`.
pub fn quote_etag(etag: &str) -> String {
    if etag.starts_with('"') && etag.ends_with('"') && etag.len() >= 2 {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote_etag("AAAAAAAAAAE="), "\"AAAAAAAAAAE=\"");
        assert_eq!(quote_etag("\"x\""), "\"x\"");
        assert_eq!(quote_etag("*"), "\"*\"");
    }

    #[test]
    fn sdk_module_create_body_reads() {
        let m: Module = serde_json::from_str(r#"{"moduleId":"m","managedBy":"mgr","deviceId":"d","authentication":{"symmetricKey":{"primaryKey":"","secondaryKey":""},"type":"sas"}}"#).unwrap();
        assert_eq!(m.module_id, "m");
        assert_eq!(
            m.authentication
                .unwrap()
                .symmetric_key
                .unwrap()
                .primary_key
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn bulk_row_uses_capital_t_etags() {
        let row = ExportImportDevice {
            id: "d".into(),
            import_mode: "updateTwinIfMatchETag".into(),
            twin_etag: Some("x".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["twinETag"], "x");
        assert_eq!(v["importMode"], "updateTwinIfMatchETag");
    }
}

/// `authentication.type` of a device or module: the one place its spellings are defined, for the
/// wire, the emulator and the planner's model alike (absent on the wire means `sas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AuthenticationType {
    #[default]
    #[serde(rename = "sas")]
    Sas,
    #[serde(rename = "selfSigned")]
    SelfSigned,
    #[serde(rename = "certificateAuthority")]
    CertificateAuthority,
    #[serde(rename = "none")]
    None,
}

impl AuthenticationType {
    pub const ALL: [AuthenticationType; 4] = [
        AuthenticationType::Sas,
        AuthenticationType::SelfSigned,
        AuthenticationType::CertificateAuthority,
        AuthenticationType::None,
    ];

    /// The spelling on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticationType::Sas => "sas",
            AuthenticationType::SelfSigned => "selfSigned",
            AuthenticationType::CertificateAuthority => "certificateAuthority",
            AuthenticationType::None => "none",
        }
    }

    /// Reads a wire spelling; `None` for anything IoT Hub does not define.
    pub fn parse(text: &str) -> Option<AuthenticationType> {
        AuthenticationType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

#[cfg(test)]
mod authentication_type_tests {
    use super::*;

    #[test]
    fn every_type_reads_back_its_own_spelling() {
        for t in AuthenticationType::ALL {
            assert_eq!(AuthenticationType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).ok(),
                Some(Value::String(t.as_str().into()))
            );
        }
        assert_eq!(AuthenticationType::parse("SAS"), None);
    }
}
