//! The typed changes of a plan, the model the planner builds and the executor runs: one variant per
//! kind, each carrying exactly what its write needs, so the executor matches on variants and never
//! digs fields out of JSON. A [`Change`] always holds what is sent, sensitive values included.
//!
//! This module knows no JSON document: the plan document's form of a change (`format_version` 1),
//! with its sensitive values concealed, and the checks made when a saved plan is read, live in
//! [`super::document`].

use serde_json::{Value, json};

use super::document::auth_doc;
use super::twin;
pub use super::values::{OwnedValues, TwinPatch};
use super::{Action, FieldDiff, Kind};
use crate::model::{
    AuthSpec, DeviceId, DeviceStatus, ETag, EnvRef, ModuleId, PropertyPath, Section, TwinAddress,
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
}

/// The identity field names of a device update's `patch` and `diff`.
pub(crate) const FIELD_STATUS: &str = "status";
pub(crate) const FIELD_STATUS_REASON: &str = "statusReason";
pub(crate) const FIELD_AUTH: &str = "authentication";
pub(crate) const FIELD_EDGE: &str = "capabilities.iotEdge";
pub(crate) const FIELD_PARENT: &str = "parent";
