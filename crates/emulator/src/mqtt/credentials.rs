//! Who a CONNECT claims to be and whether its password proves it (reference §2.4, §12):
//! client ID `d` or `d/m`, username `{host}/{d}[/{m}]/?api-version=...`, password a SAS token signed
//! with the identity's primary or secondary key (or a policy holding DeviceConnect), not expired
//! beyond the five-minute skew, scoped to the identity.
//!
//! Pure: the caller looks the identity up and passes the keys and the time. Never logs a token.

use crate::auth::{self, Permission, Policy};
use crate::store::Target;
use twinops_iothub::ACCEPTED_API_VERSIONS;
use twinops_iothub::sas::Token;

/// The identity a connection acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Who {
    pub device: String,
    pub module: Option<String>,
}

impl Who {
    pub(crate) fn target(&self) -> Target {
        match &self.module {
            None => Target::Device(self.device.clone()),
            Some(m) => Target::Module(self.device.clone(), m.clone()),
        }
    }

    /// `d` or `d/m`, as in the client ID.
    pub(crate) fn name(&self) -> String {
        match &self.module {
            None => self.device.clone(),
            Some(m) => format!("{}/{m}", self.device),
        }
    }

    fn segments(&self) -> Vec<&str> {
        let mut s = vec!["devices", self.device.as_str()];
        if let Some(m) = &self.module {
            s.extend(["modules", m.as_str()]);
        }
        s
    }
}

/// Why a CONNECT is refused. Every refusal but a malformed client ID answers CONNACK 5 (not
/// authorized), unknown identities included, so a client cannot probe which IDs exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the client ID is not `deviceId` or `deviceId/moduleId`")]
    ClientId,
    #[error("the username is not `{{host}}/{{clientId}}/?api-version=...`")]
    Username,
    #[error("the username names an api-version the hub does not accept")]
    ApiVersion,
    #[error("no password, or it is not a shared access signature")]
    Password,
    #[error("the identity does not exist, is disabled, or has no keys")]
    Identity,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token's resource does not cover the identity")]
    Scope,
}

impl Refusal {
    /// The CONNACK return code.
    pub(crate) fn connack(&self) -> u8 {
        match self {
            Refusal::ClientId => super::codec::connack::IDENTIFIER_REJECTED,
            _ => super::codec::connack::NOT_AUTHORIZED,
        }
    }
}

fn host_matches(given: &str, hosts: &[String]) -> bool {
    let strip = |h: &str| h.split(':').next().unwrap_or(h).to_ascii_lowercase();
    hosts.iter().any(|h| strip(h) == strip(given))
}

/// Reads the identity from the client ID and checks that the username names the same identity
/// on this hub. `&DeviceClientType=` and `&model-id=` are ignored; a missing api-version is
/// tolerated, as IoT Hub long did.
pub(crate) fn identify(
    client_id: &str,
    username: Option<&str>,
    hosts: &[String],
) -> Result<Who, Refusal> {
    let mut ids = client_id.split('/');
    let who = match (ids.next(), ids.next(), ids.next()) {
        (Some(d), None, None) if !d.is_empty() => Who {
            device: d.to_string(),
            module: None,
        },
        (Some(d), Some(m), None) if !d.is_empty() && !m.is_empty() => Who {
            device: d.to_string(),
            module: Some(m.to_string()),
        },
        _ => return Err(Refusal::ClientId),
    };
    let username = username.ok_or(Refusal::Username)?;
    let (path, query) = username.split_once('?').unwrap_or((username, ""));
    let mut parts = path.trim_end_matches('/').split('/');
    let host = parts.next().ok_or(Refusal::Username)?;
    let rest: Vec<&str> = parts.collect();
    if !host_matches(host, hosts) || rest.join("/") != client_id {
        return Err(Refusal::Username);
    }
    let version = query
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="));
    if let Some(v) = version
        && !ACCEPTED_API_VERSIONS.contains(&v)
    {
        return Err(Refusal::ApiVersion);
    }
    Ok(who)
}

/// Checks the password: a token signed with one of the identity's `keys` (no `skn`), or with a
/// policy holding DeviceConnect (`skn`), valid at `now`, whose resource covers the identity.
pub(crate) fn verify(
    password: Option<&[u8]>,
    who: &Who,
    keys: &[&str],
    policies: &[Policy],
    hosts: &[String],
    now: u64,
) -> Result<(), Refusal> {
    let text = password
        .and_then(|p| std::str::from_utf8(p).ok())
        .ok_or(Refusal::Password)?;
    let token = Token::parse(text).map_err(|_| Refusal::Password)?;
    let signed = match &token.key_name {
        None => keys.iter().any(|k| token.signed_with(k)),
        Some(name) => policies
            .iter()
            .filter(|p| p.name == name && p.permissions.contains(&Permission::DeviceConnect))
            .any(|p| p.signed(&token)),
    };
    if !signed {
        return Err(Refusal::BadSignature);
    }
    if token.expired(now) {
        return Err(Refusal::Expired);
    }
    if !auth::scope_covers(&token, hosts, &who.segments()) {
        return Err(Refusal::Scope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinops_iothub::connection_string::Secret;
    use twinops_iothub::sas;

    const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";
    const OTHER: &str = "cGFzc3dvcmRwYXNzd29yZA==";
    const NOW: u64 = 1_000_000;

    fn hosts() -> Vec<String> {
        vec!["localhost:8443".into(), "127.0.0.1:8443".into()]
    }

    fn token(sr: &str, key: &str, expiry: u64) -> Vec<u8> {
        sas::sign(sr, &Secret::new(key), None, expiry)
            .unwrap()
            .expose()
            .as_bytes()
            .to_vec()
    }

    fn who(d: &str, m: Option<&str>) -> Who {
        Who {
            device: d.into(),
            module: m.map(str::to_string),
        }
    }

    #[test]
    fn sdk_usernames_identify_devices_and_modules() {
        let u = "localhost/myFirstDevice/myFirstModule/?api-version=2019-10-01&DeviceClientType=azure-iot-device%2F2.14.0";
        assert_eq!(
            identify("myFirstDevice/myFirstModule", Some(u), &hosts()),
            Ok(who("myFirstDevice", Some("myFirstModule")))
        );
        let u = "localhost:8883/d/?api-version=2021-04-12&model-id=dtmi:x;1";
        assert_eq!(identify("d", Some(u), &hosts()), Ok(who("d", None)));
        assert_eq!(
            identify("d", Some("localhost/d"), &hosts()),
            Ok(who("d", None))
        );
    }

    #[test]
    fn mismatched_or_malformed_connects_are_refused() {
        assert_eq!(
            identify("", Some("localhost/"), &hosts()),
            Err(Refusal::ClientId)
        );
        assert_eq!(identify("a/b/c", None, &hosts()), Err(Refusal::ClientId));
        assert_eq!(identify("d", None, &hosts()), Err(Refusal::Username));
        assert_eq!(
            identify("d", Some("otherhub/d/?api-version=2021-04-12"), &hosts()),
            Err(Refusal::Username)
        );
        assert_eq!(
            identify("d", Some("localhost/e/?api-version=2021-04-12"), &hosts()),
            Err(Refusal::Username)
        );
        assert_eq!(
            identify("d", Some("localhost/d/?api-version=1999-01-01"), &hosts()),
            Err(Refusal::ApiVersion)
        );
        assert_eq!(Refusal::ClientId.connack(), 2);
        assert_eq!(Refusal::Identity.connack(), 5);
    }

    #[test]
    fn device_tokens_verify_with_either_key_host_with_or_without_port() {
        let d = who("d", None);
        for sr in ["localhost/devices/d", "localhost:8443/devices/d"] {
            let t = token(sr, KEY, NOW + 60);
            assert_eq!(
                verify(Some(&t), &d, &[OTHER, KEY], &[], &hosts(), NOW),
                Ok(())
            );
        }
        let t = token("localhost/devices/d", OTHER, NOW + 60);
        assert_eq!(
            verify(Some(&t), &d, &[KEY], &[], &hosts(), NOW),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn expiry_scope_and_garbage_are_checked() {
        let d = who("d", Some("m"));
        let t = token("localhost/devices/d/modules/m", KEY, NOW - 301);
        assert_eq!(
            verify(Some(&t), &d, &[KEY], &[], &hosts(), NOW),
            Err(Refusal::Expired)
        );
        let t = token("localhost/devices/d/modules/m", KEY, NOW - 300);
        assert_eq!(verify(Some(&t), &d, &[KEY], &[], &hosts(), NOW), Ok(()));
        let t = token("localhost/devices/e", KEY, NOW + 60);
        assert_eq!(
            verify(Some(&t), &d, &[KEY], &[], &hosts(), NOW),
            Err(Refusal::Scope)
        );
        assert_eq!(
            verify(Some(b"hunter2"), &d, &[KEY], &[], &hosts(), NOW),
            Err(Refusal::Password)
        );
        assert_eq!(
            verify(None, &d, &[KEY], &[], &hosts(), NOW),
            Err(Refusal::Password)
        );
    }
}
