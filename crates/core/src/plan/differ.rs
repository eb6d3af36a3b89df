//! The streaming diff: the fleet against observed twins, handed over one at a time as the hub's
//! pages or GETs arrive, into a [`Plan`] of typed changes and conflicts through the ownership
//! ledger. What is kept of a twin once it has been diffed is a [`Seen`] record, never its content.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::ledger::IdentityField;
use super::rollout::select::{Marks, mark_of, plan_rollout};
use super::{
    Change, Conflict, CreateDevice, CreateModule, DeleteDevice, DeleteModule, DeviceIdentity,
    Disruption, FORMAT_VERSION, FieldDiff, IdentityUpdate, Managed, Options, Plan, Released, Seen,
    SeenDevice, SeenModule, Summary, UpdateDevice, UpdateModule, UpdateTwin, change, document,
    ledger, scope_device, secret, twin, writers,
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

/// What a device identity update changes and the diff that shows it: the declared fields only
/// (SPEC §15: an undeclared field is never changed), each compared with the hub's value.
fn device_identity_update(
    d: &DeviceSpec,
    seen: &ObservedDevice,
) -> (IdentityUpdate, Vec<FieldDiff>) {
    let mut set = IdentityUpdate::default();
    let mut diff = Vec::new();
    if let Some(status) = d.status
        && status != seen.status
    {
        set.status = Some(status);
        diff.push(FieldDiff {
            path: change::FIELD_STATUS.into(),
            before: Some(json!(seen.status.as_str())),
            after: Some(json!(status.as_str())),
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
    if let Some(auth) = &d.auth
        && auth_differs(auth, &seen.auth)
    {
        set.auth = Some(auth.clone());
        diff.push(FieldDiff {
            path: change::FIELD_AUTH.into(),
            before: Some(document::observed_auth_doc(&seen.auth)),
            after: Some(document::auth_doc(auth)),
        });
    }
    if let Some(edge) = d.edge
        && edge != seen.edge
    {
        set.edge = Some(edge);
        diff.push(FieldDiff {
            path: change::FIELD_EDGE.into(),
            before: Some(json!(seen.edge)),
            after: Some(json!(edge)),
        });
    }
    let seen_parent = seen.parent_scopes.first().and_then(|s| scope_device(s));
    if let Some(parent) = &d.parent
        && Some(parent.as_str()) != seen_parent
    {
        set.parent = Some(Some(parent.clone()));
        diff.push(FieldDiff {
            path: change::FIELD_PARENT.into(),
            before: seen_parent.map(|p| json!(p)),
            after: Some(json!(parent)),
        });
    }
    (set, diff)
}

/// What a device identity update does to the devices that use it; edge devices' children are
/// counted at the end of the plan, when every device has been read.
fn device_disruption(set: &IdentityUpdate, seen: &ObservedDevice) -> Option<Disruption> {
    if set.auth.is_some() {
        Some(Disruption::Credentials)
    } else if set.status == Some(crate::model::DeviceStatus::Disabled) {
        Some(Disruption::Disabled)
    } else if set.parent.is_some() && !seen.parent_scopes.is_empty() {
        Some(Disruption::ParentMoves)
    } else {
        None
    }
}

/// An identity field's value as the hub holds it, shown for a released field (`stays "disabled"`).
fn field_value(
    f: IdentityField,
    auth: &ObservedAuth,
    device: Option<&ObservedDevice>,
) -> Option<Value> {
    match (f, device) {
        (IdentityField::Auth, _) => Some(document::observed_auth_doc(auth)),
        (IdentityField::Status, Some(d)) => Some(json!(d.status.as_str())),
        (IdentityField::StatusReason, Some(d)) => d.status_reason.as_ref().map(|r| json!(r)),
        (IdentityField::Edge, Some(d)) => Some(json!(d.edge)),
        (IdentityField::Parent, Some(d)) => d
            .parent_scopes
            .first()
            .and_then(|s| scope_device(s))
            .map(|p| json!(p)),
        (_, None) => None,
    }
}

/// The conflict of a twin whose declared fields or keys other owners manage: each named with its
/// manager (SPEC §15).
fn managed_conflict(address: TwinAddress, managed: Vec<Managed>) -> Conflict {
    let reason = managed
        .iter()
        .map(|m| format!("{} is managed by `{}`", m.path, m.owner))
        .collect::<Vec<_>>()
        .join("; ");
    Conflict {
        address,
        reason: format!("{reason} (apply --force-conflicts takes it over)"),
        keys: managed.into_iter().map(|m| m.path).collect(),
    }
}

/// The conflict of a twin whose reserved tag this twinops cannot write.
fn unwritable_conflict(address: TwinAddress, newer: Option<u64>) -> Conflict {
    let reason = match newer {
        Some(n) => format!(
            "its ledger was written by a newer twinops (form {n}); upgrade twinops to plan it"
        ),
        None => "the `twinops` tag is not a ledger (apply --force-conflicts takes it over)".into(),
    };
    Conflict {
        address,
        reason,
        keys: Vec::new(),
    }
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
    /// What giving up each twin this owner manages but no manifest declares would write, for
    /// `--prune` to release instead of deleting an identity other owners share (SPEC §15).
    releases: BTreeMap<TwinAddress, Change>,
}

/// Whether a twin's ledger holds an entry of `owner`, and whether another owner manages anything
/// on it (a ledger this twinops cannot read counts as another owner's).
fn presence(ledger: &ledger::Found, owner: &str) -> (bool, bool) {
    match ledger {
        ledger::Found::None => (false, false),
        ledger::Found::Ledger(l) => (l.entry(owner).is_some(), l.others_manage_anything(owner)),
        ledger::Found::Malformed | ledger::Found::Newer(_) => (false, true),
    }
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
                warnings: Vec::new(),
                read: None,
                digest_key: None,
                objects: Default::default(),
                awaiting: Vec::new(),
            },
            seen: Seen::default(),
            first_keys: fleet
                .rollout
                .as_ref()
                .and_then(|r| r.first.as_ref())
                .map(|f| f.keys().map(String::as_str).collect())
                .unwrap_or_default(),
            marks: Marks::new(),
            releases: BTreeMap::new(),
        }
    }

    fn push(&mut self, c: Change) {
        self.plan.changes.push(c);
    }

    fn create_device(&mut self, d: &DeviceSpec) {
        self.push(Change::CreateDevice(Box::new(CreateDevice {
            id: d.id.clone(),
            // Defaults are for creates only (SPEC §15): they are not declarations.
            identity: DeviceIdentity {
                status: d.status.unwrap_or_default(),
                status_reason: d.status_reason.clone(),
                auth: d.auth.clone().unwrap_or(AuthSpec::Sas),
                edge: d.edge.unwrap_or(false),
                parent: d.parent.clone(),
            },
            // The content is held once: what a create shows (target, diff) is derived from it.
            twin: twin::create_content(&self.fleet.owner, d.fields(), &d.twin),
            sensitive: d.twin.sensitive.clone(),
            refs: d.twin.refs.clone(),
            key: self.options.digest_key,
        })));
    }

    fn create_module(&mut self, d: &DeviceSpec, m: &ModuleSpec) {
        self.push(Change::CreateModule(Box::new(CreateModule {
            device: d.id.clone(),
            module: m.id.clone(),
            managed_by: m.managed_by.clone(),
            auth: m.auth.clone().unwrap_or(AuthSpec::Sas),
            twin: twin::create_content(&self.fleet.owner, m.fields(), &m.twin),
            sensitive: m.twin.sensitive.clone(),
            refs: m.twin.refs.clone(),
            key: self.options.digest_key,
        })));
    }

    /// Plans one declared twin and the fields of its identity kept in its ledger; `None` when it
    /// is a conflict (nothing of it, nor of its identity, is planned), else the fields and keys it
    /// adopts. `stays` is an identity field's value in the hub, for the fields it releases.
    fn twin(
        &mut self,
        address: TwinAddress,
        input: &twin::Twin<'_>,
        stays: &dyn Fn(IdentityField) -> Option<Value>,
    ) -> Option<Vec<String>> {
        let (spec, seen) = (input.spec, input.seen);
        if self.fleet.rollout.is_some()
            && let Some((id, target, wave)) = mark_of(
                &self.fleet.owner,
                input.ledger,
                spec,
                &input.desired,
                seen,
                self.options.digest_key,
            )
        {
            self.marks
                .entry(id)
                .or_default()
                .push((address.clone(), target, wave));
        }
        match twin::diff(input) {
            twin::Outcome::Unchanged => {
                self.plan.summary.unchanged += 1;
                if self.options.awaiting
                    && let Some(expect) = super::drift::unacknowledged(&input.desired, seen)
                {
                    self.plan.awaiting.push(super::Awaiting { address, expect });
                }
                Some(Vec::new())
            }
            twin::Outcome::Conflict(managed) => {
                self.plan.conflicts.push(managed_conflict(address, managed));
                None
            }
            twin::Outcome::Unwritable(newer) => {
                self.plan
                    .conflicts
                    .push(unwritable_conflict(address, newer));
                None
            }
            twin::Outcome::Changed(t) => {
                let adopted = t.adopted.clone();
                let refs = secret::carried(&t.patch, &spec.refs);
                let change = twin_change(address, seen, *t, spec, refs, stays);
                self.push(change);
                Some(adopted)
            }
        }
    }

    /// One declared twin to diff: its spec's sections are parsed here, once for everything that
    /// reads them, and `ledger` is the one read from `seen`.
    fn declared_twin<'t>(
        &self,
        spec: &'t TwinSpec,
        fields: BTreeSet<IdentityField>,
        seen: &'t ObservedTwin,
        ledger: &'t ledger::Found,
    ) -> twin::Twin<'t>
    where
        'a: 't,
    {
        twin::Twin {
            owner: self.fleet.owner.as_str(),
            spec,
            tags: spec.tags.to_map(),
            desired: spec.desired.to_map(),
            fields,
            seen,
            ledger,
            force: self.options.force_conflicts,
            key: self.options.digest_key,
        }
    }

    /// Keeps which configurations were applied to a declared twin, to name those that write its
    /// declared desired keys once their contents are read. Its device was read first: what was
    /// applied to the device was kept then (for a module twin, its edge deployments).
    fn keep_configured(&mut self, address: &TwinAddress, input: &twin::Twin<'_>) {
        let device = self
            .seen
            .devices
            .get(&address.device)
            .map_or(&[][..], |sd| sd.applied.as_slice());
        let module;
        let (applied, deployments) = match address.module {
            None => (device, &[][..]),
            Some(_) => {
                module = writers::applied(input.seen);
                (module.as_slice(), device)
            }
        };
        if let Some(c) = writers::configured(
            address.clone(),
            input.spec,
            &input.desired,
            input.seen,
            applied,
            deployments,
            self.options.digest_key,
        ) {
            self.seen.configured.push(c);
        }
    }

    /// Keeps what releasing a twin this owner manages would write, for `--prune`: only
    /// [`Differ::prune`] reads it, so a plan without `--prune` does not compute it.
    fn keep_release(
        &mut self,
        address: TwinAddress,
        seen: &ObservedTwin,
        ledger: &ledger::Found,
        stays: &dyn Fn(IdentityField) -> Option<Value>,
    ) {
        if !self.options.prune {
            return;
        }
        if let Some(t) = twin::release(&self.fleet.owner, ledger, seen, self.options.digest_key) {
            let spec = TwinSpec::default();
            let change = match twin_change(address.clone(), seen, t, &spec, Vec::new(), stays) {
                Change::UpdateTwin(u) | Change::Release(u) => Change::Release(u),
                other => other,
            };
            self.releases.insert(address, change);
        }
    }

    /// One observed device: its own twin and identity are diffed now, and so are the modules it
    /// carries (a read may also hand them over later, through [`Differ::module`]). A device read
    /// twice (query rows can repeat while the index catches up) counts once.
    pub fn device(&mut self, seen: &ObservedDevice) {
        if self.seen.devices.contains_key(&seen.id) {
            return;
        }
        // Read once: the diff and the rollout's mark read it too.
        let ledger = ledger::read(&seen.twin.tags);
        let (owned, shared) = presence(&ledger, &self.fleet.owner);
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
                owned,
                shared,
                scope: seen.device_scope.clone(),
                parent_scope: seen.parent_scopes.first().cloned(),
                first_tags,
                applied: writers::applied(&seen.twin),
                modules: BTreeMap::new(),
            },
        );
        let stays = |f| field_value(f, &seen.auth, Some(seen));
        match self.declared.get(seen.id.as_str()).copied() {
            Some(d) if self.options.targets.device(&d.id) => {
                self.declared_device(d, seen, &ledger);
            }
            Some(_) => {}
            None if owned => {
                let address = TwinAddress::device(seen.id.clone());
                self.keep_release(address, &seen.twin, &ledger, &stays);
            }
            None => {}
        }
        for m in seen.modules.values() {
            self.module(&seen.id, m);
        }
    }

    fn declared_device(&mut self, d: &DeviceSpec, seen: &ObservedDevice, ledger: &ledger::Found) {
        let address = TwinAddress::device(d.id.clone());
        let input = self.declared_twin(&d.twin, d.fields(), &seen.twin, ledger);
        self.keep_configured(&address, &input);
        let stays = |f| field_value(f, &seen.auth, Some(seen));
        let Some(adopted) = self.twin(address, &input, &stays) else {
            return;
        };
        let (set, diff) = device_identity_update(d, seen);
        if diff.is_empty() {
            return;
        }
        let adopting = |f: IdentityField| adopted.iter().any(|a| a == f.as_str());
        let adopt = (set.status.is_some() && adopting(IdentityField::Status))
            || (set.status_reason.is_some() && adopting(IdentityField::StatusReason))
            || (set.auth.is_some() && adopting(IdentityField::Auth))
            || (set.edge.is_some() && adopting(IdentityField::Edge))
            || (set.parent.is_some() && adopting(IdentityField::Parent));
        let disruptive = device_disruption(&set, seen);
        self.push(Change::UpdateDevice(UpdateDevice {
            id: d.id.clone(),
            if_match: seen.identity_etag.clone(),
            set,
            diff,
            adopt,
            disruptive,
        }));
    }

    /// One observed module twin. A module whose device was not read (its query row lagged behind
    /// in the index) is left out; the next plan sees it.
    pub fn module(&mut self, device: &DeviceId, seen: &ObservedModule) {
        let ledger = ledger::read(&seen.twin.tags);
        let (owned, shared) = presence(&ledger, &self.fleet.owner);
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
                shared,
            },
        );
        let address = TwinAddress::module(device.clone(), seen.id.clone());
        let stays = |f| field_value(f, &seen.auth, None);
        let declared = self.declared.get(device.as_str()).copied();
        match declared.and_then(|d| Some((d, d.modules.iter().find(|m| m.id == seen.id)?))) {
            Some((d, m)) if self.options.targets.module(&d.id, &m.id) => {
                self.declared_module(d, m, seen, &ledger);
            }
            Some(_) => {}
            None if owned => self.keep_release(address, &seen.twin, &ledger, &stays),
            None => {}
        }
    }

    fn declared_module(
        &mut self,
        d: &DeviceSpec,
        m: &ModuleSpec,
        seen: &ObservedModule,
        ledger: &ledger::Found,
    ) {
        let address = TwinAddress::module(d.id.clone(), m.id.clone());
        let input = self.declared_twin(&m.twin, m.fields(), &seen.twin, ledger);
        self.keep_configured(&address, &input);
        let stays = |f| field_value(f, &seen.auth, None);
        let Some(adopted) = self.twin(address, &input, &stays) else {
            return;
        };
        let Some(auth) = m.auth.as_ref().filter(|a| auth_differs(a, &seen.auth)) else {
            return;
        };
        let diff = vec![FieldDiff {
            path: change::FIELD_AUTH.into(),
            before: Some(document::observed_auth_doc(&seen.auth)),
            after: Some(document::auth_doc(auth)),
        }];
        self.push(Change::UpdateModule(UpdateModule {
            device: d.id.clone(),
            module: m.id.clone(),
            if_match: seen.identity_etag.clone(),
            auth: auth.clone(),
            diff,
            adopt: adopted.iter().any(|a| a == IdentityField::Auth.as_str()),
            disruptive: Some(Disruption::Credentials),
        }));
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

    /// Identity by identity (SPEC §15): a module another owner manages is released, a module only
    /// this owner manages is deleted, and a device is deleted only when nothing on it or its
    /// modules is managed by another owner; else what this owner manages on it is released.
    fn prune(&mut self) {
        let gone = undeclared(self.fleet, self.seen.owned(), &self.options.targets);
        for address in gone {
            let Some(sd) = self.seen.devices.get(&address.device) else {
                continue;
            };
            let mut out = Vec::new();
            match &address.module {
                Some(mid) => {
                    if let Some(m) = sd.modules.get(mid) {
                        out.push(Self::release_or_delete(&mut self.releases, &address, m));
                    }
                }
                None if self.seen.shared(&address.device) => {
                    out.push(self.releases.remove(&address));
                    let owned = sd
                        .modules
                        .iter()
                        .filter(|(mid, m)| m.owned && !mid.is_system());
                    for (mid, m) in owned {
                        let module = TwinAddress::module(address.device.clone(), mid.clone());
                        out.push(Self::release_or_delete(&mut self.releases, &module, m));
                    }
                }
                None => out.push(Some(Change::DeleteDevice(DeleteDevice {
                    id: address.device.clone(),
                    if_match: sd.identity_etag.clone(),
                    modules: sd.modules.keys().cloned().collect(),
                }))),
            }
            for c in out.into_iter().flatten() {
                self.push(c);
            }
        }
    }

    /// A module this owner manages that no manifest declares: released when another owner shares
    /// it, else deleted.
    fn release_or_delete(
        releases: &mut BTreeMap<TwinAddress, Change>,
        address: &TwinAddress,
        m: &SeenModule,
    ) -> Option<Change> {
        if m.shared {
            return releases.remove(address);
        }
        let module = address.module.clone()?;
        Some(Change::DeleteModule(DeleteModule {
            device: address.device.clone(),
            module,
            if_match: m.twin_etag.clone(),
        }))
    }

    /// An edge device that stops being one disrupts the children it has: those read, and those the
    /// manifests place under it.
    fn mark_demotions(&mut self) {
        let demotes = |c: &Change| {
            matches!(c, Change::UpdateDevice(u)
                if u.set.edge == Some(false) && u.disruptive.is_none())
        };
        if !self.plan.changes.iter().any(demotes) {
            return;
        }
        // Counted once, not per demotion: a plan can demote many devices of a large fleet.
        let read = self.seen.parent_scopes();
        let declared: BTreeSet<&DeviceId> = self
            .fleet
            .devices
            .iter()
            .filter_map(|d| d.parent.as_ref())
            .collect();
        for c in &mut self.plan.changes {
            if !demotes(c) {
                continue;
            }
            let Change::UpdateDevice(u) = c else { continue };
            let has_read = self
                .seen
                .devices
                .get(&u.id)
                .and_then(|d| d.scope.as_deref())
                .is_some_and(|scope| read.contains(scope));
            if has_read || declared.contains(&u.id) {
                u.disruptive = Some(Disruption::ChildrenLoseParent);
            }
        }
    }

    /// Settles the plan: creates of what was not read, deletions and releases (when pruning a
    /// `complete` read), the order of changes and conflicts, the summary and the rollout's waves.
    pub fn finish(mut self, complete: bool) -> (Plan, Seen) {
        self.seen.complete = complete;
        self.creates();
        if self.options.prune && complete {
            self.prune();
        }
        self.mark_demotions();
        let names_parent =
            |c: &Change| matches!(c, Change::CreateDevice(d) if d.identity.parent.is_some());
        // Each change's address is built once, not twice per comparison (a plan can hold a
        // million changes); the sort is stable as `sort_by` was.
        self.plan
            .changes
            .sort_by_cached_key(|c| (c.kind().phase(), names_parent(c), c.address()));
        // Declared devices in planning order (edge parents first), each device before its modules,
        // then the undeclared ones pruning found.
        let declared = &self.declared;
        self.plan.conflicts.sort_by_cached_key(|c| {
            let rank = match declared.get(c.address.device.as_str()) {
                Some(d) => (0, d.edge != Some(true)),
                None => (1, true),
            };
            (rank, c.address.clone())
        });
        self.plan.recount();
        // A plan whose changes hold digests of sensitive values names the key they were made under.
        if self.plan.changes.iter().any(|c| !c.sensitive().is_empty()) {
            self.plan.digest_key = Some(self.options.digest_key.fingerprint());
        }
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

/// The change of one twin: an update, or a release when all it does is give up identity fields.
fn twin_change(
    address: TwinAddress,
    seen: &ObservedTwin,
    t: twin::TwinChange,
    spec: &TwinSpec,
    refs: Vec<crate::model::EnvRef>,
    stays: &dyn Fn(IdentityField) -> Option<Value>,
) -> Change {
    let released: Vec<Released> = t
        .released
        .iter()
        .map(|f| Released {
            field: *f,
            stays: stays(*f),
        })
        .collect();
    let only_ledger =
        t.patch.desired.is_empty() && t.patch.tags.keys().all(|k| k == crate::model::LEDGER_TAG);
    let release =
        !released.is_empty() && t.adopted.is_empty() && t.forced.is_empty() && only_ledger;
    let update = Box::new(UpdateTwin {
        address,
        if_match: seen.etag.clone(),
        base: t.base,
        target: t.target,
        patch: t.patch,
        diff: t.diff,
        ignore: spec.ignore.clone(),
        sensitive: spec.sensitive.clone(),
        refs,
        key: t.key,
        adopted: t.adopted,
        released,
        forced: t.forced,
    });
    if release {
        Change::Release(update)
    } else {
        Change::UpdateTwin(update)
    }
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
