//! IoT Hub's rules for identity writes inside a transaction: IDs, creating and updating devices
//! and modules (generation IDs, etags, keys), device scopes and parent scopes as live hubs resolve
//! them, the module limit, and edge devices' system modules. Field rules (status, authentication,
//! scope strings) are `identity`'s; the request-level sequencing is the store's.

use super::persistence::{Tx, module_range};
use super::{DeviceSpec, IfMatch, ModuleSpec, Store};
use crate::error::Error;
use crate::identity::{self, Auth, DeviceRecord, Holder, ModuleRecord};
use crate::twin::TwinState;
use twinops_iothub::ids::{self, MAX_MODULES_PER_DEVICE};

impl Store {
    /// What live hubs answer before any module identity operation (live-hub.md): under SAS
    /// (`under_sas`), even `iothubowner`, a device that is missing or disabled answers 401
    /// `IotHubUnauthorizedAccess`; under Entra ID (the bearer token) a missing device is 404 and
    /// a disabled one works. Module twins do not pass here.
    pub(crate) fn module_device_access(&self, device: &str, under_sas: bool) -> Result<(), Error> {
        let refused = || Error::Unauthorized(format!("device {device} is not accessible"));
        match self.device(device) {
            Ok(d) if under_sas && d.status == "disabled" => Err(refused()),
            Err(Error::DeviceNotFound(_)) if under_sas => Err(refused()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }
}

impl Tx<'_> {
    pub(crate) fn create_device(
        &mut self,
        id: &str,
        spec: &DeviceSpec,
    ) -> Result<DeviceRecord, Error> {
        check_id(id, "device")?;
        identity::check_status_reason(&spec.status_reason)?;
        let status = identity::resolve_status(spec.status.as_deref(), None)?;
        let auth = identity::resolve_auth(spec.authentication.as_ref(), Holder::Device)?;
        let edge = spec.edge.unwrap_or(false);
        let generation_id = self.next_generation()?;
        let (device_scope, parent_scopes) =
            self.resolve_scopes(id, edge, &generation_id, spec, None)?;
        let rec = DeviceRecord {
            device_id: id.to_string(),
            generation_id,
            etag: self.next_etag()?,
            status,
            status_reason: spec.status_reason.clone(),
            status_updated_time: identity::NEVER.to_string(),
            auth,
            edge,
            device_scope,
            parent_scopes,
            twin: TwinState::new(&self.now),
            presence: Default::default(),
        };
        self.save_device(&rec)?;
        if edge {
            self.ensure_system_modules(id)?;
        }
        Ok(rec)
    }

    /// Updates identity fields; the twin, generation ID and (unless given) keys stay.
    pub(crate) fn update_device(
        &mut self,
        cur: DeviceRecord,
        spec: &DeviceSpec,
    ) -> Result<DeviceRecord, Error> {
        identity::check_status_reason(&spec.status_reason)?;
        let status = identity::resolve_status(spec.status.as_deref(), Some(&cur.status))?;
        let auth = identity::resolve_auth(spec.authentication.as_ref(), Holder::Device)?;
        let edge = spec.edge.unwrap_or(cur.edge);
        let (device_scope, parent_scopes) =
            self.resolve_scopes(&cur.device_id, edge, &cur.generation_id, spec, Some(&cur))?;
        let status_updated_time = if status != cur.status {
            self.now.clone()
        } else {
            cur.status_updated_time.clone()
        };
        let rec = DeviceRecord {
            etag: self.next_etag()?,
            status,
            status_reason: spec.status_reason.clone().or(cur.status_reason.clone()),
            status_updated_time,
            auth,
            edge,
            device_scope,
            parent_scopes,
            ..cur
        };
        self.save_device(&rec)?;
        if edge {
            self.ensure_system_modules(&rec.device_id)?;
        }
        Ok(rec)
    }

    /// Removes a device with its modules and their twins.
    pub(crate) fn remove_device(&mut self, id: &str) -> Result<(), Error> {
        self.devices.remove(id)?;
        let (lo, hi) = module_range(id);
        self.modules
            .retain_in::<&str, _>(lo.as_str()..hi.as_str(), |_, _| false)?;
        Ok(())
    }

    pub(crate) fn create_module(
        &mut self,
        device: &str,
        module: &str,
        spec: &ModuleSpec,
    ) -> Result<ModuleRecord, Error> {
        check_module_id_writable(module)?;
        if self.module_count(device)? >= MAX_MODULES_PER_DEVICE {
            return Err(Error::TooManyModules(device.to_string()));
        }
        let rec = ModuleRecord {
            device_id: device.to_string(),
            module_id: module.to_string(),
            managed_by: spec.managed_by.clone(),
            generation_id: self.next_generation()?,
            etag: self.next_etag()?,
            auth: identity::resolve_auth(spec.authentication.as_ref(), Holder::Module)?,
            twin: TwinState::new(&self.now),
            presence: Default::default(),
        };
        self.save_module(&rec)?;
        Ok(rec)
    }

    /// Creates module `module` of `device` for deployment content unless it exists, as IoT Hub
    /// does when it applies one (`managedBy: iotEdge`; it never deletes them).
    pub(crate) fn create_deployment_module(
        &mut self,
        device: &str,
        module: &str,
    ) -> Result<(), Error> {
        if self.module(device, module)?.is_none() {
            let spec = ModuleSpec {
                managed_by: Some("iotEdge".into()),
                authentication: None,
            };
            self.create_module(device, module, &spec)?;
        }
        Ok(())
    }

    pub(crate) fn update_module(
        &mut self,
        cur: ModuleRecord,
        spec: &ModuleSpec,
    ) -> Result<ModuleRecord, Error> {
        let rec = ModuleRecord {
            // A module PUT is a full replace (live-hub.md): an omitted `managedBy` is cleared and
            // an omitted `authentication` mints new keys.
            auth: identity::resolve_auth(spec.authentication.as_ref(), Holder::Module)?,
            managed_by: spec.managed_by.clone(),
            etag: self.next_etag()?,
            ..cur
        };
        self.save_module(&rec)?;
        Ok(rec)
    }

    /// The scopes a device ends up with, by live hubs' rules (live-hub.md):
    /// - a leaf takes `deviceScope` = its parent edge device's scope, and `parentScopes` follows;
    ///   `parentScopes` alone attaches nothing; an update without `deviceScope` keeps the parent;
    /// - an edge device's scope is its own, `ms-azure-iot-edge://{id}-{generationId}`, and an
    ///   update must send it back unchanged (omitted, blank or another → 400 "Device scope is
    ///   immutable"); its parent is the one `parentScopes` names, so omitting it detaches;
    /// - leaf → edge: `deviceScope` must be blank (or omitted); the parent's scope → 503;
    /// - edge → leaf: the toggling write loses the parent.
    fn resolve_scopes(
        &self,
        id: &str,
        edge: bool,
        generation: &str,
        spec: &DeviceSpec,
        current: Option<&DeviceRecord>,
    ) -> Result<(Option<String>, Vec<String>), Error> {
        let requested_parents: Vec<String> = spec
            .parent_scopes
            .iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .cloned()
            .collect();
        let given_scope = spec.device_scope.as_deref().map(str::trim);
        let was_edge = current.is_some_and(|c| c.edge);
        if edge {
            let own = identity::edge_scope(id, generation);
            if current.is_some() {
                if was_edge {
                    if given_scope != Some(own.as_str()) {
                        return Err(Error::ArgumentInvalid("Device scope is immutable".into()));
                    }
                } else if given_scope.is_some_and(|s| !s.is_empty()) {
                    return Err(Error::Unavailable(
                        "a device turning into an edge device cannot keep a parent's scope as \
                         deviceScope: send an empty deviceScope and the parent in parentScopes"
                            .into(),
                    ));
                }
            }
            if requested_parents.len() > 1 {
                return Err(Error::ArgumentInvalid(
                    "an edge device has at most one parent".into(),
                ));
            }
            for p in &requested_parents {
                self.check_parent_scope(id, p)?;
            }
            return Ok((Some(own), requested_parents));
        }
        if was_edge {
            return Ok((None, Vec::new()));
        }
        let scope = match given_scope {
            Some(s) => Some(s.to_string()).filter(|s| !s.is_empty()),
            None => current.and_then(|c| c.device_scope.clone()),
        };
        if let Some(s) = &scope {
            self.check_parent_scope(id, s)?;
        }
        let parents = scope.iter().cloned().collect();
        Ok((scope, parents))
    }

    fn check_parent_scope(&self, id: &str, scope: &str) -> Result<(), Error> {
        let parent = identity::scope_device(scope)
            .filter(|p| *p != id)
            .map(|p| self.device(p))
            .transpose()?
            .flatten();
        match parent {
            Some(p) if p.edge && p.device_scope.as_deref() == Some(scope) => Ok(()),
            _ => Err(Error::ArgumentInvalid(
                "deviceScope/parentScopes must name the scope of an existing edge device".into(),
            )),
        }
    }

    /// An edge device gets `$edgeAgent` and `$edgeHub` (`managedBy: iotEdge`, authentication `none`:
    /// the edge runtime authenticates them through the device).
    fn ensure_system_modules(&mut self, device: &str) -> Result<(), Error> {
        for m in ids::EDGE_SYSTEM_MODULES {
            if self.module(device, m)?.is_none() {
                let rec = ModuleRecord {
                    device_id: device.to_string(),
                    module_id: (*m).to_string(),
                    managed_by: Some("iotEdge".into()),
                    generation_id: self.next_generation()?,
                    etag: self.next_etag()?,
                    auth: Auth::none(),
                    twin: TwinState::new(&self.now),
                    presence: Default::default(),
                };
                self.save_module(&rec)?;
            }
        }
        Ok(())
    }
}

pub(super) fn module_exists(device: &str, module: &str) -> Error {
    Error::ModuleAlreadyExists {
        device: device.to_string(),
        module: module.to_string(),
    }
}

pub(super) fn system_module(module: &str) -> Error {
    Error::SystemModule(format!(
        "{module} is a system module: the edge runtime's modules cannot be changed"
    ))
}

pub(crate) fn check_id(id: &str, what: &str) -> Result<(), Error> {
    if ids::is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::ArgumentInvalid(format!(
            "{what} ID must be 1-128 characters of A-Z a-z 0-9 - : . + % _ # * ? ! ( ) , = @ ; $ '"
        )))
    }
}

/// Module IDs starting with `$` belong to IoT Hub: `$edgeAgent`/`$edgeHub` answer 401 as the
/// hub's `SystemModuleModifyUnauthorizedAccess` suggests; other `$` IDs are refused as invalid.
pub(crate) fn check_module_id_writable(module: &str) -> Result<(), Error> {
    check_id(module, "module")?;
    if ids::is_system_module(module) {
        return Err(system_module(module));
    }
    if module.starts_with('$') {
        return Err(Error::ArgumentInvalid(
            "module IDs starting with `$` are reserved for system modules".into(),
        ));
    }
    Ok(())
}

/// Identity deletes need `If-Match`: live hubs answer 412 `Etag missing` without one.
pub(super) fn require_if_match(if_match: &IfMatch) -> Result<(), Error> {
    if *if_match == IfMatch::Absent {
        return Err(Error::PreconditionFailed("Etag missing".into()));
    }
    Ok(())
}
