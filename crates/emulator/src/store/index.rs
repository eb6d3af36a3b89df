//! The view queries read (`--index-lag`): the store as committed, or, as IoT Hub's index is
//! eventually consistent (live-hub.md), a snapshot of it at least the lag old. Identity and twin
//! reads never go through here.

use std::collections::VecDeque;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableDatabase, ReadableTableMetadata};
use serde_json::Value;

use super::Store;
use super::persistence::{DEVICES, MODULES, decode};
use crate::error::Error;
use crate::identity::{DeviceRecord, ModuleRecord};

/// A lagging query index: queries read a snapshot of the store (a redb read transaction, which
/// keeps its view) taken at least `lag` ago, so new writes appear only after `lag` and deleted
/// identities stay in results ("ghosts") for as long. Snapshots are taken every `lag / 10`
/// (10 ms to 1 s); only the newest one old enough and the younger ones are kept.
pub(super) struct IndexLag {
    lag: Duration,
    snapshots: Mutex<VecDeque<(Instant, Arc<ReadTransaction>)>>,
}

impl Store {
    /// Makes queries trail the store by `lag` (zero: queries see every committed write).
    pub(crate) fn set_index_lag(&mut self, lag: Duration) {
        self.index = (!lag.is_zero()).then(|| IndexLag {
            lag,
            snapshots: Default::default(),
        });
    }

    /// How often the lagging index takes a snapshot (`None` without a lag).
    pub(crate) fn index_step(&self) -> Option<Duration> {
        let lag = self.index.as_ref()?.lag;
        Some((lag / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }

    /// Takes a snapshot for the lagging index and forgets the ones no query will read again.
    pub(crate) fn snapshot_index(&self) -> Result<(), Error> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let txn = Arc::new(self.db.begin_read()?);
        let now = Instant::now();
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

    /// Visits twins of devices (or modules) in the view queries read, in key order, starting
    /// after the key `after`. `visit` gets each row's key and twin document and says whether to
    /// go on.
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

    /// The view queries read: the store now, or with `--index-lag` the newest snapshot at least
    /// that old (the oldest one while the hub is younger than the lag).
    fn index_view(&self) -> Result<Arc<ReadTransaction>, Error> {
        if let Some(index) = &self.index {
            let snaps = index
                .snapshots
                .lock()
                .map_err(|_| Error::Server("the query index lock is poisoned".into()))?;
            let now = Instant::now();
            let old_enough = snaps
                .iter()
                .rev()
                .find(|(t, _)| now.duration_since(*t) >= index.lag)
                .or(snaps.front());
            if let Some((_, txn)) = old_enough {
                return Ok(txn.clone());
            }
        }
        Ok(Arc::new(self.db.begin_read()?))
    }
}

/// One identity of a [`Snapshot`], with its twin.
pub(crate) enum Identity {
    Device(DeviceRecord),
    Module(ModuleRecord),
}

/// A consistent view of every identity as queries see it (with `--index-lag`, as stale as theirs),
/// held by a whole-hub reader for as long as it reads: an export job. Writes made after it was
/// taken are not in it, and identities deleted since stay in it.
pub(crate) struct Snapshot(Arc<ReadTransaction>);

impl Store {
    /// The view queries read now, kept (see [`Snapshot`]).
    pub(crate) fn index_snapshot(&self) -> Result<Snapshot, Error> {
        Ok(Snapshot(self.index_view()?))
    }
}

impl Snapshot {
    /// How many identities (devices and modules) it holds.
    pub(crate) fn len(&self) -> Result<u64, Error> {
        let devices = self.0.open_table(DEVICES)?.len()?;
        let modules = self.0.open_table(MODULES)?.len()?;
        Ok(devices + modules)
    }

    /// Visits every identity, decoded one at a time: devices in ID order, each followed by its
    /// modules in module ID order. `visit` says whether to go on.
    pub(crate) fn visit(
        &self,
        mut visit: impl FnMut(Identity) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let devices = self.0.open_table(DEVICES)?;
        let modules = self.0.open_table(MODULES)?;
        let mut modules = modules.range::<&str>(..)?.peekable();
        // Module keys are `device\0module`, and `\0` sorts below every ID character, so module
        // rows come in the order of their devices: one pass over each table merges them.
        let mut modules_until = |device: Option<&str>,
                                 visit: &mut dyn FnMut(Identity) -> ControlFlow<()>|
         -> Result<ControlFlow<()>, Error> {
            while let Some(row) = modules.peek() {
                let belongs = match row {
                    Ok((k, _)) => {
                        let key = k.value();
                        let owner = key.split('\0').next().unwrap_or(key);
                        device.is_none_or(|d| owner <= d)
                    }
                    Err(_) => true,
                };
                if !belongs {
                    break;
                }
                let Some(row) = modules.next() else { break };
                let (_, v) = row?;
                if visit(Identity::Module(decode(v.value())?)).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        };
        for row in devices.range::<&str>(..)? {
            let (k, v) = row?;
            let device: DeviceRecord = decode(v.value())?;
            // A module row without its device (none should exist) still comes out, after the
            // device that follows it.
            let id = k.value();
            if visit(Identity::Device(device)).is_break() {
                return Ok(());
            }
            if modules_until(Some(id), &mut visit)?.is_break() {
                return Ok(());
            }
        }
        // The last rows: modules of no device (none should exist). Nothing follows either way.
        let _ = modules_until(None, &mut visit)?;
        Ok(())
    }
}
