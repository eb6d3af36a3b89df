//! Identity writes with IoT Hub's rules: an update is a PUT of the whole identity that echoes the
//! authentication block the hub holds (so keys are never regenerated), an edge device keeps its own
//! `deviceScope` and names its parent in `parentScopes`, a leaf takes its parent's scope, and under
//! SAS a module operation on a missing or disabled device is answered 401 (live-hub.md).
//!
//! Every write is conditional on the etag the plan saw: an identity whose etag moved is
//! [`IdentityWrite::Changed`], never overwritten.

use super::{Error, Hub, body, observe};
use twinops_core::model::{DeviceId, DeviceStatus, ETag, TwinAddress};
use twinops_core::plan::{CreateDevice, DeleteDevice, DeleteModule, UpdateDevice, UpdateModule};
use twinops_core::report::{Doing, Refusal};
use twinops_iothub::connection_string::Secret;
use twinops_iothub::wire::{Authentication, AuthenticationType, Capabilities, Device};

/// A failed step of an identity operation: what was being done, and the hub's error.
#[derive(Debug)]
pub struct StepError {
    pub doing: Doing,
    pub error: Error,
}

fn at(doing: Doing) -> impl Fn(Error) -> StepError {
    move |error| StepError { doing, error }
}

/// How an identity update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityWrite {
    Written,
    /// Written, then the parent attached again: IoT Hub detaches the parent of a device that
    /// stops being an edge device.
    WrittenTwice,
    /// The identity changed since the plan (its etag moved): not written.
    Changed,
    /// It changed between those two writes: the parent is not attached again.
    ChangedBetweenWrites,
    /// The parent named is not an edge device in the hub.
    ParentNotEdge(DeviceId),
}

/// How a delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// Gone already (404).
    AlreadyGone,
    /// Changed since the plan: not deleted.
    Changed,
    /// A module's twin changed since the plan (its ledger may have moved): not deleted.
    TwinChanged,
}

fn etag_of(what: &str, etag: Option<String>) -> Result<ETag, Error> {
    etag.and_then(|e| ETag::new(e).ok())
        .ok_or_else(|| Error::Invalid(format!("the hub sent {what} without an etag")))
}

impl Hub {
    /// The `deviceScope` of an edge parent (`None`: not an edge device, or no such device), read
    /// once per parent.
    pub(crate) async fn parent_scope(&self, parent: &DeviceId) -> Result<Option<String>, Error> {
        if let Some(s) = self.scopes.lock().await.get(parent) {
            return Ok(s.clone());
        }
        let scope = match self.rest.get_device(parent).await {
            Ok(d) => d.device_scope.filter(|s| !s.is_empty()),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        self.scopes
            .lock()
            .await
            .insert(parent.clone(), scope.clone());
        Ok(scope)
    }

    /// Why a module identity operation on `device` was refused with 401: the device is missing
    /// or disabled (under SAS IoT Hub refuses module operations on either), else a permission.
    pub async fn refusal(&self, device: &DeviceId) -> Refusal {
        match self.rest.get_device(device).await {
            Err(probe) if probe.is_not_found() => Refusal::DeviceMissing(device.clone()),
            Ok(d) if observe::status(d.status.as_deref()) == DeviceStatus::Disabled => {
                Refusal::DeviceDisabled(device.clone())
            }
            _ => Refusal::Permission,
        }
    }

    /// Writes a device identity update under the etag it was planned against, with IoT Hub's
    /// scope rules; a device that stops being an edge device gets its parent attached again.
    pub async fn update_device(&self, u: &UpdateDevice) -> Result<IdentityWrite, StepError> {
        let mut d = self
            .rest
            .get_device(&u.id)
            .await
            .map_err(at(Doing::ReadingIdentity))?;
        if d.etag.as_deref() != Some(u.if_match.as_str()) {
            return Ok(IdentityWrite::Changed);
        }
        let was_edge = d.capabilities.as_ref().is_some_and(|c| c.iot_edge);
        let set = &u.set;
        let edge = set.edge.unwrap_or(was_edge);
        if let Some(s) = set.status {
            d.status = Some(body::status(s));
        }
        if let Some(r) = &set.status_reason {
            d.status_reason = Some(r.clone());
        }
        if let Some(a) = &set.auth {
            d.authentication = Some(body::authentication(a));
        }
        d.capabilities = Some(Capabilities { iot_edge: edge });
        // The parent scope the device must end with: the planned one, or the one it has.
        let parent_scope = match &set.parent {
            None => d.parent_scopes.as_ref().and_then(|p| p.first().cloned()),
            Some(None) => None,
            Some(Some(pid)) => match self
                .parent_scope(pid)
                .await
                .map_err(at(Doing::ReadingParent))?
            {
                Some(scope) => Some(scope),
                None => return Ok(IdentityWrite::ParentNotEdge(pid.clone())),
            },
        };
        // An edge device keeps its own `deviceScope` (it is immutable) and names its parent in
        // `parentScopes`; a leaf takes its parent's scope as `deviceScope`. Becoming an edge
        // device needs `deviceScope: ""` (the hub mints the edge scope; the parent's scope there
        // is answered with 503). Ceasing to be one detaches the parent in that write, so the
        // parent is attached again in a second write.
        let reattach = was_edge && !edge && parent_scope.is_some();
        match (was_edge, edge) {
            (false, true) => d.device_scope = Some(String::new()),
            (true, false) => d.device_scope = None,
            (true, true) => {}
            (false, false) => d.device_scope = parent_scope.clone(),
        }
        d.parent_scopes = Some(parent_scope.iter().filter(|_| !reattach).cloned().collect());
        let written = match self.rest.update_device(&d, &u.if_match).await {
            Ok(w) => w,
            Err(Error::PreconditionFailed { .. }) => return Ok(IdentityWrite::Changed),
            Err(e) => return Err(at(Doing::Writing)(e)),
        };
        match parent_scope.filter(|_| reattach) {
            None => Ok(IdentityWrite::Written),
            Some(scope) => self.reattach(written, scope).await,
        }
    }

    /// The second write of a device that stopped being an edge device: its parent again.
    async fn reattach(&self, mut d: Device, scope: String) -> Result<IdentityWrite, StepError> {
        let etag =
            etag_of("the update", d.etag.clone()).map_err(at(Doing::AttachingParentAgain))?;
        d.device_scope = Some(scope.clone());
        d.parent_scopes = Some(vec![scope]);
        match self.rest.update_device(&d, &etag).await {
            Ok(_) => Ok(IdentityWrite::WrittenTwice),
            Err(Error::PreconditionFailed { .. }) => Ok(IdentityWrite::ChangedBetweenWrites),
            Err(e) => Err(at(Doing::AttachingParentAgain)(e)),
        }
    }

    /// Writes a module identity's authentication under the etag it was planned against.
    pub async fn update_module(&self, u: &UpdateModule) -> Result<IdentityWrite, StepError> {
        let mut m = self
            .rest
            .get_module(&u.device, &u.module)
            .await
            .map_err(at(Doing::ReadingIdentity))?;
        // A concurrent change of its authentication is a conflict, never overwritten.
        if m.etag.as_deref() != Some(u.if_match.as_str()) {
            return Ok(IdentityWrite::Changed);
        }
        m.authentication = Some(body::authentication(&u.auth));
        match self.rest.update_module(&m, &u.if_match).await {
            Ok(_) => Ok(IdentityWrite::Written),
            Err(Error::PreconditionFailed { .. }) => Ok(IdentityWrite::Changed),
            Err(e) => Err(at(Doing::Writing)(e)),
        }
    }

    /// Disables a device that was created enabled so that its modules could be created.
    pub async fn disable_created(&self, c: &CreateDevice) -> Result<(), StepError> {
        let mut d = self
            .rest
            .get_device(&c.id)
            .await
            .map_err(at(Doing::Disabling))?;
        let etag = etag_of("the device", d.etag.clone()).map_err(at(Doing::Disabling))?;
        d.status = Some(body::status(DeviceStatus::Disabled));
        d.status_reason = c.identity.status_reason.clone();
        self.rest
            .update_device(&d, &etag)
            .await
            .map(|_| ())
            .map_err(at(Doing::Disabling))
    }

    pub async fn delete_device(&self, d: &DeleteDevice) -> Result<Deleted, StepError> {
        deleted(self.rest.delete_device(&d.id, &d.if_match).await).map_err(at(Doing::Writing))
    }

    /// Deletes a module identity. The plan holds its twin's etag, which is checked first (the
    /// ledger that made it this owner's to delete is in the twin); the identity is then deleted
    /// under its own etag.
    pub async fn delete_module(&self, d: &DeleteModule) -> Result<Deleted, StepError> {
        let twin = TwinAddress::module(d.device.clone(), d.module.clone());
        // Whichever request fails, the outcome names the error alone, as a failed delete.
        let fail = at(Doing::Writing);
        let t = match self.twin(&twin).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Ok(Deleted::AlreadyGone),
            Err(e) => return Err(fail(e)),
        };
        if t.etag != d.if_match {
            return Ok(Deleted::TwinChanged);
        }
        let m = match self.rest.get_module(&d.device, &d.module).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(Deleted::AlreadyGone),
            Err(e) => return Err(fail(e)),
        };
        let etag = etag_of("the module", m.etag).map_err(&fail)?;
        deleted(self.rest.delete_module(&d.device, &d.module, &etag).await).map_err(fail)
    }

    /// The primary key of an identity that authenticates with one (`twinops connection-string`).
    pub async fn primary_key(&self, a: &TwinAddress) -> Result<Secret, KeyError> {
        let auth = match a.module_id() {
            Some(m) => self
                .rest
                .get_module(&a.device, m)
                .await
                .map(|x| x.authentication),
            None => self
                .rest
                .get_device(&a.device)
                .await
                .map(|x| x.authentication),
        }
        .map_err(KeyError::Hub)?
        .unwrap_or_default();
        primary_key(auth)
    }
}

fn deleted(result: Result<(), Error>) -> Result<Deleted, Error> {
    match result {
        Ok(()) => Ok(Deleted::Deleted),
        Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
        Err(Error::PreconditionFailed { .. }) => Ok(Deleted::Changed),
        Err(e) => Err(e),
    }
}

/// Why an identity has no key connection string.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Hub(Error),
    #[error("it authenticates with `{}`, not a key; it has no key connection string", .0.as_str())]
    NotSas(AuthenticationType),
    #[error("the hub returned no key for it")]
    NoKey,
}

fn primary_key(a: Authentication) -> Result<Secret, KeyError> {
    if let Some(kind) = a.kind.filter(|k| *k != AuthenticationType::Sas) {
        return Err(KeyError::NotSas(kind));
    }
    a.symmetric_key
        .and_then(|k| k.primary_key)
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .ok_or(KeyError::NoKey)
}
