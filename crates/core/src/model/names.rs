//! The names the reconciler passes around, as types that cannot hold an invalid value: device and
//! module IDs (IoT Hub's ID rules), the twin address `device` / `device/module` (one `Display`), etags
//! (never empty, so `If-Match: ""` cannot be sent), the owner and the manifest digest.
//!
//! Each is built by a checking constructor (`new`) and deserialized through it, so a saved plan
//! with an empty etag or a bad ID is refused when it is read, not when it is sent.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest owner name.
pub const MAX_OWNER_CHARS: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {what}: {rule}")]
pub struct NameError {
    what: &'static str,
    text: String,
    rule: &'static str,
}

macro_rules! name {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Checks the text against the rule and wraps it.
            pub fn new(text: impl Into<String>) -> Result<$ty, NameError> {
                let text = text.into();
                let check: fn(&str) -> bool = $check;
                if check(&text) {
                    Ok($ty(text))
                } else {
                    Err(NameError {
                        what: $what,
                        // Names are never secrets, but a long junk value is cut for the message.
                        text: text.chars().take(80).collect(),
                        rule: $rule,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        /// Test values are written as literals; a bad one fails the test that wrote it.
        #[cfg(test)]
        impl From<&str> for $ty {
            fn from(text: &str) -> $ty {
                $ty::new(text).expect("a valid test value")
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $ty::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

name!(
    /// A device ID: 1..=128 of IoT Hub's ID characters.
    DeviceId,
    "device ID",
    "1 to 128 of A-Za-z0-9 and -:.+%_#*?!(),=@;$'",
    twinops_iothub::ids::is_valid_id
);

name!(
    /// A module ID: the same rule as device IDs (`$edgeAgent` included).
    ModuleId,
    "module ID",
    "1 to 128 of A-Za-z0-9 and -:.+%_#*?!(),=@;$'",
    twinops_iothub::ids::is_valid_id
);

name!(
    /// An etag as IoT Hub returns it, unquoted; what `If-Match` carries (quoted on the wire).
    ETag,
    "etag",
    "a non-empty value without `\"`",
    |t| !t.is_empty() && !t.contains('"')
);

name!(
    /// Who owns what a manifest set manages: 1..=64 ASCII letters, digits, `-`, `_` or `.`.
    Owner,
    "owner",
    "1 to 64 ASCII letters, digits, `-`, `_` or `.`",
    |o| {
        (1..=MAX_OWNER_CHARS).contains(&o.len())
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }
);

name!(
    /// The hex SHA-256 of a manifest set (paths and contents).
    Digest,
    "manifest digest",
    "64 lowercase hex digits",
    |d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
);

impl Digest {
    /// A SHA-256 output as the digest's 64 lowercase hex digits: valid by construction.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        Digest(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl Owner {
    /// The owner of a manifest set that names none.
    pub fn default_owner() -> Owner {
        Owner(super::DEFAULT_OWNER.to_string())
    }
}

impl ModuleId {
    /// `$edgeAgent` and `$edgeHub`, which IoT Hub creates on an edge device.
    pub fn is_system(&self) -> bool {
        twinops_iothub::ids::is_system_module(&self.0)
    }
}

/// `device` or `device/module`: the one way addresses are written, for [`TwinAddress`] and for the
/// plain-text IDs of reports and wire documents.
pub fn address(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{device}/{m}"),
        None => device.to_string(),
    }
}

/// Which twin: a device twin or one of its module twins. Displayed as `device` or `device/module`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TwinAddress {
    pub device: DeviceId,
    pub module: Option<ModuleId>,
}

impl TwinAddress {
    pub fn device(device: DeviceId) -> TwinAddress {
        TwinAddress {
            device,
            module: None,
        }
    }

    pub fn module(device: DeviceId, module: ModuleId) -> TwinAddress {
        TwinAddress {
            device,
            module: Some(module),
        }
    }

    pub fn module_id(&self) -> Option<&str> {
        self.module.as_deref()
    }
}

impl fmt::Display for TwinAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&address(&self.device, self.module_id()))
    }
}

/// The one reader of `device` and `device/module` (IDs never hold `/`): plan documents, reports,
/// `--wait` and the command line all parse addresses here.
impl std::str::FromStr for TwinAddress {
    type Err = NameError;

    fn from_str(text: &str) -> Result<TwinAddress, NameError> {
        Ok(match text.split_once('/') {
            Some((d, m)) => TwinAddress::module(DeviceId::new(d)?, ModuleId::new(m)?),
            None => TwinAddress::device(DeviceId::new(text)?),
        })
    }
}

/// In documents an address is its text, `device` or `device/module`.
impl Serialize for TwinAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TwinAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

name!(
    /// The ID of an automatic device management configuration or an IoT Edge deployment: up to 128
    /// lowercase letters, digits and `-:+%_#*?!(),=@;$'` (IoT Hub's rule for configuration IDs).
    ConfigurationId,
    "configuration ID",
    "1 to 128 of a-z0-9 and -:+%_#*?!(),=@;$'",
    |id| {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-:+%_#*?!(),=@;$'".contains(&b))
    }
);

/// What a report line is about: an identity or a twin (by its [`TwinAddress`]; the change's kind
/// says which), or a managed object of the hub, an automatic configuration or an IoT Edge
/// deployment (SPEC §16).
///
/// Displayed as `device`, `device/module`, `configuration ID` or `deployment ID`. In report
/// documents it is written as the fields `device_id` and `module_id` (or `configuration_id`,
/// `deployment_id`), which earlier reports had, so it flattens into the object that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Twin(TwinAddress),
    Configuration(ConfigurationId),
    Deployment(ConfigurationId),
}

impl Address {
    /// The twin or identity address, when this is one.
    pub fn twin(&self) -> Option<&TwinAddress> {
        match self {
            Address::Twin(t) => Some(t),
            _ => None,
        }
    }
}

impl From<TwinAddress> for Address {
    fn from(t: TwinAddress) -> Address {
        Address::Twin(t)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Twin(t) => t.fmt(f),
            Address::Configuration(id) => write!(f, "configuration {id}"),
            Address::Deployment(id) => write!(f, "deployment {id}"),
        }
    }
}

/// The fields an [`Address`] is written as.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_id: Option<DeviceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module_id: Option<ModuleId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    configuration_id: Option<ConfigurationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deployment_id: Option<ConfigurationId>,
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = AddressFields {
            device_id: None,
            module_id: None,
            configuration_id: None,
            deployment_id: None,
        };
        match self {
            Address::Twin(t) => {
                f.device_id = Some(t.device.clone());
                f.module_id = t.module.clone();
            }
            Address::Configuration(id) => f.configuration_id = Some(id.clone()),
            Address::Deployment(id) => f.deployment_id = Some(id.clone()),
        }
        f.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = AddressFields::deserialize(d)?;
        match (
            f.device_id,
            f.module_id,
            f.configuration_id,
            f.deployment_id,
        ) {
            (Some(device), module, None, None) => Ok(Address::Twin(TwinAddress { device, module })),
            (None, None, Some(id), None) => Ok(Address::Configuration(id)),
            (None, None, None, Some(id)) => Ok(Address::Deployment(id)),
            _ => Err(serde::de::Error::custom(
                "an address is `device_id` (with an optional `module_id`), `configuration_id` or `deployment_id`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_etag_is_refused() {
        let e = ETag::new("").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`` is not a valid etag: a non-empty value without `\"`"
        );
        assert!(ETag::new("\"quoted\"").is_err());
        assert_eq!(ETag::new("AAAAAAAAAAE=").unwrap().as_str(), "AAAAAAAAAAE=");
    }

    #[test]
    fn a_saved_empty_etag_does_not_deserialize() {
        assert!(serde_json::from_str::<ETag>("\"\"").is_err());
        assert!(serde_json::from_str::<ETag>("\"e1\"").is_ok());
    }

    #[test]
    fn ids_follow_iot_hub_rules() {
        assert!(DeviceId::new("myFirstDevice").is_ok());
        assert!(DeviceId::new("has/slash").is_err());
        assert!(DeviceId::new("").is_err());
        assert!(ModuleId::new("$edgeAgent").unwrap().is_system());
        assert!(!ModuleId::new("sensor").unwrap().is_system());
    }

    #[test]
    fn owners_and_digests_are_checked() {
        assert!(Owner::new("berlin-plant").is_ok());
        assert!(Owner::new("bad owner").is_err());
        assert!(Owner::new("a".repeat(65)).is_err());
        assert!(Digest::new("0".repeat(64)).is_ok());
        assert!(Digest::new("xyz").is_err());
    }

    #[test]
    fn twin_addresses_read_back_from_their_text() {
        for text in ["d1", "d1/m", "d1/$edgeAgent"] {
            let a: TwinAddress = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(serde_json::to_value(&a).unwrap(), text);
        }
        assert!("".parse::<TwinAddress>().is_err());
        assert!("d1/".parse::<TwinAddress>().is_err());
        assert!("a/b/c".parse::<TwinAddress>().is_err());
    }

    #[test]
    fn an_address_flattens_into_the_fields_reports_had() {
        let twin = Address::Twin("d1/m".parse().unwrap());
        assert_eq!(
            serde_json::to_value(&twin).unwrap(),
            serde_json::json!({"device_id": "d1", "module_id": "m"})
        );
        let config = Address::Configuration(ConfigurationId::new("thermo-1a2b3c4d").unwrap());
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(text, r#"{"configuration_id":"thermo-1a2b3c4d"}"#);
        assert_eq!(serde_json::from_str::<Address>(&text).unwrap(), config);
        assert_eq!(config.to_string(), "configuration thermo-1a2b3c4d");
        assert!(serde_json::from_str::<Address>(r#"{"module_id": "m"}"#).is_err());
        assert!(ConfigurationId::new("Upper").is_err());
    }

    #[test]
    fn a_twin_address_displays_as_device_or_device_slash_module() {
        let d = DeviceId::new("d1").unwrap();
        assert_eq!(TwinAddress::device(d.clone()).to_string(), "d1");
        assert_eq!(
            TwinAddress::module(d, ModuleId::new("m").unwrap()).to_string(),
            "d1/m"
        );
    }
}
