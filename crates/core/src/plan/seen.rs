//! What a plan keeps of each observed identity once its twin has been diffed: the etags a delete
//! needs, the identity fields the warnings and prune read, whether the ledger names this owner,
//! and (for a rollout's `first` wave) the few tags it matches. No twin content: a read of a large
//! fleet holds this record per twin instead of the twin (SPEC §12, memory).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{DeviceId, DeviceStatus, ETag, JsonMap, ModuleId, TwinAddress};

/// The identities a plan read, by device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seen {
    pub devices: BTreeMap<DeviceId, SeenDevice>,
    /// Whether every identity the plan's targets can select was read (a full query, or a
    /// change-scoped read that read every twin of its scope): what pruning and the "no longer
    /// declared" hint need to be exact.
    pub complete: bool,
    /// Declared twins that configurations or edge deployments were applied to, for naming them
    /// (SPEC §15); empty on hubs without configurations.
    pub configured: Vec<super::writers::Configured>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeenDevice {
    /// The identity's etag, for identity deletes.
    pub identity_etag: ETag,
    pub status: DeviceStatus,
    /// Whether the twin's ledger holds an entry of this plan's owner.
    pub owned: bool,
    /// Whether another owner manages anything on the twin or its identity.
    pub shared: bool,
    /// Its own `deviceScope` (an edge device's, which its children name).
    pub scope: Option<String>,
    /// The scope of its parent, if it has one.
    pub parent_scope: Option<String>,
    /// The observed tags a rollout's `first.tags` names (empty without one).
    pub first_tags: JsonMap,
    /// The configurations applied to its twin (edge deployments write its module twins).
    pub applied: Vec<String>,
    pub modules: BTreeMap<ModuleId, SeenModule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeenModule {
    /// The module twin's etag, for module deletes.
    pub twin_etag: ETag,
    /// Whether the twin's ledger holds an entry of this plan's owner.
    pub owned: bool,
    /// Whether another owner manages anything on the twin or its identity.
    pub shared: bool,
}

impl Seen {
    /// Every identity read: `(device, None)` for a device, `(device, Some(module))` for a module.
    pub fn identities(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.devices.iter().flat_map(|(id, d)| {
            std::iter::once((id.as_str(), None)).chain(
                d.modules
                    .keys()
                    .map(move |m| (id.as_str(), Some(m.as_str()))),
            )
        })
    }

    /// The identities read whose ledger names the plan's owner.
    pub fn owned(&self) -> impl Iterator<Item = TwinAddress> + '_ {
        self.devices.iter().flat_map(|(id, d)| {
            let device = d.owned.then(|| TwinAddress::device(id.clone()));
            device.into_iter().chain(
                d.modules
                    .iter()
                    .filter(|(_, m)| m.owned)
                    .map(move |(mid, _)| TwinAddress::module(id.clone(), mid.clone())),
            )
        })
    }

    /// Whether another owner manages anything on the device or on one of its modules: `--prune`
    /// then releases instead of deleting (SPEC §15).
    pub fn shared(&self, device: &DeviceId) -> bool {
        self.devices
            .get(device)
            .is_some_and(|d| d.shared || d.modules.values().any(|m| m.shared))
    }

    /// The scopes of the devices read that are the parent of a device read: a device whose own
    /// scope is in it has children.
    pub fn parent_scopes(&self) -> BTreeSet<&str> {
        self.devices
            .values()
            .filter_map(|d| d.parent_scope.as_deref())
            .collect()
    }

    /// How many owned device identities and owned module identities were read.
    pub fn owned_counts(&self) -> (u64, u64) {
        let devices = self.devices.values().filter(|d| d.owned).count() as u64;
        let modules = self
            .devices
            .values()
            .flat_map(|d| d.modules.values())
            .filter(|m| m.owned)
            .count() as u64;
        (devices, modules)
    }
}
