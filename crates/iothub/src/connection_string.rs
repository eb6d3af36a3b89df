//! IoT Hub connection strings: `Key=Value` pairs joined by `;`, each split at the first `=`.
//!
//! Parsing errors never echo the key or the string itself: a connection string is a secret.

use std::fmt;

/// A secret that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret text; callers must not print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What is wrong with a connection string. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("connection string is empty")]
    Empty,
    #[error("connection string part {0} is not of the form Key=Value")]
    NotKeyValue(usize),
    #[error("connection string has `{0}` more than once")]
    Duplicate(String),
    #[error("connection string has an unknown key `{0}`")]
    UnknownKey(String),
    #[error("connection string lacks `{0}`")]
    Missing(&'static str),
    #[error("connection string's SharedAccessKey is not valid base64")]
    KeyNotBase64,
    #[error("connection string's HostName `{0}` is not a host name with an optional port")]
    BadHost(String),
    #[error("connection string has both SharedAccessKey and x509")]
    KeyAndX509,
    #[error(
        "connection string's SharedAccessKeyName is not a policy name (letters, digits, `_-@.`)"
    )]
    BadKeyName,
}

const KNOWN_KEYS: &[&str] = &[
    "HostName",
    "SharedAccessKeyName",
    "SharedAccessKey",
    "SharedAccessSignature",
    "DeviceId",
    "ModuleId",
    "GatewayHostName",
    "x509",
];

fn pairs(s: &str) -> Result<Vec<(&str, &str)>, Error> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::Empty);
    }
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (i, part) in s.split(';').enumerate() {
        if part.trim().is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').ok_or(Error::NotKeyValue(i + 1))?;
        let k = k.trim();
        if !KNOWN_KEYS.contains(&k) {
            // Only a short key name is echoed, and only when it looks like a key name.
            let shown = if k.len() <= 32 && k.chars().all(|c| c.is_ascii_alphanumeric()) {
                k.to_string()
            } else {
                "?".to_string()
            };
            return Err(Error::UnknownKey(shown));
        }
        if out.iter().any(|(ek, _)| *ek == k) {
            return Err(Error::Duplicate(k.to_string()));
        }
        out.push((k, v.trim()));
    }
    if out.is_empty() {
        return Err(Error::Empty);
    }
    Ok(out)
}

fn get<'a>(p: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

fn check_host(host: &str) -> Result<(), Error> {
    // The host is echoed to help fix a typo, unless it holds `=`: then a missing `;` has glued
    // the following pairs onto it (`HostName=h,SharedAccessKey=…`), and echoing would show the key.
    // Found by the `connection_string` fuzz target.
    let bad = || {
        Error::BadHost(if host.contains('=') {
            "(not shown: it holds `=`, is a `;` missing?)".to_string()
        } else {
            host.chars().take(128).collect()
        })
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(bad());
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(bad());
    }
    Ok(())
}

/// Policy names as IoT Hub (and .NET's `IotHubConnectionStringBuilder`) allow them:
/// `^[a-zA-Z0-9_\-@\.]+$`. Found by the `connection_string` fuzz target: without the check,
/// `SharedAccessKeyName=p SharedAccessKey=<key>;SharedAccessKey=…` (a missing `;`) parsed, with
/// the first key inside the policy name, which is not secret and is shown.
fn check_key_name(name: &str) -> Result<(), Error> {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@' | '.'))
    {
        Ok(())
    } else {
        Err(Error::BadKeyName)
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .map(|_| ())
        .map_err(|_| Error::KeyNotBase64)
}

/// A service (back-end) connection string: `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    /// The host name, port included when one was given (`localhost:8443`).
    pub host: String,
    /// The policy name (`skn`), e.g. `iothubowner`; `None` for a host-only string used with bearer tokens.
    pub key_name: Option<String>,
    pub key: Option<Secret>,
}

impl ServiceConnectionString {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let p = pairs(s)?;
        let host = get(&p, "HostName").ok_or(Error::Missing("HostName"))?;
        check_host(host)?;
        let key_name = get(&p, "SharedAccessKeyName");
        if let Some(n) = key_name {
            check_key_name(n)?;
        }
        let key = get(&p, "SharedAccessKey");
        match (key_name, key) {
            (Some(_), None) => return Err(Error::Missing("SharedAccessKey")),
            (None, Some(_)) => return Err(Error::Missing("SharedAccessKeyName")),
            _ => {}
        }
        if let Some(k) = key {
            check_key(k)?;
        }
        Ok(ServiceConnectionString {
            host: host.to_string(),
            key_name: key_name.map(str::to_string),
            key: key.map(Secret::new),
        })
    }

    /// The string form; contains the key: never print it.
    pub fn to_secret_string(&self) -> Secret {
        let mut s = format!("HostName={}", self.host);
        if let (Some(n), Some(k)) = (&self.key_name, &self.key) {
            s.push_str(&format!(
                ";SharedAccessKeyName={n};SharedAccessKey={}",
                k.expose()
            ));
        }
        Secret(s)
    }
}

/// A device or module connection string: `HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnectionString {
    pub host: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub key: Secret,
}

impl DeviceConnectionString {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let p = pairs(s)?;
        let host = get(&p, "HostName").ok_or(Error::Missing("HostName"))?;
        check_host(host)?;
        let device_id = get(&p, "DeviceId").ok_or(Error::Missing("DeviceId"))?;
        let key = get(&p, "SharedAccessKey");
        if key.is_some() && get(&p, "x509").is_some() {
            return Err(Error::KeyAndX509);
        }
        let key = key.ok_or(Error::Missing("SharedAccessKey"))?;
        check_key(key)?;
        Ok(DeviceConnectionString {
            host: host.to_string(),
            device_id: device_id.to_string(),
            module_id: get(&p, "ModuleId").map(str::to_string),
            key: Secret::new(key),
        })
    }

    /// The string form; contains the key.
    pub fn to_secret_string(&self) -> Secret {
        let mut s = format!("HostName={};DeviceId={}", self.host, self.device_id);
        if let Some(m) = &self.module_id {
            s.push_str(&format!(";ModuleId={m}"));
        }
        s.push_str(&format!(";SharedAccessKey={}", self.key.expose()));
        Secret(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    #[test]
    fn service_string_with_port_parses() {
        let cs = ServiceConnectionString::parse(&format!(
            "HostName=localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(cs.host, "localhost:8443");
        assert_eq!(cs.key_name.as_deref(), Some("iothubowner"));
        assert_eq!(cs.key.unwrap().expose(), KEY);
    }

    #[test]
    fn key_with_equals_signs_splits_at_first_equals() {
        let cs = ServiceConnectionString::parse(&format!(
            "HostName=h.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert!(cs.key.unwrap().expose().ends_with('='));
    }

    #[test]
    fn errors_never_echo_the_key() {
        let cases = [
            format!("HostName=h;SharedAccessKeyName=x;SharedAccessKey=not base64 {KEY}"),
            format!("HostName=h;SharedAccessKey={KEY}"),
            format!("HostName=h;Bogus{KEY}=1;SharedAccessKey={KEY}"),
            format!("HostName=h;SharedAccessKeyName=x;SharedAccessKey={KEY};SharedAccessKey={KEY}"),
            KEY.to_string(),
        ];
        for c in cases {
            let e = ServiceConnectionString::parse(&c).unwrap_err().to_string();
            assert!(!e.contains("XLy"), "{e}");
            assert!(!e.contains("not base64"), "{e}");
        }
    }

    #[test]
    fn missing_parts_are_named() {
        assert_eq!(
            ServiceConnectionString::parse("SharedAccessKeyName=x").unwrap_err(),
            Error::Missing("HostName")
        );
        assert_eq!(
            ServiceConnectionString::parse("HostName=h;SharedAccessKeyName=x").unwrap_err(),
            Error::Missing("SharedAccessKey")
        );
        assert_eq!(
            ServiceConnectionString::parse("").unwrap_err(),
            Error::Empty
        );
    }

    #[test]
    fn host_only_string_is_for_bearer_tokens() {
        let cs = ServiceConnectionString::parse("HostName=h.azure-devices.net").unwrap();
        assert!(cs.key.is_none() && cs.key_name.is_none());
    }

    #[test]
    fn bad_port_is_rejected() {
        assert!(matches!(
            ServiceConnectionString::parse("HostName=h:99999"),
            Err(Error::BadHost(_))
        ));
    }

    #[test]
    fn a_host_glued_to_the_key_by_a_missing_semicolon_is_not_echoed() {
        let s = format!("HostName=h.azure-devices.net,SharedAccessKeyName=p,SharedAccessKey={KEY}");
        let e = ServiceConnectionString::parse(&s).unwrap_err();
        assert!(matches!(e, Error::BadHost(_)));
        assert!(!e.to_string().contains(KEY), "{e}");
        let e = ServiceConnectionString::parse("HostName=h!").unwrap_err();
        assert!(
            e.to_string().contains("`h!`"),
            "a plain typo is still shown: {e}"
        );
    }

    #[test]
    fn policy_names_are_policy_names() {
        let s = format!("HostName=h;SharedAccessKeyName=p SharedAccessKey=x;SharedAccessKey={KEY}");
        assert_eq!(ServiceConnectionString::parse(&s), Err(Error::BadKeyName));
        let s = format!("HostName=h;SharedAccessKeyName=my-policy_1@x.y;SharedAccessKey={KEY}");
        assert!(ServiceConnectionString::parse(&s).is_ok());
    }

    #[test]
    fn device_string_round_trips() {
        let s = format!("HostName=localhost;DeviceId=d1;ModuleId=m1;SharedAccessKey={KEY}");
        let cs = DeviceConnectionString::parse(&s).unwrap();
        assert_eq!(cs.module_id.as_deref(), Some("m1"));
        assert_eq!(cs.to_secret_string().expose(), s);
    }

    #[test]
    fn debug_hides_the_secret() {
        let cs = ServiceConnectionString::parse(&format!(
            "HostName=h;SharedAccessKeyName=x;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert!(!format!("{cs:?}").contains("XLy"));
    }
}
