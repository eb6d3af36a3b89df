//! Change-scoped plans (SPEC §12): which twins' expanded declarations differ between two manifest
//! sets (the set at a git revision and the working tree's), so that a pull request's plan reads and
//! plans only those.
//!
//! Pure: it compares two [`Fleet`]s. Where the sets come from (git, files) is the binary's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DeviceSpec, Fleet, ModuleSpec, Scope, TwinAddress};

/// What the plan document says about a change-scoped plan:
/// `"scope": {"changed_from": "<full commit id>", "twins": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDoc {
    /// The full commit id the manifests were compared with.
    pub changed_from: String,
    /// Twins (device twins plus module twins) whose declaration differs, removed ones included.
    pub twins: usize,
}

/// The twins whose expanded declaration differs between `before` and `after`: added, removed, or
/// with any identity field, tag, desired value, `ignore` or `sensitive` path changed. A removed
/// device brings its modules; a changed owner changes every twin (each ledger names the owner).
/// Where a declaration was written (its file and line) is not part of it.
pub fn changed(before: &Fleet, after: &Fleet) -> Scope {
    let mut scope = Scope::default();
    let all = before.owner != after.owner;
    let old: BTreeMap<&str, &DeviceSpec> =
        before.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let new: BTreeMap<&str, &DeviceSpec> =
        after.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    for (id, b) in &old {
        let Some(a) = new.get(id).filter(|_| !all) else {
            everything(b, &mut scope);
            continue;
        };
        if !same_device(b, a) {
            scope.insert(TwinAddress::device(a.id.clone()));
        }
        let old_modules: BTreeMap<&str, &ModuleSpec> =
            b.modules.iter().map(|m| (m.id.as_str(), m)).collect();
        let new_modules: BTreeMap<&str, &ModuleSpec> =
            a.modules.iter().map(|m| (m.id.as_str(), m)).collect();
        for (mid, m) in old_modules.iter().chain(new_modules.iter()) {
            let differs = match (old_modules.get(mid), new_modules.get(mid)) {
                (Some(x), Some(y)) => !same_module(x, y),
                _ => true,
            };
            if differs {
                scope.insert(TwinAddress::module(a.id.clone(), m.id.clone()));
            }
        }
    }
    for (id, a) in &new {
        if all || !old.contains_key(id) {
            everything(a, &mut scope);
        }
    }
    scope
}

fn everything(d: &DeviceSpec, scope: &mut Scope) {
    scope.insert(TwinAddress::device(d.id.clone()));
    for m in &d.modules {
        scope.insert(TwinAddress::module(d.id.clone(), m.id.clone()));
    }
}

/// The device's own declaration (identity fields and twin), its modules and location aside.
fn same_device(a: &DeviceSpec, b: &DeviceSpec) -> bool {
    a.status == b.status
        && a.status_reason == b.status_reason
        && a.auth == b.auth
        && a.edge == b.edge
        && a.parent == b.parent
        && a.twin == b.twin
}

fn same_module(a: &ModuleSpec, b: &ModuleSpec) -> bool {
    a.managed_by == b.managed_by && a.auth == b.auth && a.twin == b.twin
}
