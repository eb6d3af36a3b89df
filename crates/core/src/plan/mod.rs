//! The reconciler's pure core: `diff(fleet, observed)` through the ownership ledger into a [`Plan`] of
//! changes, each with the minimal merge patch, the etag it was computed against and the owned values it
//! saw (`base`).
//!
//! This module sees only [`crate::model`] values: it never imports `iothub`, `hub` or `emulator`, and it
//! does no I/O.

mod change;
pub mod document;
pub mod drift;
pub mod ledger;
pub mod patch;
pub mod rollout;
pub mod scope;
pub mod secret;
mod seen;
mod twin;
mod values;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use twinops_iothub::quota::OpClass;

use crate::report::Phase;

use crate::model::{
    AuthSpec, DeviceId, DeviceSpec, Digest, Fleet, LEDGER_TAG, ModuleId, ModuleSpec, Observed,
    ObservedAuth, ObservedDevice, ObservedModule, ObservedTwin, Owner, Targets, TwinAddress,
    TwinSpec,
};
pub use change::{
    Change, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity, IdentityUpdate,
    OwnedValues, TwinPatch, UpdateDevice, UpdateModule, UpdateTwin,
};
pub use document::ChangeDoc;
pub use rollout::{Rollout, Wave, WaveStep};
pub use secret::{ReadError, SecretDoc, SecretProblem};
pub use seen::{Seen, SeenDevice, SeenModule};
pub use twin::{TwinView, is_sensitive_digest, owned_view, sensitive_digest};

/// The version of the JSON plan document.
pub const FORMAT_VERSION: u32 = 1;

/// What the planner is asked to do beyond the plain diff.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take over twins whose ledger names another owner.
    pub adopt: bool,
    /// Plan deletions of owned identities no manifest declares (needs a complete read).
    pub prune: bool,
    pub targets: Targets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
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
    DeleteModule,
    DeleteDevice,
}

impl Kind {
    pub fn action(self) -> Action {
        match self {
            Kind::CreateDevice | Kind::CreateModule => Action::Create,
            Kind::DeleteDevice | Kind::DeleteModule => Action::Delete,
            _ => Action::Update,
        }
    }

    /// The apply phase a change of this kind runs in ([`Phase::APPLY`] orders them).
    pub fn phase(self) -> Phase {
        match self {
            Kind::CreateDevice => Phase::DeviceCreates,
            Kind::CreateModule => Phase::ModuleCreates,
            Kind::UpdateDevice | Kind::UpdateModule => Phase::IdentityUpdates,
            Kind::UpdateDeviceTwin | Kind::UpdateModuleTwin => Phase::TwinPatches,
            Kind::DeleteModule => Phase::ModuleDeletes,
            Kind::DeleteDevice => Phase::DeviceDeletes,
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
    /// Declared twins that need no change.
    pub unchanged: usize,
    pub conflicts: usize,
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
}

impl Plan {
    pub fn has_differences(&self) -> bool {
        !self.changes.is_empty() || !self.conflicts.is_empty()
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
                // Identities, as `--max-deletes` counts them: a device's modules go with it.
                Action::Delete => s.delete += deletions(c),
            }
        }
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

fn auth_differs(want: &AuthSpec, seen: &ObservedAuth) -> bool {
    if want.kind() != seen.kind {
        return true;
    }
    match want {
        AuthSpec::X509 { primary, secondary } => {
            let eq = |a: Option<&str>, b: Option<&str>| match (a, b) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                (Some(a), None) | (None, Some(a)) => a.is_empty(),
            };
            !eq(Some(primary), seen.primary_thumbprint.as_deref())
                || !eq(secondary.as_deref(), seen.secondary_thumbprint.as_deref())
        }
        _ => false,
    }
}

/// What a device identity update changes, and the diff that shows it.
fn device_identity_update(
    d: &DeviceSpec,
    seen: &ObservedDevice,
) -> (IdentityUpdate, Vec<FieldDiff>) {
    let mut set = IdentityUpdate::default();
    let mut diff = Vec::new();
    if d.status != seen.status {
        set.status = Some(d.status);
        diff.push(FieldDiff {
            path: change::FIELD_STATUS.into(),
            before: Some(json!(seen.status.as_str())),
            after: Some(json!(d.status.as_str())),
        });
    }
    if let Some(r) = &d.status_reason
        && seen.status_reason.as_deref().unwrap_or("") != r
    {
        set.status_reason = Some(r.clone());
        diff.push(FieldDiff {
            path: change::FIELD_STATUS_REASON.into(),
            before: seen.status_reason.as_ref().map(|s| json!(s)),
            after: Some(json!(r)),
        });
    }
    if auth_differs(&d.auth, &seen.auth) {
        set.auth = Some(d.auth.clone());
        diff.push(FieldDiff {
            path: change::FIELD_AUTH.into(),
            before: Some(document::observed_auth_doc(&seen.auth)),
            after: Some(document::auth_doc(&d.auth)),
        });
    }
    if d.edge != seen.edge {
        set.edge = Some(d.edge);
        diff.push(FieldDiff {
            path: change::FIELD_EDGE.into(),
            before: Some(json!(seen.edge)),
            after: Some(json!(d.edge)),
        });
    }
    let seen_parent = seen.parent_scopes.first().and_then(|s| scope_device(s));
    if d.parent.as_deref() != seen_parent {
        set.parent = Some(d.parent.clone());
        diff.push(FieldDiff {
            path: change::FIELD_PARENT.into(),
            before: seen_parent.map(|p| json!(p)),
            after: d.parent.as_ref().map(|p| json!(p)),
        });
    }
    (set, diff)
}

/// The streaming diff: observed twins are handed over one at a time, as the hub's pages or GETs
/// arrive, and each is diffed against its declaration at once; what is kept of it afterwards is a
/// [`Seen`] record (etags, identity fields, whether this owner owns it), never its content. Creates,
/// deletions, the rollout's waves and the summary are settled in [`Differ::finish`], so the order in
/// which twins arrive does not change the plan.
pub struct Differ<'a> {
    fleet: &'a Fleet,
    options: &'a Options,
    declared: BTreeMap<&'a str, &'a DeviceSpec>,
    plan: Plan,
    seen: Seen,
    /// The tag keys a rollout's `first` matches on, kept of each observed device.
    first_keys: Vec<&'a str>,
    /// With a rollout block: the declared twins read whose ledger holds a rollout's mark.
    marks: Marks,
}

impl<'a> Differ<'a> {
    pub fn new(fleet: &'a Fleet, hub: &str, options: &'a Options) -> Differ<'a> {
        Differ {
            fleet,
            options,
            declared: fleet.devices.iter().map(|d| (d.id.as_str(), d)).collect(),
            plan: Plan {
                format_version: FORMAT_VERSION,
                hub: hub.to_string(),
                owner: fleet.owner.clone(),
                manifest_digest: fleet.digest.clone(),
                summary: Summary::default(),
                changes: Vec::new(),
                conflicts: Vec::new(),
                requests: BTreeMap::new(),
                estimated_apply_seconds: None,
                estimated_read_seconds: None,
                read_seconds: None,
                scope: None,
                no_longer_declared: Vec::new(),
                rollout: None,
            },
            seen: Seen::default(),
            first_keys: fleet
                .rollout
                .as_ref()
                .and_then(|r| r.first.as_ref())
                .map(|f| f.keys().map(String::as_str).collect())
                .unwrap_or_default(),
            marks: Marks::new(),
        }
    }

    fn push(&mut self, c: Change) {
        self.plan.changes.push(c);
    }

    fn conflict(&mut self, address: TwinAddress, reason: String, keys: Vec<String>) {
        self.plan.conflicts.push(Conflict {
            address,
            reason,
            keys,
        });
    }

    fn create_device(&mut self, d: &DeviceSpec) {
        self.push(Change::CreateDevice(Box::new(CreateDevice {
            id: d.id.clone(),
            identity: DeviceIdentity {
                status: d.status,
                status_reason: d.status_reason.clone(),
                auth: d.auth.clone(),
                edge: d.edge,
                parent: d.parent.clone(),
            },
            // The content is held once: what a create shows (target, diff) is derived from it.
            twin: twin::create_content(&self.fleet.owner, &d.twin),
            sensitive: d.twin.sensitive.clone(),
            refs: d.twin.refs.clone(),
        })));
    }

    fn create_module(&mut self, d: &DeviceSpec, m: &ModuleSpec) {
        self.push(Change::CreateModule(Box::new(CreateModule {
            device: d.id.clone(),
            module: m.id.clone(),
            managed_by: m.managed_by.clone(),
            auth: m.auth.clone(),
            twin: twin::create_content(&self.fleet.owner, &m.twin),
            sensitive: m.twin.sensitive.clone(),
            refs: m.twin.refs.clone(),
        })));
    }

    /// Plans one twin; returns false when it is a conflict.
    fn twin(&mut self, address: TwinAddress, spec: &TwinSpec, seen: &ObservedTwin) -> bool {
        if self.fleet.rollout.is_some()
            && let Some((id, target, wave)) = mark_of(&self.fleet.owner, spec, seen)
        {
            self.marks
                .entry(id)
                .or_default()
                .push((address.clone(), target, wave));
        }
        match twin::diff(&self.fleet.owner, spec, seen, self.options.adopt) {
            twin::Outcome::Unchanged => {
                self.plan.summary.unchanged += 1;
                true
            }
            twin::Outcome::OtherOwner(owner) => {
                self.conflict(
                    address,
                    match owner {
                        Some(o) => format!("owned by `{o}` (use --adopt to take it over)"),
                        None => "the `twinops` tag is not a ledger (use --adopt to take it over)"
                            .to_string(),
                    },
                    Vec::new(),
                );
                false
            }
            twin::Outcome::Changed(t) => {
                let t = *t;
                let refs = secret::carried(&t.patch, &spec.refs);
                self.push(Change::UpdateTwin(Box::new(UpdateTwin {
                    address,
                    if_match: seen.etag.clone(),
                    base: t.base,
                    target: t.target,
                    patch: t.patch,
                    diff: t.diff,
                    ignore: spec.ignore.clone(),
                    sensitive: spec.sensitive.clone(),
                    refs,
                })));
                true
            }
        }
    }

    /// One observed device: its own twin and identity are diffed now, and so are the modules it
    /// carries (a read may also hand them over later, through [`Differ::module`]). A device read
    /// twice (query rows can repeat while the index catches up) counts once.
    pub fn device(&mut self, seen: &ObservedDevice) {
        if self.seen.devices.contains_key(&seen.id) {
            return;
        }
        let owner = self.fleet.owner.as_str();
        let first_tags = self
            .first_keys
            .iter()
            .filter_map(|k| Some(((*k).to_string(), seen.twin.tags.get(*k)?.clone())))
            .collect();
        self.seen.devices.insert(
            seen.id.clone(),
            SeenDevice {
                identity_etag: seen.identity_etag.clone(),
                status: seen.status,
                owned: owned_by(&seen.twin, owner),
                first_tags,
                modules: BTreeMap::new(),
            },
        );
        if let Some(d) = self.declared.get(seen.id.as_str()).copied()
            && self.options.targets.device(&d.id)
        {
            let twin_ok = self.twin(TwinAddress::device(d.id.clone()), &d.twin, &seen.twin);
            let (set, diff) = device_identity_update(d, seen);
            if twin_ok && !diff.is_empty() {
                self.push(Change::UpdateDevice(UpdateDevice {
                    id: d.id.clone(),
                    if_match: seen.identity_etag.clone(),
                    set,
                    diff,
                }));
            }
        }
        for m in seen.modules.values() {
            self.module(&seen.id, m);
        }
    }

    /// One observed module twin. A module whose device was not read (its query row lagged behind
    /// in the index) is left out; the next plan sees it.
    pub fn module(&mut self, device: &DeviceId, seen: &ObservedModule) {
        let owned = owned_by(&seen.twin, self.fleet.owner.as_str());
        let Some(sd) = self.seen.devices.get_mut(device) else {
            return;
        };
        if sd.modules.contains_key(&seen.id) {
            return;
        }
        sd.modules.insert(
            seen.id.clone(),
            SeenModule {
                twin_etag: seen.twin.etag.clone(),
                owned,
            },
        );
        let Some(d) = self.declared.get(device.as_str()).copied() else {
            return;
        };
        let Some(m) = d.modules.iter().find(|m| m.id == seen.id) else {
            return;
        };
        if !self.options.targets.module(&d.id, &m.id) {
            return;
        }
        let address = TwinAddress::module(d.id.clone(), m.id.clone());
        let twin_ok = self.twin(address, &m.twin, &seen.twin);
        if twin_ok && auth_differs(&m.auth, &seen.auth) {
            let diff = vec![FieldDiff {
                path: change::FIELD_AUTH.into(),
                before: Some(document::observed_auth_doc(&seen.auth)),
                after: Some(document::auth_doc(&m.auth)),
            }];
            self.push(Change::UpdateModule(UpdateModule {
                device: d.id.clone(),
                module: m.id.clone(),
                if_match: seen.identity_etag.clone(),
                auth: m.auth.clone(),
                diff,
            }));
        }
    }

    /// Declared identities that were not read are created.
    fn creates(&mut self) {
        let fleet = self.fleet;
        let targets = &self.options.targets;
        let mut creates = Vec::new();
        for d in &fleet.devices {
            match self.seen.devices.get(&d.id) {
                None if targets.touches(&d.id) => {
                    creates.push((d, None));
                    for m in &d.modules {
                        if targets.device(&d.id) || targets.module(&d.id, &m.id) {
                            creates.push((d, Some(m)));
                        }
                    }
                }
                None => {}
                Some(sd) => {
                    for m in &d.modules {
                        if targets.module(&d.id, &m.id) && !sd.modules.contains_key(&m.id) {
                            creates.push((d, Some(m)));
                        }
                    }
                }
            }
        }
        for (d, m) in creates {
            match m {
                None => self.create_device(d),
                Some(m) => self.create_module(d, m),
            }
        }
    }

    fn prune(&mut self) {
        let gone = undeclared(self.fleet, self.seen.owned(), &self.options.targets);
        for address in gone {
            let Some(seen) = self.seen.devices.get(&address.device) else {
                continue;
            };
            let change = match &address.module {
                Some(mid) => {
                    let Some(m) = seen.modules.get(mid) else {
                        continue;
                    };
                    Change::DeleteModule(DeleteModule {
                        device: address.device.clone(),
                        module: mid.clone(),
                        if_match: m.twin_etag.clone(),
                    })
                }
                None => {
                    let blockers: Vec<String> = seen
                        .modules
                        .iter()
                        .filter(|(mid, m)| !mid.is_system() && !m.owned)
                        .map(|(mid, _)| mid.to_string())
                        .collect();
                    if !blockers.is_empty() {
                        self.conflict(
                            address,
                            "not declared, but it has modules owned by others; not deleted".into(),
                            blockers,
                        );
                        continue;
                    }
                    Change::DeleteDevice(DeleteDevice {
                        id: address.device.clone(),
                        if_match: seen.identity_etag.clone(),
                        modules: seen.modules.keys().cloned().collect(),
                    })
                }
            };
            self.push(change);
        }
    }

    /// Settles the plan: creates of what was not read, deletions (when pruning a `complete` read),
    /// the order of changes and conflicts, the summary and the rollout's waves.
    pub fn finish(mut self, complete: bool) -> (Plan, Seen) {
        self.seen.complete = complete;
        self.creates();
        if self.options.prune && complete {
            self.prune();
        }
        let names_parent =
            |c: &Change| matches!(c, Change::CreateDevice(d) if d.identity.parent.is_some());
        self.plan.changes.sort_by(|a, b| {
            (a.kind().phase(), names_parent(a))
                .cmp(&(b.kind().phase(), names_parent(b)))
                .then_with(|| a.address().cmp(&b.address()))
        });
        // Declared devices in planning order (edge parents first), each device before its modules,
        // then the undeclared ones pruning found.
        let declared = &self.declared;
        self.plan.conflicts.sort_by_cached_key(|c| {
            let rank = match declared.get(c.address.device.as_str()) {
                Some(d) => (0, !d.edge),
                None => (1, true),
            };
            (rank, c.address.clone())
        });
        self.plan.recount();
        if let Some(spec) = &self.fleet.rollout {
            plan_rollout(
                &mut self.plan,
                spec,
                &self.fleet.owner,
                &self.seen,
                declared,
                &self.marks,
            );
        }
        (self.plan, self.seen)
    }
}

/// Whether a twin's ledger names `owner`.
fn owned_by(twin: &ObservedTwin, owner: &str) -> bool {
    matches!(ledger::read(&twin.tags), ledger::Found::Ledger(l) if l.owner == owner)
}

/// Of these owned identities, the ones no manifest declares and `targets` selects: devices (their
/// modules go with them) and modules of declared devices, system modules left out. What
/// `--prune` deletes, and what a plan without it names as no longer declared.
pub fn undeclared(
    fleet: &Fleet,
    owned: impl IntoIterator<Item = TwinAddress>,
    targets: &Targets,
) -> Vec<TwinAddress> {
    let declared: BTreeMap<&str, &DeviceSpec> =
        fleet.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    owned
        .into_iter()
        .filter(|a| match (declared.get(a.device.as_str()), &a.module) {
            (None, None) => targets.device(&a.device),
            (Some(spec), Some(mid)) => {
                !mid.is_system()
                    && !spec.modules.iter().any(|dm| dm.id == *mid)
                    && targets.module(&a.device, mid)
            }
            // A declared device is not gone; a module of an undeclared one goes with it.
            (Some(_), None) | (None, Some(_)) => false,
        })
        .collect()
}

/// A plan as a file holds it: change documents, sensitive values concealed.
pub type SavedPlan = Plan<ChangeDoc>;

impl SavedPlan {
    /// The plan to execute: every change checked, every concealed value got back (a reference from
    /// `env`, an inline value from `fleet`, the manifests the plan was made from) and compared with
    /// the digest the plan recorded. Refused as a whole on any problem, so nothing is sent.
    pub fn resolve(
        self,
        env: &dyn crate::manifest::Env,
        fleet: Option<&Fleet>,
    ) -> Result<Plan, ReadError> {
        let mut sources = secret::Sources::new(env, fleet);
        let mut problems = Vec::new();
        let mut inline: Option<(usize, String, String)> = None;
        // Without manifests, nothing is looked up: the run is refused for the inline values alone.
        let changes: Vec<Change> = {
            let mut reveal =
                |address: &TwinAddress, patch: &mut TwinPatch, concealed: secret::Concealed| {
                    if fleet.is_none() {
                        for path in concealed.inline() {
                            let (count, _, _) = inline
                                .get_or_insert_with(|| (0, address.to_string(), path.to_string()));
                            *count += 1;
                        }
                    }
                    if fleet.is_none() && inline.is_some() {
                        return Vec::new();
                    }
                    concealed.reveal(address, patch, &mut sources, &mut problems)
                };
            let mut out = Vec::with_capacity(self.changes.len());
            for doc in self.changes {
                let what = format!("{:?} of `{}`", doc.kind(), doc.device_id());
                out.push(
                    doc.into_change(&mut reveal)
                        .map_err(|e| ReadError::Malformed(format!("{what}: {e}")))?,
                );
            }
            out
        };
        if let Some((count, address, path)) = inline {
            return Err(ReadError::NeedsManifests {
                count,
                address,
                path,
            });
        }
        if !problems.is_empty() {
            return Err(ReadError::Secrets(problems));
        }
        Ok(Plan {
            format_version: self.format_version,
            hub: self.hub,
            owner: self.owner,
            manifest_digest: self.manifest_digest,
            summary: self.summary,
            changes,
            conflicts: self.conflicts,
            requests: self.requests,
            estimated_apply_seconds: self.estimated_apply_seconds,
            estimated_read_seconds: self.estimated_read_seconds,
            read_seconds: self.read_seconds,
            scope: self.scope,
            no_longer_declared: self.no_longer_declared,
            rollout: self.rollout,
        })
    }
}

impl Plan {
    /// The plan as a file holds it.
    pub fn to_saved(&self) -> SavedPlan {
        SavedPlan {
            format_version: self.format_version,
            hub: self.hub.clone(),
            owner: self.owner.clone(),
            manifest_digest: self.manifest_digest.clone(),
            summary: self.summary,
            changes: self.changes.iter().map(Change::to_doc).collect(),
            conflicts: self.conflicts.clone(),
            requests: self.requests.clone(),
            estimated_apply_seconds: self.estimated_apply_seconds,
            estimated_read_seconds: self.estimated_read_seconds,
            read_seconds: self.read_seconds,
            scope: self.scope.clone(),
            no_longer_declared: self.no_longer_declared.clone(),
            rollout: self.rollout.clone(),
        }
    }
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
    plan.changes.iter().map(deletions).sum()
}

/// Diffs what the manifests want against what the hub holds.
pub fn diff(fleet: &Fleet, observed: &Observed, hub: &str, options: &Options) -> Plan {
    diff_seen(fleet, observed, hub, options).0
}

/// [`diff`], also returning what the plan kept of each observed identity.
pub fn diff_seen(fleet: &Fleet, observed: &Observed, hub: &str, options: &Options) -> (Plan, Seen) {
    let mut d = Differ::new(fleet, hub, options);
    for od in observed.devices.values() {
        d.device(od);
    }
    d.finish(observed.complete)
}

/// The waves of a plan's rolled-out twin updates, and each one's mark in its ledger. `first.tags` is
/// matched against each device's tags as they will be after apply: the declared tags over the
/// observed ones.
///
/// The hub remembers a rollout, not a local file: a twin written in a wave carries the rollout's ID
/// and wave in its ledger. A re-run of the same manifests no longer sees the written twins as
/// changes, so the rollout is recognised by its ID: the twins marked with it together with the twins
/// still to write must give that ID again (the same twins with the same target values). Then the
/// plan continues it, with the same waves and `written` set to the last wave a run wrote; otherwise
/// (a target value changed in git, or other twins) the changes start a new rollout of their own.
fn plan_rollout(
    plan: &mut Plan,
    spec: &crate::model::RolloutSpec,
    owner: &Owner,
    seen: &Seen,
    declared: &BTreeMap<&str, &DeviceSpec>,
    marks: &Marks,
) {
    let is_first = |device: &DeviceId| {
        let Some(first) = &spec.first else {
            return false;
        };
        let mut tags = seen
            .devices
            .get(device)
            .map(|o| o.first_tags.clone())
            .unwrap_or_default();
        if let Some(d) = declared.get(device.as_str()) {
            tags.extend(d.twin.tags.to_map());
        }
        rollout::matches_first(first, &tags)
    };
    choose_rollout(plan, spec, owner, marks, is_first);
}

/// The twins a rollout marked, by its ID: each twin's address, the [`rollout::target_digest`] of
/// the owned desired values it holds now (the targets it was written with) and its marked wave.
pub type Marks = BTreeMap<Digest, Vec<(TwinAddress, [u8; 32], usize)>>;

/// The rollout of the plan's rolled-out updates: the marked rollout they continue, if the marked
/// twins and the ones still to write give its ID again, else a new one over the changes; stamped
/// into the changes' ledgers.
fn choose_rollout(
    plan: &mut Plan,
    spec: &crate::model::RolloutSpec,
    owner: &Owner,
    marks: &Marks,
    is_first: impl Fn(&DeviceId) -> bool,
) {
    let changed: Vec<(TwinAddress, [u8; 32])> = plan
        .changes
        .iter()
        .filter_map(rollout::rolled_out)
        .map(|t| (t.address.clone(), rollout::target_digest(&t.target.desired)))
        .collect();
    if changed.is_empty() {
        return;
    }
    let candidates = |twins: &[(TwinAddress, [u8; 32])]| -> Vec<(TwinAddress, [u8; 32], bool)> {
        twins
            .iter()
            .map(|(a, d)| (a.clone(), *d, is_first(&a.device)))
            .collect()
    };
    let mut chosen = None;
    for (id, twins) in marks {
        let mut union: BTreeMap<TwinAddress, [u8; 32]> =
            twins.iter().map(|(a, d, _)| (a.clone(), *d)).collect();
        union.extend(changed.iter().cloned());
        let union: Vec<(TwinAddress, [u8; 32])> = union.into_iter().collect();
        let all = candidates(&union);
        if rollout::id(&as_candidates(&all)) == *id {
            let last = twins.iter().map(|(_, _, wave)| *wave).max();
            chosen = rollout::plan(spec, owner, &as_candidates(&all)).map(|mut r| {
                r.written = last;
                r
            });
            break;
        }
    }
    let rollout =
        chosen.or_else(|| rollout::plan(spec, owner, &as_candidates(&candidates(&changed))));
    if let Some(r) = &rollout {
        stamp(plan, r);
    }
    plan.rollout = rollout;
}

fn as_candidates(c: &[(TwinAddress, [u8; 32], bool)]) -> Vec<rollout::Candidate<'_>> {
    c.iter()
        .map(|(address, target, first)| rollout::Candidate {
            address,
            target: *target,
            first: *first,
        })
        .collect()
}

/// The rollout mark of one declared twin whose ledger is ours: the rollout's ID, the
/// [`rollout::target_digest`] of its owned desired values now, and its wave.
pub fn mark_of(
    owner: &str,
    spec: &crate::model::TwinSpec,
    seen: &ObservedTwin,
) -> Option<(Digest, [u8; 32], usize)> {
    let ledger::Found::Ledger(l) = ledger::read(&seen.tags) else {
        return None;
    };
    if l.owner != owner {
        return None;
    }
    let mark = l.rollout?;
    let desired = twin::declared_desired(spec, seen);
    Some((mark.id, rollout::target_digest(&desired), mark.wave))
}

/// Writes each rolled-out update's mark into the ledger it writes (`patch` and `target`), so the
/// hub remembers the rollout and the wave. The field diff shown stays the planned values'.
fn stamp(plan: &mut Plan, r: &Rollout) {
    for c in &mut plan.changes {
        let Change::UpdateTwin(t) = c else { continue };
        if t.patch.desired.is_empty() {
            continue;
        }
        let Some(wave) = r.wave_of(&t.address) else {
            continue;
        };
        let mark = ledger::Mark {
            id: r.id.clone(),
            wave,
            desired: rollout::gated_keys(t),
        };
        let base = t.base.tags.get(LEDGER_TAG).cloned();
        let Some(Value::Object(target)) = t.target.tags.get_mut(LEDGER_TAG) else {
            continue;
        };
        target.insert("rollout".into(), mark.to_value());
        let target = Value::Object(target.clone());
        match patch::merge_patch(base.as_ref(), Some(&target)) {
            Some(p) => {
                t.patch.tags.insert(LEDGER_TAG.into(), p);
            }
            None => {
                t.patch.tags.remove(LEDGER_TAG);
            }
        }
    }
}

#[cfg(test)]
mod tests;
