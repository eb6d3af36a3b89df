//! The streaming diff: the fleet against observed twins, handed over one at a time as the hub's
//! pages or GETs arrive, into a [`Plan`] of typed changes and conflicts through the ownership
//! ledger. What is kept of a twin once it has been diffed is a [`Seen`] record, never its content.

use std::collections::BTreeMap;

use serde_json::json;

use super::rollout::select::{Marks, mark_of, plan_rollout};
use super::{
    Change, Conflict, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity,
    FORMAT_VERSION, FieldDiff, IdentityUpdate, Options, Plan, Seen, SeenDevice, SeenModule,
    Summary, UpdateDevice, UpdateModule, UpdateTwin, change, document, ledger, scope_device,
    secret, twin,
};
use crate::model::{
    AuthSpec, DeviceId, DeviceSpec, Fleet, ModuleSpec, Observed, ObservedAuth, ObservedDevice,
    ObservedModule, ObservedTwin, Targets, TwinAddress, TwinSpec,
};

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
