//! The reconciler's pure core: `diff(fleet, observed)` through the ownership ledger into a [`Plan`] of
//! changes, each with the minimal merge patch, the etag it was computed against and the owned values it
//! saw (`base`).
//!
//! This module sees only [`crate::model`] values: it never imports `iothub`, `hub` or `emulator`, and it
//! does no I/O.

pub mod drift;
pub mod ledger;
pub mod patch;
pub mod target;
mod twin;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::{
    AuthSpec, DeviceSpec, Fleet, ModuleSpec, Observed, ObservedAuth, ObservedDevice, ObservedModule,
};
pub use target::Targets;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// The apply phase, in SPEC §7 order.
    pub fn phase(self) -> u8 {
        match self {
            Kind::CreateDevice => 0,
            Kind::CreateModule => 1,
            Kind::UpdateDevice | Kind::UpdateModule => 2,
            Kind::UpdateDeviceTwin | Kind::UpdateModuleTwin => 3,
            Kind::DeleteModule => 4,
            Kind::DeleteDevice => 5,
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

/// One change: an identity or a twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The etag the change was computed against (unquoted); `None` for creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<String>,
    /// Twin changes: the owned values seen, `{"tags": {K: v|null}, "desired": {K: v|null}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Value>,
    /// Twin changes: the owned values wanted, same shape as `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// What to send: a twin merge patch (`{"tags": …, "properties": {"desired": …}}`), the identity fields
    /// to change, or for creates the identity and its twin content.
    pub patch: Value,
    pub diff: Vec<FieldDiff>,
    /// Dotted paths never planned (`ignore`), needed to re-check a twin on 412.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Dotted paths whose values are digests in `base`, `target` and `diff`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

impl Change {
    /// The owned values this change wants (`{"tags": …, "desired": …}`, sensitive values as digests):
    /// `target`, or for creates the view of the content in `patch.twin`.
    pub fn wanted(&self) -> Option<Value> {
        if let Some(t) = &self.target {
            return Some(t.clone());
        }
        let twin = self.patch.get("twin")?;
        Some(twin::content_view(twin, &self.sensitive))
    }

    /// The field-level diff to show: `diff`, or for creates every owned key of the content.
    pub fn shown_diff(&self) -> Vec<FieldDiff> {
        if !self.diff.is_empty() || self.action != Action::Create {
            return self.diff.clone();
        }
        let Some(wanted) = self.wanted() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for section in ["tags", "desired"] {
            if let Some(m) = wanted.get(section).and_then(Value::as_object) {
                for (k, v) in m {
                    out.push(FieldDiff {
                        path: format!("{section}.{k}"),
                        before: None,
                        after: Some(v.clone()),
                    });
                }
            }
        }
        out
    }

    /// `device` or `device/module`.
    pub fn address(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{m}", self.device_id),
            None => self.device_id.clone(),
        }
    }
}

/// A twin (or identity) the plan will not touch because someone else owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conflict {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format_version: u32,
    /// The hub identity: host name with port, or the embedded hub's ID.
    pub hub: String,
    pub owner: String,
    pub manifest_digest: String,
    pub summary: Summary,
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
    /// HTTP requests made while planning, by operation class.
    #[serde(default)]
    pub requests: BTreeMap<String, u64>,
    /// Estimated apply time at the chosen pace, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_apply_seconds: Option<f64>,
}

impl Plan {
    pub fn has_differences(&self) -> bool {
        !self.changes.is_empty() || !self.conflicts.is_empty()
    }

    fn count(&mut self) {
        let mut s = Summary {
            unchanged: self.summary.unchanged,
            conflicts: self.conflicts.len(),
            ..Summary::default()
        };
        for c in &self.changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
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
    if want.wire_type() != seen.kind {
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

/// The identity wire fields for an [`AuthSpec`] (never keys: the hub generates them).
pub fn auth_value(auth: &AuthSpec) -> Value {
    match auth {
        AuthSpec::X509 { primary, secondary } => json!({
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": primary, "secondaryThumbprint": secondary},
        }),
        other => json!({"type": other.wire_type()}),
    }
}

fn device_identity_value(d: &DeviceSpec) -> Value {
    let mut v = json!({
        "status": d.status.as_str(),
        "authentication": auth_value(&d.auth),
        "capabilities": {"iotEdge": d.edge},
    });
    if let Some(r) = &d.status_reason {
        v["statusReason"] = json!(r);
    }
    if let Some(p) = &d.parent {
        v["parent"] = json!(p);
    }
    v
}

fn module_identity_value(m: &ModuleSpec) -> Value {
    let mut v = json!({"authentication": auth_value(&m.auth)});
    if let Some(mb) = &m.managed_by {
        v["managedBy"] = json!(mb);
    }
    v
}

fn device_identity_diff(d: &DeviceSpec, seen: &ObservedDevice) -> Vec<FieldDiff> {
    let mut diff = Vec::new();
    if d.status != seen.status {
        diff.push(FieldDiff {
            path: "status".into(),
            before: Some(json!(seen.status.as_str())),
            after: Some(json!(d.status.as_str())),
        });
    }
    if let Some(r) = &d.status_reason
        && seen.status_reason.as_deref().unwrap_or("") != r
    {
        diff.push(FieldDiff {
            path: "statusReason".into(),
            before: seen.status_reason.as_ref().map(|s| json!(s)),
            after: Some(json!(r)),
        });
    }
    if auth_differs(&d.auth, &seen.auth) {
        diff.push(FieldDiff {
            path: "authentication".into(),
            before: Some(observed_auth_value(&seen.auth)),
            after: Some(auth_value(&d.auth)),
        });
    }
    if d.edge != seen.edge {
        diff.push(FieldDiff {
            path: "capabilities.iotEdge".into(),
            before: Some(json!(seen.edge)),
            after: Some(json!(d.edge)),
        });
    }
    let seen_parent = seen.parent_scopes.first().and_then(|s| scope_device(s));
    if d.parent.as_deref() != seen_parent {
        diff.push(FieldDiff {
            path: "parent".into(),
            before: seen_parent.map(|p| json!(p)),
            after: d.parent.as_ref().map(|p| json!(p)),
        });
    }
    diff
}

fn observed_auth_value(a: &ObservedAuth) -> Value {
    if a.kind == "selfSigned" {
        json!({"type": a.kind, "x509Thumbprint": {"primaryThumbprint": a.primary_thumbprint, "secondaryThumbprint": a.secondary_thumbprint}})
    } else {
        json!({"type": a.kind})
    }
}

fn diff_patch(diff: &[FieldDiff]) -> Value {
    let mut m = serde_json::Map::new();
    for d in diff {
        m.insert(d.path.clone(), d.after.clone().unwrap_or(Value::Null));
    }
    Value::Object(m)
}

struct Planner<'a> {
    fleet: &'a Fleet,
    options: &'a Options,
    plan: Plan,
}

impl Planner<'_> {
    fn push(&mut self, c: Change) {
        self.plan.changes.push(c);
    }

    fn conflict(&mut self, device: &str, module: Option<&str>, reason: String, keys: Vec<String>) {
        self.plan.conflicts.push(Conflict {
            device_id: device.to_string(),
            module_id: module.map(str::to_string),
            reason,
            keys,
        });
    }

    fn create_device(&mut self, d: &DeviceSpec) {
        let content = twin::create_content(&self.fleet.owner, &d.twin);
        let mut patch = device_identity_value(d);
        patch["twin"] = content;
        self.push(Change {
            action: Action::Create,
            kind: Kind::CreateDevice,
            device_id: d.id.clone(),
            module_id: None,
            if_match: None,
            base: None,
            // The content lives once, in `patch.twin`: `target` and `diff` are derived when shown
            // (see `Change::shown_diff`), which keeps a large new fleet's plan small.
            target: None,
            patch,
            diff: Vec::new(),
            ignore: Vec::new(),
            sensitive: twin::path_strings(&d.twin.sensitive),
        });
    }

    fn create_module(&mut self, d: &DeviceSpec, m: &ModuleSpec) {
        let content = twin::create_content(&self.fleet.owner, &m.twin);
        let mut patch = module_identity_value(m);
        patch["twin"] = content;
        self.push(Change {
            action: Action::Create,
            kind: Kind::CreateModule,
            device_id: d.id.clone(),
            module_id: Some(m.id.clone()),
            if_match: None,
            base: None,
            // The content lives once, in `patch.twin`: `target` and `diff` are derived when shown
            // (see `Change::shown_diff`), which keeps a large new fleet's plan small.
            target: None,
            patch,
            diff: Vec::new(),
            ignore: Vec::new(),
            sensitive: twin::path_strings(&m.twin.sensitive),
        });
    }

    /// Plans one twin; returns false when it is a conflict.
    fn twin(
        &mut self,
        kind: Kind,
        device: &str,
        module: Option<&str>,
        spec: &crate::model::TwinSpec,
        seen: &crate::model::ObservedTwin,
    ) -> bool {
        match twin::diff(&self.fleet.owner, spec, seen, self.options.adopt) {
            twin::Outcome::Unchanged => {
                self.plan.summary.unchanged += 1;
                true
            }
            twin::Outcome::OtherOwner(owner) => {
                self.conflict(
                    device,
                    module,
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
                self.push(Change {
                    action: Action::Update,
                    kind,
                    device_id: device.to_string(),
                    module_id: module.map(str::to_string),
                    if_match: Some(seen.etag.clone()),
                    base: Some(t.base),
                    target: Some(t.target),
                    patch: t.patch,
                    diff: t.diff,
                    ignore: twin::path_strings(&spec.ignore),
                    sensitive: twin::path_strings(&spec.sensitive),
                });
                true
            }
        }
    }

    fn device(&mut self, d: &DeviceSpec, seen: Option<&ObservedDevice>) {
        let targets = &self.options.targets;
        let Some(seen) = seen else {
            if targets.touches(&d.id) {
                self.create_device(d);
                for m in &d.modules {
                    if targets.device(&d.id) || targets.module(&d.id, &m.id) {
                        self.create_module(d, m);
                    }
                }
            }
            return;
        };
        if targets.device(&d.id) {
            let twin_ok = self.twin(Kind::UpdateDeviceTwin, &d.id, None, &d.twin, &seen.twin);
            let diff = device_identity_diff(d, seen);
            if twin_ok && !diff.is_empty() {
                self.push(Change {
                    action: Action::Update,
                    kind: Kind::UpdateDevice,
                    device_id: d.id.clone(),
                    module_id: None,
                    if_match: Some(seen.identity_etag.clone()),
                    base: None,
                    target: None,
                    patch: diff_patch(&diff),
                    diff,
                    ignore: Vec::new(),
                    sensitive: Vec::new(),
                });
            }
        }
        for m in &d.modules {
            if !targets.module(&d.id, &m.id) {
                continue;
            }
            match seen.modules.get(&m.id) {
                None => self.create_module(d, m),
                Some(sm) => self.module(d, m, sm),
            }
        }
    }

    fn module(&mut self, d: &DeviceSpec, m: &ModuleSpec, seen: &ObservedModule) {
        let twin_ok = self.twin(
            Kind::UpdateModuleTwin,
            &d.id,
            Some(&m.id),
            &m.twin,
            &seen.twin,
        );
        if twin_ok && auth_differs(&m.auth, &seen.auth) {
            let diff = vec![FieldDiff {
                path: "authentication".into(),
                before: Some(observed_auth_value(&seen.auth)),
                after: Some(auth_value(&m.auth)),
            }];
            self.push(Change {
                action: Action::Update,
                kind: Kind::UpdateModule,
                device_id: d.id.clone(),
                module_id: Some(m.id.clone()),
                if_match: None,
                base: None,
                target: None,
                patch: diff_patch(&diff),
                diff,
                ignore: Vec::new(),
                sensitive: Vec::new(),
            });
        }
    }

    fn owned_by_us(&self, twin: &crate::model::ObservedTwin) -> bool {
        matches!(ledger::read(&twin.tags), ledger::Found::Ledger(l) if l.owner == self.fleet.owner)
    }

    fn prune(&mut self, observed: &Observed, declared: &BTreeMap<&str, &DeviceSpec>) {
        let targets = self.options.targets.clone();
        for (id, seen) in &observed.devices {
            let spec = declared.get(id.as_str());
            if spec.is_none() && targets.device(id) && self.owned_by_us(&seen.twin) {
                let blockers: Vec<String> = seen
                    .modules
                    .iter()
                    .filter(|(mid, m)| {
                        !crate::model::is_system_module(mid) && !self.owned_by_us(&m.twin)
                    })
                    .map(|(mid, _)| mid.clone())
                    .collect();
                if !blockers.is_empty() {
                    self.conflict(
                        id,
                        None,
                        "not declared, but it has modules owned by others; not deleted".into(),
                        blockers,
                    );
                    continue;
                }
                self.push(Change {
                    action: Action::Delete,
                    kind: Kind::DeleteDevice,
                    device_id: id.clone(),
                    module_id: None,
                    if_match: Some(seen.identity_etag.clone()),
                    base: None,
                    target: None,
                    patch: json!({"modules": seen.modules.keys().collect::<Vec<_>>()}),
                    diff: Vec::new(),
                    ignore: Vec::new(),
                    sensitive: Vec::new(),
                });
                continue;
            }
            let Some(spec) = spec else { continue };
            for (mid, m) in &seen.modules {
                if crate::model::is_system_module(mid)
                    || spec.modules.iter().any(|dm| &dm.id == mid)
                    || !targets.module(id, mid)
                    || !self.owned_by_us(&m.twin)
                {
                    continue;
                }
                self.push(Change {
                    action: Action::Delete,
                    kind: Kind::DeleteModule,
                    device_id: id.clone(),
                    module_id: Some(mid.clone()),
                    if_match: Some(m.twin.etag.clone()),
                    base: None,
                    target: None,
                    patch: json!({}),
                    diff: Vec::new(),
                    ignore: Vec::new(),
                    sensitive: Vec::new(),
                });
            }
        }
    }
}

impl Plan {
    /// A copy for display: patch values at sensitive paths become `(sensitive)`. Only a saved plan file
    /// keeps them, since apply needs them.
    pub fn redacted(&self) -> Plan {
        let mut p = self.clone();
        for c in &mut p.changes {
            for path in &c.sensitive {
                let mut parts = path.split('.');
                let prefix = match parts.next() {
                    Some("tags") => "/tags",
                    Some("desired") => "/properties/desired",
                    _ => continue,
                };
                let rest: String = parts
                    .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
                    .collect();
                for root in ["", "/twin"] {
                    if let Some(v) = c.patch.pointer_mut(&format!("{root}{prefix}{rest}"))
                        && !v.is_null()
                    {
                        *v = Value::String("(sensitive)".into());
                    }
                }
            }
        }
        p
    }
}

/// How many identities the plan deletes (a deleted device's modules count one each).
pub fn deletion_count(plan: &Plan) -> usize {
    plan.changes
        .iter()
        .map(|c| match c.kind {
            Kind::DeleteModule => 1,
            Kind::DeleteDevice => {
                1 + c
                    .patch
                    .get("modules")
                    .and_then(Value::as_array)
                    .map_or(0, |m| {
                        m.iter()
                            .filter(|x| !x.as_str().is_some_and(crate::model::is_system_module))
                            .count()
                    })
            }
            _ => 0,
        })
        .sum()
}

/// Diffs what the manifests want against what the hub holds.
pub fn diff(fleet: &Fleet, observed: &Observed, hub: &str, options: &Options) -> Plan {
    let mut p = Planner {
        fleet,
        options,
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
        },
    };
    let declared: BTreeMap<&str, &DeviceSpec> =
        fleet.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    // Edge parents are created before their children so the children can name the parent's scope.
    let mut order: Vec<&DeviceSpec> = fleet.devices.iter().collect();
    order.sort_by_key(|d| (!d.edge, d.id.as_str()));
    for d in order {
        p.device(d, observed.devices.get(&d.id));
    }
    if options.prune && observed.complete {
        p.prune(observed, &declared);
    }
    p.plan.changes.sort_by(|a, b| {
        (
            a.kind.phase(),
            a.kind == Kind::CreateDevice && a.patch.get("parent").is_some(),
        )
            .cmp(&(
                b.kind.phase(),
                b.kind == Kind::CreateDevice && b.patch.get("parent").is_some(),
            ))
            .then_with(|| a.device_id.cmp(&b.device_id))
            .then_with(|| a.module_id.cmp(&b.module_id))
    });
    p.plan.count();
    p.plan
}

#[cfg(test)]
mod tests;
