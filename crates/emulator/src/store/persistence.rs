//! How the store keeps its state in redb: the tables and their keys, opening the database, write
//! transactions ([`Tx`]) committed durably before anyone is answered, counters behind etags and
//! generation IDs, and records encoded as JSON. Knows no IoT Hub rule beyond a row's key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::{DesiredChange, Store, Target};
use crate::clock::{now, now_ticks};
use crate::error::Error;
use crate::identity::{DeviceRecord, ModuleRecord};
use crate::twin::TwinState;

pub(super) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
pub(super) const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
pub(super) const CONFIGURATIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("configurations");

const ETAG_COUNTER: &str = "counter:identity-etag";
const LAST_GENERATION: &str = "counter:generation";

/// Desired changes queued for slow listeners before the oldest are dropped (they then see
/// `Lagged`, and the MQTT side closes the connections it could not serve).
const DESIRED_CHANGES_BUFFER: usize = 4096;

/// The key of a module row.
fn module_key(device: &str, module: &str) -> String {
    format!("{device}\0{module}")
}

/// The key range of a device's module rows: `\0` sorts below every ID character, `\u{1}` just
/// above it.
pub(super) fn module_range(device: &str) -> (String, String) {
    (format!("{device}\0"), format!("{device}\u{1}"))
}

impl Store {
    /// Opens (or creates) `dir/hub.redb`, or an in-memory database without a directory.
    pub(crate) fn open(dir: Option<&Path>) -> anyhow::Result<Store> {
        use anyhow::Context;
        let db = match dir {
            Some(dir) => {
                crate::private::create_dir(dir).context("creating the state directory")?;
                let path = dir.join("hub.redb");
                crate::private::touch(&path)?;
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

    /// Runs `f` in one write transaction, committed durably when it returns `Ok`; then announces
    /// its desired changes (a send without listeners is a no-op).
    pub(crate) fn write<T>(
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

    /// Visits every device record (or every module record), decoded, in key order, in one read
    /// transaction. For whole-hub passes (the configuration loop).
    pub(crate) fn visit_twin_records(
        &self,
        modules: bool,
        mut visit: impl FnMut(TwinRecord) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(if modules { MODULES } else { DEVICES })?;
        for row in t.iter()? {
            let (_, v) = row?;
            visit(TwinRecord::decode(v.value(), modules)?)?;
        }
        Ok(())
    }
}

/// An open write transaction: the four tables, the time of the write, and the desired changes
/// to announce once it commits.
pub(crate) struct Tx<'t> {
    pub(super) devices: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) modules: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) meta: redb::Table<'t, &'static str, &'static str>,
    pub(super) configurations: redb::Table<'t, &'static str, &'static [u8]>,
    pub(crate) now: String,
    desired_changes: Vec<DesiredChange>,
}

impl Tx<'_> {
    pub(crate) fn device(&self, id: &str) -> Result<Option<DeviceRecord>, Error> {
        load_device(&self.devices, id)
    }

    pub(crate) fn module(&self, device: &str, module: &str) -> Result<Option<ModuleRecord>, Error> {
        load_module(&self.modules, device, module)
    }

    pub(crate) fn save_device(&mut self, rec: &DeviceRecord) -> Result<(), Error> {
        let bytes = encode(rec)?;
        self.devices
            .insert(rec.device_id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    pub(crate) fn save_module(&mut self, rec: &ModuleRecord) -> Result<(), Error> {
        let bytes = encode(rec)?;
        let key = module_key(&rec.device_id, &rec.module_id);
        self.modules.insert(key.as_str(), bytes.as_slice())?;
        Ok(())
    }

    pub(crate) fn remove_module(&mut self, device: &str, module: &str) -> Result<(), Error> {
        self.modules.remove(module_key(device, module).as_str())?;
        Ok(())
    }

    pub(super) fn module_count(&self, device: &str) -> Result<usize, Error> {
        let (lo, hi) = module_range(device);
        Ok(self
            .modules
            .range::<&str>(lo.as_str()..hi.as_str())?
            .count())
    }

    pub(super) fn counter(&mut self, key: &str) -> Result<u64, Error> {
        let n = match self.meta.get(key)? {
            Some(v) => v.value().parse::<u64>().unwrap_or(0),
            None => 0,
        };
        Ok(n)
    }

    /// A new identity etag: base64 of a hub-wide decimal counter, like IoT Hub's `ODgxNTgwOA==`.
    /// Hub-wide so that a re-created identity never repeats an old etag.
    pub(super) fn next_etag(&mut self) -> Result<String, Error> {
        let n = self.counter(ETAG_COUNTER)? + 1;
        self.meta.insert(ETAG_COUNTER, n.to_string().as_str())?;
        Ok(B64.encode(n.to_string()))
    }

    /// A new generation ID: .NET ticks of now, strictly increasing across the hub.
    pub(super) fn next_generation(&mut self) -> Result<String, Error> {
        let last = self.counter(LAST_GENERATION)?;
        let n = now_ticks().max(last + 1);
        self.meta.insert(LAST_GENERATION, n.to_string().as_str())?;
        Ok(n.to_string())
    }

    /// The record of the twin `target` addresses, if its identity exists.
    pub(crate) fn twin_record(&self, target: &Target) -> Result<Option<TwinRecord>, Error> {
        Ok(match target {
            Target::Device(d) => self.device(d)?.map(TwinRecord::Device),
            Target::Module(d, m) => self.module(d, m)?.map(TwinRecord::Module),
        })
    }

    /// Saves a twin's record; a write that carried desired properties is queued for
    /// announcement after the commit.
    pub(crate) fn save_twin_record(&mut self, rec: &mut TwinRecord) -> Result<(), Error> {
        let written = rec.twin_mut().desired_written.take();
        match rec {
            TwinRecord::Device(r) => self.save_device(r)?,
            TwinRecord::Module(r) => self.save_module(r)?,
        }
        if let Some(patch) = written {
            self.desired_changes.push(DesiredChange {
                target: rec.target(),
                patch,
                version: rec.twin().desired_version,
            });
        }
        Ok(())
    }

    /// Loads a twin's record, lets `f` change the twin, saves it and returns the new document.
    pub(crate) fn update_twin(
        &mut self,
        target: &Target,
        f: impl FnOnce(&mut TwinState) -> Result<(), Error>,
    ) -> Result<Value, Error> {
        let Some(mut rec) = self.twin_record(target)? else {
            // A missing module twin is `DeviceNotFound` on live hubs, like a missing device's.
            let (Target::Device(d) | Target::Module(d, _)) = target;
            return Err(Error::DeviceNotFound(d.clone()));
        };
        f(rec.twin_mut())?;
        self.save_twin_record(&mut rec)?;
        Ok(rec.twin_json())
    }
}

/// A device or module record, for code that treats both twins alike.
pub(crate) enum TwinRecord {
    Device(DeviceRecord),
    Module(ModuleRecord),
}

impl TwinRecord {
    fn decode(bytes: &[u8], module: bool) -> Result<TwinRecord, Error> {
        Ok(if module {
            TwinRecord::Module(decode(bytes)?)
        } else {
            TwinRecord::Device(decode(bytes)?)
        })
    }

    /// The twin's address.
    pub(crate) fn target(&self) -> Target {
        match self {
            TwinRecord::Device(r) => Target::Device(r.device_id.clone()),
            TwinRecord::Module(r) => Target::Module(r.device_id.clone(), r.module_id.clone()),
        }
    }

    pub(crate) fn twin(&self) -> &TwinState {
        match self {
            TwinRecord::Device(r) => &r.twin,
            TwinRecord::Module(r) => &r.twin,
        }
    }

    pub(crate) fn twin_mut(&mut self) -> &mut TwinState {
        match self {
            TwinRecord::Device(r) => &mut r.twin,
            TwinRecord::Module(r) => &mut r.twin,
        }
    }

    pub(crate) fn twin_json(&self) -> Value {
        match self {
            TwinRecord::Device(r) => r.twin_json(),
            TwinRecord::Module(r) => r.twin_json(),
        }
    }
}

pub(super) fn load_device(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<DeviceRecord>, Error> {
    t.get(id)?.map(|v| decode(v.value())).transpose()
}

pub(super) fn load_module(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    device: &str,
    module: &str,
) -> Result<Option<ModuleRecord>, Error> {
    t.get(module_key(device, module).as_str())?
        .map(|v| decode(v.value()))
        .transpose()
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Server(format!("encoding a record: {e}")))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Server(format!("decoding a record: {e}")))
}

/// The decoded values of rows read in key order (a range, or the first rows of a table).
pub(super) fn decode_rows<'a, T: serde::de::DeserializeOwned>(
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
