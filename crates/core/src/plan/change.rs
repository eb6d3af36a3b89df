//! The typed changes of a plan: one variant per kind, each carrying exactly what its write needs, so
//! the executor matches on variants and never digs fields out of JSON.
//!
//! The JSON plan document (`format_version` 1) keeps its documented shape: [`Change`] is written
//! through [`ChangeDoc`] and read back by [`ChangeDoc::into_change`], which checks what the types
//! promise (an `action` that matches the `kind`, an `if_match` on every update and delete, valid IDs
//! and paths), so a hand-edited or inconsistent saved plan is refused before anything is sent. The
//! document never holds a sensitive value ([`super::secret`]): a change read from it gets them back
//! while it is read, so a [`Change`] always holds what is sent.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use super::secret::{self, SecretDoc};
use super::twin;
pub use super::values::{OwnedValues, TwinPatch};
use super::{Action, FieldDiff, Kind};
use crate::model::{
    AuthSpec, AuthenticationType, DeviceId, DeviceStatus, ETag, EnvRef, JsonMap, ModuleId,
    ObservedAuth, PropertyPath, Section, TwinAddress,
};

/// A device identity's declared fields, as a create writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIdentity {
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub auth: AuthSpec,
    /// `capabilities.iotEdge`.
    pub edge: bool,
    pub parent: Option<DeviceId>,
}

/// Create a device identity with its twin content (tags with the ledger, desired).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateDevice {
    pub id: DeviceId,
    pub identity: DeviceIdentity,
    pub twin: TwinPatch,
    pub sensitive: Vec<PropertyPath>,
    /// The content's values that the manifests take from `${env:NAME}`.
    pub refs: Vec<EnvRef>,
}

/// Create a module identity with its twin content.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateModule {
    pub device: DeviceId,
    pub module: ModuleId,
    /// Set at creation only.
    pub managed_by: Option<String>,
    pub auth: AuthSpec,
    pub twin: TwinPatch,
    pub sensitive: Vec<PropertyPath>,
    /// The content's values that the manifests take from `${env:NAME}`.
    pub refs: Vec<EnvRef>,
}

/// The identity fields a device update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityUpdate {
    pub status: Option<DeviceStatus>,
    pub status_reason: Option<String>,
    pub auth: Option<AuthSpec>,
    pub edge: Option<bool>,
    /// `Some(None)` detaches the device from its parent.
    pub parent: Option<Option<DeviceId>>,
}

/// Update a device identity under the identity etag it was planned against.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateDevice {
    pub id: DeviceId,
    pub if_match: ETag,
    pub set: IdentityUpdate,
    pub diff: Vec<FieldDiff>,
}

/// Update a module identity's authentication under the module identity etag it was planned
/// against (the module twin's `deviceEtag`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateModule {
    pub device: DeviceId,
    pub module: ModuleId,
    pub if_match: ETag,
    pub auth: AuthSpec,
    pub diff: Vec<FieldDiff>,
}

/// Patch one twin's owned keys (and its ledger) under the twin etag it was planned against.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateTwin {
    pub address: TwinAddress,
    pub if_match: ETag,
    /// The owned values seen when planning.
    pub base: OwnedValues,
    /// The owned values wanted.
    pub target: OwnedValues,
    /// The minimal merge patch from `base` to `target`.
    pub patch: TwinPatch,
    pub diff: Vec<FieldDiff>,
    /// Paths never planned, needed to re-check the twin on 412.
    pub ignore: Vec<PropertyPath>,
    /// Paths whose values are digests in `base`, `target` and `diff`, and concealed in documents.
    pub sensitive: Vec<PropertyPath>,
    /// The patch's values that the manifests take from `${env:NAME}`.
    pub refs: Vec<EnvRef>,
}

/// Delete a module identity; `if_match` is its twin's etag, re-checked before the delete.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteModule {
    pub device: DeviceId,
    pub module: ModuleId,
    pub if_match: ETag,
}

/// Delete a device identity, and with it every module it has.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteDevice {
    pub id: DeviceId,
    pub if_match: ETag,
    /// The modules deleted with it (system modules included).
    pub modules: Vec<ModuleId>,
}

/// One change: an identity or a twin.
#[derive(Debug, Clone, PartialEq)]
///
/// The payloads that carry twin content are boxed: a plan of a large fleet holds many changes, and a
/// delete should not cost the size of a twin update.
pub enum Change {
    CreateDevice(Box<CreateDevice>),
    CreateModule(Box<CreateModule>),
    UpdateDevice(UpdateDevice),
    UpdateModule(UpdateModule),
    UpdateTwin(Box<UpdateTwin>),
    DeleteModule(DeleteModule),
    DeleteDevice(DeleteDevice),
}

impl Change {
    pub fn kind(&self) -> Kind {
        match self {
            Change::CreateDevice(_) => Kind::CreateDevice,
            Change::CreateModule(_) => Kind::CreateModule,
            Change::UpdateDevice(_) => Kind::UpdateDevice,
            Change::UpdateModule(_) => Kind::UpdateModule,
            Change::UpdateTwin(t) if t.address.module.is_some() => Kind::UpdateModuleTwin,
            Change::UpdateTwin(_) => Kind::UpdateDeviceTwin,
            Change::DeleteModule(_) => Kind::DeleteModule,
            Change::DeleteDevice(_) => Kind::DeleteDevice,
        }
    }

    pub fn action(&self) -> Action {
        self.kind().action()
    }

    /// The identity or twin this change is about.
    pub fn address(&self) -> TwinAddress {
        match self {
            Change::CreateDevice(c) => TwinAddress::device(c.id.clone()),
            Change::UpdateDevice(c) => TwinAddress::device(c.id.clone()),
            Change::DeleteDevice(c) => TwinAddress::device(c.id.clone()),
            Change::CreateModule(c) => TwinAddress::module(c.device.clone(), c.module.clone()),
            Change::UpdateModule(c) => TwinAddress::module(c.device.clone(), c.module.clone()),
            Change::DeleteModule(c) => TwinAddress::module(c.device.clone(), c.module.clone()),
            Change::UpdateTwin(c) => c.address.clone(),
        }
    }

    pub fn device_id(&self) -> &DeviceId {
        match self {
            Change::CreateDevice(c) => &c.id,
            Change::UpdateDevice(c) => &c.id,
            Change::DeleteDevice(c) => &c.id,
            Change::CreateModule(c) => &c.device,
            Change::UpdateModule(c) => &c.device,
            Change::DeleteModule(c) => &c.device,
            Change::UpdateTwin(c) => &c.address.device,
        }
    }

    /// Paths whose values are never shown.
    pub fn sensitive(&self) -> &[PropertyPath] {
        match self {
            Change::CreateDevice(c) => &c.sensitive,
            Change::CreateModule(c) => &c.sensitive,
            Change::UpdateTwin(c) => &c.sensitive,
            _ => &[],
        }
    }

    /// The twin content a create writes.
    pub fn content(&self) -> Option<&TwinPatch> {
        match self {
            Change::CreateDevice(c) => Some(&c.twin),
            Change::CreateModule(c) => Some(&c.twin),
            _ => None,
        }
    }

    /// The owned values this change wants (sensitive values as digests): a twin update's `target`,
    /// or the view of a create's content.
    pub fn wanted(&self) -> Option<OwnedValues> {
        match self {
            Change::UpdateTwin(t) => Some(t.target.clone()),
            _ => self
                .content()
                .map(|c| twin::content_view(c, self.sensitive())),
        }
    }

    /// The field-level diff to show: the planned diff, or for creates every owned key of the content.
    pub fn shown_diff(&self) -> Vec<FieldDiff> {
        match self {
            Change::UpdateDevice(c) => c.diff.clone(),
            Change::UpdateModule(c) => c.diff.clone(),
            Change::UpdateTwin(c) => c.diff.clone(),
            Change::DeleteModule(_) | Change::DeleteDevice(_) => Vec::new(),
            Change::CreateDevice(_) | Change::CreateModule(_) => {
                let Some(wanted) = self.wanted() else {
                    return Vec::new();
                };
                // The identity fields first (what a reviewer must see of a new identity), then
                // every owned key of its twin content.
                let field = |path: &str, v: Value| FieldDiff {
                    path: path.into(),
                    before: None,
                    after: Some(v),
                };
                let mut out = Vec::new();
                match self {
                    Change::CreateDevice(c) => {
                        let id = &c.identity;
                        out.push(field(FIELD_STATUS, json!(id.status.as_str())));
                        if let Some(r) = &id.status_reason {
                            out.push(field(FIELD_STATUS_REASON, json!(r)));
                        }
                        out.push(field(FIELD_AUTH, auth_doc(&id.auth)));
                        out.push(field(FIELD_EDGE, json!(id.edge)));
                        if let Some(p) = &id.parent {
                            out.push(field(FIELD_PARENT, json!(p)));
                        }
                    }
                    Change::CreateModule(c) => {
                        out.push(field(FIELD_AUTH, auth_doc(&c.auth)));
                        if let Some(m) = &c.managed_by {
                            out.push(field("managedBy", json!(m)));
                        }
                    }
                    _ => {}
                }
                for s in [Section::Tags, Section::Desired] {
                    for (k, v) in wanted.section(s) {
                        out.push(FieldDiff {
                            path: format!("{}.{k}", s.as_str()),
                            before: None,
                            after: Some(v.clone()),
                        });
                    }
                }
                out
            }
        }
    }

    /// The plan document's form of this change: sensitive values concealed (`(sensitive)` in the
    /// patch, their digests and references in `secrets`).
    pub fn to_doc(&self) -> ChangeDoc {
        let address = self.address();
        let mut doc = ChangeDoc {
            action: self.action(),
            kind: self.kind(),
            device_id: address.device.to_string(),
            module_id: address.module.map(|m| m.to_string()),
            if_match: None,
            base: None,
            target: None,
            patch: json!({}),
            diff: Vec::new(),
            ignore: Vec::new(),
            sensitive: paths(self.sensitive()),
            secrets: Vec::new(),
        };
        match self {
            Change::CreateDevice(c) => {
                let mut p = json!({
                    "status": c.identity.status.as_str(),
                    "authentication": auth_doc(&c.identity.auth),
                    "capabilities": {"iotEdge": c.identity.edge},
                });
                if let Some(r) = &c.identity.status_reason {
                    p["statusReason"] = json!(r);
                }
                if let Some(parent) = &c.identity.parent {
                    p["parent"] = json!(parent);
                }
                let (twin, secrets) = secret::conceal(&c.twin, &c.sensitive, &c.refs);
                p["twin"] = twin.to_value();
                doc.patch = p;
                doc.secrets = secrets;
            }
            Change::CreateModule(c) => {
                let mut p = json!({"authentication": auth_doc(&c.auth)});
                if let Some(mb) = &c.managed_by {
                    p["managedBy"] = json!(mb);
                }
                let (twin, secrets) = secret::conceal(&c.twin, &c.sensitive, &c.refs);
                p["twin"] = twin.to_value();
                doc.patch = p;
                doc.secrets = secrets;
            }
            Change::UpdateDevice(c) => {
                doc.if_match = Some(c.if_match.to_string());
                let mut p = JsonMap::new();
                let set = &c.set;
                if let Some(s) = set.status {
                    p.insert(FIELD_STATUS.into(), json!(s.as_str()));
                }
                if let Some(r) = &set.status_reason {
                    p.insert(FIELD_STATUS_REASON.into(), json!(r));
                }
                if let Some(a) = &set.auth {
                    p.insert(FIELD_AUTH.into(), auth_doc(a));
                }
                if let Some(e) = set.edge {
                    p.insert(FIELD_EDGE.into(), json!(e));
                }
                if let Some(parent) = &set.parent {
                    p.insert(FIELD_PARENT.into(), json!(parent));
                }
                doc.patch = Value::Object(p);
                doc.diff = c.diff.clone();
            }
            Change::UpdateModule(c) => {
                doc.if_match = Some(c.if_match.to_string());
                doc.patch = json!({FIELD_AUTH: auth_doc(&c.auth)});
                doc.diff = c.diff.clone();
            }
            Change::UpdateTwin(c) => {
                doc.if_match = Some(c.if_match.to_string());
                doc.base = Some(c.base.clone());
                doc.target = Some(c.target.clone());
                let (patch, secrets) = secret::conceal(&c.patch, &c.sensitive, &c.refs);
                doc.patch = patch.to_value();
                doc.secrets = secrets;
                doc.diff = c.diff.clone();
                doc.ignore = paths(&c.ignore);
            }
            Change::DeleteModule(c) => doc.if_match = Some(c.if_match.to_string()),
            Change::DeleteDevice(c) => {
                doc.if_match = Some(c.if_match.to_string());
                doc.patch = json!({"modules": c.modules});
            }
        }
        doc
    }
}

/// The identity field names of a device update's `patch` and `diff`.
pub(crate) const FIELD_STATUS: &str = "status";
pub(crate) const FIELD_STATUS_REASON: &str = "statusReason";
pub(crate) const FIELD_AUTH: &str = "authentication";
pub(crate) const FIELD_EDGE: &str = "capabilities.iotEdge";
pub(crate) const FIELD_PARENT: &str = "parent";

fn paths(p: &[PropertyPath]) -> Vec<String> {
    p.iter().map(ToString::to_string).collect()
}

/// `authentication` in plan documents: `{"type": KIND, "x509Thumbprint": {…}}` (thumbprints for
/// self-signed certificates only; never keys).
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

fn auth_doc_value(doc: AuthDoc) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// A declared authentication as plan documents show it.
pub(crate) fn auth_doc(auth: &AuthSpec) -> Value {
    auth_doc_value(AuthDoc {
        kind: auth.kind(),
        x509: match auth {
            AuthSpec::X509 { primary, secondary } => Some(ThumbprintDoc {
                primary_thumbprint: Some(primary.clone()),
                secondary_thumbprint: secondary.clone(),
            }),
            _ => None,
        },
    })
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

fn auth_from_doc(v: &Value) -> Result<AuthSpec, String> {
    let doc: AuthDoc =
        serde_json::from_value(v.clone()).map_err(|e| format!("authentication: {e}"))?;
    match doc.kind {
        AuthenticationType::Sas => Ok(AuthSpec::Sas),
        AuthenticationType::CertificateAuthority => Ok(AuthSpec::Ca),
        AuthenticationType::SelfSigned => {
            let t = doc
                .x509
                .ok_or("a selfSigned authentication needs x509Thumbprint")?;
            Ok(AuthSpec::X509 {
                primary: t
                    .primary_thumbprint
                    .ok_or("a selfSigned authentication needs a primaryThumbprint")?,
                secondary: t.secondary_thumbprint,
            })
        }
        AuthenticationType::None => {
            Err("twinops never plans an identity without authentication".into())
        }
    }
}

/// One change as the JSON plan document holds it (the README documents every field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeDoc {
    pub action: Action,
    pub kind: Kind,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The etag the change was computed against (unquoted); `None` for creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<String>,
    /// Twin updates: the owned values seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<OwnedValues>,
    /// Twin updates: the owned values wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<OwnedValues>,
    /// What to send: a twin merge patch, the identity fields to change, or for creates the identity
    /// and its twin content.
    pub patch: Value,
    pub diff: Vec<FieldDiff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// The values concealed in `patch` (each is `(sensitive)` there): path, digest and reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretDoc>,
}

fn field<'a>(patch: &'a Value, key: &str) -> Option<&'a Value> {
    patch.as_object().and_then(|m| m.get(key))
}

fn string_field(patch: &Value, key: &str) -> Result<Option<String>, String> {
    match field(patch, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`patch.{key}` must be a string")),
    }
}

fn status(v: &Value) -> Result<DeviceStatus, String> {
    serde_json::from_value(v.clone()).map_err(|_| "`status` must be enabled or disabled".into())
}

/// How [`ChangeDoc::into_change`] gets a change's concealed values back: given the twin, its patch or
/// content (placeholders in it) and its `secrets` entries, fills the patch and returns the references
/// it carries, or says why the document is malformed.
pub(super) type Reveal<'a> =
    dyn FnMut(&TwinAddress, &mut TwinPatch, secret::Concealed) -> Vec<EnvRef> + 'a;

/// A change document without concealed values converts on its own; one with them is read with its
/// plan ([`super::SavedPlan::resolve`]), which knows where the values come from.
impl TryFrom<ChangeDoc> for Change {
    type Error = String;

    fn try_from(doc: ChangeDoc) -> Result<Change, String> {
        if !doc.secrets.is_empty() {
            return Err(
                "the change holds concealed sensitive values; read it with its plan".into(),
            );
        }
        doc.into_change(&mut |_, _, _| Vec::new())
    }
}

impl ChangeDoc {
    /// The typed change, its concealed values got back through `reveal`.
    pub(super) fn into_change(self, reveal: &mut Reveal<'_>) -> Result<Change, String> {
        let doc = self;
        if doc.action != doc.kind.action() {
            return Err(format!(
                "action `{:?}` does not match kind `{:?}`",
                doc.action, doc.kind
            ));
        }
        let device = DeviceId::new(doc.device_id).map_err(|e| e.to_string())?;
        let module = doc
            .module_id
            .map(ModuleId::new)
            .transpose()
            .map_err(|e| e.to_string())?;
        let wants_module = matches!(
            doc.kind,
            Kind::CreateModule | Kind::UpdateModule | Kind::UpdateModuleTwin | Kind::DeleteModule
        );
        let module = match (wants_module, module) {
            (true, Some(m)) => Some(m),
            (false, None) => None,
            (true, None) => return Err(format!("a {:?} change needs a module_id", doc.kind)),
            (false, Some(_)) => return Err(format!("a {:?} change has no module_id", doc.kind)),
        };
        let etag = |e: Option<String>| -> Result<ETag, String> {
            let e = e.ok_or("updates and deletes need an if_match etag")?;
            ETag::new(e).map_err(|e| e.to_string())
        };
        let parse_paths = |ps: Vec<String>| -> Result<Vec<PropertyPath>, String> {
            ps.iter()
                .map(|p| PropertyPath::parse(p).map_err(|e| e.to_string()))
                .collect()
        };
        let sensitive = parse_paths(doc.sensitive)?;
        let carries_twin = matches!(
            doc.kind,
            Kind::CreateDevice
                | Kind::CreateModule
                | Kind::UpdateDeviceTwin
                | Kind::UpdateModuleTwin
        );
        if !carries_twin && !doc.secrets.is_empty() {
            return Err("only changes with twin content hold `secrets`".into());
        }
        let address = TwinAddress {
            device: device.clone(),
            module: module.clone(),
        };
        let secrets = doc.secrets;
        // The twin content or patch with its concealed values put back.
        let mut revealed = |mut twin: TwinPatch| -> Result<(TwinPatch, Vec<EnvRef>), String> {
            let concealed = secret::Concealed::read(secrets.clone(), &twin)?;
            let refs = reveal(&address, &mut twin, concealed);
            Ok((twin, refs))
        };
        let module_of = |m: Option<ModuleId>| m.ok_or_else(|| "module_id".to_string());
        let patch = doc.patch;
        Ok(match doc.kind {
            Kind::CreateDevice => {
                if doc.if_match.is_some() {
                    return Err("creates carry no if_match".into());
                }
                let (twin, refs) = revealed(TwinPatch::from_value(
                    field(&patch, "twin").unwrap_or(&json!({})),
                )?)?;
                let edge = match patch.pointer("/capabilities/iotEdge") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err("`capabilities.iotEdge` must be a boolean".into()),
                };
                Change::CreateDevice(Box::new(CreateDevice {
                    id: device,
                    identity: DeviceIdentity {
                        status: field(&patch, FIELD_STATUS)
                            .map(status)
                            .transpose()?
                            .unwrap_or_default(),
                        status_reason: string_field(&patch, FIELD_STATUS_REASON)?,
                        auth: field(&patch, FIELD_AUTH)
                            .map(auth_from_doc)
                            .transpose()?
                            .unwrap_or_default(),
                        edge,
                        parent: string_field(&patch, FIELD_PARENT)?
                            .map(DeviceId::new)
                            .transpose()
                            .map_err(|e| e.to_string())?,
                    },
                    twin,
                    sensitive,
                    refs,
                }))
            }
            Kind::CreateModule => {
                if doc.if_match.is_some() {
                    return Err("creates carry no if_match".into());
                }
                let (twin, refs) = revealed(TwinPatch::from_value(
                    field(&patch, "twin").unwrap_or(&json!({})),
                )?)?;
                Change::CreateModule(Box::new(CreateModule {
                    device,
                    module: module_of(module)?,
                    managed_by: string_field(&patch, "managedBy")?,
                    auth: field(&patch, FIELD_AUTH)
                        .map(auth_from_doc)
                        .transpose()?
                        .unwrap_or_default(),
                    twin,
                    sensitive,
                    refs,
                }))
            }
            Kind::UpdateDevice => {
                let Value::Object(m) = &patch else {
                    return Err("an identity update's patch must be an object".into());
                };
                let mut set = IdentityUpdate::default();
                for (k, v) in m {
                    match k.as_str() {
                        FIELD_STATUS => set.status = Some(status(v)?),
                        FIELD_STATUS_REASON => {
                            set.status_reason = Some(
                                v.as_str()
                                    .ok_or("`statusReason` must be a string")?
                                    .to_string(),
                            )
                        }
                        FIELD_AUTH => set.auth = Some(auth_from_doc(v)?),
                        FIELD_EDGE => {
                            set.edge = Some(
                                v.as_bool()
                                    .ok_or("`capabilities.iotEdge` must be a boolean")?,
                            )
                        }
                        FIELD_PARENT => {
                            set.parent = Some(match v {
                                Value::Null => None,
                                Value::String(p) => {
                                    Some(DeviceId::new(p.clone()).map_err(|e| e.to_string())?)
                                }
                                _ => return Err("`parent` must be a device ID or null".into()),
                            })
                        }
                        other => return Err(format!("`{other}` is no identity field")),
                    }
                }
                Change::UpdateDevice(UpdateDevice {
                    id: device,
                    if_match: etag(doc.if_match)?,
                    set,
                    diff: doc.diff,
                })
            }
            Kind::UpdateModule => Change::UpdateModule(UpdateModule {
                device,
                module: module_of(module)?,
                if_match: etag(doc.if_match)?,
                auth: auth_from_doc(
                    field(&patch, FIELD_AUTH).ok_or("a module update needs `authentication`")?,
                )?,
                diff: doc.diff,
            }),
            Kind::UpdateDeviceTwin | Kind::UpdateModuleTwin => {
                let (patch, refs) = revealed(TwinPatch::from_value(&patch)?)?;
                Change::UpdateTwin(Box::new(UpdateTwin {
                    address: TwinAddress { device, module },
                    if_match: etag(doc.if_match)?,
                    base: doc.base.ok_or("a twin update needs its base")?,
                    target: doc.target.ok_or("a twin update needs its target")?,
                    patch,
                    diff: doc.diff,
                    ignore: parse_paths(doc.ignore)?,
                    sensitive,
                    refs,
                }))
            }
            Kind::DeleteModule => Change::DeleteModule(DeleteModule {
                device,
                module: module_of(module)?,
                if_match: etag(doc.if_match)?,
            }),
            Kind::DeleteDevice => {
                let modules = match field(&patch, "modules") {
                    None => Vec::new(),
                    Some(Value::Array(ms)) => ms
                        .iter()
                        .map(|m| {
                            m.as_str()
                                .ok_or_else(|| "`modules` holds module IDs".to_string())
                                .and_then(|m| ModuleId::new(m).map_err(|e| e.to_string()))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err("`patch.modules` must be a list".into()),
                };
                Change::DeleteDevice(DeleteDevice {
                    id: device,
                    if_match: etag(doc.if_match)?,
                    modules,
                })
            }
        })
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_doc().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                .contains("need an if_match")
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
            })),
            Change::CreateModule(Box::new(CreateModule {
                device: d.clone(),
                module: m.clone(),
                managed_by: Some("me".into()),
                auth: AuthSpec::Ca,
                twin: TwinPatch::default(),
                sensitive: vec![],
                refs: vec![],
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
            }),
            Change::UpdateModule(UpdateModule {
                device: d.clone(),
                module: m.clone(),
                if_match: ETag::new("m-e1").unwrap(),
                auth: AuthSpec::Sas,
                diff: vec![],
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
        let plan = super::super::Plan {
            format_version: super::super::FORMAT_VERSION,
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
        };
        let text = serde_json::to_string(&plan).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let saved: super::super::SavedPlan = serde_json::from_str(&text).unwrap();
        let env = |n: &str| (n == "T").then(|| "s3cret".to_string());
        let back = saved.resolve(&env, None).unwrap();
        for (b, c) in back.changes.iter().zip(&plan.changes) {
            assert_eq!(b, c, "{text}");
        }
        assert_eq!(back, plan);
    }
}
