//! IoT Edge deployments (`modulesContent`, SPEC §16): what a deployment's content may hold, and
//! the rule that decides, for one edge device, which deployments apply and what each module
//! twin's desired properties become.
//!
//! Pure, like the rest of `configuration`: [`super::pass`] runs the rule over the hub.
//!
//! The rule, per edge device (`capabilities.iotEdge`), level-triggered:
//! - deployments whose target condition matches the device twin are **targeted**, taken by
//!   precedence (highest `priority` first, a tie to the most recently created);
//! - a **base** deployment sets `$edgeAgent`'s whole `properties.desired`; a **layered** one only
//!   dotted paths (`properties.desired.modules.NAME`), as IoT Hub's layered deployments do (the
//!   hub has no flag for it: the content says it). The first base by precedence is applied;
//!   other bases stay targeted;
//! - layers that rank above that base (or all of them without one) are applied by precedence when
//!   none of their module paths overlaps a path of an already-applied layer (a layer applies whole
//!   or not at all); layers below the base stay targeted (IoT Edge's docs: a layer must have a
//!   higher priority than the base);
//! - each module twin's desired becomes exactly the base's part merged with the applied layers'
//!   paths on top, and loses the paths the deployments wrote before and no longer write (kept
//!   per twin as [`crate::twin::TwinState::deployment_paths`]), so a removed layer takes exactly
//!   its modules away. A device that no deployment applies to any more keeps its desired
//!   properties (IoT Edge's docs: deleting a deployment removes no modules when no other one
//!   targets the device);
//! - statuses go where IoT Hub puts them, in module twins' `configurations`: `$edgeAgent` lists
//!   every targeting deployment, `Applied` when it is applied and writes `$edgeAgent`; any other
//!   module twin lists the targeting deployments that write it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{
    APPLIED, ConfigurationRecord, TARGETED, Target, exact_map_patch, get_path, overlaps, set_path,
};
use crate::error::Error;
use twinops_iothub::wire::JsonMap;
use twinops_iothub::{ids, twin_rules};

/// The IoT Edge agent's module, which every deployment writes and the simulated agent answers as.
pub(crate) const EDGE_AGENT: &str = "$edgeAgent";

/// Desired paths and their values; an empty path is the whole of desired.
pub(crate) type Entries = Vec<(Vec<String>, Value)>;

/// Checks `content.modulesContent` and returns each module's entries: keys are
/// `properties.desired` (the whole of desired, an object) or `properties.desired.a.b`.
pub(crate) fn modules(content: &JsonMap) -> Result<BTreeMap<String, Entries>, Error> {
    let invalid = |m: String| Error::InvalidConfigurationContent(m);
    let Some(Value::Object(modules)) = content.get("modulesContent") else {
        return Err(invalid("modulesContent must be an object".into()));
    };
    if !modules.contains_key(EDGE_AGENT) {
        return Err(invalid("modulesContent must contain $edgeAgent".into()));
    }
    let mut out = BTreeMap::new();
    for (module, section) in modules {
        let known =
            ids::is_system_module(module) || (ids::is_valid_id(module) && !module.starts_with('$'));
        if !known {
            return Err(invalid(format!(
                "modulesContent names `{module}`, which is no module ID"
            )));
        }
        let Value::Object(section) = section else {
            return Err(invalid(format!(
                "modulesContent.{module} must be an object"
            )));
        };
        out.insert(module.clone(), module_entries(module, section)?);
    }
    Ok(out)
}

fn module_entries(module: &str, section: &JsonMap) -> Result<Entries, Error> {
    let mut out: Entries = Vec::new();
    for (key, value) in section {
        let rest = key
            .strip_prefix("properties.desired")
            .filter(|r| r.is_empty() || r.starts_with('.'))
            .ok_or_else(|| {
                Error::InvalidConfigurationContent(format!(
                    "modulesContent.{module} key `{key}` must be properties.desired or start with properties.desired."
                ))
            })?;
        let path: Vec<String> = match rest.strip_prefix('.') {
            None => {
                if !value.is_object() {
                    return Err(Error::ArgumentInvalid(format!(
                        "modulesContent.{module}: properties.desired must be an object"
                    )));
                }
                Vec::new()
            }
            Some(r) => r.split('.').map(str::to_string).collect(),
        };
        if path
            .iter()
            .any(|s| s.is_empty() || !twin_rules::key_is_valid(s))
        {
            return Err(Error::ArgumentInvalid(format!(
                "modulesContent.{module} key `{key}` is not a path of valid twin keys"
            )));
        }
        if out.iter().any(|(p, _)| overlaps(p, &path)) {
            return Err(Error::ArgumentInvalid(format!(
                "modulesContent.{module} writes `{key}` twice"
            )));
        }
        out.push((path, value.clone()));
    }
    let whole = compose(&JsonMap::new(), &[], &out);
    twin_rules::check(&whole, false)
        .map_err(|e| Error::ArgumentInvalid(format!("modulesContent.{module}: {e}")))?;
    Ok(out)
}

/// A deployment ready to be evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub(crate) id: String,
    target: Target,
    /// Sets `$edgeAgent`'s whole desired (not a layer).
    base: bool,
    modules: BTreeMap<String, Entries>,
    priority: i64,
    seq: u64,
}

impl Deployment {
    pub(crate) fn new(rec: &ConfigurationRecord) -> Result<Deployment, Error> {
        let modules = modules(&rec.content)?;
        let base = modules
            .get(EDGE_AGENT)
            .is_some_and(|e| e.iter().any(|(p, _)| p.is_empty()));
        Ok(Deployment {
            id: rec.id.clone(),
            target: Target::parse(&rec.target_condition, super::Kind::Device)?,
            base,
            modules,
            priority: rec.priority,
            seq: rec.seq,
        })
    }

    /// Whether it writes module `m`.
    fn writes(&self, m: &str) -> bool {
        self.modules.get(m).is_some_and(|e| !e.is_empty())
    }
}

/// Sorts by precedence: highest priority first, then the most recently created.
pub(crate) fn by_precedence(ds: &mut [Deployment]) {
    ds.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.seq.cmp(&a.seq)));
}

/// What the rule decides for one edge device: indices into the deployments it was given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeviceOutcome {
    /// By precedence.
    pub(crate) targeted: Vec<usize>,
    /// In the order they are written: the base first, then layers from the lowest precedence.
    pub(crate) applied: Vec<usize>,
}

/// The rule for one device twin; `ds` sorted by [`by_precedence`].
pub(crate) fn evaluate(device: &Value, ds: &[Deployment]) -> DeviceOutcome {
    if device["capabilities"]["iotEdge"] != Value::Bool(true) {
        return DeviceOutcome::default();
    }
    let targeted: Vec<usize> = (0..ds.len())
        .filter(|&i| ds[i].target.matches(device))
        .collect();
    let base = targeted.iter().copied().find(|&i| ds[i].base);
    let mut layers: Vec<usize> = Vec::new();
    let mut claimed: Vec<(&str, &[String])> = Vec::new();
    for &i in &targeted {
        let d = &ds[i];
        if d.base || base.is_some_and(|b| i > b) {
            continue;
        }
        let paths = || {
            d.modules
                .iter()
                .flat_map(|(m, e)| e.iter().map(move |(p, _)| (m.as_str(), p.as_slice())))
        };
        let conflict = paths().any(|(m, p)| claimed.iter().any(|(n, q)| *n == m && overlaps(p, q)));
        if !conflict {
            claimed.extend(paths());
            layers.push(i);
        }
    }
    let applied = base.into_iter().chain(layers.into_iter().rev()).collect();
    DeviceOutcome { targeted, applied }
}

/// What the deployments decide for one module twin of a device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModuleView {
    /// Deployment ID → `{"status": ...}`.
    pub(crate) statuses: JsonMap,
    /// The paths to write, base first; `None` when no deployment applies to the device, so its
    /// desired properties stay as they are.
    pub(crate) claims: Option<Entries>,
}

impl DeviceOutcome {
    /// The modules the applied deployments write (their identities must exist).
    pub(crate) fn written_modules<'d>(&self, ds: &'d [Deployment]) -> BTreeSet<&'d str> {
        self.applied
            .iter()
            .flat_map(|&i| ds[i].modules.iter())
            .filter(|(_, e)| !e.is_empty())
            .map(|(m, _)| m.as_str())
            .collect()
    }

    pub(crate) fn module(&self, ds: &[Deployment], module: &str) -> ModuleView {
        let mut statuses = JsonMap::new();
        for &i in &self.targeted {
            let d = &ds[i];
            if module != EDGE_AGENT && !d.writes(module) {
                continue;
            }
            let status = if self.applied.contains(&i) && d.writes(module) {
                APPLIED
            } else {
                TARGETED
            };
            statuses.insert(d.id.clone(), json!({ "status": status }));
        }
        let claims = (!self.applied.is_empty()).then(|| {
            self.applied
                .iter()
                .filter_map(|&i| ds[i].modules.get(module))
                .flatten()
                .cloned()
                .collect()
        });
        ModuleView { statuses, claims }
    }
}

/// The desired properties `claims` (base first) make of `desired`: the paths in `owned` (written
/// before) that no claim covers are removed, then each claim is set (the whole of desired for an
/// empty path).
pub(crate) fn compose(desired: &JsonMap, owned: &[Vec<String>], claims: &Entries) -> JsonMap {
    let mut target = desired.clone();
    for old in owned {
        let covered = claims
            .iter()
            .any(|(p, _)| p.len() <= old.len() && old[..p.len()] == p[..]);
        if !covered {
            remove_path(&mut target, old);
        }
    }
    for (path, value) in claims {
        match (path.is_empty(), value) {
            (true, Value::Object(whole)) => target = whole.clone(),
            (true, _) => {}
            (false, v) => set_path(&mut target, path, v.clone()),
        }
    }
    target
}

/// The merge patch that turns `desired` into what `claims` make of it (empty when nothing
/// changes), and the paths the deployments then own.
pub(crate) fn module_patch(
    desired: &JsonMap,
    owned: &[Vec<String>],
    claims: &Entries,
) -> (JsonMap, Vec<Vec<String>>) {
    let target = compose(desired, owned, claims);
    (exact_map_patch(desired, &target), claimed_paths(claims))
}

/// The paths the deployments own once `claims` are written.
pub(crate) fn claimed_paths(claims: &Entries) -> Vec<Vec<String>> {
    claims.iter().map(|(p, _)| p.clone()).collect()
}

fn remove_path(root: &mut JsonMap, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        root.clear();
        return;
    };
    if get_path(root, path).is_none() {
        return;
    }
    let mut node = root;
    for p in parents {
        let Some(Value::Object(m)) = node.get_mut(p) else {
            return;
        };
        node = m;
    }
    node.remove(last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap()
    }

    fn deployment(id: &str, modules: Value, priority: i64, seq: u64) -> Deployment {
        let rec = ConfigurationRecord {
            id: id.into(),
            schema_version: None,
            labels: None,
            content: map(json!({ "modulesContent": modules })),
            content_type: None,
            target_condition: "tags.site = 'b'".into(),
            priority,
            created_time_utc: String::new(),
            last_updated_time_utc: String::new(),
            etag: String::new(),
            metric_queries: JsonMap::new(),
            metric_results: JsonMap::new(),
            targeted_count: 0,
            applied_count: 0,
            reported_successful_count: 0,
            reported_failed_count: 0,
            seq,
        };
        Deployment::new(&rec).unwrap()
    }

    fn edge() -> Value {
        json!({"deviceId": "e", "capabilities": {"iotEdge": true}, "tags": {"site": "b"}})
    }

    fn base(id: &str, module: &str, priority: i64, seq: u64) -> Deployment {
        deployment(
            id,
            json!({"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
                    "modules": {module: {"type": "docker"}}}},
                   "$edgeHub": {"properties.desired": {"routes": {}}}}),
            priority,
            seq,
        )
    }

    fn layer(id: &str, module: &str, priority: i64, seq: u64) -> Deployment {
        deployment(
            id,
            json!({"$edgeAgent": {format!("properties.desired.modules.{module}"): {"type": "docker"}},
                   module: {"properties.desired.rate": 5}}),
            priority,
            seq,
        )
    }

    fn sorted(mut ds: Vec<Deployment>) -> Vec<Deployment> {
        by_precedence(&mut ds);
        ds
    }

    fn ids(ds: &[Deployment], idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| ds[i].id.clone()).collect()
    }

    #[test]
    fn content_needs_edge_agent_and_desired_paths_per_module() {
        let ok = |v: Value| modules(&map(json!({ "modulesContent": v })));
        assert!(ok(json!({"$edgeAgent": {"properties.desired": {}}})).is_ok());
        assert!(ok(json!({"$edgeHub": {"properties.desired": {}}})).is_err());
        assert!(ok(json!({"$edgeAgent": {"tags.x": 1}})).is_err());
        assert!(ok(json!({"$edgeAgent": {}, "$bad": {}})).is_err());
        assert!(ok(json!({"$edgeAgent": {"properties.desired": 5}})).is_err());
        assert!(
            ok(json!({"$edgeAgent": {"properties.desired": {}, "properties.desired.a": 1}}))
                .is_err()
        );
        let m = ok(json!({"$edgeAgent": {"properties.desired.modules.m": {"a": 1}}})).unwrap();
        assert_eq!(m["$edgeAgent"][0].0, ["modules", "m"]);
    }

    #[test]
    fn the_newest_of_equal_bases_applies_and_layers_above_it_merge() {
        let ds = sorted(vec![
            base("old", "a", 10, 1),
            base("new", "b", 10, 2),
            layer("top", "x", 20, 3),
            layer("low", "y", 5, 4),
        ]);
        let out = evaluate(&edge(), &ds);
        assert_eq!(ids(&ds, &out.targeted), ["top", "new", "old", "low"]);
        assert_eq!(ids(&ds, &out.applied), ["new", "top"]);
        let agent = out.module(&ds, EDGE_AGENT);
        assert_eq!(
            Value::Object(agent.statuses),
            json!({"top": {"status": "Applied"}, "new": {"status": "Applied"},
                   "old": {"status": "Targeted"}, "low": {"status": "Targeted"}})
        );
        let desired = compose(&JsonMap::new(), &[], &agent.claims.unwrap());
        assert_eq!(
            Value::Object(desired),
            json!({"schemaVersion": "1.1", "modules": {"b": {"type": "docker"}, "x": {"type": "docker"}}})
        );
        let x = out.module(&ds, "x");
        assert_eq!(
            Value::Object(x.statuses),
            json!({"top": {"status": "Applied"}})
        );
        assert_eq!(
            out.written_modules(&ds).into_iter().collect::<Vec<_>>(),
            ["$edgeAgent", "$edgeHub", "x"]
        );
        assert_eq!(
            evaluate(&json!({"tags": {"site": "b"}}), &ds),
            DeviceOutcome::default()
        );
    }

    #[test]
    fn overlapping_layers_go_to_the_higher_precedence() {
        let ds = sorted(vec![layer("a", "x", 5, 1), layer("b", "x", 7, 2)]);
        let out = evaluate(&edge(), &ds);
        assert_eq!(ids(&ds, &out.applied), ["b"], "no base: layers apply alone");
        assert_eq!(out.module(&ds, "x").statuses["a"]["status"], TARGETED);
    }

    #[test]
    fn removed_claims_take_exactly_their_paths_away() {
        let desired = map(json!({"modules": {"b": 1, "x": 2}, "own": 3}));
        let (patch, owned) = module_patch(
            &desired,
            &[vec!["modules".into(), "x".into()]],
            &vec![(vec!["modules".into(), "b".into()], json!(1))],
        );
        assert_eq!(Value::Object(patch), json!({"modules": {"x": null}}));
        assert_eq!(owned, [vec!["modules".to_string(), "b".to_string()]]);
        let (patch, _) = module_patch(&desired, &[vec![]], &vec![]);
        assert_eq!(
            Value::Object(patch),
            json!({"modules": null, "own": null}),
            "a base that no longer writes a module empties it"
        );
        let (patch, _) = module_patch(&desired, &[], &vec![(vec![], json!({"own": 3}))]);
        assert_eq!(Value::Object(patch), json!({"modules": null}));
    }
}
