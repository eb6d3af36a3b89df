//! Device and module identity records and IoT Hub's rules for them: status values, authentication
//! (generated 32-byte keys, given keys of 16–64 bytes, x509 thumbprints), edge capability and
//! scopes, and how records render as the wire `Device`, `Module` and twin documents.
//!
//! Pure except for key generation (randomness). Storage, etags and lookups live in `store`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::Error;
use super::presence::Presence;
use super::twin::TwinState;
use twinops_iothub::wire::{
    self, Authentication, AuthenticationType, Capabilities, SymmetricKey, X509Thumbprint,
};

/// IoT Hub's "never" timestamp.
pub(crate) const NEVER: &str = "0001-01-01T00:00:00Z";
/// Scheme of an edge device's scope.
pub(crate) const EDGE_SCOPE_PREFIX: &str = "ms-azure-iot-edge://";

/// How an identity authenticates; keys are kept as IoT Hub returns them (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Auth {
    /// Stored as IoT Hub spells it (`sas`, `selfSigned`, ...), so state files read back as before.
    pub(crate) kind: AuthenticationType,
    pub(crate) primary_key: Option<String>,
    pub(crate) secondary_key: Option<String>,
    pub(crate) primary_thumbprint: Option<String>,
    pub(crate) secondary_thumbprint: Option<String>,
}

impl Auth {
    pub(crate) fn generated_sas() -> Auth {
        Auth {
            kind: AuthenticationType::Sas,
            primary_key: Some(generate_key()),
            secondary_key: Some(generate_key()),
            primary_thumbprint: None,
            secondary_thumbprint: None,
        }
    }

    /// What the edge runtime's system modules get: they authenticate through their device.
    pub(crate) fn none() -> Auth {
        Auth {
            kind: AuthenticationType::None,
            primary_key: None,
            secondary_key: None,
            primary_thumbprint: None,
            secondary_thumbprint: None,
        }
    }

    pub(crate) fn to_wire(&self) -> Authentication {
        Authentication {
            symmetric_key: Some(SymmetricKey {
                primary_key: self.primary_key.clone(),
                secondary_key: self.secondary_key.clone(),
            }),
            x509_thumbprint: Some(self.thumbprints()),
            kind: Some(self.kind),
        }
    }

    fn thumbprints(&self) -> X509Thumbprint {
        X509Thumbprint {
            primary_thumbprint: self.primary_thumbprint.clone(),
            secondary_thumbprint: self.secondary_thumbprint.clone(),
        }
    }
}

/// 32 random bytes, base64: the size of the keys IoT Hub generates.
pub(crate) fn generate_key() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    B64.encode(bytes)
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn check_key(key: &str, which: &str) -> Result<String, Error> {
    let n = B64
        .decode(key)
        .map_err(|_| Error::ArgumentInvalid(format!("{which} is not valid base64")))?
        .len();
    if !(16..=64).contains(&n) {
        return Err(Error::ArgumentInvalid(format!(
            "{which} must be 16 to 64 bytes, got {n}"
        )));
    }
    Ok(key.to_string())
}

/// Which identity an `authentication` block is for: IoT Hub refuses `none` for a device and
/// coerces it to `sas` for a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    Device,
    Module,
}

/// The authentication an identity ends up with, as live hubs decide it (live-hub.md): a write is
/// a full replace, so no `authentication` in the body **mints new SAS keys** (on update too), and
/// so does a SAS block with neither key; symmetric keys are both or neither. `selfSigned` without
/// a thumbprint is accepted; thumbprints keep their case and may not carry `:` separators.
pub(crate) fn resolve_auth(
    requested: Option<&Authentication>,
    holder: Holder,
) -> Result<Auth, Error> {
    let Some(req) = requested else {
        return Ok(Auth::generated_sas());
    };
    let kind = match req.kind {
        Some(kind) => kind,
        None => {
            let thumbs = req
                .x509_thumbprint
                .as_ref()
                .is_some_and(|t| non_empty(&t.primary_thumbprint).is_some());
            if thumbs {
                AuthenticationType::SelfSigned
            } else {
                AuthenticationType::Sas
            }
        }
    };
    let kind = match (kind, holder) {
        (AuthenticationType::None, Holder::Device) => {
            return Err(Error::ArgumentInvalid(
                "authentication type none is not allowed for a device".into(),
            ));
        }
        (AuthenticationType::None, Holder::Module) => AuthenticationType::Sas,
        (k, _) => k,
    };
    match kind {
        AuthenticationType::Sas => {
            let keys = req.symmetric_key.clone().unwrap_or_default();
            match (non_empty(&keys.primary_key), non_empty(&keys.secondary_key)) {
                (None, None) => Ok(Auth::generated_sas()),
                (Some(p), Some(s)) => Ok(Auth {
                    kind,
                    primary_key: Some(check_key(p, "primaryKey")?),
                    secondary_key: Some(check_key(s, "secondaryKey")?),
                    primary_thumbprint: None,
                    secondary_thumbprint: None,
                }),
                _ => Err(Error::ArgumentInvalid(
                    "give both symmetric keys or neither".into(),
                )),
            }
        }
        AuthenticationType::SelfSigned => {
            let t = req.x509_thumbprint.clone().unwrap_or_default();
            let primary = non_empty(&t.primary_thumbprint);
            let secondary = non_empty(&t.secondary_thumbprint);
            for th in primary.into_iter().chain(secondary) {
                if !(th.len() == 40 || th.len() == 64) || !th.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(Error::ArgumentInvalid(
                        "a thumbprint is 40 or 64 hexadecimal digits without separators".into(),
                    ));
                }
            }
            Ok(Auth {
                kind,
                primary_key: None,
                secondary_key: None,
                primary_thumbprint: primary.map(str::to_string),
                secondary_thumbprint: secondary.map(str::to_string),
            })
        }
        AuthenticationType::CertificateAuthority | AuthenticationType::None => Ok(Auth {
            kind,
            ..Auth::none()
        }),
    }
}

/// IoT Hub's answer to an `authentication.type` it does not define: 400 `ArgumentInvalid` naming
/// the allowed types. The typed body refuses such a type while decoding, where it would read as
/// malformed JSON; the HTTP edge asks this of a body that failed to decode. `None` when the body
/// has no such type (its failure is another).
pub(crate) fn unknown_authentication_type(body: &Value) -> Option<Error> {
    let text = body.get("authentication")?.get("type")?.as_str()?;
    if AuthenticationType::parse(text).is_some() {
        return None;
    }
    let allowed: Vec<&str> = AuthenticationType::ALL.iter().map(|t| t.as_str()).collect();
    Some(Error::ArgumentInvalid(format!(
        "authentication type `{}` is not one of {}",
        text.chars().take(32).collect::<String>(),
        allowed.join(", ")
    )))
}

/// `enabled` or `disabled`; absent keeps `current` (or `enabled` on create).
pub(crate) fn resolve_status(
    requested: Option<&str>,
    current: Option<&str>,
) -> Result<String, Error> {
    match requested {
        None => Ok(current.unwrap_or("enabled").to_string()),
        Some(s) if s.eq_ignore_ascii_case("enabled") => Ok("enabled".into()),
        Some(s) if s.eq_ignore_ascii_case("disabled") => Ok("disabled".into()),
        Some(_) => Err(Error::ArgumentInvalid(
            "status must be `enabled` or `disabled`".into(),
        )),
    }
}

pub(crate) fn check_status_reason(reason: &Option<String>) -> Result<(), Error> {
    match reason {
        Some(r) if r.chars().count() > 128 => Err(Error::ArgumentInvalid(
            "statusReason is longer than 128 characters".into(),
        )),
        _ => Ok(()),
    }
}

/// `ms-azure-iot-edge://{deviceId}-{generationId}`.
pub(crate) fn edge_scope(device_id: &str, generation_id: &str) -> String {
    format!("{EDGE_SCOPE_PREFIX}{device_id}-{generation_id}")
}

/// The device ID an edge scope names (its generation ID follows the last `-`).
pub(crate) fn scope_device(scope: &str) -> Option<&str> {
    let rest = scope.strip_prefix(EDGE_SCOPE_PREFIX)?;
    rest.rsplit_once('-').map(|(id, _)| id)
}

/// A device identity with its twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub(crate) device_id: String,
    pub(crate) generation_id: String,
    pub(crate) etag: String,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) status_updated_time: String,
    pub(crate) auth: Auth,
    pub(crate) edge: bool,
    pub(crate) device_scope: Option<String>,
    pub(crate) parent_scopes: Vec<String>,
    pub(crate) twin: TwinState,
    #[serde(default)]
    pub(crate) presence: Presence,
}

/// A module identity with its twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModuleRecord {
    pub(crate) device_id: String,
    pub(crate) module_id: String,
    pub(crate) managed_by: Option<String>,
    pub(crate) generation_id: String,
    pub(crate) etag: String,
    pub(crate) auth: Auth,
    pub(crate) twin: TwinState,
    #[serde(default)]
    pub(crate) presence: Presence,
}

impl DeviceRecord {
    pub(crate) fn to_wire(&self) -> wire::Device {
        wire::Device {
            device_id: self.device_id.clone(),
            generation_id: Some(self.generation_id.clone()),
            etag: Some(self.etag.clone()),
            connection_state: Some(self.presence.state().into()),
            status: Some(self.status.clone()),
            status_reason: self.status_reason.clone(),
            connection_state_updated_time: Some(self.presence.state_updated_time().into()),
            status_updated_time: Some(self.status_updated_time.clone()),
            last_activity_time: Some(self.presence.last_activity_time().into()),
            cloud_to_device_message_count: Some(0),
            authentication: Some(self.auth.to_wire()),
            capabilities: Some(Capabilities {
                iot_edge: self.edge,
            }),
            device_scope: self.device_scope.clone(),
            parent_scopes: Some(self.parent_scopes.clone()),
        }
    }

    /// The device twin document (reference §5.1).
    pub(crate) fn twin_json(&self) -> Value {
        let mut t = json!({
            "deviceId": self.device_id,
            "etag": self.twin.etag(),
            "deviceEtag": self.etag,
            "status": self.status,
        });
        let m = obj(&mut t);
        if let Some(r) = &self.status_reason {
            m.insert("statusReason".into(), json!(r));
        }
        m.insert("statusUpdateTime".into(), json!(self.status_updated_time));
        common_twin_fields(m, &self.auth, &self.twin, &self.presence);
        m.insert("capabilities".into(), json!({"iotEdge": self.edge}));
        // Live hubs omit both when null or empty.
        if let Some(s) = self.device_scope.as_deref().filter(|s| !s.is_empty()) {
            m.insert("deviceScope".into(), json!(s));
        }
        if !self.parent_scopes.is_empty() {
            m.insert("parentScopes".into(), json!(self.parent_scopes));
        }
        m.insert("tags".into(), Value::Object(self.twin.tags.clone()));
        m.insert("properties".into(), self.twin.properties_json());
        t
    }
}

impl ModuleRecord {
    pub(crate) fn to_wire(&self) -> wire::Module {
        wire::Module {
            module_id: self.module_id.clone(),
            managed_by: self.managed_by.clone(),
            device_id: self.device_id.clone(),
            generation_id: Some(self.generation_id.clone()),
            etag: Some(self.etag.clone()),
            connection_state: Some(self.presence.state().into()),
            connection_state_updated_time: Some(self.presence.state_updated_time().into()),
            last_activity_time: Some(self.presence.last_activity_time().into()),
            cloud_to_device_message_count: Some(0),
            authentication: Some(self.auth.to_wire()),
        }
    }

    /// The module twin document. Modules have no status of their own; their twins read `enabled`.
    pub(crate) fn twin_json(&self) -> Value {
        let mut t = json!({
            "deviceId": self.device_id,
            "moduleId": self.module_id,
            "etag": self.twin.etag(),
            "deviceEtag": self.etag,
            "status": "enabled",
            "statusUpdateTime": NEVER,
        });
        let m = obj(&mut t);
        common_twin_fields(m, &self.auth, &self.twin, &self.presence);
        m.insert("tags".into(), Value::Object(self.twin.tags.clone()));
        m.insert("properties".into(), self.twin.properties_json());
        t
    }
}

fn obj(v: &mut Value) -> &mut wire::JsonMap {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("twin documents are built as objects"),
    }
}

fn common_twin_fields(m: &mut wire::JsonMap, auth: &Auth, twin: &TwinState, presence: &Presence) {
    // Only twins that a configuration targets carry the member (fresh twins on IoT Hub lack it).
    if !twin.configurations.is_empty() {
        m.insert(
            "configurations".into(),
            Value::Object(twin.configurations.clone()),
        );
    }
    m.insert("connectionState".into(), json!(presence.state()));
    m.insert(
        "lastActivityTime".into(),
        json!(presence.last_activity_time()),
    );
    m.insert("cloudToDeviceMessageCount".into(), json!(0));
    m.insert("authenticationType".into(), json!(auth.kind.as_str()));
    m.insert(
        "x509Thumbprint".into(),
        // Twins spell these keys capitalised (identity documents use camelCase), as live hubs do.
        json!({"PrimaryThumbprint": auth.primary_thumbprint, "SecondaryThumbprint": auth.secondary_thumbprint}),
    );
    m.insert("modelId".into(), json!(""));
    m.insert("version".into(), json!(twin.version));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sas(p: Option<&str>, s: Option<&str>) -> Authentication {
        Authentication {
            symmetric_key: Some(SymmetricKey {
                primary_key: p.map(str::to_string),
                secondary_key: s.map(str::to_string),
            }),
            x509_thumbprint: None,
            kind: Some(AuthenticationType::Sas),
        }
    }

    #[test]
    fn empty_keys_are_generated_with_32_bytes() {
        let a = resolve_auth(Some(&sas(Some(""), None)), Holder::Device).unwrap();
        let k = a.primary_key.unwrap();
        assert_eq!(B64.decode(&k).unwrap().len(), 32);
        assert_eq!(k.len(), 44);
        assert_ne!(Some(k), a.secondary_key);
        assert_eq!(
            resolve_auth(None, Holder::Device).unwrap().kind,
            AuthenticationType::Sas
        );
    }

    #[test]
    fn given_keys_must_be_16_to_64_bytes_and_come_in_pairs() {
        let k16 = B64.encode([1u8; 16]);
        let k64 = B64.encode([1u8; 64]);
        assert!(resolve_auth(Some(&sas(Some(&k16), Some(&k64))), Holder::Device).is_ok());
        let k15 = B64.encode([1u8; 15]);
        let k65 = B64.encode([1u8; 65]);
        for bad in [k15.as_str(), k65.as_str(), "not base64!"] {
            assert!(matches!(
                resolve_auth(Some(&sas(Some(bad), Some(&k16))), Holder::Device),
                Err(Error::ArgumentInvalid(_))
            ));
        }
        assert!(resolve_auth(Some(&sas(Some(&k16), None)), Holder::Device).is_err());
        assert!(resolve_auth(Some(&sas(None, Some(&k16))), Holder::Module).is_err());
    }

    #[test]
    fn omitted_authentication_mints_new_keys() {
        let a = resolve_auth(None, Holder::Device).unwrap();
        let b = resolve_auth(None, Holder::Device).unwrap();
        assert_ne!(a.primary_key, b.primary_key);
    }

    #[test]
    fn an_unknown_authentication_type_is_an_invalid_argument_naming_the_allowed_ones() {
        let e = unknown_authentication_type(&json!({"authentication": {"type": "weird"}}));
        assert_eq!(
            e,
            Some(Error::ArgumentInvalid(
                "authentication type `weird` is not one of sas, selfSigned, \
                 certificateAuthority, none"
                    .into()
            ))
        );
        let long = "k".repeat(100);
        let Some(Error::ArgumentInvalid(text)) =
            unknown_authentication_type(&json!({"authentication": {"type": long}}))
        else {
            panic!("an unknown type");
        };
        assert!(text.contains(&format!("`{}`", "k".repeat(32))), "{text}");
        for known in AuthenticationType::ALL {
            let body = json!({"authentication": {"type": known.as_str()}});
            assert_eq!(unknown_authentication_type(&body), None, "{known:?}");
        }
        for other in [json!({}), json!({"authentication": {"type": 5}}), json!([])] {
            assert_eq!(unknown_authentication_type(&other), None, "{other}");
        }
    }

    #[test]
    fn none_is_refused_for_devices_and_coerced_for_modules() {
        let none = Authentication {
            kind: Some(AuthenticationType::None),
            ..Default::default()
        };
        assert!(resolve_auth(Some(&none), Holder::Device).is_err());
        let m = resolve_auth(Some(&none), Holder::Module).unwrap();
        assert_eq!(m.kind, AuthenticationType::Sas);
        assert!(m.primary_key.is_some());
    }

    #[test]
    fn x509_thumbprints_are_hex_without_separators_and_keep_their_case() {
        let mut a = Authentication {
            kind: Some(AuthenticationType::SelfSigned),
            x509_thumbprint: Some(X509Thumbprint {
                primary_thumbprint: Some("aB".repeat(20)),
                secondary_thumbprint: None,
            }),
            symmetric_key: None,
        };
        let r = resolve_auth(Some(&a), Holder::Device).unwrap();
        assert_eq!(r.primary_key, None);
        assert_eq!(
            r.primary_thumbprint.as_deref(),
            Some("aB".repeat(20).as_str())
        );
        a.x509_thumbprint = Some(X509Thumbprint {
            primary_thumbprint: Some(["AB"; 20].join(":")),
            secondary_thumbprint: None,
        });
        assert!(resolve_auth(Some(&a), Holder::Device).is_err());
        a.x509_thumbprint = None;
        let r = resolve_auth(Some(&a), Holder::Device).unwrap();
        assert_eq!(
            r.primary_thumbprint, None,
            "selfSigned without a thumbprint is accepted"
        );
    }

    #[test]
    fn status_values_are_enabled_or_disabled() {
        assert_eq!(resolve_status(None, None).unwrap(), "enabled");
        assert_eq!(resolve_status(None, Some("disabled")).unwrap(), "disabled");
        assert_eq!(resolve_status(Some("Disabled"), None).unwrap(), "disabled");
        assert!(resolve_status(Some("off"), None).is_err());
        assert!(check_status_reason(&Some("x".repeat(129))).is_err());
    }

    #[test]
    fn edge_scopes_name_their_device() {
        let s = edge_scope("gw-1", "638000");
        assert_eq!(s, "ms-azure-iot-edge://gw-1-638000");
        assert_eq!(scope_device(&s), Some("gw-1"));
        assert_eq!(scope_device("other://x-1"), None);
    }
}
