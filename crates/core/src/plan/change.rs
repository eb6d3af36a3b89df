//! The typed changes of a plan, the model the planner builds and the executor runs: one variant per
//! kind, each carrying exactly what its write needs, so the executor matches on variants and never
//! digs fields out of JSON. A [`Change`] always holds what is sent, sensitive values included.
//!
//! This module knows no JSON document: the plan document's form of a change (`format_version` 1),
//! with its sensitive values concealed, and the checks made when a saved plan is read, live in
//! [`super::document`].

use serde_json::{Value, json};

use super::document::auth_doc;
use super::ledger::{self, IdentityField};
use super::secret::DigestKey;
use super::twin;
pub use super::twin::Managed;
pub use super::values::{OwnedValues, TwinPatch};
use super::{Action, FieldDiff, Kind};
use crate::model::{
    AuthSpec, DeviceId, DeviceStatus, ETag, EnvRef, LEDGER_TAG, ModuleId, PropertyPath, Section,
    TwinAddress,
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
    /// The key of the digests of its sensitive values.
    pub key: DigestKey,
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
    /// The key of the digests of its sensitive values.
    pub key: DigestKey,
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

/// What an identity change does to the devices that use the identity (SPEC §15): marked `!` in
/// plans with its consequence, counted in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// The authentication type or thumbprints change: the current credentials stop working.
    Credentials,
    /// The device is disabled: it is disconnected and refused.
    Disabled,
    /// An edge device with children stops being one: its children lose their parent.
    ChildrenLoseParent,
    /// A child device moves to another parent (or none): it is disconnected from its gateway.
    ParentMoves,
}

impl Disruption {
    pub const ALL: [Disruption; 4] = [
        Disruption::Credentials,
        Disruption::Disabled,
        Disruption::ChildrenLoseParent,
        Disruption::ParentMoves,
    ];

    /// Its consequence, as plans say it (and the JSON plan's `disruptive` holds it).
    pub fn consequence(self) -> &'static str {
        match self {
            Disruption::Credentials => "its current credentials stop working",
            Disruption::Disabled => "the device is disconnected and refused until enabled",
            Disruption::ChildrenLoseParent => "its child devices lose their parent",
            Disruption::ParentMoves => "the device is disconnected from its current parent",
        }
    }
}

/// Update a device identity under the identity etag it was planned against.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateDevice {
    pub id: DeviceId,
    pub if_match: ETag,
    pub set: IdentityUpdate,
    pub diff: Vec<FieldDiff>,
    /// Some of the fields it sets were not managed by this owner before (SPEC §15 adoption).
    pub adopt: bool,
    pub disruptive: Option<Disruption>,
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
    /// `auth` was not managed by this owner before.
    pub adopt: bool,
    pub disruptive: Option<Disruption>,
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
    /// The key of the digests in `base`, `target` and `diff` (the 412 re-check computes the
    /// twin's view under it).
    pub key: DigestKey,
    /// Fields and keys this owner starts to manage (`status`, `tags.site`, …), changed or not.
    pub adopted: Vec<String>,
    /// Identity fields this owner gives up: released and left as they are.
    pub released: Vec<Released>,
    /// Fields and keys taken from other owners with `--force-conflicts`.
    pub forced: Vec<Managed>,
}

/// An identity field given up, with the value it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    pub field: IdentityField,
    /// Its value in the hub when planned (it stays so).
    pub stays: Option<Value>,
}

impl UpdateTwin {
    /// The patch to send to the twin as it is now (`seen`): the planned patch, with the ledger's
    /// part computed against the ledger `seen` holds, so that a resend after a 412 writes this
    /// owner's entry (and what a force takes) into whatever other owners wrote meanwhile.
    pub fn patch_for(&self, seen: &crate::model::ObservedTwin) -> TwinPatch {
        let mut p = self.patch.clone();
        if let Some(target) = self.target.tags.get(LEDGER_TAG) {
            match ledger::write_patch(seen.tags.get(LEDGER_TAG), target) {
                Some(l) => {
                    p.tags.insert(LEDGER_TAG.into(), l);
                }
                None => {
                    p.tags.remove(LEDGER_TAG);
                }
            }
        }
        p
    }
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
    /// A twin whose owner gives up fields or keys (and removes only keys it gave up): written as a
    /// twin update, planned and shown as a release (SPEC §15).
    Release(Box<UpdateTwin>),
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
            Change::Release(t) if t.address.module.is_some() => Kind::ReleaseModule,
            Change::Release(_) => Kind::ReleaseDevice,
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
            Change::UpdateTwin(c) | Change::Release(c) => c.address.clone(),
        }
    }

    /// The twin write of an update or a release.
    pub fn twin_update(&self) -> Option<&UpdateTwin> {
        match self {
            Change::UpdateTwin(t) | Change::Release(t) => Some(t),
            _ => None,
        }
    }

    /// Whether it takes over fields or keys this owner did not manage.
    pub fn adopts(&self) -> bool {
        match self {
            Change::UpdateDevice(u) => u.adopt,
            Change::UpdateModule(u) => u.adopt,
            Change::UpdateTwin(t) | Change::Release(t) => !t.adopted.is_empty(),
            _ => false,
        }
    }

    /// What the change does to the devices that use the identity, if it disrupts them.
    pub fn disruptive(&self) -> Option<Disruption> {
        match self {
            Change::UpdateDevice(u) => u.disruptive,
            Change::UpdateModule(u) => u.disruptive,
            _ => None,
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
            Change::UpdateTwin(c) | Change::Release(c) => &c.address.device,
        }
    }

    /// Paths whose values are never shown.
    /// The key of the digests of its sensitive values (a fixed one for changes that hold none).
    pub fn key(&self) -> DigestKey {
        match self {
            Change::CreateDevice(c) => c.key,
            Change::CreateModule(c) => c.key,
            Change::UpdateTwin(c) | Change::Release(c) => c.key,
            _ => DigestKey::default(),
        }
    }

    pub fn sensitive(&self) -> &[PropertyPath] {
        match self {
            Change::CreateDevice(c) => &c.sensitive,
            Change::CreateModule(c) => &c.sensitive,
            Change::UpdateTwin(c) | Change::Release(c) => &c.sensitive,
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
            Change::UpdateTwin(t) | Change::Release(t) => Some(t.target.clone()),
            _ => self
                .content()
                .map(|c| twin::content_view(c, self.sensitive(), self.key())),
        }
    }

    /// The field-level diff to show: the planned diff, or for creates every owned key of the content.
    pub fn shown_diff(&self) -> Vec<FieldDiff> {
        match self {
            Change::UpdateDevice(c) => c.diff.clone(),
            Change::UpdateModule(c) => c.diff.clone(),
            Change::UpdateTwin(c) | Change::Release(c) => c.diff.clone(),
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
}

/// The identity field names of a device update's `patch` and `diff`.
pub(crate) const FIELD_STATUS: &str = "status";
pub(crate) const FIELD_STATUS_REASON: &str = "statusReason";
pub(crate) const FIELD_AUTH: &str = "authentication";
pub(crate) const FIELD_EDGE: &str = "capabilities.iotEdge";
pub(crate) const FIELD_PARENT: &str = "parent";
