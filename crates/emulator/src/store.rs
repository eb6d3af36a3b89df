//! Durable hub state in redb, and IoT Hub's rules for identity writes: create-only PUT without
//! `If-Match`, conditional update and delete with etags, generation IDs, the module limit, edge
//! devices' system modules and scopes. Twin write rules are in `twin`, identity field rules in
//! `identity`; this module sequences them inside transactions.
//!
//! Layout (one redb file, `hub.redb`, under the state directory; an in-memory backend without one):
//! - `devices`: device ID → JSON [`DeviceRecord`] (identity and twin together: one read per request);
//! - `modules`: `"{deviceId}\0{moduleId}"` → JSON [`ModuleRecord`]. `\0` sorts below every ID
//!   character, so a device's modules are one contiguous range and module rows page in (device ID,
//!   module ID) order;
//! - `meta`: hub ID, policy keys and the counters behind identity etags and generation IDs;
//! - `configurations`: configuration ID → JSON [`ConfigurationRecord`].
//!
//! Every write is one transaction committed with `Durability::Immediate` before the caller answers,
//! so an acknowledged write survives `kill -9`. Redb serialises writers, so read-check-write inside
//! one transaction is atomic. Nothing here scans a table except [`Store::scan`] (queries),
//! [`Store::list_devices`] and [`Store::reconcile_configurations`] (the configuration loop).

use std::collections::HashMap;
use std::ops::{Bound, ControlFlow};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::clock::{now, now_ticks};
use super::configuration::{self, Compiled, ConfigurationRecord};
use super::error::Error;
use super::identity::{self, Auth, DeviceRecord, Holder, ModuleRecord};
use super::query::Collection;
use super::twin::{ServiceWrite, TwinState};
use twinops_iothub::ids::{self, MAX_MODULES_PER_DEVICE};
use twinops_iothub::wire;

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const CONFIGURATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("configurations");

const ETAG_COUNTER: &str = "counter:identity-etag";
const LAST_GENERATION: &str = "counter:generation";
const CONFIGURATION_SEQ: &str = "counter:configuration";
/// Set when a configuration is deleted: twins may still carry its status.
const SWEEP: &str = "configurations:sweep";

/// The key of a module row.
pub(crate) fn module_key(device: &str, module: &str) -> String {
    format!("{device}\0{module}")
}

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

/// Desired changes queued for slow listeners before the oldest are dropped (they then see
/// `Lagged`, and the MQTT side closes the connections it could not serve).
const DESIRED_CHANGES_BUFFER: usize = 4096;

/// The hub's durable state.
pub(crate) struct Store {
    /// `--index-lag`: the query index trails the store. Declared first so that its snapshots
    /// are dropped before the database.
    index: Option<IndexLag>,
    db: Database,
    desired_changes: tokio::sync::broadcast::Sender<DesiredChange>,
}

/// A lagging query index, as IoT Hub's is eventually consistent (live-hub.md): queries read a
/// snapshot of the store (a redb read transaction, which keeps its view) taken at least `lag`
/// ago, so new writes appear only after `lag` and deleted identities stay in results ("ghosts")
/// for as long. Snapshots are taken every `lag / 10` (10 ms to 1 s); only the newest one old
/// enough and the younger ones are kept.
struct IndexLag {
    lag: std::time::Duration,
    snapshots: std::sync::Mutex<
        std::collections::VecDeque<(std::time::Instant, std::sync::Arc<redb::ReadTransaction>)>,
    >,
}

impl Store {
    /// Opens (or creates) `dir/hub.redb`, or an in-memory database without a directory.
    pub(crate) fn open(dir: Option<&Path>) -> anyhow::Result<Store> {
        use anyhow::Context;
        let db = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating state directory {}", dir.display()))?;
                let path = dir.join("hub.redb");
                Database::create(&path).with_context(|| format!("opening {}", path.display()))?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .context("creating the in-memory database")?,
        };
        let store = Store {
            db,
            desired_changes: tokio::sync::broadcast::channel(DESIRED_CHANGES_BUFFER).0,
            index: None,
        };
        store
            .write(|_| Ok(()))
            .map_err(|e| anyhow::anyhow!("initialising the state: {e}"))?;
        Ok(store)
    }

    /// Makes queries trail the store by `lag` (zero: queries see every committed write).
    pub(crate) fn set_index_lag(&mut self, lag: std::time::Duration) {
        self.index = (!lag.is_zero()).then(|| IndexLag {
            lag,
            snapshots: Default::default(),
        });
    }

    /// How often the lagging index takes a snapshot (`None` without a lag).
    pub(crate) fn index_step(&self) -> Option<std::time::Duration> {
        let lag = self.index.as_ref()?.lag;
        Some((lag / 10).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        ))
    }

    /// Takes a snapshot for the lagging index and forgets the ones no query will read again.
    pub(crate) fn snapshot_index(&self) -> Result<(), Error> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let txn = std::sync::Arc::new(self.db.begin_read()?);
        let now = std::time::Instant::now();
        let mut snaps = index
            .snapshots
            .lock()
            .map_err(|_| Error::Server("the query index lock is poisoned".into()))?;
        snaps.push_back((now, txn));
        while snaps
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= index.lag)
        {
            snaps.pop_front();
        }
        Ok(())
    }

    /// The view queries read: the store now, or with `--index-lag` the newest snapshot at least
    /// that old (the oldest one while the hub is younger than the lag).
    fn index_view(&self) -> Result<std::sync::Arc<redb::ReadTransaction>, Error> {
        if let Some(index) = &self.index {
            let snaps = index
                .snapshots
                .lock()
                .map_err(|_| Error::Server("the query index lock is poisoned".into()))?;
            let now = std::time::Instant::now();
            let old_enough = snaps
                .iter()
                .rev()
                .find(|(t, _)| now.duration_since(*t) >= index.lag)
                .or(snaps.front());
            if let Some((_, txn)) = old_enough {
                return Ok(txn.clone());
            }
        }
        Ok(std::sync::Arc::new(self.db.begin_read()?))
    }

    /// Every desired write committed from now on (service PATCH/PUT, bulk rows, anything through
    /// [`Tx::update_twin`]), announced after its commit.
    pub(crate) fn subscribe_desired_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<DesiredChange> {
        self.desired_changes.subscribe()
    }

    /// Runs `f` in one write transaction, committed durably when it returns `Ok`; then announces
    /// its desired changes (a send without listeners is a no-op).
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let out = {
            let mut tx = Tx {
                devices: txn.open_table(DEVICES)?,
                modules: txn.open_table(MODULES)?,
                meta: txn.open_table(META)?,
                configurations: txn.open_table(CONFIGURATIONS)?,
                now: now(),
                desired_changes: Vec::new(),
            };
            f(&mut tx).map(|v| (v, tx.desired_changes))
        };
        match out {
            Ok((v, changes)) => {
                txn.commit()?;
                for c in changes {
                    let _ = self.desired_changes.send(c);
                }
                Ok(v)
            }
            Err(e) => {
                txn.abort()?;
                Err(e)
            }
        }
    }

    /// A meta value, created by `init` (and committed) when absent.
    pub(crate) fn meta_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, Error> {
        self.write(|tx| {
            if let Some(v) = tx.meta.get(key)? {
                return Ok(v.value().to_string());
            }
            let v = init();
            tx.meta.insert(key, v.as_str())?;
            Ok(v)
        })
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
        let (lo, hi) = (format!("{device}\0"), format!("{device}\u{1}"));
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

    /// What live hubs answer before any module identity operation (live-hub.md): under SAS,
    /// even `iothubowner`, a device that is missing or disabled answers 401
    /// `IotHubUnauthorizedAccess`; under Entra ID (the bearer token) a missing device is 404 and
    /// a disabled one works. Module twins do not pass here.
    pub(crate) fn module_device_access(
        &self,
        device: &str,
        caller: crate::server::Caller,
    ) -> Result<(), Error> {
        use crate::server::Caller;
        let refused = || Error::Unauthorized(format!("device {device} is not accessible"));
        match (self.device(device), caller) {
            (Ok(d), Caller::Sas) if d.status == "disabled" => Err(refused()),
            (Err(Error::DeviceNotFound(_)), Caller::Sas) => Err(refused()),
            (Err(e), _) => Err(e),
            (Ok(_), _) => Ok(()),
        }
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
            tx.modules.remove(module_key(device, module).as_str())?;
            Ok(())
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

    /// Visits twins of devices (or modules) in key order, starting after the key `after`.
    /// `visit` gets each row's key and twin document and says whether to go on.
    pub(crate) fn scan(
        &self,
        modules: bool,
        after: Option<&str>,
        mut visit: impl FnMut(&str, Value) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let txn = self.index_view()?;
        let t = txn.open_table(if modules { MODULES } else { DEVICES })?;
        let range = match after {
            Some(k) => t.range::<&str>((Bound::Excluded(k), Bound::Unbounded))?,
            None => t.range::<&str>(..)?,
        };
        for row in range {
            let (k, v) = row?;
            let twin = if modules {
                decode::<ModuleRecord>(v.value())?.twin_json()
            } else {
                decode::<DeviceRecord>(v.value())?.twin_json()
            };
            if visit(k.value(), twin).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Automatic configurations: CRUD and the loop's reconcile pass (rules in `configuration`).
impl Store {
    pub(crate) fn configuration(&self, id: &str) -> Result<ConfigurationRecord, Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONFIGURATIONS)?;
        t.get(id)?
            .map(|v| decode(v.value()))
            .transpose()?
            .ok_or_else(|| Error::ConfigurationNotFound(id.to_string()))
    }

    /// Up to `top` configurations in ID order.
    pub(crate) fn list_configurations(
        &self,
        top: usize,
    ) -> Result<Vec<ConfigurationRecord>, Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONFIGURATIONS)?;
        decode_rows(t.iter()?.take(top))
    }

    /// `PUT /configurations/{id}`: create without `If-Match`, else a conditional update of the
    /// mutable parts (`targetCondition`, `labels`, `priority`, `metrics`); `id` and `content` stay.
    pub(crate) fn put_configuration(
        &self,
        id: &str,
        body: &wire::Configuration,
        if_match: &IfMatch,
    ) -> Result<ConfigurationRecord, Error> {
        configuration::check_id(id)?;
        // Live hubs need `content` in every body, updates included (where it is then ignored).
        if body.content.is_none() {
            return Err(Error::ArgumentInvalid(
                "a configuration body needs content".into(),
            ));
        }
        if !body.id.is_empty() && body.id != id {
            return Err(Error::ArgumentInvalid(
                "id in the body differs from the one in the path".into(),
            ));
        }
        self.write(|tx| {
            let current = tx
                .configurations
                .get(id)?
                .map(|v| decode::<ConfigurationRecord>(v.value()))
                .transpose()?;
            let rec = match (if_match, current) {
                (IfMatch::Absent, Some(_)) => {
                    return Err(Error::ConfigurationAlreadyExists(id.to_string()));
                }
                (IfMatch::Absent, None) => {
                    if tx.configurations.iter()?.count() >= configuration::MAX_CONFIGURATIONS {
                        return Err(Error::ArgumentInvalid(format!(
                            "the hub already holds {} configurations",
                            configuration::MAX_CONFIGURATIONS
                        )));
                    }
                    let content = body.content.clone().unwrap_or_default();
                    let kind = configuration::content_kind(&content)?;
                    let m = configuration::mutable(body, kind)?;
                    let seq = tx.counter(CONFIGURATION_SEQ)? + 1;
                    tx.meta
                        .insert(CONFIGURATION_SEQ, seq.to_string().as_str())?;
                    ConfigurationRecord {
                        id: id.to_string(),
                        schema_version: body.schema_version.clone(),
                        labels: m.labels,
                        content,
                        content_type: body.content_type.clone(),
                        target_condition: m.target_condition,
                        priority: m.priority,
                        created_time_utc: tx.now.clone(),
                        last_updated_time_utc: tx.now.clone(),
                        etag: tx.next_etag()?,
                        metric_queries: m.metric_queries,
                        metric_results: wire::JsonMap::new(),
                        targeted_count: 0,
                        applied_count: 0,
                        seq,
                    }
                }
                (_, None) => return Err(Error::ConfigurationNotFound(id.to_string())),
                (m, Some(cur)) => {
                    if !m.allows(&cur.etag) {
                        return Err(Error::PreconditionFailed(format!(
                            "etag does not match configuration {id}"
                        )));
                    }
                    let m = configuration::mutable(body, cur.kind())?;
                    let mut results = cur.metric_results.clone();
                    results.retain(|k, _| m.metric_queries.contains_key(k));
                    ConfigurationRecord {
                        labels: m.labels,
                        target_condition: m.target_condition,
                        priority: m.priority,
                        metric_queries: m.metric_queries,
                        metric_results: results,
                        last_updated_time_utc: tx.now.clone(),
                        etag: tx.next_etag()?,
                        ..cur
                    }
                }
            };
            let bytes = encode(&rec)?;
            tx.configurations.insert(id, bytes.as_slice())?;
            Ok(rec)
        })
    }

    /// `DELETE /configurations/{id}`: works without `If-Match` (live-hub.md); one that is given
    /// must match. The next reconcile pass removes the
    /// configuration's status from twins (their desired values stay).
    pub(crate) fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), Error> {
        self.write(|tx| {
            let cur: ConfigurationRecord = tx
                .configurations
                .get(id)?
                .map(|v| decode(v.value()))
                .transpose()?
                .ok_or_else(|| Error::ConfigurationNotFound(id.to_string()))?;
            if !if_match.allows(&cur.etag) {
                return Err(Error::PreconditionFailed(format!(
                    "etag does not match configuration {id}"
                )));
            }
            tx.configurations.remove(id)?;
            // Twins may hold its status: the next pass visits them even if no configuration is left.
            let mark = tx.now.clone();
            tx.meta.insert(SWEEP, mark.as_str())?;
            Ok(())
        })
    }

    /// One pass of the configuration loop: every configuration's content into the twins it
    /// targets, statuses, and the configurations' metrics. Reads first and writes only the twins
    /// that change (in batches, so requests interleave), so an idle hub only reads.
    pub(crate) fn reconcile_configurations(&self) -> Result<(), Error> {
        let (records, sweep) = {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(CONFIGURATIONS)?;
            let mut records = Vec::new();
            for row in t.iter()? {
                let (_, v) = row?;
                records.push(decode::<ConfigurationRecord>(v.value())?);
            }
            let meta = txn.open_table(META)?;
            let sweep = meta.get(SWEEP)?.map(|v| v.value().to_string());
            (records, sweep)
        };
        if records.is_empty() && sweep.is_none() {
            return Ok(());
        }
        let mut compiled = Vec::new();
        for r in &records {
            match Compiled::new(r) {
                Ok(c) => compiled.push(c),
                Err(e) => {
                    tracing::warn!(configuration = %r.id, error = %e, "configuration skipped")
                }
            }
        }
        configuration::by_precedence(&mut compiled);
        let mut metrics: Vec<(String, String, crate::query::Query, u64)> = Vec::new();
        for r in &records {
            for (name, q) in &r.metric_queries {
                if let Some(q) = q.as_str().and_then(|q| crate::query::parse(q).ok()) {
                    metrics.push((r.id.clone(), name.clone(), q, 0));
                }
            }
        }
        let mut counts: HashMap<String, (i64, i64)> = HashMap::new();
        for modules in [false, true] {
            let collection = if modules {
                Collection::Modules
            } else {
                Collection::Devices
            };
            let needed = sweep.is_some()
                || compiled.iter().any(|c| c.target.modules == modules)
                || metrics.iter().any(|m| m.2.collection == collection);
            if !needed {
                continue;
            }
            let mut changed = Vec::new();
            {
                let txn = self.db.begin_read()?;
                let t = txn.open_table(if modules { MODULES } else { DEVICES })?;
                let now = now();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let mut rec = AnyRecord::decode(v.value(), modules)?;
                    let twin = rec.twin_json();
                    let out =
                        configuration::reconcile(&twin, &rec.twin().desired, modules, &compiled);
                    for id in &out.targeted {
                        counts.entry(id.clone()).or_default().0 += 1;
                    }
                    for (id, s) in &out.statuses {
                        if s["status"] == configuration::APPLIED {
                            counts.entry(id.clone()).or_default().1 += 1;
                        }
                    }
                    let changes = out.changes(&rec.twin().configurations);
                    if changes {
                        changed.push(k.value().to_string());
                    }
                    if metrics.iter().any(|m| m.2.collection == collection) {
                        let after = if changes {
                            apply_outcome(rec.twin_mut(), out, &now);
                            rec.twin_json()
                        } else {
                            twin
                        };
                        for m in metrics.iter_mut().filter(|m| m.2.collection == collection) {
                            if m.2.matches(&after) {
                                m.3 += 1;
                            }
                        }
                    }
                }
            }
            for batch in changed.chunks(500) {
                self.write(|tx| {
                    let now = tx.now.clone();
                    for key in batch {
                        let table = if modules {
                            &mut tx.modules
                        } else {
                            &mut tx.devices
                        };
                        let Some(mut rec) = table
                            .get(key.as_str())?
                            .map(|v| AnyRecord::decode(v.value(), modules))
                            .transpose()?
                        else {
                            continue;
                        };
                        let out = configuration::reconcile(
                            &rec.twin_json(),
                            &rec.twin().desired,
                            modules,
                            &compiled,
                        );
                        if !out.changes(&rec.twin().configurations) {
                            continue;
                        }
                        apply_outcome(rec.twin_mut(), out, &now);
                        // Connected devices hear of configuration writes like any other desired write.
                        if let Some(patch) = rec.twin_mut().desired_written.take() {
                            let target = match key.split_once('\0') {
                                Some((d, m)) => Target::Module(d.to_string(), m.to_string()),
                                None => Target::Device(key.clone()),
                            };
                            let version = rec.twin().desired_version;
                            tx.desired_changes.push(DesiredChange {
                                target,
                                patch,
                                version,
                            });
                        }
                        let bytes = rec.encode()?;
                        table.insert(key.as_str(), bytes.as_slice())?;
                    }
                    Ok(())
                })?;
            }
        }
        self.write(|tx| {
            for r in &records {
                let Some(mut cur) = tx
                    .configurations
                    .get(r.id.as_str())?
                    .map(|v| decode::<ConfigurationRecord>(v.value()))
                    .transpose()?
                else {
                    continue;
                };
                let (targeted, applied) = counts.get(&r.id).copied().unwrap_or_default();
                let mut results = wire::JsonMap::new();
                for m in metrics.iter().filter(|m| m.0 == r.id) {
                    results.insert(m.1.clone(), Value::from(m.3));
                }
                if (cur.targeted_count, cur.applied_count) == (targeted, applied)
                    && cur.metric_results == results
                {
                    continue;
                }
                cur.targeted_count = targeted;
                cur.applied_count = applied;
                cur.metric_results = results;
                let bytes = encode(&cur)?;
                tx.configurations.insert(r.id.as_str(), bytes.as_slice())?;
            }
            // A delete during this pass marked the sweep again: keep that mark for the next pass.
            if let Some(mark) = &sweep {
                let still = tx.meta.get(SWEEP)?.map(|v| v.value() == mark.as_str());
                if still == Some(true) {
                    tx.meta.remove(SWEEP)?;
                }
            }
            Ok(())
        })
    }
}

/// A device or module record, for code that treats both twins alike.
enum AnyRecord {
    Device(DeviceRecord),
    Module(ModuleRecord),
}

impl AnyRecord {
    fn decode(bytes: &[u8], module: bool) -> Result<AnyRecord, Error> {
        Ok(if module {
            AnyRecord::Module(decode(bytes)?)
        } else {
            AnyRecord::Device(decode(bytes)?)
        })
    }

    fn encode(&self) -> Result<Vec<u8>, Error> {
        match self {
            AnyRecord::Device(r) => encode(r),
            AnyRecord::Module(r) => encode(r),
        }
    }

    fn twin(&self) -> &TwinState {
        match self {
            AnyRecord::Device(r) => &r.twin,
            AnyRecord::Module(r) => &r.twin,
        }
    }

    fn twin_mut(&mut self) -> &mut TwinState {
        match self {
            AnyRecord::Device(r) => &mut r.twin,
            AnyRecord::Module(r) => &mut r.twin,
        }
    }

    fn twin_json(&self) -> Value {
        match self {
            AnyRecord::Device(r) => r.twin_json(),
            AnyRecord::Module(r) => r.twin_json(),
        }
    }
}

/// Writes an outcome into a twin: the desired patch as a real service write (etag, versions and
/// metadata move), then the statuses (which alone move nothing). Content the twin's limits refuse
/// is not written and its configurations count as targeted only.
fn apply_outcome(twin: &mut TwinState, out: configuration::Outcome, now: &str) {
    let out = if out.patch.is_empty() {
        out
    } else {
        let write = ServiceWrite {
            tags: None,
            desired: Some(out.patch.clone()),
        };
        match twin.patch(write, now) {
            Ok(()) => out,
            Err(e) => {
                tracing::warn!(error = %e, "configuration content refused by the twin's limits");
                out.unapplied()
            }
        }
    };
    twin.configurations = out.statuses;
}

impl Store {
    /// Visits every device row, then every module row, raw: `(is_module, key, record bytes)`.
    /// For whole-hub housekeeping (presence reset, the simulated fleet's roster).
    pub(crate) fn scan_raw(&self, mut visit: impl FnMut(bool, &str, &[u8])) -> Result<(), Error> {
        let txn = self.db.begin_read()?;
        for (modules, table) in [(false, DEVICES), (true, MODULES)] {
            let t = txn.open_table(table)?;
            for row in t.iter()? {
                let (k, v) = row?;
                visit(modules, k.value(), v.value());
            }
        }
        Ok(())
    }
}

/// An open write transaction: the three tables, the time of the write, and the desired changes
/// to announce once it commits.
pub(super) struct Tx<'t> {
    pub(super) devices: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) modules: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) meta: redb::Table<'t, &'static str, &'static str>,
    pub(super) configurations: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) now: String,
    desired_changes: Vec<DesiredChange>,
}

impl Tx<'_> {
    pub(super) fn device(&self, id: &str) -> Result<Option<DeviceRecord>, Error> {
        load_device(&self.devices, id)
    }

    pub(super) fn module(&self, device: &str, module: &str) -> Result<Option<ModuleRecord>, Error> {
        load_module(&self.modules, device, module)
    }

    pub(super) fn save_device(&mut self, rec: &DeviceRecord) -> Result<(), Error> {
        let bytes = encode(rec)?;
        self.devices
            .insert(rec.device_id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    pub(super) fn save_module(&mut self, rec: &ModuleRecord) -> Result<(), Error> {
        let bytes = encode(rec)?;
        let key = module_key(&rec.device_id, &rec.module_id);
        self.modules.insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    fn module_count(&self, device: &str) -> Result<usize, Error> {
        let (lo, hi) = (format!("{device}\0"), format!("{device}\u{1}"));
        Ok(self
            .modules
            .range::<&str>(lo.as_str()..hi.as_str())?
            .count())
    }

    fn counter(&mut self, key: &str) -> Result<u64, Error> {
        let n = match self.meta.get(key)? {
            Some(v) => v.value().parse::<u64>().unwrap_or(0),
            None => 0,
        };
        Ok(n)
    }

    /// A new identity etag: base64 of a hub-wide decimal counter, like IoT Hub's `ODgxNTgwOA==`.
    /// Hub-wide so that a re-created identity never repeats an old etag.
    fn next_etag(&mut self) -> Result<String, Error> {
        let n = self.counter(ETAG_COUNTER)? + 1;
        self.meta.insert(ETAG_COUNTER, n.to_string().as_str())?;
        Ok(B64.encode(n.to_string()))
    }

    /// A new generation ID: .NET ticks of now, strictly increasing across the hub.
    fn next_generation(&mut self) -> Result<String, Error> {
        let last = self.counter(LAST_GENERATION)?;
        let n = now_ticks().max(last + 1);
        self.meta.insert(LAST_GENERATION, n.to_string().as_str())?;
        Ok(n.to_string())
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

    pub(super) fn create_device(
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
    pub(super) fn update_device(
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

    pub(super) fn remove_device(&mut self, id: &str) -> Result<(), Error> {
        self.devices.remove(id)?;
        let (lo, hi) = (format!("{id}\0"), format!("{id}\u{1}"));
        self.modules
            .retain_in::<&str, _>(lo.as_str()..hi.as_str(), |_, _| false)?;
        Ok(())
    }

    pub(super) fn create_module(
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

    pub(super) fn update_module(
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

    /// Loads a twin's record, lets `f` change the twin, saves it and returns the new document.
    /// A write that carried desired properties is queued for announcement after the commit.
    pub(super) fn update_twin(
        &mut self,
        target: &Target,
        f: impl FnOnce(&mut TwinState) -> Result<(), Error>,
    ) -> Result<Value, Error> {
        let (doc, twin) = match target {
            Target::Device(d) => {
                let mut rec = self
                    .device(d)?
                    .ok_or_else(|| Error::DeviceNotFound(d.clone()))?;
                f(&mut rec.twin)?;
                let written = rec.twin.desired_written.take();
                self.save_device(&rec)?;
                (rec.twin_json(), (written, rec.twin.desired_version))
            }
            Target::Module(d, m) => {
                let Some(mut rec) = self.module(d, m)? else {
                    return Err(Error::DeviceNotFound(d.clone()));
                };
                f(&mut rec.twin)?;
                let written = rec.twin.desired_written.take();
                self.save_module(&rec)?;
                (rec.twin_json(), (written, rec.twin.desired_version))
            }
        };
        if let (Some(patch), version) = twin {
            self.desired_changes.push(DesiredChange {
                target: target.clone(),
                patch,
                version,
            });
        }
        Ok(doc)
    }
}

fn load_device(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<DeviceRecord>, Error> {
    t.get(id)?.map(|v| decode(v.value())).transpose()
}

fn load_module(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    device: &str,
    module: &str,
) -> Result<Option<ModuleRecord>, Error> {
    t.get(module_key(device, module).as_str())?
        .map(|v| decode(v.value()))
        .transpose()
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

fn module_exists(device: &str, module: &str) -> Error {
    Error::ModuleAlreadyExists {
        device: device.to_string(),
        module: module.to_string(),
    }
}

fn system_module(module: &str) -> Error {
    Error::SystemModule(format!(
        "{module} is a system module: the edge runtime's modules cannot be changed"
    ))
}

pub(super) fn check_id(id: &str, what: &str) -> Result<(), Error> {
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
pub(super) fn check_module_id_writable(module: &str) -> Result<(), Error> {
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
fn require_if_match(if_match: &IfMatch) -> Result<(), Error> {
    if *if_match == IfMatch::Absent {
        return Err(Error::PreconditionFailed("Etag missing".into()));
    }
    Ok(())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Server(format!("encoding a record: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Server(format!("decoding a record: {e}")))
}

/// The decoded values of rows read in key order (a range, or the first rows of a table).
fn decode_rows<'a, T: serde::de::DeserializeOwned>(
    rows: impl Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, &'static str>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
) -> Result<Vec<T>, Error> {
    rows.map(|row| decode(row?.1.value())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Store {
        Store::open(None).unwrap()
    }

    fn device(id: &str) -> wire::Device {
        wire::Device {
            device_id: id.into(),
            ..Default::default()
        }
    }

    fn module(d: &str, m: &str) -> wire::Module {
        wire::Module {
            device_id: d.into(),
            module_id: m.into(),
            ..Default::default()
        }
    }

    fn etag(e: &str) -> IfMatch {
        IfMatch::Etag(e.into())
    }

    #[test]
    fn if_match_accepts_quoted_bare_and_star_forms() {
        assert_eq!(IfMatch::parse(None), IfMatch::Absent);
        assert_eq!(IfMatch::parse(Some("*")), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some("\"*\"")), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some("\"AAAA=\"")), etag("AAAA="));
        assert_eq!(IfMatch::parse(Some("AAAA=")), etag("AAAA="));
        assert!(!etag("a").allows("b"));
    }

    #[test]
    fn device_put_is_create_only_without_if_match() {
        let s = store();
        let d = s.put_device("d1", &device("d1"), &IfMatch::Absent).unwrap();
        assert_eq!(d.status, "enabled");
        assert_eq!(d.twin.etag(), "AAAAAAAAAAE=");
        assert!(matches!(
            s.put_device("d1", &device("d1"), &IfMatch::Absent),
            Err(Error::DeviceAlreadyExists(_))
        ));
        assert!(matches!(
            s.put_device("d2", &device("d2"), &IfMatch::Any),
            Err(Error::DeviceNotFound(_))
        ));
        assert!(matches!(
            s.put_device("d1", &device("d1"), &etag("stale")),
            Err(Error::PreconditionFailed(_))
        ));
        let mut body = device("d1");
        body.status = Some("disabled".into());
        let u = s.put_device("d1", &body, &etag(&d.etag)).unwrap();
        assert_ne!(u.etag, d.etag);
        assert_eq!(u.status, "disabled");
        assert_ne!(
            u.auth.primary_key, d.auth.primary_key,
            "an update without authentication mints new keys, as live hubs do"
        );
        assert_eq!(u.generation_id, d.generation_id);
        assert_ne!(u.status_updated_time, identity::NEVER);
    }

    #[test]
    fn invalid_ids_are_refused() {
        let s = store();
        assert!(matches!(
            s.put_device("has space", &device(""), &IfMatch::Absent),
            Err(Error::ArgumentInvalid(_))
        ));
        assert!(matches!(
            s.put_device("a", &device("b"), &IfMatch::Absent),
            Err(Error::ArgumentInvalid(_))
        ));
    }

    #[test]
    fn delete_needs_if_match_and_takes_modules_along() {
        let s = store();
        let d = s.put_device("d1", &device("d1"), &IfMatch::Absent).unwrap();
        s.put_module("d1", "m1", &module("d1", "m1"), &IfMatch::Absent)
            .unwrap();
        s.put_device("d10", &device("d10"), &IfMatch::Absent)
            .unwrap();
        s.put_module("d10", "m1", &module("d10", "m1"), &IfMatch::Absent)
            .unwrap();
        assert!(matches!(
            s.delete_device("d1", &IfMatch::Absent),
            Err(Error::PreconditionFailed(_))
        ));
        assert!(matches!(
            s.delete_device("d1", &etag("nope")),
            Err(Error::PreconditionFailed(_))
        ));
        s.delete_device("d1", &etag(&d.etag)).unwrap();
        assert!(matches!(s.device("d1"), Err(Error::DeviceNotFound(_))));
        assert!(matches!(
            s.module("d1", "m1"),
            Err(Error::DeviceNotFound(_))
        ));
        assert_eq!(
            s.modules("d10").unwrap().len(),
            1,
            "other devices keep theirs"
        );
        assert!(matches!(
            s.delete_device("d1", &IfMatch::Any),
            Err(Error::DeviceNotFound(_))
        ));
    }

    #[test]
    fn module_rules_follow_iot_hub() {
        let s = store();
        assert!(matches!(
            s.put_module("nod", "m", &module("nod", "m"), &IfMatch::Absent),
            Err(Error::DeviceNotFound(_))
        ));
        s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
        let (m, created) = s
            .put_module("d", "m", &module("d", "m"), &IfMatch::Absent)
            .unwrap();
        assert!(created);
        assert!(matches!(
            s.put_module("d", "m", &module("d", "m"), &IfMatch::Absent),
            Err(Error::ModuleAlreadyExists { .. })
        ));
        let (u, created) = s
            .put_module("d", "m", &module("d", "m"), &etag(&m.etag))
            .unwrap();
        assert!(!created);
        assert_ne!(u.auth, m.auth, "a module PUT is a full replace: new keys");
        assert!(matches!(
            s.put_module("d", "x", &module("d", "x"), &IfMatch::Any),
            Err(Error::ModuleNotFound { .. })
        ));
        assert!(matches!(
            s.put_module(
                "d",
                "$edgeAgent",
                &module("d", "$edgeAgent"),
                &IfMatch::Absent
            ),
            Err(Error::ArgumentInvalid(_))
        ));
        assert!(matches!(
            s.put_module("d", "$mine", &module("d", "$mine"), &IfMatch::Absent),
            Err(Error::ArgumentInvalid(_))
        ));
        for i in 1..50 {
            let id = format!("m{i:02}");
            s.put_module("d", &id, &module("d", &id), &IfMatch::Absent)
                .unwrap();
        }
        assert!(matches!(
            s.put_module("d", "one-too-many", &module("d", ""), &IfMatch::Absent),
            Err(Error::TooManyModules(_))
        ));
        let ids: Vec<String> = s
            .modules("d")
            .unwrap()
            .into_iter()
            .map(|m| m.module_id)
            .collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn edge_devices_get_system_modules_and_a_scope_children_can_use() {
        let s = store();
        let mut gw = device("gw");
        gw.capabilities = Some(wire::Capabilities { iot_edge: true });
        let gw = s.put_device("gw", &gw, &IfMatch::Absent).unwrap();
        let scope = gw.device_scope.clone().unwrap();
        assert_eq!(
            scope,
            format!("ms-azure-iot-edge://gw-{}", gw.generation_id)
        );
        let mods = s.modules("gw").unwrap();
        assert_eq!(
            mods.iter()
                .map(|m| m.module_id.as_str())
                .collect::<Vec<_>>(),
            ["$edgeAgent", "$edgeHub"]
        );
        assert_eq!(
            mods[0].auth.kind,
            twinops_iothub::wire::AuthenticationType::None
        );
        assert_eq!(mods[0].managed_by.as_deref(), Some("iotEdge"));
        let twin = s
            .twin(&Target::Module("gw".into(), "$edgeAgent".into()))
            .unwrap();
        assert_eq!(twin["authenticationType"], "none");

        let mut leaf = device("leaf");
        leaf.device_scope = Some(scope.clone());
        let leaf = s.put_device("leaf", &leaf, &IfMatch::Absent).unwrap();
        assert_eq!(leaf.parent_scopes, vec![scope.clone()]);
        let mut bad = device("bad");
        bad.device_scope = Some("ms-azure-iot-edge://nobody-1".into());
        assert!(matches!(
            s.put_device("bad", &bad, &IfMatch::Absent),
            Err(Error::ArgumentInvalid(_))
        ));
        assert!(matches!(
            s.delete_module("gw", "$edgeHub", &IfMatch::Any),
            Err(Error::SystemModule(_))
        ));
    }

    #[test]
    fn twin_writes_check_etags_and_render_the_full_twin() {
        let s = store();
        s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
        let t = Target::Device("d".into());
        let write = ServiceWrite {
            tags: Some(json!({"site": "berlin"}).as_object().unwrap().clone()),
            desired: Some(
                json!({"telemetryInterval": 122})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        };
        let doc = s
            .write_twin(&t, false, write.clone(), &etag("AAAAAAAAAAE="))
            .unwrap();
        assert_eq!(doc["etag"], "AAAAAAAAAAI=");
        assert_eq!(doc["version"], 3);
        assert_eq!(doc["tags"]["site"], "berlin");
        assert_eq!(doc["properties"]["desired"]["telemetryInterval"], 122);
        assert_eq!(doc["properties"]["desired"]["$version"], 2);
        assert!(matches!(
            s.write_twin(&t, false, write, &etag("AAAAAAAAAAE=")),
            Err(Error::PreconditionFailed(_))
        ));
        let rep = json!({"temp": 20}).as_object().unwrap().clone();
        let doc = s.patch_reported(&t, &rep).unwrap();
        assert_eq!(doc["etag"], "AAAAAAAAAAM=");
        assert_eq!(doc["properties"]["reported"]["$version"], 2);
        assert_eq!(doc["properties"]["reported"]["temp"], 20);
        for key in [
            "deviceId",
            "etag",
            "deviceEtag",
            "version",
            "status",
            "statusUpdateTime",
            "connectionState",
            "lastActivityTime",
            "cloudToDeviceMessageCount",
            "authenticationType",
            "x509Thumbprint",
            "modelId",
            "capabilities",
            "tags",
            "properties",
        ] {
            assert!(doc.get(key).is_some(), "{key}");
        }
        assert!(matches!(
            s.twin(&Target::Module("d".into(), "m".into())),
            Err(Error::DeviceNotFound(_))
        ));
    }

    #[test]
    fn scan_pages_in_key_order_after_a_key() {
        let s = store();
        for id in ["b", "a", "c"] {
            s.put_device(id, &device(id), &IfMatch::Absent).unwrap();
        }
        let mut seen = Vec::new();
        s.scan(false, Some("a"), |k, twin| {
            seen.push((
                k.to_string(),
                twin["deviceId"].as_str().unwrap().to_string(),
            ));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("b".to_string(), "b".to_string()),
                ("c".to_string(), "c".to_string())
            ]
        );
    }

    #[test]
    fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(Some(dir.path())).unwrap();
            s.put_device("d", &device("d"), &IfMatch::Absent).unwrap();
            assert_eq!(s.meta_or_init("hub_id", || "x".into()).unwrap(), "x");
        }
        let s = Store::open(Some(dir.path())).unwrap();
        assert!(s.device("d").is_ok());
        assert_eq!(s.meta_or_init("hub_id", || "y".into()).unwrap(), "x");
    }
}
