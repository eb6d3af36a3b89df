//! Sensitive values in plan documents (SPEC §13): a plan document never holds one in clear.
//!
//! Writing a change, each value under a sensitive path in its patch (or create content) becomes
//! `"(sensitive)"` in the patch plus an entry of the change's `secrets`: the value's path, a digest of
//! it, and for a value written as `${env:NAME}` its reference. Reading a saved plan gets every value
//! back (a reference from the environment, an inline value from the manifests) and refuses one whose
//! digest differs from the plan's, before anything is sent. Messages name the twin, the path and the
//! variable, never a value.
//!
//! Every digest of a sensitive value is keyed ([`DigestKey`]: HMAC-SHA256 under a key never written
//! to a plan), so that a short secret cannot be recovered from a plan by hashing guesses.
//!
//! Values are concealed leaf by leaf (a scalar or an array below object keys), not as the whole value
//! under a sensitive path: the patch of an object may be a partial merge patch computed against what the
//! hub held, which apply could not compute again, while each leaf of a merge patch is the manifests'
//! value at its path. Object keys and `null` removals inside a sensitive value stay in the patch.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use super::patch;
use super::values::TwinPatch;
use crate::manifest::secret::{self, Env, Lookup, Missing};
use crate::model::{
    EnvRef, Fleet, JsonMap, LEDGER_TAG, PropertyPath, Section, TwinAddress, TwinSpec,
};

/// What a concealed value's place in a patch holds.
pub const PLACEHOLDER: &str = "(sensitive)";

/// One concealed value, as a change's `secrets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDoc {
    /// Where the value sits: `tags.K[.K...]` or `desired.K[.K...]`.
    pub path: String,
    /// `hmac-sha256:<hex>` of the value's JSON text under the plan's [`DigestKey`].
    pub digest: String,
    /// `${env:NAME}` for a value the manifests take from the environment; absent for a value written
    /// inline (under `sensitive`), which apply takes from the manifests.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The key under which every digest of a sensitive value is computed (SPEC §13): HMAC-SHA256, so
/// that a plan artifact does not let anyone test guesses of a short secret offline. The binary
/// derives it from `TWINOPS_PLAN_KEY` or from the hub's SAS key; it is never written anywhere (a
/// plan records its [`DigestKey::fingerprint`], so that a plan is not checked under another key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

/// What a keyed digest starts with.
pub const DIGEST_PREFIX: &str = "hmac-sha256:";

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(message);
    m.finalize().into_bytes().into()
}

impl DigestKey {
    /// The key derived from secret material (a plan key's text, a SAS key's bytes).
    pub fn derive(material: &[u8]) -> DigestKey {
        DigestKey(mac(material, b"twinops plan digests v1"))
    }

    /// `hmac-sha256:<hex>` of a value's JSON text.
    pub fn digest(&self, v: &Value) -> String {
        let hex = crate::model::Digest::from_sha256(mac(&self.0, v.to_string().as_bytes()));
        format!("{DIGEST_PREFIX}{hex}")
    }

    /// A short public name of the key (a MAC of a fixed text, not the key): what a plan records to
    /// say which key its digests were made under.
    pub fn fingerprint(&self) -> String {
        let hex =
            crate::model::Digest::from_sha256(mac(&self.0, b"twinops digest key fingerprint"))
                .to_string();
        hex[..16].to_string()
    }
}

/// A fixed key, for documents read without one and for tests; the binary always sets its own.
impl Default for DigestKey {
    fn default() -> DigestKey {
        DigestKey::derive(b"")
    }
}

/// Never the key itself.
impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestKey({})", self.fingerprint())
    }
}

fn section(patch: &TwinPatch, s: Section) -> &JsonMap {
    match s {
        Section::Tags => &patch.tags,
        Section::Desired => &patch.desired,
    }
}

fn section_mut(patch: &mut TwinPatch, s: Section) -> &mut JsonMap {
    match s {
        Section::Tags => &mut patch.tags,
        Section::Desired => &mut patch.desired,
    }
}

/// The values a patch holds under sensitive paths, by path, leaf by leaf (see the module comment).
/// The ledger tag is computed, never a secret, and `null` removes rather than holds a value.
pub fn leaves(patch: &TwinPatch, sensitive: &[PropertyPath]) -> BTreeMap<PropertyPath, Value> {
    let mut out = BTreeMap::new();
    for p in sensitive {
        if p.section == Section::Tags && p.keys[0] == LEDGER_TAG {
            continue;
        }
        if let Some(v) = patch::get(section(patch, p.section), &p.keys) {
            collect(p.clone(), v, &mut out);
        }
    }
    out
}

fn collect(path: PropertyPath, v: &Value, out: &mut BTreeMap<PropertyPath, Value>) {
    match v {
        Value::Null => {}
        // A key the dotted grammar cannot spell (the empty key) keeps its object whole.
        Value::Object(m) if !m.keys().any(String::is_empty) => {
            for (k, child) in m {
                let mut keys = path.keys.clone();
                keys.push(k.clone());
                collect(
                    PropertyPath {
                        section: path.section,
                        keys,
                    },
                    child,
                    out,
                );
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// The references among `refs` whose values this patch carries.
pub fn carried(patch: &TwinPatch, refs: &[EnvRef]) -> Vec<EnvRef> {
    refs.iter()
        .filter(|r| {
            patch::get(section(patch, r.path.section), &r.path.keys).is_some_and(|v| !v.is_null())
        })
        .cloned()
        .collect()
}

/// The patch as a plan document holds it, and its `secrets`.
pub fn conceal(
    patch: &TwinPatch,
    sensitive: &[PropertyPath],
    refs: &[EnvRef],
    key: &DigestKey,
) -> (TwinPatch, Vec<SecretDoc>) {
    let mut out = patch.clone();
    let mut docs = Vec::new();
    for (path, v) in leaves(patch, sensitive) {
        patch::set(
            section_mut(&mut out, path.section),
            &path.keys,
            Some(Value::String(PLACEHOLDER.into())),
        );
        docs.push(SecretDoc {
            digest: key.digest(&v),
            reference: refs.iter().find(|r| r.path == path).map(EnvRef::written),
            path: path.to_string(),
        });
    }
    (out, docs)
}

/// Where `apply --plan` gets concealed values back from.
pub struct Sources<'a> {
    lookup: Lookup<'a>,
    /// The key the plan's digests were made under.
    key: DigestKey,
    /// The manifests the plan was made from, when given: inline values come from them.
    fleet: Option<&'a Fleet>,
}

impl<'a> Sources<'a> {
    pub fn new(env: &'a dyn Env, fleet: Option<&'a Fleet>, key: DigestKey) -> Sources<'a> {
        Sources {
            lookup: Lookup::new(env),
            key,
            fleet,
        }
    }

    fn spec(&self, address: &TwinAddress) -> Option<&'a TwinSpec> {
        let fleet = self.fleet?;
        let i = fleet
            .devices
            .binary_search_by(|d| d.id.cmp(&address.device))
            .ok()?;
        let d = &fleet.devices[i];
        match &address.module {
            None => Some(&d.twin),
            Some(m) => d.modules.iter().find(|x| &x.id == m).map(|x| &x.twin),
        }
    }
}

/// Why a concealed value cannot be got back as the plan recorded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    #[error(
        "`{address}` {path}: environment variable `{name}` is not set (the plan takes the value from `${{env:{name}}}`)"
    )]
    Unset {
        address: String,
        path: String,
        name: String,
    },
    #[error(
        "`{address}` {path}: environment variable `{name}` is empty (the plan takes the value from `${{env:{name}}}`)"
    )]
    Empty {
        address: String,
        path: String,
        name: String,
    },
    #[error(
        "`{address}` {path}: the value of environment variable `{name}` differs from the one planned (its digest differs from the plan's); plan again with the value to apply"
    )]
    EnvDiffers {
        address: String,
        path: String,
        name: String,
    },
    #[error(
        "`{address}` {path}: the manifests hold no value there, but the plan holds an inline sensitive value; give the manifests the plan was made from"
    )]
    NotDeclared { address: String, path: String },
    #[error(
        "`{address}` {path}: the manifests' value differs from the one planned (its digest differs from the plan's); plan again"
    )]
    InlineDiffers { address: String, path: String },
}

/// Why a saved plan is not executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The document is not a consistent plan.
    #[error("{0}")]
    Malformed(String),
    /// Inline sensitive values, and no manifests to take them from.
    #[error(
        "the plan holds {count} sensitive value(s) written inline in the manifests (the first: `{address}` {path}), and a plan file keeps only their digests; give the manifests the plan was made from: `twinops apply --plan FILE PATHS...`"
    )]
    NeedsManifests {
        count: usize,
        address: String,
        path: String,
    },
    /// Values that cannot be got back as planned.
    #[error("{}", list(.0))]
    Secrets(Vec<SecretProblem>),
    /// Its digests were made under another key than this run's.
    #[error(
        "the plan's sensitive values were digested under another key than this run's (TWINOPS_PLAN_KEY differs from the one the plan was made with, or the hub's key was rotated); use the same key, or plan again"
    )]
    OtherKey,
    /// Its digests are unkeyed (an older twinops made it).
    #[error(
        "the plan holds unkeyed digests of sensitive values (an older twinops made it); plan again"
    )]
    Unkeyed,
}

/// At most this many problems are listed; the rest are counted.
const LISTED: usize = 10;

fn list(problems: &[SecretProblem]) -> String {
    let mut out = format!(
        "{} sensitive value(s) cannot be applied as planned:",
        problems.len()
    );
    for p in problems.iter().take(LISTED) {
        out.push_str(&format!("\n  {p}"));
    }
    if problems.len() > LISTED {
        out.push_str(&format!("\n  … and {} more", problems.len() - LISTED));
    }
    out
}

/// A change's `secrets` read and checked against its patch, before anything is looked up.
pub(super) struct Concealed {
    entries: Vec<(PropertyPath, String, Option<String>)>,
}

impl Concealed {
    /// Checks each entry: a valid path that the patch holds as the placeholder, a digest, and a
    /// reference that is exactly `${env:NAME}`.
    pub(super) fn read(docs: Vec<SecretDoc>, patch: &TwinPatch) -> Result<Concealed, String> {
        let mut entries = Vec::new();
        for d in docs {
            let path = PropertyPath::parse(&d.path).map_err(|e| format!("secrets: {e}"))?;
            if d.digest.starts_with("sha256:") {
                return Err(format!(
                    "secrets: the digest of `{path}` is an unkeyed `sha256:` digest, written by an older twinops; plan again"
                ));
            }
            let hex = d.digest.strip_prefix(DIGEST_PREFIX).unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(format!(
                    "secrets: the digest of `{path}` is not `{DIGEST_PREFIX}` and 64 hex digits"
                ));
            }
            let name = match &d.reference {
                None => None,
                Some(r) => match secret::reference(r) {
                    Ok(Some(name)) => Some(name.to_string()),
                    _ => {
                        return Err(format!(
                            "secrets: the ref of `{path}` is not `${{env:NAME}}`"
                        ));
                    }
                },
            };
            let held = patch::get(section(patch, path.section), &path.keys);
            if held.and_then(Value::as_str) != Some(PLACEHOLDER) {
                return Err(format!(
                    "secrets: the patch does not hold `{path}` as {PLACEHOLDER}"
                ));
            }
            entries.push((path, d.digest, name));
        }
        Ok(Concealed { entries })
    }

    /// How many values come from the manifests.
    pub(super) fn inline(&self) -> impl Iterator<Item = &PropertyPath> {
        self.entries
            .iter()
            .filter(|(_, _, name)| name.is_none())
            .map(|(p, _, _)| p)
    }

    /// Puts each value back into `patch`, reporting what cannot be got back as planned; returns the
    /// references the patch carries.
    pub(super) fn reveal(
        self,
        address: &TwinAddress,
        patch: &mut TwinPatch,
        sources: &mut Sources<'_>,
        problems: &mut Vec<SecretProblem>,
    ) -> Vec<EnvRef> {
        let mut refs = Vec::new();
        for (path, planned, name) in self.entries {
            let at = || (address.to_string(), path.to_string());
            let value = match &name {
                Some(name) => match sources.lookup.get(name) {
                    Ok(v) => Value::String(v),
                    Err(missing) => {
                        let (address, path) = at();
                        let name = name.clone();
                        problems.push(match missing {
                            Missing::Unset => SecretProblem::Unset {
                                address,
                                path,
                                name,
                            },
                            Missing::Empty => SecretProblem::Empty {
                                address,
                                path,
                                name,
                            },
                        });
                        continue;
                    }
                },
                None => {
                    // The declared section is parsed for this one value.
                    let section = sources.spec(address).map(|s| spec_section(s, path.section));
                    let held = section
                        .as_ref()
                        .and_then(|m| patch::get(m, &path.keys))
                        .filter(|v| !v.is_null());
                    match held {
                        Some(v) => v.clone(),
                        None => {
                            let (address, path) = at();
                            problems.push(SecretProblem::NotDeclared { address, path });
                            continue;
                        }
                    }
                }
            };
            if sources.key.digest(&value) != planned {
                let (address, path) = at();
                problems.push(match name {
                    Some(name) => SecretProblem::EnvDiffers {
                        address,
                        path,
                        name,
                    },
                    None => SecretProblem::InlineDiffers { address, path },
                });
                continue;
            }
            patch::set(section_mut(patch, path.section), &path.keys, Some(value));
            if let Some(name) = name {
                refs.push(EnvRef { path, name });
            }
        }
        refs
    }
}

fn spec_section(spec: &TwinSpec, s: Section) -> JsonMap {
    match s {
        Section::Tags => spec.tags.to_map(),
        Section::Desired => spec.desired.to_map(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> PropertyPath {
        PropertyPath::parse(p).unwrap()
    }

    fn twin_patch(tags: Value, desired: Value) -> TwinPatch {
        TwinPatch {
            tags: tags.as_object().cloned().unwrap_or_default(),
            desired: desired.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn leaves_of_a_sensitive_object_are_concealed_one_by_one_and_removals_kept() {
        let p = twin_patch(
            json!({"twinops": {"owner": "o"}, "site": "b"}),
            json!({"creds": {"user": "u", "pass": "p", "old": null, "list": [1, 2]}, "t": 1}),
        );
        let sensitive = [
            path("desired.creds"),
            path("desired.creds.pass"),
            path("tags.twinops"),
        ];
        let key = DigestKey::derive(b"k");
        let (shown, docs) = conceal(&p, &sensitive, &[], &key);
        assert_eq!(
            shown.desired["creds"],
            json!({"user": "(sensitive)", "pass": "(sensitive)", "old": null, "list": "(sensitive)"})
        );
        assert_eq!(shown.desired["t"], json!(1));
        assert_eq!(shown.tags, p.tags);
        let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "desired.creds.list",
                "desired.creds.pass",
                "desired.creds.user"
            ]
        );
        assert_eq!(docs[1].digest, key.digest(&json!("p")));
        assert!(docs.iter().all(|d| d.reference.is_none()));
    }

    #[test]
    fn a_referenced_value_is_concealed_with_its_reference() {
        let p = twin_patch(json!({}), json!({"token": "s3cret"}));
        let refs = [EnvRef {
            path: path("desired.token"),
            name: "TOKEN".into(),
        }];
        let key = DigestKey::derive(b"k");
        let (shown, docs) = conceal(&p, &[path("desired.token")], &refs, &key);
        assert_eq!(shown.desired["token"], json!(PLACEHOLDER));
        assert_eq!(
            docs,
            [SecretDoc {
                path: "desired.token".into(),
                digest: key.digest(&json!("s3cret")),
                reference: Some("${env:TOKEN}".into()),
            }]
        );
        assert!(
            !serde_json::to_string(&(shown.to_value(), &docs))
                .unwrap()
                .contains("s3cret")
        );
    }

    #[test]
    fn reading_refuses_entries_that_do_not_match_the_patch() {
        let (shown, docs) = conceal(
            &twin_patch(json!({}), json!({"token": "s3cret"})),
            &[path("desired.token")],
            &[],
            &DigestKey::default(),
        );
        assert!(Concealed::read(docs.clone(), &shown).is_ok());
        let bad = |f: &dyn Fn(&mut SecretDoc)| {
            let mut d = docs.clone();
            f(&mut d[0]);
            Concealed::read(d, &shown).err().unwrap()
        };
        assert!(bad(&|d| d.path = "desired.other".into()).contains("does not hold"));
        assert!(bad(&|d| d.path = "nope".into()).contains("secrets"));
        assert!(bad(&|d| d.digest = "md5:00".into()).contains("64 hex"));
        assert!(
            bad(&|d| d.digest = format!("sha256:{}", "0".repeat(64))).contains("older twinops")
        );
        assert!(bad(&|d| d.reference = Some("x${env:A}".into())).contains("ref"));
    }

    #[test]
    fn a_digest_is_keyed_and_no_plain_hash_of_the_value() {
        use sha2::Digest as _;
        let key = DigestKey::derive(b"hub key");
        let d = key.digest(&json!("1234"));
        assert!(d.starts_with(DIGEST_PREFIX), "{d}");
        for form in ["\"1234\"", "1234"] {
            let plain = crate::model::Digest::from_sha256(Sha256::digest(form.as_bytes()).into());
            assert!(!d.contains(&plain.to_string()), "{form}");
        }
        assert_ne!(d, DigestKey::derive(b"other key").digest(&json!("1234")));
        assert_eq!(d, DigestKey::derive(b"hub key").digest(&json!("1234")));
        assert!(!format!("{key:?}").contains("hub key"));
    }
}
