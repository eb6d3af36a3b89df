//! The reconciler's pure core: the fleet diffed against what the hub holds, through the ownership
//! ledger, into a [`Plan`] of typed changes, each with the minimal merge patch, the etag it was
//! computed against and the owned values it saw (`base`).
//!
//! - this file: the plan's types ([`Plan`], [`Kind`], [`Summary`], [`Conflict`], [`FieldDiff`]);
//! - `change`: the typed changes; [`document`]: the JSON plan document they are written as;
//! - `differ`: the streaming diff ([`Differ`]); `seen`: what it keeps of each twin; `twin`: one
//!   twin's diff through the [`ledger`];
//! - `saved`: a saved plan and its resolution; [`secret`]: sensitive values concealed and got back;
//! - [`rollout`]: waves, the rollout's selection and marks, and its delivery state machine;
//! - [`drift`], [`scope`], [`patch`]: drift classes, change scopes, merge patches;
//! - [`writers`]: the configurations and edge deployments that also write declared keys.
//!
//! It sees only [`crate::model`] values (and IoT Hub's operation classes, which the plan counts
//! requests by): it never imports the hub client or the emulator, and it does no I/O.

mod change;
mod differ;
pub mod document;
pub mod drift;
pub mod ledger;
pub mod object_checks;
pub mod objects;
pub mod patch;
pub mod rollout;
mod saved;
pub mod scope;
pub mod secret;
mod seen;
mod twin;
mod values;
pub mod writers;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use twinops_iothub::quota::OpClass;

use crate::model::{DeviceId, Digest, ModuleId, Owner, Targets, TwinAddress};
pub use change::{
    Change, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity, Disruption,
    IdentityUpdate, Managed, OwnedValues, Released, TwinPatch, UpdateDevice, UpdateModule,
    UpdateTwin,
};
pub use differ::{Differ, diff, diff_seen, undeclared};
pub use document::ChangeDoc;
pub use rollout::select::{Marks, mark_of};
pub use rollout::{Rollout, Wave, WaveStep};
pub use saved::SavedPlan;
pub use secret::{ReadError, SecretDoc, SecretProblem};
pub use seen::{Seen, SeenDevice, SeenModule};
pub use twin::{TwinView, adopt_existing, is_sensitive_digest, owned_view, sensitive_digest};

/// An apply phase, ordered as SPEC §7 orders them (rollout waves and a revert between twin patches
/// and deletes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    DeviceCreates,
    ModuleCreates,
    IdentityUpdates,
    TwinPatches,
    RolloutWave(usize),
    RolloutRevert,
    ModuleDeletes,
    DeviceDeletes,
    /// Managed objects created and updated (SPEC §16), once the identities and twins are written.
    ObjectWrites,
    /// Managed objects deleted (a replaced one once its replacement is applied), last.
    ObjectDeletes,
}

impl Phase {
    /// The phases of a plan's changes, in the order apply runs them (a rollout's waves run after
    /// the twin patches, SPEC §11): the one statement of that order.
    pub const APPLY: [Phase; 6] = [
        Phase::DeviceCreates,
        Phase::ModuleCreates,
        Phase::IdentityUpdates,
        Phase::TwinPatches,
        Phase::ModuleDeletes,
        Phase::DeviceDeletes,
    ];
}

/// The version of the JSON plan document.
pub const FORMAT_VERSION: u32 = 1;

/// What the planner is asked to do beyond the plain diff.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--force-conflicts`: take over the declared fields and keys that other owners manage.
    pub force_conflicts: bool,
    /// The key of every digest of a sensitive value in the plan (SPEC §13).
    pub digest_key: secret::DigestKey,
    /// Keep the unchanged twins whose declared desired values their devices have not acknowledged
    /// ([`Plan::awaiting`]), for `apply --wait`.
    pub awaiting: bool,
    /// Plan deletions of owned identities no manifest declares (needs a complete read).
    pub prune: bool,
    pub targets: Targets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Fields or keys given up (SPEC §15): the identity stays.
    Release,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    CreateDevice,
    CreateModule,
    UpdateDevice,
    UpdateModule,
    UpdateDeviceTwin,
    UpdateModuleTwin,
    /// The device twin's ledger entry (identity fields, twin keys) given up.
    ReleaseDevice,
    /// The module twin's ledger entry given up.
    ReleaseModule,
    DeleteModule,
    DeleteDevice,
    CreateConfiguration,
    UpdateConfiguration,
    DeleteConfiguration,
    CreateDeployment,
    UpdateDeployment,
    DeleteDeployment,
}

impl Kind {
    /// The kind of a managed object's change.
    pub fn of_object(c: &objects::ObjectChange) -> Kind {
        use crate::model::ObjectKind::{Configuration, Deployment};
        use objects::ObjectChange::{Create, Delete, Update};
        match (c, c.object()) {
            (Create { .. }, Configuration) => Kind::CreateConfiguration,
            (Update { .. }, Configuration) => Kind::UpdateConfiguration,
            (Delete { .. }, Configuration) => Kind::DeleteConfiguration,
            (Create { .. }, Deployment) => Kind::CreateDeployment,
            (Update { .. }, Deployment) => Kind::UpdateDeployment,
            (Delete { .. }, Deployment) => Kind::DeleteDeployment,
        }
    }

    pub fn action(self) -> Action {
        match self {
            Kind::CreateDevice
            | Kind::CreateModule
            | Kind::CreateConfiguration
            | Kind::CreateDeployment => Action::Create,
            Kind::DeleteDevice
            | Kind::DeleteModule
            | Kind::DeleteConfiguration
            | Kind::DeleteDeployment => Action::Delete,
            Kind::ReleaseDevice | Kind::ReleaseModule => Action::Release,
            _ => Action::Update,
        }
    }

    /// The apply phase a change of this kind runs in ([`Phase::APPLY`] orders them).
    pub fn phase(self) -> Phase {
        match self {
            Kind::CreateDevice => Phase::DeviceCreates,
            Kind::CreateModule => Phase::ModuleCreates,
            Kind::UpdateDevice | Kind::UpdateModule => Phase::IdentityUpdates,
            Kind::UpdateDeviceTwin
            | Kind::UpdateModuleTwin
            | Kind::ReleaseDevice
            | Kind::ReleaseModule => Phase::TwinPatches,
            Kind::DeleteModule => Phase::ModuleDeletes,
            Kind::DeleteDevice => Phase::DeviceDeletes,
            Kind::CreateConfiguration
            | Kind::UpdateConfiguration
            | Kind::CreateDeployment
            | Kind::UpdateDeployment => Phase::ObjectWrites,
            Kind::DeleteConfiguration | Kind::DeleteDeployment => Phase::ObjectDeletes,
        }
    }
}

/// One field-level difference of an owned value (values at sensitive paths are digests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDiff {
    /// `tags.KEY`, `desired.KEY` or an identity field such as `status`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// A twin (or identity) the plan will not touch because someone else owns it. In documents its
/// address is written as `device_id` and `module_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConflictDoc", into = "ConflictDoc")]
pub struct Conflict {
    pub address: TwinAddress,
    pub reason: String,
    pub keys: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictDoc {
    device_id: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module_id: Option<ModuleId>,
    reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<String>,
}

impl From<Conflict> for ConflictDoc {
    fn from(c: Conflict) -> ConflictDoc {
        ConflictDoc {
            device_id: c.address.device,
            module_id: c.address.module,
            reason: c.reason,
            keys: c.keys,
        }
    }
}

impl From<ConflictDoc> for Conflict {
    fn from(d: ConflictDoc) -> Conflict {
        Conflict {
            address: TwinAddress {
                device: d.device_id,
                module: d.module_id,
            },
            reason: d.reason,
            keys: d.keys,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    /// Twins whose owner gives up fields or keys (SPEC §15), left out when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub release: usize,
    /// Declared twins that need no change.
    pub unchanged: usize,
    pub conflicts: usize,
    /// Identity changes that disconnect devices (SPEC §15), left out when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disruptive: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The plan: what apply will do, and against which etags.
///
/// `C` is how changes are held: typed [`Change`]s, with every value they send, or the documents of
/// a saved plan ([`SavedPlan`]), whose sensitive values are concealed. Only the documents can be
/// read from JSON, and [`SavedPlan::resolve`] is the one way from them to changes, so a plan read
/// from a file cannot reach the executor with a value still concealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan<C = Change> {
    pub format_version: u32,
    /// The hub identity: host name with port, or the embedded hub's ID.
    pub hub: String,
    pub owner: Owner,
    pub manifest_digest: Digest,
    pub summary: Summary,
    pub changes: Vec<C>,
    pub conflicts: Vec<Conflict>,
    /// HTTP requests made while planning, by operation class.
    #[serde(default)]
    pub requests: BTreeMap<OpClass, u64>,
    /// Estimated apply time at the chosen pace, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_apply_seconds: Option<f64>,
    /// Estimated time to read the hub at the chosen pace, in seconds (paced hubs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_read_seconds: Option<f64>,
    /// How long reading the hub took, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seconds: Option<f64>,
    /// Set when the plan covers only the twins a manifest change touched (`--changed-from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<scope::ScopeDoc>,
    /// Identities whose ledger names this owner but that no manifest declares any more (`device`
    /// or `device/module`), listed when the plan does not prune them: `--prune` deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_longer_declared: Vec<TwinAddress>,
    /// The waves the twin updates of desired values are delivered in, when the manifests have a
    /// `rollout` block and the plan rolls out at least one twin; absent otherwise (and in plans saved
    /// before rollouts existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Declared desired keys that an automatic configuration or IoT Edge deployment applied to the
    /// twin also writes (SPEC §15): warnings, named with the configuration and its priority.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<writers::Writer>,
    /// Managed objects (SPEC §16): the changes of ADM configurations and IoT Edge deployments,
    /// their conflicts and warnings, and this owner's objects no manifest declares.
    #[serde(default, skip_serializing_if = "objects::ObjectPlan::is_empty")]
    pub objects: objects::ObjectPlan,
    /// How the hub was read (SPEC §17): by queries and GETs, or through an export job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadDoc>,
    /// The fingerprint of the key its sensitive values' digests were made under, when any change
    /// has sensitive paths: `apply --plan` refuses a plan made under another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_key: Option<String>,
    /// With [`Options::awaiting`]: twins the plan does not change whose declared desired values
    /// their devices have not acknowledged yet (SPEC §18: `apply --wait` waits for them too, so a
    /// re-run of a timed-out wait does not pass on silent devices). Not part of the document.
    #[serde(skip)]
    pub awaiting: Vec<Awaiting>,
}

/// How a plan read the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadDoc {
    /// `api` (queries and GETs) or `export` (an export job).
    pub via: String,
    /// The export job's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Identities the export held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<usize>,
}

/// A twin whose declared desired values (`expect`) its device has yet to acknowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaiting {
    pub address: TwinAddress,
    pub expect: crate::model::JsonMap,
}

impl Plan {
    pub fn has_differences(&self) -> bool {
        !self.changes.is_empty()
            || !self.conflicts.is_empty()
            || !self.objects.changes.is_empty()
            || !self.objects.conflicts.is_empty()
    }

    /// Counts the summary from the changes (again after changes were dropped, e.g. deletions
    /// found already done).
    pub fn recount(&mut self) {
        let mut s = Summary {
            unchanged: self.summary.unchanged,
            conflicts: self.conflicts.len(),
            ..Summary::default()
        };
        for c in &self.changes {
            match c.action() {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Release => s.release += 1,
                // Identities, as `--max-deletes` counts them: a device's modules go with it.
                Action::Delete => s.delete += deletions(c),
            }
            s.disruptive += usize::from(c.disruptive().is_some());
        }
        // Managed objects count as changes of their own; the delete that completes a replacement
        // is part of it, not a deletion.
        for c in &self.objects.changes {
            match c {
                objects::ObjectChange::Create { .. } => s.create += 1,
                objects::ObjectChange::Update { .. } => s.update += 1,
                objects::ObjectChange::Delete { .. } if !c.is_replacement_delete() => s.delete += 1,
                objects::ObjectChange::Delete { .. } => {}
            }
        }
        s.conflicts += self.objects.conflicts.len();
        self.summary = s;
    }
}

/// The scope prefix IoT Hub gives an edge device: `ms-azure-iot-edge://{id}-{generationId}`.
const EDGE_SCOPE_PREFIX: &str = "ms-azure-iot-edge://";

/// The device ID an edge scope names.
pub fn scope_device(scope: &str) -> Option<&str> {
    let rest = scope.strip_prefix(EDGE_SCOPE_PREFIX)?;
    let (id, generation) = rest.rsplit_once('-')?;
    generation.bytes().all(|b| b.is_ascii_digit()).then_some(id)
}

/// Devices that are disabled in the hub while the plan updates or deletes module identities on
/// them: IoT Hub refuses module identity operations on a disabled device under SAS (it allows
/// them under Entra ID). Module creates go through bulk rows, which the emulator accepts for a
/// disabled device (docs/emulator.md; a live hub was not observed doing either).
pub fn disabled_with_module_changes(plan: &Plan, seen: &Seen) -> Vec<DeviceId> {
    // A set: a device's module updates and deletes run in different phases, so they are apart.
    let out: std::collections::BTreeSet<DeviceId> = plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::UpdateModule(_) | Change::DeleteModule(_)))
        .map(|c| c.device_id().clone())
        .filter(|d| {
            seen.devices
                .get(d)
                .is_some_and(|o| o.status == crate::model::DeviceStatus::Disabled)
        })
        .collect();
    out.into_iter().collect()
}

/// How many identities a change deletes (a deleted device's modules count one each; the edge
/// runtime's system modules do not, as nobody declared them).
fn deletions(c: &Change) -> usize {
    match c {
        Change::DeleteModule(_) => 1,
        Change::DeleteDevice(d) => 1 + d.modules.iter().filter(|m| !m.is_system()).count(),
        _ => 0,
    }
}

/// How many identities the plan deletes (a deleted device's modules count one each).
pub fn deletion_count(plan: &Plan) -> usize {
    let objects = plan
        .objects
        .changes
        .iter()
        .filter(|c| matches!(c, objects::ObjectChange::Delete { .. }) && !c.is_replacement_delete())
        .count();
    plan.changes.iter().map(deletions).sum::<usize>() + objects
}

#[cfg(test)]
mod tests;
