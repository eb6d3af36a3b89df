//! Who may call what: shared access policies with their permissions, SAS token verification per
//! the reference's recipe (§2.4) using `iothub::sas`, and the optional bearer token.
//!
//! Never logs or echoes a token or key; refusals say which rule failed, nothing more.

use twinops_iothub::connection_string::Secret;
use twinops_iothub::sas::{self, Token};

/// A permission of a shared access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    RegistryRead,
    RegistryWrite,
    ServiceConnect,
    DeviceConnect,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any policy holding this permission.
    Permission(Permission),
    /// The `iothubowner` policy or the bearer token (the `/_emulator/` endpoints).
    Owner,
}

/// The hub's policies: name, permissions and the keys that sign for it.
pub(crate) struct Policy {
    pub(crate) name: &'static str,
    pub(crate) permissions: &'static [Permission],
    pub(crate) primary: Secret,
    pub(crate) secondary: Secret,
}

impl Policy {
    /// Whether `token` is signed with either of the policy's keys.
    pub(crate) fn signed(&self, token: &Token) -> bool {
        token.signed_with(self.primary.expose()) || token.signed_with(self.secondary.expose())
    }
}

/// Whether `token`'s resource, on any of the hub's `hosts`, covers `segments`.
pub(crate) fn scope_covers(token: &Token, hosts: &[String], segments: &[&str]) -> bool {
    let resource = token.resource();
    hosts
        .iter()
        .any(|h| sas::scope_covers(&resource, h, segments))
}

pub(crate) const OWNER: &str = "iothubowner";

/// IoT Hub's default service-side policies (the `device` policy serves only the device side).
pub(crate) const POLICIES: &[(&str, &[Permission])] = &[
    (
        OWNER,
        &[
            Permission::RegistryRead,
            Permission::RegistryWrite,
            Permission::ServiceConnect,
            Permission::DeviceConnect,
        ],
    ),
    ("service", &[Permission::ServiceConnect]),
    ("registryRead", &[Permission::RegistryRead]),
    (
        "registryReadWrite",
        &[Permission::RegistryRead, Permission::RegistryWrite],
    ),
];

/// Why a request was refused (401 `IotHubUnauthorizedAccess`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("no Authorization header")]
    Missing,
    #[error("the Authorization header is not a valid shared access signature")]
    Malformed,
    #[error("tokens signed with a device or module key cannot call the service API")]
    DeviceToken,
    #[error("the token names an unknown policy")]
    UnknownPolicy,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token's resource does not cover this request")]
    Scope,
    #[error("the policy lacks the permission this request needs")]
    Permission,
    #[error("the bearer token is not accepted")]
    Bearer,
}

/// Checks requests against the hub's policies.
pub(crate) struct Authority {
    /// Host names the hub answers to (`localhost:8443`, `127.0.0.1:8443`); a token's resource
    /// may name any of them, with or without the port.
    pub(crate) hosts: Vec<String>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) bearer: Option<Secret>,
}

impl Authority {
    /// Checks an `Authorization` header for a request to `path_segments` (decoded, e.g.
    /// `["devices", "d1"]`) needing `need`, at `now` (seconds since the epoch).
    pub(crate) fn check(
        &self,
        header: Option<&str>,
        path_segments: &[&str],
        need: Need,
        now: u64,
    ) -> Result<(), Refusal> {
        let header = header.map(str::trim).ok_or(Refusal::Missing)?;
        if let Some(bearer) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        {
            return match &self.bearer {
                Some(expected) if constant_time_eq(bearer.trim(), expected.expose()) => Ok(()),
                _ => Err(Refusal::Bearer),
            };
        }
        let token = Token::parse(header).map_err(|_| Refusal::Malformed)?;
        let name = token.key_name.as_deref().ok_or(Refusal::DeviceToken)?;
        let policy = self
            .policies
            .iter()
            .find(|p| p.name == name)
            .ok_or(Refusal::UnknownPolicy)?;
        if !policy.signed(&token) {
            return Err(Refusal::BadSignature);
        }
        if token.expired(now) {
            return Err(Refusal::Expired);
        }
        if !scope_covers(&token, &self.hosts, path_segments) {
            return Err(Refusal::Scope);
        }
        let allowed = match need {
            Need::Owner => policy.name == OWNER,
            Need::Permission(p) => policy.permissions.contains(&p),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Permission)
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";
    const OTHER: &str = "cGFzc3dvcmRwYXNzd29yZA==";
    const SECOND: &str = "c2Vjb25kc2Vjb25kc2Vjb25k";
    const NOW: u64 = 1_000_000;

    fn authority() -> Authority {
        Authority {
            hosts: vec!["localhost:8443".into(), "127.0.0.1:8443".into()],
            policies: POLICIES
                .iter()
                .map(|(name, permissions)| Policy {
                    name,
                    permissions,
                    primary: Secret::new(if *name == OWNER { KEY } else { OTHER }),
                    secondary: Secret::new(if *name == OWNER { SECOND } else { OTHER }),
                })
                .collect(),
            bearer: Some(Secret::new("let-me-in")),
        }
    }

    fn token(sr: &str, key: &str, policy: Option<&str>, expiry: u64) -> String {
        sas::sign(sr, &Secret::new(key), policy, expiry)
            .unwrap()
            .expose()
            .to_string()
    }

    const TWIN: Need = Need::Permission(Permission::ServiceConnect);
    const WRITE: Need = Need::Permission(Permission::RegistryWrite);

    #[test]
    fn owner_token_for_the_host_with_or_without_port_passes() {
        let a = authority();
        for sr in [
            "localhost:8443",
            "localhost",
            "LOCALHOST:8443",
            "127.0.0.1:8443",
        ] {
            let t = token(sr, KEY, Some(OWNER), NOW + 3600);
            assert_eq!(
                a.check(Some(&t), &["devices", "d"], WRITE, NOW),
                Ok(()),
                "{sr}"
            );
        }
    }

    #[test]
    fn python_style_token_with_raw_slash_in_sig_verifies() {
        let sr = "localhost%3A8443";
        let sig = sas::hmac_b64(KEY, format!("{sr}\n{}", NOW + 10).as_bytes()).unwrap();
        let sig = sig.replace('+', "%2B").replace('=', "%3D");
        let t = format!(
            "SharedAccessSignature sr={sr}&sig={sig}&se={}&skn=iothubowner",
            NOW + 10
        );
        assert_eq!(
            authority().check(Some(&t), &["twins", "d"], TWIN, NOW),
            Ok(())
        );
    }

    #[test]
    fn expiry_allows_five_minutes_of_skew() {
        let a = authority();
        let t = token("localhost", KEY, Some(OWNER), NOW - 300);
        assert_eq!(a.check(Some(&t), &["devices"], WRITE, NOW), Ok(()));
        let t = token("localhost", KEY, Some(OWNER), NOW - 301);
        assert_eq!(
            a.check(Some(&t), &["devices"], WRITE, NOW),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn scope_is_checked_by_segment() {
        let a = authority();
        let t = token("localhost/devices/d1", KEY, Some(OWNER), NOW + 60);
        assert_eq!(
            a.check(Some(&t), &["devices", "d1", "modules", "m"], WRITE, NOW),
            Ok(())
        );
        assert_eq!(
            a.check(Some(&t), &["devices", "d10"], WRITE, NOW),
            Err(Refusal::Scope)
        );
        let t = token("otherhub", KEY, Some(OWNER), NOW + 60);
        assert_eq!(
            a.check(Some(&t), &["devices"], WRITE, NOW),
            Err(Refusal::Scope)
        );
    }

    #[test]
    fn policies_carry_their_permissions() {
        let a = authority();
        let service = token("localhost", OTHER, Some("service"), NOW + 60);
        assert_eq!(a.check(Some(&service), &["twins", "d"], TWIN, NOW), Ok(()));
        assert_eq!(
            a.check(Some(&service), &["devices", "d"], WRITE, NOW),
            Err(Refusal::Permission)
        );
        let read = token("localhost", OTHER, Some("registryRead"), NOW + 60);
        let need_read = Need::Permission(Permission::RegistryRead);
        assert_eq!(
            a.check(Some(&read), &["devices", "d"], need_read, NOW),
            Ok(())
        );
        assert_eq!(
            a.check(Some(&read), &["devices", "d"], WRITE, NOW),
            Err(Refusal::Permission)
        );
        let rw = token("localhost", OTHER, Some("registryReadWrite"), NOW + 60);
        assert_eq!(a.check(Some(&rw), &["devices", "d"], WRITE, NOW), Ok(()));
        assert_eq!(
            a.check(Some(&rw), &["twins", "d"], TWIN, NOW),
            Err(Refusal::Permission)
        );
        assert_eq!(
            a.check(Some(&rw), &["_emulator"], Need::Owner, NOW),
            Err(Refusal::Permission)
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let a = authority();
        let wrong_key = token("localhost", OTHER, Some(OWNER), NOW + 60);
        assert_eq!(
            a.check(Some(&wrong_key), &["devices"], WRITE, NOW),
            Err(Refusal::BadSignature)
        );
        let device = token("localhost/devices/d", KEY, None, NOW + 60);
        assert_eq!(
            a.check(Some(&device), &["devices", "d"], WRITE, NOW),
            Err(Refusal::DeviceToken)
        );
        let unknown = token("localhost", KEY, Some("nobody"), NOW + 60);
        assert_eq!(
            a.check(Some(&unknown), &["devices"], WRITE, NOW),
            Err(Refusal::UnknownPolicy)
        );
        assert_eq!(
            a.check(None, &["devices"], WRITE, NOW),
            Err(Refusal::Missing)
        );
        assert_eq!(
            a.check(Some("Basic abc"), &["devices"], WRITE, NOW),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let a = authority();
        assert_eq!(
            a.check(Some("Bearer let-me-in"), &["devices"], Need::Owner, NOW),
            Ok(())
        );
        assert_eq!(
            a.check(Some("Bearer let-me-i"), &["devices"], WRITE, NOW),
            Err(Refusal::Bearer)
        );
        let mut b = authority();
        b.bearer = None;
        assert_eq!(
            b.check(Some("Bearer let-me-in"), &["devices"], WRITE, NOW),
            Err(Refusal::Bearer)
        );
    }
}
