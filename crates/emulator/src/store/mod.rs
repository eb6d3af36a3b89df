//! Durable hub state in redb, and IoT Hub's rules for identity and twin writes: create-only PUT
//! without `If-Match`, conditional update and delete with etags, and the answers for missing
//! identities. This module sequences each request's rules inside one transaction; the parts:
//! - `persistence`: the tables, transactions ([`Tx`]), counters and record encoding;
//! - `index`: the view queries read, which trails the store with `--index-lag`;
//! - `identities`: identity writes (IDs, scopes, the module limit, edge system modules);
//! - `configurations`: stored configurations, and what the configuration loop reads and records;
//! - `jobs`: import/export job records.
//!
//! Twin write rules are in `twin`, identity field rules in `identity`, the configuration rules and
//! their pass over the twins in `configuration`. The store knows nothing of HTTP: callers pass what
//! it needs (an `If-Match`, whether the caller used SAS) as plain values.
//!
//! Layout (one redb file, `hub.redb`, under the state directory; an in-memory backend without one):
//! - `devices`: device ID → JSON [`DeviceRecord`] (identity and twin together: one read per request);
//! - `modules`: `"{deviceId}\0{moduleId}"` → JSON [`ModuleRecord`]. `\0` sorts below every ID
//!   character, so a device's modules are one contiguous range and module rows page in (device ID,
//!   module ID) order;
//! - `meta`: hub ID, policy keys and the counters behind identity etags and generation IDs;
//! - `configurations`: configuration ID → JSON [`ConfigurationRecord`];
//! - `jobs`: import/export job ID → JSON job record (`jobs`), without the container URI.
//!
//! Every write is one transaction committed with `Durability::Immediate` before the caller answers,
//! so an acknowledged write survives `kill -9`. Redb serialises writers, so read-check-write inside
//! one transaction is atomic. Nothing here scans a table except [`Store::scan`] (queries),
//! [`Store::list_devices`], the configuration loop's [`Store::visit_twin_records`] and an export
//! job's [`Snapshot::visit`].
//!
//! [`ConfigurationRecord`]: crate::configuration::ConfigurationRecord

use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::Value;

use crate::error::Error;
use crate::identity::{DeviceRecord, ModuleRecord};
use crate::twin::ServiceWrite;
use twinops_iothub::ids;
use twinops_iothub::wire;

mod actions;
pub(crate) use actions::RegenerateRequest;
mod configurations;
mod identities;
mod index;
mod jobs;
mod persistence;
#[cfg(test)]
mod tests;

pub(crate) use configurations::PassResult;
pub(crate) use identities::{check_id, check_module_id_writable};
use identities::{module_exists, require_if_match, system_module};
pub(crate) use index::{Identity, Snapshot};
pub(crate) use persistence::Tx;
use persistence::{DEVICES, MODULES, decode_rows, load_device, load_module, module_range};

/// The `If-Match` precondition of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// No header: create-only on identity PUT, unconditional on twin writes.
    Absent,
    /// `*` or `"*"`.
    Any,
    /// A quoted etag, unquoted here. An unquoted header value is compared as if it were quoted:
    /// the real twin endpoint silently ignored unquoted etags, which would quietly turn off
    /// optimistic concurrency in a test double.
    Etag(String),
}

impl IfMatch {
    pub(crate) fn parse(header: Option<&str>) -> IfMatch {
        let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return IfMatch::Absent;
        };
        let inner = h
            .strip_prefix("W/")
            .unwrap_or(h)
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(h);
        if inner == "*" {
            IfMatch::Any
        } else {
            IfMatch::Etag(inner.to_string())
        }
    }

    /// Whether an entity with `etag` satisfies the precondition.
    pub(crate) fn allows(&self, etag: &str) -> bool {
        match self {
            IfMatch::Absent | IfMatch::Any => true,
            IfMatch::Etag(e) => e == etag,
        }
    }
}

/// Which twin a request addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Device(String),
    Module(String, String),
}

/// Identity fields a device write may carry (from a `Device` body or a bulk row).
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceSpec {
    pub(crate) status: Option<String>,
    pub(crate) status_reason: Option<String>,
    pub(crate) authentication: Option<wire::Authentication>,
    pub(crate) edge: Option<bool>,
    pub(crate) device_scope: Option<String>,
    pub(crate) parent_scopes: Option<Vec<String>>,
}

impl From<&wire::Device> for DeviceSpec {
    fn from(d: &wire::Device) -> Self {
        DeviceSpec {
            status: d.status.clone(),
            status_reason: d.status_reason.clone(),
            authentication: d.authentication.clone(),
            edge: d.capabilities.as_ref().map(|c| c.iot_edge),
            device_scope: d.device_scope.clone(),
            parent_scopes: d.parent_scopes.clone(),
        }
    }
}

/// Identity fields a module write may carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModuleSpec {
    pub(crate) managed_by: Option<String>,
    pub(crate) authentication: Option<wire::Authentication>,
}

/// A committed write of desired properties, for the device side (MQTT desired notifications).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DesiredChange {
    pub(crate) target: Target,
    /// The patch as written (a replace's full desired), without `$version`.
    pub(crate) patch: wire::JsonMap,
    /// Desired `$version` after the write.
    pub(crate) version: i64,
}

/// The hub's durable state.
pub(crate) struct Store {
    /// `--index-lag`: the query index trails the store. Declared first so that its snapshots
    /// are dropped before the database.
    index: Option<index::IndexLag>,
    db: Database,
    desired_changes: tokio::sync::broadcast::Sender<DesiredChange>,
}

impl Store {
    /// Every desired write committed from now on (service PATCH/PUT, bulk rows, anything through
    /// [`Tx::update_twin`]), announced after its commit.
    pub(crate) fn subscribe_desired_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<DesiredChange> {
        self.desired_changes.subscribe()
    }

    pub(crate) fn device(&self, id: &str) -> Result<DeviceRecord, Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DEVICES)?;
        load_device(&t, id)?.ok_or_else(|| Error::DeviceNotFound(id.to_string()))
    }

    pub(crate) fn module(&self, device: &str, module: &str) -> Result<ModuleRecord, Error> {
        let txn = self.db.begin_read()?;
        let d = txn.open_table(DEVICES)?;
        let m = txn.open_table(MODULES)?;
        load_module(&m, device, module)?.ok_or_else(|| not_found_module(&d, device, module))
    }

    /// A device's modules in module ID order; 404 when the device does not exist.
    pub(crate) fn modules(&self, device: &str) -> Result<Vec<ModuleRecord>, Error> {
        let txn = self.db.begin_read()?;
        let d = txn.open_table(DEVICES)?;
        if d.get(device)?.is_none() {
            return Err(Error::DeviceNotFound(device.to_string()));
        }
        let m = txn.open_table(MODULES)?;
        let (lo, hi) = module_range(device);
        decode_rows(m.range::<&str>(lo.as_str()..hi.as_str())?)
    }

    /// Up to `top` devices in ID order (`GET /devices?top=`).
    pub(crate) fn list_devices(&self, top: usize) -> Result<Vec<DeviceRecord>, Error> {
        let txn = self.db.begin_read()?;
        let d = txn.open_table(DEVICES)?;
        decode_rows(d.iter()?.take(top))
    }

    /// `PUT /devices/{id}`: create without `If-Match`, else a conditional update.
    pub(crate) fn put_device(
        &self,
        id: &str,
        body: &wire::Device,
        if_match: &IfMatch,
    ) -> Result<DeviceRecord, Error> {
        check_id(id, "device")?;
        if !body.device_id.is_empty() && body.device_id != id {
            return Err(Error::ArgumentInvalid(
                "deviceId in the body differs from the one in the path".into(),
            ));
        }
        let spec = DeviceSpec::from(body);
        self.write(|tx| {
            let current = tx.device(id)?;
            match (if_match, current) {
                (IfMatch::Absent, Some(_)) => Err(Error::DeviceAlreadyExists(id.to_string())),
                (IfMatch::Absent, None) => tx.create_device(id, &spec),
                (_, None) => Err(Error::DeviceNotFound(id.to_string())),
                (m, Some(cur)) => {
                    if !m.allows(&cur.etag) {
                        return Err(Error::PreconditionFailed(format!(
                            "etag does not match device {id}"
                        )));
                    }
                    tx.update_device(cur, &spec)
                }
            }
        })
    }

    /// `DELETE /devices/{id}`: needs `If-Match`; removes the device's modules and twins too.
    pub(crate) fn delete_device(&self, id: &str, if_match: &IfMatch) -> Result<(), Error> {
        require_if_match(if_match)?;
        self.write(|tx| {
            let cur = tx
                .device(id)?
                .ok_or_else(|| Error::DeviceNotFound(id.to_string()))?;
            if !if_match.allows(&cur.etag) {
                return Err(Error::PreconditionFailed(format!(
                    "etag does not match device {id}"
                )));
            }
            tx.remove_device(id)
        })
    }

    /// `PUT /devices/{id}/modules/{mid}`; the flag says whether it was created.
    pub(crate) fn put_module(
        &self,
        device: &str,
        module: &str,
        body: &wire::Module,
        if_match: &IfMatch,
    ) -> Result<(ModuleRecord, bool), Error> {
        check_id(device, "device")?;
        check_id(module, "module")?;
        if module.starts_with('$') {
            // Creating any `$` ID is refused as invalid; changing a system module is not allowed.
            if *if_match != IfMatch::Absent && ids::is_system_module(module) {
                return Err(system_module(module));
            }
            return Err(Error::ArgumentInvalid(
                "module IDs starting with `$` are reserved for system modules".into(),
            ));
        }
        if (!body.module_id.is_empty() && body.module_id != module)
            || (!body.device_id.is_empty() && body.device_id != device)
        {
            return Err(Error::ArgumentInvalid(
                "deviceId or moduleId in the body differs from the path".into(),
            ));
        }
        let spec = ModuleSpec {
            managed_by: body.managed_by.clone(),
            authentication: body.authentication.clone(),
        };
        self.write(|tx| {
            if tx.device(device)?.is_none() {
                return Err(Error::DeviceNotFound(device.to_string()));
            }
            match (if_match, tx.module(device, module)?) {
                (IfMatch::Absent, Some(_)) => Err(module_exists(device, module)),
                (IfMatch::Absent, None) => Ok((tx.create_module(device, module, &spec)?, true)),
                (_, None) => Err(Error::ModuleNotFound {
                    device: device.to_string(),
                    module: module.to_string(),
                }),
                (m, Some(cur)) => {
                    if !m.allows(&cur.etag) {
                        return Err(Error::PreconditionFailed(format!(
                            "etag does not match module {device}/{module}"
                        )));
                    }
                    Ok((tx.update_module(cur, &spec)?, false))
                }
            }
        })
    }

    pub(crate) fn delete_module(
        &self,
        device: &str,
        module: &str,
        if_match: &IfMatch,
    ) -> Result<(), Error> {
        if ids::is_system_module(module) {
            return Err(system_module(module));
        }
        require_if_match(if_match)?;
        self.write(|tx| {
            let Some(cur) = tx.module(device, module)? else {
                return Err(if tx.device(device)?.is_none() {
                    Error::DeviceNotFound(device.to_string())
                } else {
                    Error::ModuleNotFound {
                        device: device.to_string(),
                        module: module.to_string(),
                    }
                });
            };
            if !if_match.allows(&cur.etag) {
                return Err(Error::PreconditionFailed(format!(
                    "etag does not match module {device}/{module}"
                )));
            }
            tx.remove_module(device, module)
        })
    }

    /// The twin document of a device or module.
    pub(crate) fn twin(&self, target: &Target) -> Result<Value, Error> {
        match target {
            Target::Device(d) => Ok(self.device(d)?.twin_json()),
            // A missing module twin is `DeviceNotFound` on live hubs, not `ModuleNotFound`.
            Target::Module(d, m) => match self.module(d, m) {
                Err(Error::ModuleNotFound { device, .. }) => Err(Error::DeviceNotFound(device)),
                other => Ok(other?.twin_json()),
            },
        }
    }

    /// `PATCH` (merge) or `PUT` (replace) of a twin's tags and desired properties.
    pub(crate) fn write_twin(
        &self,
        target: &Target,
        replace: bool,
        write: ServiceWrite,
        if_match: &IfMatch,
    ) -> Result<Value, Error> {
        self.write(|tx| {
            let now = tx.now.clone();
            tx.update_twin(target, |twin| {
                if !if_match.allows(&twin.etag()) {
                    return Err(Error::PreconditionFailed("twin etag does not match".into()));
                }
                if replace {
                    twin.replace(write, &now)
                } else {
                    twin.patch(write, &now)
                }
            })
        })
    }

    /// A reported-properties merge patch, as if the device had sent it.
    pub(crate) fn patch_reported(
        &self,
        target: &Target,
        patch: &wire::JsonMap,
    ) -> Result<Value, Error> {
        self.write(|tx| {
            let now = tx.now.clone();
            tx.update_twin(target, |twin| twin.patch_reported(patch, &now))
        })
    }
}

/// 404 for a missing module: `DeviceNotFound` when its device is missing too.
fn not_found_module(
    devices: &impl ReadableTable<&'static str, &'static [u8]>,
    device: &str,
    module: &str,
) -> Error {
    match devices.get(device) {
        Ok(Some(_)) => Error::ModuleNotFound {
            device: device.to_string(),
            module: module.to_string(),
        },
        Ok(None) => Error::DeviceNotFound(device.to_string()),
        Err(e) => Error::from(redb::Error::from(e)),
    }
}
