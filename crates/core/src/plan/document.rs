//! The JSON plan document's form of a change (`format_version` 1, each field documented in the
//! README): [`ChangeDoc`], one derived serde payload per kind, and the mapping between it and the
//! model's [`Change`].
//!
//! Reading a saved plan checks what the model promises through the types alone: every payload
//! refuses unknown fields; `action` is a marker that reads only the action of its kind, so a
//! contradiction is refused; updates and deletes carry an [`ETag`] (never empty) and creates have no
//! `if_match` field; module kinds need a `module_id` and device kinds have none; IDs and paths are
//! parsed; `secrets` exist only on changes with twin content; a create's or delete's `diff` is empty.
//! What needs more than one field stays in code: the `secrets` entries are checked against the patch
//! that holds their placeholders (`secret::Concealed::read`) when the plan is resolved.
//!
//! This module must not let a sensitive value into a document ([`Change::to_doc`] conceals them, see
//! [`super::secret`]), and must not make a [`Change`] out of a document whose values are concealed:
//! [`super::SavedPlan::resolve`] is the one way from a saved plan to changes.

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::change::{
    Change, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity, Disruption,
    IdentityUpdate, Managed, Released, UpdateDevice, UpdateModule, UpdateTwin,
};
use super::ledger::IdentityField;
use super::secret::{self, DigestKey, SecretDoc};
use super::values::{OwnedValues, TwinPatch};
use super::{Action, FieldDiff, Kind};
use crate::model::{
    AuthSpec, AuthenticationType, DeviceId, DeviceStatus, ETag, EnvRef, ModuleId, ObservedAuth,
    PropertyPath, TwinAddress,
};

/// One change as the JSON plan document holds it: `kind` names the payload.
///
/// Written with `action` and `kind` ahead of the payload's fields (a derived internally tagged
/// enum would write `kind` first; the document has always led with `action`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeDoc {
    CreateDevice(Box<CreateDeviceDoc>),
    CreateModule(Box<CreateModuleDoc>),
    UpdateDevice(UpdateDeviceDoc),
    UpdateModule(UpdateModuleDoc),
    UpdateDeviceTwin(Box<UpdateTwinDoc<NoModule>>),
    UpdateModuleTwin(Box<UpdateTwinDoc<ModuleId>>),
    ReleaseDevice(Box<UpdateTwinDoc<NoModule, IsRelease>>),
    ReleaseModule(Box<UpdateTwinDoc<ModuleId, IsRelease>>),
    DeleteModule(DeleteModuleDoc),
    DeleteDevice(DeleteDeviceDoc),
}

/// `create_device`: the identity and its twin content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceDoc {
    #[serde(skip_serializing)]
    pub action: IsCreate,
    pub device_id: DeviceId,
    pub patch: NewDevice,
    pub diff: NoDiff,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "paths")]
    pub sensitive: Vec<PropertyPath>,
    /// The values concealed in `patch.twin` (each is `(sensitive)` there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretDoc>,
}

/// A create's `patch` of a device: its identity fields, then its twin content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewDevice {
    pub status: DeviceStatus,
    pub authentication: Authentication,
    pub capabilities: Capabilities,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub status_reason: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub parent: Option<DeviceId>,
    pub twin: TwinPatch,
}

/// `capabilities` of a created device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capabilities {
    pub iot_edge: bool,
}

/// `create_module`: the identity and its twin content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModuleDoc {
    #[serde(skip_serializing)]
    pub action: IsCreate,
    pub device_id: DeviceId,
    pub module_id: ModuleId,
    pub patch: NewModule,
    pub diff: NoDiff,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "paths")]
    pub sensitive: Vec<PropertyPath>,
    /// The values concealed in `patch.twin` (each is `(sensitive)` there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretDoc>,
}

/// A create's `patch` of a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewModule {
    pub authentication: Authentication,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub managed_by: Option<String>,
    pub twin: TwinPatch,
}

/// `update_device`: the identity fields to change, under the identity etag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeviceDoc {
    #[serde(skip_serializing)]
    pub action: IsUpdate,
    pub device_id: DeviceId,
    pub if_match: ETag,
    pub patch: IdentityPatch,
    pub diff: Vec<FieldDiff>,
    /// It sets fields this owner did not manage before (SPEC §15).
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    /// What it does to the device, when it disconnects it (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruptive: Option<DisruptionDoc>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A disruption in documents: its consequence, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisruptionDoc(pub Disruption);

impl From<DisruptionDoc> for String {
    fn from(d: DisruptionDoc) -> String {
        d.0.consequence().to_string()
    }
}

impl TryFrom<String> for DisruptionDoc {
    type Error = String;

    fn try_from(text: String) -> Result<DisruptionDoc, String> {
        Disruption::ALL
            .into_iter()
            .find(|d| d.consequence() == text)
            .map(DisruptionDoc)
            .ok_or_else(|| format!("`{text}` is not a disruption twinops plans"))
    }
}

/// An identity update's `patch`: only the fields that change, named as the update's `diff` names
/// them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentityPatch {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub status: Option<DeviceStatus>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub status_reason: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub authentication: Option<Authentication>,
    #[serde(rename = "capabilities.iotEdge")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub iot_edge: Option<bool>,
    /// `null` detaches the device from its parent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub parent: Option<Option<DeviceId>>,
}

/// `update_module`: a module identity's authentication, under the module identity etag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateModuleDoc {
    #[serde(skip_serializing)]
    pub action: IsUpdate,
    pub device_id: DeviceId,
    pub module_id: ModuleId,
    pub if_match: ETag,
    pub patch: ModuleAuthPatch,
    pub diff: Vec<FieldDiff>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruptive: Option<DisruptionDoc>,
}

/// A module identity update's `patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleAuthPatch {
    pub authentication: Authentication,
}

/// `update_device_twin` (`M` = [`NoModule`]) and `update_module_twin` (`M` = [`ModuleId`]): the
/// twin merge patch under the twin etag, with the owned values seen and wanted. The same payload,
/// with `A` = [`IsRelease`], is `release_device` / `release_module`: a twin write whose owner gives
/// up identity fields or all it manages (SPEC §15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(
        serialize = "M: Serialize + TwinModule",
        deserialize = "M: Deserialize<'de>, A: Deserialize<'de>"
    )
)]
pub struct UpdateTwinDoc<M, A = IsUpdate> {
    #[serde(skip_serializing)]
    pub action: A,
    pub device_id: DeviceId,
    #[serde(skip_serializing_if = "TwinModule::is_absent")]
    pub module_id: M,
    pub if_match: ETag,
    pub base: OwnedValues,
    pub target: OwnedValues,
    /// The merge patch, concealed values as `(sensitive)`.
    pub patch: TwinPatch,
    pub diff: Vec<FieldDiff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "paths")]
    pub ignore: Vec<PropertyPath>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "paths")]
    pub sensitive: Vec<PropertyPath>,
    /// The values concealed in `patch` (each is `(sensitive)` there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretDoc>,
    /// It takes over fields or keys this owner did not manage (SPEC §15): `adopted` names them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<String>,
    /// Identity fields given up, each with the value it keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<ReleasedDoc>,
    /// Fields and keys taken from other owners (`--force-conflicts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<ManagedDoc>,
}

/// A released identity field and the value it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasedDoc {
    pub field: FieldName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stays: Option<Value>,
}

/// A field or key and the owner that managed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedDoc {
    pub path: String,
    pub owner: String,
}

/// An identity field's name, checked when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(pub IdentityField);

impl From<FieldName> for String {
    fn from(f: FieldName) -> String {
        f.0.as_str().to_string()
    }
}

impl TryFrom<String> for FieldName {
    type Error = String;

    fn try_from(text: String) -> Result<FieldName, String> {
        IdentityField::parse(&text)
            .map(FieldName)
            .ok_or_else(|| format!("`{text}` is not an identity field"))
    }
}

/// `delete_module`, under its twin's etag; its `patch` is `{}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteModuleDoc {
    #[serde(skip_serializing)]
    pub action: IsDelete,
    pub device_id: DeviceId,
    pub module_id: ModuleId,
    pub if_match: ETag,
    pub patch: NoPatch,
    pub diff: NoDiff,
}

/// `delete_device`, under the identity etag; its `patch` lists the modules deleted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteDeviceDoc {
    #[serde(skip_serializing)]
    pub action: IsDelete,
    pub device_id: DeviceId,
    pub if_match: ETag,
    pub patch: DeletedModules,
    pub diff: NoDiff,
}

/// A device delete's `patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletedModules {
    pub modules: Vec<ModuleId>,
}

/// The `patch` of a change that sends none: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoPatch {}

/// The `diff` of a create (whose content is `patch.twin`) or a delete: `[]`, and only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoDiff;

impl Serialize for NoDiff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for NoDiff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoDiff, D::Error> {
        if Vec::<IgnoredAny>::deserialize(d)?.is_empty() {
            Ok(NoDiff)
        } else {
            Err(de::Error::custom(
                "a create or delete has an empty `diff` (a create's content is `patch.twin`)",
            ))
        }
    }
}

/// `action` markers: each reads only its own action, so a document whose `action` contradicts its
/// `kind` is refused when it is read. The action is written by [`ChangeDoc`]'s `Serialize`.
macro_rules! action_marker {
    ($(#[$doc:meta])* $ty:ident, $action:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty;

        impl $ty {
            pub const ACTION: Action = $action;
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                match Action::deserialize(d)? {
                    a if a == $ty::ACTION => Ok($ty),
                    a => Err(de::Error::custom(format!(
                        "action `{}` does not match kind: a change of this kind is `{}`",
                        action_word(a),
                        action_word($ty::ACTION)
                    ))),
                }
            }
        }
    };
}

action_marker!(
    /// `"action": "create"`.
    IsCreate,
    Action::Create
);
action_marker!(
    /// `"action": "update"`.
    IsUpdate,
    Action::Update
);
action_marker!(
    /// `"action": "delete"`.
    IsDelete,
    Action::Delete
);
action_marker!(
    /// `"action": "release"`.
    IsRelease,
    Action::Release
);

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Release => "release",
        Action::Delete => "delete",
    }
}

/// The marker of a payload's action, to write it.
pub trait ActionMarker {
    const MARKER: Self;
}

impl ActionMarker for IsUpdate {
    const MARKER: IsUpdate = IsUpdate;
}

impl ActionMarker for IsRelease {
    const MARKER: IsRelease = IsRelease;
}

/// The `module_id` of a twin update: a [`ModuleId`] for a module twin, [`NoModule`] for a device twin.
pub trait TwinModule {
    /// Whether the document leaves `module_id` out.
    fn is_absent(&self) -> bool;
    fn module(self) -> Option<ModuleId>;
}

impl TwinModule for ModuleId {
    fn is_absent(&self) -> bool {
        false
    }

    fn module(self) -> Option<ModuleId> {
        Some(self)
    }
}

/// A device twin's `module_id`: absent. Serde answers a missing field's request for an option with
/// `None`, so reading it succeeds exactly when the document has no `module_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoModule;

impl TwinModule for NoModule {
    fn is_absent(&self) -> bool {
        true
    }

    fn module(self) -> Option<ModuleId> {
        None
    }
}

impl Serialize for NoModule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for NoModule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoModule, D::Error> {
        struct Absent;
        impl<'de> Visitor<'de> for Absent {
            type Value = NoModule;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no module_id")
            }

            fn visit_none<E: de::Error>(self) -> Result<NoModule, E> {
                Ok(NoModule)
            }

            fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<NoModule, D::Error> {
                Err(de::Error::custom(
                    "a device twin change has no module_id (its kind would be update_module_twin)",
                ))
            }
        }
        d.deserialize_option(Absent)
    }
}

/// For an optional field that, when present, holds a value: `null` is refused, not read as absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `ignore` and `sensitive`: dotted paths, parsed when read.
mod paths {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::model::PropertyPath;

    pub(super) fn serialize<S: Serializer>(p: &[PropertyPath], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(p.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<PropertyPath>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|p| PropertyPath::parse(p).map_err(de::Error::custom))
            .collect()
    }
}

/// A declared authentication in plan documents: `{"type": KIND, "x509Thumbprint": {…}}`
/// (thumbprints for self-signed certificates only; never keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AuthDoc", into = "AuthDoc")]
pub struct Authentication(pub AuthSpec);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthDoc {
    #[serde(rename = "type")]
    kind: AuthenticationType,
    #[serde(
        rename = "x509Thumbprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    x509: Option<ThumbprintDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThumbprintDoc {
    primary_thumbprint: Option<String>,
    secondary_thumbprint: Option<String>,
}

impl From<&AuthSpec> for AuthDoc {
    fn from(auth: &AuthSpec) -> AuthDoc {
        AuthDoc {
            kind: auth.kind(),
            x509: match auth {
                AuthSpec::X509 { primary, secondary } => Some(ThumbprintDoc {
                    primary_thumbprint: Some(primary.clone()),
                    secondary_thumbprint: secondary.clone(),
                }),
                _ => None,
            },
        }
    }
}

impl From<Authentication> for AuthDoc {
    fn from(auth: Authentication) -> AuthDoc {
        AuthDoc::from(&auth.0)
    }
}

impl TryFrom<AuthDoc> for Authentication {
    type Error = String;

    fn try_from(doc: AuthDoc) -> Result<Authentication, String> {
        Ok(Authentication(match doc.kind {
            AuthenticationType::Sas => AuthSpec::Sas,
            AuthenticationType::CertificateAuthority => AuthSpec::Ca,
            AuthenticationType::SelfSigned => {
                let t = doc
                    .x509
                    .ok_or("a selfSigned authentication needs x509Thumbprint")?;
                AuthSpec::X509 {
                    primary: t
                        .primary_thumbprint
                        .ok_or("a selfSigned authentication needs a primaryThumbprint")?,
                    secondary: t.secondary_thumbprint,
                }
            }
            AuthenticationType::None => {
                return Err("twinops never plans an identity without authentication".into());
            }
        }))
    }
}

fn auth_doc_value(doc: AuthDoc) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// A declared authentication as plan documents show it (in diffs, too).
pub(crate) fn auth_doc(auth: &AuthSpec) -> Value {
    auth_doc_value(AuthDoc::from(auth))
}

/// An observed authentication as plan documents show it.
pub(crate) fn observed_auth_doc(auth: &ObservedAuth) -> Value {
    auth_doc_value(AuthDoc {
        kind: auth.kind,
        x509: (auth.kind == AuthenticationType::SelfSigned).then(|| ThumbprintDoc {
            primary_thumbprint: auth.primary_thumbprint.clone(),
            secondary_thumbprint: auth.secondary_thumbprint.clone(),
        }),
    })
}

impl Serialize for ChangeDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChangeDoc::CreateDevice(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::CreateModule(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::UpdateDevice(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::UpdateModule(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::UpdateDeviceTwin(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::UpdateModuleTwin(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::ReleaseDevice(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::ReleaseModule(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::DeleteModule(payload) => tagged(s, self.kind(), payload),
            ChangeDoc::DeleteDevice(payload) => tagged(s, self.kind(), payload),
        }
    }
}

/// `action` and `kind`, then the payload's fields.
fn tagged<S: Serializer, P: Serialize>(s: S, kind: Kind, payload: &P) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Tagged<'a, P> {
        action: Action,
        kind: Kind,
        #[serde(flatten)]
        payload: &'a P,
    }
    Tagged {
        action: kind.action(),
        kind,
        payload,
    }
    .serialize(s)
}

impl ChangeDoc {
    pub fn kind(&self) -> Kind {
        match self {
            ChangeDoc::CreateDevice(_) => Kind::CreateDevice,
            ChangeDoc::CreateModule(_) => Kind::CreateModule,
            ChangeDoc::UpdateDevice(_) => Kind::UpdateDevice,
            ChangeDoc::UpdateModule(_) => Kind::UpdateModule,
            ChangeDoc::UpdateDeviceTwin(_) => Kind::UpdateDeviceTwin,
            ChangeDoc::UpdateModuleTwin(_) => Kind::UpdateModuleTwin,
            ChangeDoc::ReleaseDevice(_) => Kind::ReleaseDevice,
            ChangeDoc::ReleaseModule(_) => Kind::ReleaseModule,
            ChangeDoc::DeleteModule(_) => Kind::DeleteModule,
            ChangeDoc::DeleteDevice(_) => Kind::DeleteDevice,
        }
    }

    pub fn device_id(&self) -> &DeviceId {
        match self {
            ChangeDoc::CreateDevice(d) => &d.device_id,
            ChangeDoc::CreateModule(d) => &d.device_id,
            ChangeDoc::UpdateDevice(d) => &d.device_id,
            ChangeDoc::UpdateModule(d) => &d.device_id,
            ChangeDoc::UpdateDeviceTwin(d) => &d.device_id,
            ChangeDoc::UpdateModuleTwin(d) => &d.device_id,
            ChangeDoc::ReleaseDevice(d) => &d.device_id,
            ChangeDoc::ReleaseModule(d) => &d.device_id,
            ChangeDoc::DeleteModule(d) => &d.device_id,
            ChangeDoc::DeleteDevice(d) => &d.device_id,
        }
    }

    /// The values this change conceals.
    pub fn secrets(&self) -> &[SecretDoc] {
        match self {
            ChangeDoc::CreateDevice(d) => &d.secrets,
            ChangeDoc::CreateModule(d) => &d.secrets,
            ChangeDoc::UpdateDeviceTwin(d) => &d.secrets,
            ChangeDoc::UpdateModuleTwin(d) => &d.secrets,
            ChangeDoc::ReleaseDevice(d) => &d.secrets,
            ChangeDoc::ReleaseModule(d) => &d.secrets,
            _ => &[],
        }
    }

    /// The paths whose values are digests or concealed in this change.
    pub fn sensitive(&self) -> &[PropertyPath] {
        match self {
            ChangeDoc::CreateDevice(d) => &d.sensitive,
            ChangeDoc::CreateModule(d) => &d.sensitive,
            ChangeDoc::UpdateDeviceTwin(d) => &d.sensitive,
            ChangeDoc::UpdateModuleTwin(d) => &d.sensitive,
            ChangeDoc::ReleaseDevice(d) => &d.sensitive,
            ChangeDoc::ReleaseModule(d) => &d.sensitive,
            _ => &[],
        }
    }

    /// The typed change, its concealed values got back through `reveal`. Everything else was
    /// checked when the document was read; `key` is the one the plan's digests were made under.
    pub(super) fn into_change(
        self,
        reveal: &mut Reveal<'_>,
        key: DigestKey,
    ) -> Result<Change, String> {
        Ok(match self {
            ChangeDoc::CreateDevice(d) => {
                Change::CreateDevice(Box::new(d.into_change(reveal, key)?))
            }
            ChangeDoc::CreateModule(d) => {
                Change::CreateModule(Box::new(d.into_change(reveal, key)?))
            }
            ChangeDoc::UpdateDevice(d) => Change::UpdateDevice(d.into()),
            ChangeDoc::UpdateModule(d) => Change::UpdateModule(d.into()),
            ChangeDoc::UpdateDeviceTwin(d) => {
                Change::UpdateTwin(Box::new(d.into_change(reveal, key)?))
            }
            ChangeDoc::UpdateModuleTwin(d) => {
                Change::UpdateTwin(Box::new(d.into_change(reveal, key)?))
            }
            ChangeDoc::ReleaseDevice(d) => Change::Release(Box::new(d.into_change(reveal, key)?)),
            ChangeDoc::ReleaseModule(d) => Change::Release(Box::new(d.into_change(reveal, key)?)),
            ChangeDoc::DeleteModule(d) => Change::DeleteModule(d.into()),
            ChangeDoc::DeleteDevice(d) => Change::DeleteDevice(d.into()),
        })
    }
}

/// How [`ChangeDoc::into_change`] gets a change's concealed values back: given the twin, its patch
/// or content (placeholders in it) and its checked `secrets`, fills the patch and returns the
/// references it carries.
pub(super) type Reveal<'a> =
    dyn FnMut(&TwinAddress, &mut TwinPatch, secret::Concealed) -> Vec<EnvRef> + 'a;

/// `twin` with its concealed values put back, and the references it carries.
fn revealed(
    address: &TwinAddress,
    mut twin: TwinPatch,
    secrets: Vec<SecretDoc>,
    reveal: &mut Reveal<'_>,
) -> Result<(TwinPatch, Vec<EnvRef>), String> {
    let concealed = secret::Concealed::read(secrets, &twin)?;
    let refs = reveal(address, &mut twin, concealed);
    Ok((twin, refs))
}

/// A change document without concealed values converts on its own; one with them is read with its
/// plan ([`super::SavedPlan::resolve`]), which knows where the values come from.
impl TryFrom<ChangeDoc> for Change {
    type Error = String;

    fn try_from(doc: ChangeDoc) -> Result<Change, String> {
        if !doc.secrets().is_empty() {
            return Err(
                "the change holds concealed sensitive values; read it with its plan".into(),
            );
        }
        doc.into_change(&mut |_, _, _| Vec::new(), DigestKey::default())
    }
}

impl Change {
    /// The plan document's form of this change: sensitive values concealed (`(sensitive)` in the
    /// patch, their digests and references in `secrets`).
    pub fn to_doc(&self) -> ChangeDoc {
        match self {
            Change::CreateDevice(c) => ChangeDoc::CreateDevice(Box::new(c.as_ref().into())),
            Change::CreateModule(c) => ChangeDoc::CreateModule(Box::new(c.as_ref().into())),
            Change::UpdateDevice(c) => ChangeDoc::UpdateDevice(c.into()),
            Change::UpdateModule(c) => ChangeDoc::UpdateModule(c.into()),
            Change::UpdateTwin(c) => match &c.address.module {
                None => ChangeDoc::UpdateDeviceTwin(Box::new(UpdateTwinDoc::new(c, NoModule))),
                Some(m) => ChangeDoc::UpdateModuleTwin(Box::new(UpdateTwinDoc::new(c, m.clone()))),
            },
            Change::Release(c) => match &c.address.module {
                None => ChangeDoc::ReleaseDevice(Box::new(UpdateTwinDoc::new(c, NoModule))),
                Some(m) => ChangeDoc::ReleaseModule(Box::new(UpdateTwinDoc::new(c, m.clone()))),
            },
            Change::DeleteModule(c) => ChangeDoc::DeleteModule(c.into()),
            Change::DeleteDevice(c) => ChangeDoc::DeleteDevice(c.into()),
        }
    }
}

/// A plan serializes its changes as documents.
impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_doc().serialize(s)
    }
}

impl From<&CreateDevice> for CreateDeviceDoc {
    fn from(c: &CreateDevice) -> CreateDeviceDoc {
        let (twin, secrets) = secret::conceal(&c.twin, &c.sensitive, &c.refs, &c.key);
        let id = &c.identity;
        CreateDeviceDoc {
            action: IsCreate,
            device_id: c.id.clone(),
            patch: NewDevice {
                status: id.status,
                authentication: Authentication(id.auth.clone()),
                capabilities: Capabilities { iot_edge: id.edge },
                status_reason: id.status_reason.clone(),
                parent: id.parent.clone(),
                twin,
            },
            diff: NoDiff,
            sensitive: c.sensitive.clone(),
            secrets,
        }
    }
}

impl CreateDeviceDoc {
    fn into_change(self, reveal: &mut Reveal<'_>, key: DigestKey) -> Result<CreateDevice, String> {
        let address = TwinAddress::device(self.device_id.clone());
        let patch = self.patch;
        let (twin, refs) = revealed(&address, patch.twin, self.secrets, reveal)?;
        Ok(CreateDevice {
            id: self.device_id,
            identity: DeviceIdentity {
                status: patch.status,
                status_reason: patch.status_reason,
                auth: patch.authentication.0,
                edge: patch.capabilities.iot_edge,
                parent: patch.parent,
            },
            twin,
            sensitive: self.sensitive,
            refs,
            key,
        })
    }
}

impl From<&CreateModule> for CreateModuleDoc {
    fn from(c: &CreateModule) -> CreateModuleDoc {
        let (twin, secrets) = secret::conceal(&c.twin, &c.sensitive, &c.refs, &c.key);
        CreateModuleDoc {
            action: IsCreate,
            device_id: c.device.clone(),
            module_id: c.module.clone(),
            patch: NewModule {
                authentication: Authentication(c.auth.clone()),
                managed_by: c.managed_by.clone(),
                twin,
            },
            diff: NoDiff,
            sensitive: c.sensitive.clone(),
            secrets,
        }
    }
}

impl CreateModuleDoc {
    fn into_change(self, reveal: &mut Reveal<'_>, key: DigestKey) -> Result<CreateModule, String> {
        let address = TwinAddress::module(self.device_id.clone(), self.module_id.clone());
        let (twin, refs) = revealed(&address, self.patch.twin, self.secrets, reveal)?;
        Ok(CreateModule {
            device: self.device_id,
            module: self.module_id,
            managed_by: self.patch.managed_by,
            auth: self.patch.authentication.0,
            twin,
            sensitive: self.sensitive,
            refs,
            key,
        })
    }
}

impl From<&UpdateDevice> for UpdateDeviceDoc {
    fn from(c: &UpdateDevice) -> UpdateDeviceDoc {
        let set = &c.set;
        UpdateDeviceDoc {
            action: IsUpdate,
            device_id: c.id.clone(),
            if_match: c.if_match.clone(),
            patch: IdentityPatch {
                status: set.status,
                status_reason: set.status_reason.clone(),
                authentication: set.auth.clone().map(Authentication),
                iot_edge: set.edge,
                parent: set.parent.clone(),
            },
            diff: c.diff.clone(),
            adopt: c.adopt,
            disruptive: c.disruptive.map(DisruptionDoc),
        }
    }
}

impl From<UpdateDeviceDoc> for UpdateDevice {
    fn from(d: UpdateDeviceDoc) -> UpdateDevice {
        let p = d.patch;
        UpdateDevice {
            id: d.device_id,
            if_match: d.if_match,
            set: IdentityUpdate {
                status: p.status,
                status_reason: p.status_reason,
                auth: p.authentication.map(|a| a.0),
                edge: p.iot_edge,
                parent: p.parent,
            },
            diff: d.diff,
            adopt: d.adopt,
            disruptive: d.disruptive.map(|d| d.0),
        }
    }
}

impl From<&UpdateModule> for UpdateModuleDoc {
    fn from(c: &UpdateModule) -> UpdateModuleDoc {
        UpdateModuleDoc {
            action: IsUpdate,
            device_id: c.device.clone(),
            module_id: c.module.clone(),
            if_match: c.if_match.clone(),
            patch: ModuleAuthPatch {
                authentication: Authentication(c.auth.clone()),
            },
            diff: c.diff.clone(),
            adopt: c.adopt,
            disruptive: c.disruptive.map(DisruptionDoc),
        }
    }
}

impl From<UpdateModuleDoc> for UpdateModule {
    fn from(d: UpdateModuleDoc) -> UpdateModule {
        UpdateModule {
            device: d.device_id,
            module: d.module_id,
            if_match: d.if_match,
            auth: d.patch.authentication.0,
            diff: d.diff,
            adopt: d.adopt,
            disruptive: d.disruptive.map(|d| d.0),
        }
    }
}

impl<M: TwinModule, A: ActionMarker> UpdateTwinDoc<M, A> {
    fn new(c: &UpdateTwin, module_id: M) -> UpdateTwinDoc<M, A> {
        let (patch, secrets) = secret::conceal(&c.patch, &c.sensitive, &c.refs, &c.key);
        UpdateTwinDoc {
            action: A::MARKER,
            device_id: c.address.device.clone(),
            module_id,
            if_match: c.if_match.clone(),
            base: c.base.clone(),
            target: c.target.clone(),
            patch,
            diff: c.diff.clone(),
            ignore: c.ignore.clone(),
            sensitive: c.sensitive.clone(),
            secrets,
            adopt: !c.adopted.is_empty(),
            adopted: c.adopted.clone(),
            released: c
                .released
                .iter()
                .map(|r| ReleasedDoc {
                    field: FieldName(r.field),
                    stays: r.stays.clone(),
                })
                .collect(),
            forced: c
                .forced
                .iter()
                .map(|m| ManagedDoc {
                    path: m.path.clone(),
                    owner: m.owner.clone(),
                })
                .collect(),
        }
    }

    fn into_change(self, reveal: &mut Reveal<'_>, key: DigestKey) -> Result<UpdateTwin, String> {
        let address = TwinAddress {
            device: self.device_id,
            module: self.module_id.module(),
        };
        let (patch, refs) = revealed(&address, self.patch, self.secrets, reveal)?;
        Ok(UpdateTwin {
            address,
            if_match: self.if_match,
            base: self.base,
            target: self.target,
            patch,
            diff: self.diff,
            ignore: self.ignore,
            sensitive: self.sensitive,
            refs,
            key,
            adopted: self.adopted,
            released: self
                .released
                .into_iter()
                .map(|r| Released {
                    field: r.field.0,
                    stays: r.stays,
                })
                .collect(),
            forced: self
                .forced
                .into_iter()
                .map(|m| Managed {
                    path: m.path,
                    owner: m.owner,
                })
                .collect(),
        })
    }
}

impl From<&DeleteModule> for DeleteModuleDoc {
    fn from(c: &DeleteModule) -> DeleteModuleDoc {
        DeleteModuleDoc {
            action: IsDelete,
            device_id: c.device.clone(),
            module_id: c.module.clone(),
            if_match: c.if_match.clone(),
            patch: NoPatch {},
            diff: NoDiff,
        }
    }
}

impl From<DeleteModuleDoc> for DeleteModule {
    fn from(d: DeleteModuleDoc) -> DeleteModule {
        DeleteModule {
            device: d.device_id,
            module: d.module_id,
            if_match: d.if_match,
        }
    }
}

impl From<&DeleteDevice> for DeleteDeviceDoc {
    fn from(c: &DeleteDevice) -> DeleteDeviceDoc {
        DeleteDeviceDoc {
            action: IsDelete,
            device_id: c.id.clone(),
            if_match: c.if_match.clone(),
            patch: DeletedModules {
                modules: c.modules.clone(),
            },
            diff: NoDiff,
        }
    }
}

impl From<DeleteDeviceDoc> for DeleteDevice {
    fn from(d: DeleteDeviceDoc) -> DeleteDevice {
        DeleteDevice {
            id: d.device_id,
            if_match: d.if_match,
            modules: d.patch.modules,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::DeviceStatus;

    fn read(v: Value) -> Result<Change, String> {
        Change::try_from(serde_json::from_value::<ChangeDoc>(v).map_err(|e| e.to_string())?)
    }

    fn doc(kind: Kind, if_match: Option<&str>) -> Value {
        let mut d = json!({
            "action": kind.action(),
            "kind": kind,
            "device_id": "d1",
            "patch": {"properties": {"desired": {"t": 2}}},
            "diff": [],
            "base": {"tags": {}, "desired": {"t": 1}},
            "target": {"tags": {}, "desired": {"t": 2}},
        });
        if let Some(e) = if_match {
            d["if_match"] = json!(e);
        }
        d
    }

    #[test]
    fn a_saved_update_with_an_empty_or_missing_etag_is_refused() {
        let empty = read(doc(Kind::UpdateDeviceTwin, Some("")));
        assert!(empty.unwrap_err().to_string().contains("not a valid etag"));
        let missing = read(doc(Kind::UpdateDeviceTwin, None));
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("missing field `if_match`")
        );
        assert!(read(doc(Kind::UpdateDeviceTwin, Some("e1"))).is_ok());
    }

    #[test]
    fn an_action_that_contradicts_the_kind_is_refused() {
        let mut d = doc(Kind::UpdateDeviceTwin, Some("e1"));
        d["action"] = json!("delete");
        let e = read(d).unwrap_err();
        assert!(e.to_string().contains("does not match kind"), "{e}");
    }

    #[test]
    fn every_kind_reads_back_as_it_was_written() {
        let d = DeviceId::new("d1").unwrap();
        let m = ModuleId::new("m1").unwrap();
        let e = ETag::new("e1").unwrap();
        let changes = vec![
            Change::CreateDevice(Box::new(CreateDevice {
                id: d.clone(),
                identity: DeviceIdentity {
                    status: DeviceStatus::Disabled,
                    status_reason: Some("why".into()),
                    auth: AuthSpec::X509 {
                        primary: "AB".into(),
                        secondary: None,
                    },
                    edge: true,
                    parent: Some(DeviceId::new("gw").unwrap()),
                },
                twin: TwinPatch {
                    tags: serde_json::from_value(json!({"a": 1})).unwrap(),
                    desired: serde_json::from_value(json!({"t": {"x": "s3cret"}})).unwrap(),
                },
                sensitive: vec![
                    PropertyPath::parse("desired.t").unwrap(),
                    PropertyPath::parse("desired.t.x").unwrap(),
                ],
                refs: vec![EnvRef {
                    path: PropertyPath::parse("desired.t.x").unwrap(),
                    name: "T".into(),
                }],
                key: Default::default(),
            })),
            Change::CreateModule(Box::new(CreateModule {
                device: d.clone(),
                module: m.clone(),
                managed_by: Some("me".into()),
                auth: AuthSpec::Ca,
                twin: TwinPatch::default(),
                sensitive: vec![],
                refs: vec![],
                key: Default::default(),
            })),
            Change::UpdateDevice(UpdateDevice {
                id: d.clone(),
                if_match: e.clone(),
                set: IdentityUpdate {
                    status: Some(DeviceStatus::Enabled),
                    status_reason: None,
                    auth: Some(AuthSpec::Sas),
                    edge: Some(false),
                    parent: Some(None),
                },
                diff: vec![],
                adopt: true,
                disruptive: Some(Disruption::Credentials),
            }),
            Change::UpdateModule(UpdateModule {
                device: d.clone(),
                module: m.clone(),
                if_match: ETag::new("m-e1").unwrap(),
                auth: AuthSpec::Sas,
                diff: vec![],
                adopt: false,
                disruptive: None,
            }),
            Change::DeleteModule(DeleteModule {
                device: d.clone(),
                module: m.clone(),
                if_match: e.clone(),
            }),
            Change::DeleteDevice(DeleteDevice {
                id: d,
                if_match: e,
                modules: vec![m],
            }),
        ];
        let plan = crate::plan::Plan {
            format_version: crate::plan::FORMAT_VERSION,
            hub: "h".into(),
            owner: "o".into(),
            manifest_digest: "0".repeat(64).as_str().into(),
            summary: Default::default(),
            changes,
            conflicts: vec![],
            requests: Default::default(),
            estimated_apply_seconds: None,
            estimated_read_seconds: None,
            read_seconds: None,
            scope: None,
            no_longer_declared: vec![],
            rollout: None,
            warnings: vec![],
            read: None,
            digest_key: Some(DigestKey::default().fingerprint()),
            objects: Default::default(),
            awaiting: vec![],
        };
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let saved: crate::plan::SavedPlan = serde_json::from_str(&text).unwrap();
        let env = |n: &str| (n == "T").then(|| "s3cret".to_string());
        let back = saved.resolve(&env, None, Default::default()).unwrap();
        for (b, c) in back.changes.iter().zip(&plan.changes) {
            assert_eq!(b, c, "{text}");
        }
        assert_eq!(back, plan);
    }
}
