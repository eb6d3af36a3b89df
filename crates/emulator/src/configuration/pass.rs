//! One pass of the configuration loop (the loop, which runs it on creation, after each change and
//! every `--config-interval`, is in the crate root): every configuration's content into the twins
//! it targets, IoT Edge deployments into edge devices' module twins, the statuses, and the
//! configurations' counts and metrics.
//!
//! Device twins come first: their target conditions decide both the device configurations and,
//! for edge devices, the deployments ([`super::deployment::evaluate`]). Module identities the
//! applied deployments write are then created, and module twins get module configurations and
//! deployment content in one write. It reads first and writes only the twins that change, in
//! batches so that requests interleave, so an idle hub only reads. The store keeps the records
//! and knows nothing of the rules.

use std::collections::HashMap;

use serde_json::Value;

use super::deployment::{self, Deployment, DeviceOutcome, EDGE_AGENT};
use super::{
    APPLIED, Compiled, ConfigurationRecord, Kind, Outcome, by_precedence, exact_map_patch,
    reconcile,
};
use crate::clock::now;
use crate::error::Error;
use crate::query::{Collection, Query};
use crate::store::{PassResult, Store, Target, Tx};
use crate::twin::{Desired, ServiceWrite, TwinState};
use twinops_iothub::wire::JsonMap;

/// Twins written per transaction.
const BATCH: usize = 500;

/// A custom metric being counted over one pass.
struct Metric {
    configuration: String,
    name: String,
    query: Query,
    /// Twins matched so far.
    count: u64,
}

/// Per configuration ID, the twins it targets, is applied to, and whose device reports success
/// or failure for it.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    targeted: i64,
    applied: i64,
    succeeded: i64,
    failed: i64,
}

/// What one pass evaluates: device and module configurations, and deployments.
struct Rules {
    compiled: Vec<Compiled>,
    deployments: Vec<Deployment>,
    /// Per edge device ID that deployments target: what they decide.
    outcomes: HashMap<String, DeviceOutcome>,
}

/// Runs one pass over the whole hub.
pub(crate) fn run(store: &Store) -> Result<(), Error> {
    let (records, sweep) = store.configurations_to_apply()?;
    if records.is_empty() && sweep.is_none() {
        return Ok(());
    }
    let mut rules = Rules {
        compiled: compile(&records),
        deployments: deployments(&records),
        outcomes: HashMap::new(),
    };
    let mut metrics = metrics(&records);
    let mut counts: HashMap<String, Count> = HashMap::new();
    for modules in [false, true] {
        let collection = collection(modules);
        // A sweep visits twins even without configurations: they may hold a deleted one's status.
        let needed = sweep.is_some()
            || !rules.deployments.is_empty()
            || rules.compiled.iter().any(|c| c.target.modules == modules)
            || metrics.iter().any(|m| m.query.collection == collection);
        if !needed {
            continue;
        }
        if modules {
            create_modules(store, &rules)?;
        }
        let changed = survey(store, modules, &mut rules, &mut counts, &mut metrics)?;
        for batch in changed.chunks(BATCH) {
            store.write(|tx| {
                batch
                    .iter()
                    .try_for_each(|target| apply(tx, target, &rules))
            })?;
        }
    }
    let results: Vec<(String, PassResult)> = records
        .iter()
        .map(|r| {
            let c = counts.get(&r.id).copied().unwrap_or_default();
            let metric_results = metrics
                .iter()
                .filter(|m| m.configuration == r.id)
                .map(|m| (m.name.clone(), Value::from(m.count)))
                .collect();
            let result = PassResult {
                targeted_count: c.targeted,
                applied_count: c.applied,
                reported_successful_count: c.succeeded,
                reported_failed_count: c.failed,
                metric_results,
            };
            (r.id.clone(), result)
        })
        .collect();
    store.record_pass(&results, sweep.as_deref())
}

fn collection(modules: bool) -> Collection {
    if modules {
        Collection::Modules
    } else {
        Collection::Devices
    }
}

/// The device and module configurations that can be evaluated, by precedence; one that cannot
/// is skipped (and logged), not fatal to the others.
fn compile(records: &[ConfigurationRecord]) -> Vec<Compiled> {
    let mut compiled = Vec::new();
    for r in records.iter().filter(|r| r.kind() != Kind::Edge) {
        match Compiled::new(r) {
            Ok(c) => compiled.push(c),
            Err(e) => {
                tracing::warn!(configuration = %r.id, error = %e, "configuration skipped")
            }
        }
    }
    by_precedence(&mut compiled);
    compiled
}

/// The deployments that can be evaluated, by precedence.
fn deployments(records: &[ConfigurationRecord]) -> Vec<Deployment> {
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.kind() == Kind::Edge) {
        match Deployment::new(r) {
            Ok(d) => out.push(d),
            Err(e) => tracing::warn!(deployment = %r.id, error = %e, "deployment skipped"),
        }
    }
    deployment::by_precedence(&mut out);
    out
}

/// Every configuration's custom metrics whose query parses, counting from zero.
fn metrics(records: &[ConfigurationRecord]) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for r in records {
        for (name, q) in &r.metric_queries {
            if let Some(query) = q.as_str().and_then(|q| super::metric_query(q).ok()) {
                metrics.push(Metric {
                    configuration: r.id.clone(),
                    name: name.clone(),
                    query,
                    count: 0,
                });
            }
        }
    }
    metrics
}

/// Creates the module identities that applied deployments write but that do not exist yet (as
/// IoT Hub does when it applies deployment content; it never deletes them).
fn create_modules(store: &Store, rules: &Rules) -> Result<(), Error> {
    let mut missing: Vec<(String, String)> = Vec::new();
    for (device, outcome) in &rules.outcomes {
        for m in outcome.written_modules(&rules.deployments) {
            if store.module(device, m).is_err() {
                missing.push((device.clone(), m.to_string()));
            }
        }
    }
    for batch in missing.chunks(BATCH) {
        store.write(|tx| {
            for (d, m) in batch {
                create_module(tx, d, m);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Creates a module identity for deployment content, unless it or its device (deleted since the
/// survey) is missing; a module the hub cannot create (the device's 50 are taken) is logged and
/// its content not written.
fn create_module(tx: &mut Tx<'_>, device: &str, module: &str) {
    if tx.device(device).ok().flatten().is_none() {
        return;
    }
    if let Err(e) = tx.create_deployment_module(device, module) {
        tracing::warn!(device, module, error = %e, "module for deployment content not created");
    }
}

/// What one twin becomes: its configuration outcome with the deployments' part merged in.
struct Decision {
    outcome: Outcome,
    deployment_paths: Option<Vec<Vec<String>>>,
}

impl Decision {
    fn changes(&self, twin: &TwinState) -> bool {
        self.outcome.changes(&twin.configurations)
            || self
                .deployment_paths
                .as_ref()
                .is_some_and(|p| *p != twin.deployment_paths)
    }
}

/// The rules for one twin. For an edge device it also records what the deployments decide.
fn decide(rec_twin: &Value, twin: &TwinState, target: &Target, rules: &Rules) -> Decision {
    let Target::Module(device, module) = target else {
        return Decision {
            outcome: reconcile(rec_twin, &twin.desired, false, &rules.compiled),
            deployment_paths: None,
        };
    };
    let view = rules
        .outcomes
        .get(device)
        .map(|o| o.module(&rules.deployments, module));
    // What the deployments make of desired, built only where they apply to the device; module
    // configurations then decide over that.
    let claims = view.as_ref().and_then(|v| v.claims.as_ref());
    let deployed = claims.map(|c| deployment::compose(&twin.desired, &twin.deployment_paths, c));
    let deployment_paths = claims.map(deployment::claimed_paths);
    let mut outcome = reconcile(
        rec_twin,
        deployed.as_ref().unwrap_or(&twin.desired),
        true,
        &rules.compiled,
    );
    if let Some(mut desired) = deployed {
        // One patch from the twin's desired to the deployments' with the configurations' on top:
        // merging the two patches instead would lose the configurations' deletions (nulls).
        merge(&mut desired, std::mem::take(&mut outcome.patch));
        outcome.patch = exact_map_patch(&twin.desired, &desired);
    }
    if let Some(v) = view {
        outcome.statuses.extend(v.statuses);
    }
    Decision {
        outcome,
        deployment_paths,
    }
}

/// Applies merge patch `patch` to `into`.
fn merge(into: &mut JsonMap, patch: JsonMap) {
    if patch.is_empty() {
        return;
    }
    let mut doc = Value::Object(std::mem::take(into));
    json_patch::merge(&mut doc, &Value::Object(patch));
    if let Value::Object(m) = doc {
        *into = m;
    }
}

/// Reads every device (or module) twin: evaluates deployments on edge devices, counts the
/// twins each configuration targets, is applied to and is reported on, and the metric matches
/// (on each twin as it will be once its outcome is written). Returns the twins that change.
fn survey(
    store: &Store,
    modules: bool,
    rules: &mut Rules,
    counts: &mut HashMap<String, Count>,
    metrics: &mut [Metric],
) -> Result<Vec<Target>, Error> {
    let collection = collection(modules);
    let counting_metrics = metrics.iter().any(|m| m.query.collection == collection);
    let now = now();
    let mut changed = Vec::new();
    store.visit_twin_records(modules, |mut rec| {
        let twin = rec.twin_json();
        let target = rec.target();
        if !modules && !rules.deployments.is_empty() {
            let outcome = deployment::evaluate(&twin, &rules.deployments);
            for &i in &outcome.targeted {
                let id = rules.deployments[i].id.clone();
                counts.entry(id).or_default().targeted += 1;
            }
            if let (false, Target::Device(d)) = (outcome.targeted.is_empty(), &target) {
                rules.outcomes.insert(d.clone(), outcome);
            }
        }
        let decision = decide(&twin, rec.twin(), &target, rules);
        for id in &decision.outcome.targeted {
            counts.entry(id.clone()).or_default().targeted += 1;
        }
        let changes = decision.changes(rec.twin());
        if changes {
            changed.push(target.clone());
        }
        let statuses = decision.outcome.statuses.clone();
        let edge_agent = matches!(&target, Target::Module(_, m) if m == EDGE_AGENT);
        let after = if changes {
            apply_decision(rec.twin_mut(), decision, &now);
            rec.twin_json()
        } else {
            twin
        };
        for (id, s) in &statuses {
            let deployment = rules.deployments.iter().any(|d| d.id == *id);
            if s["status"] != APPLIED || (deployment && !edge_agent) {
                continue;
            }
            let c = counts.entry(id.clone()).or_default();
            c.applied += 1;
            match reported_code(&after, deployment) {
                Some(200) => c.succeeded += 1,
                Some(_) => c.failed += 1,
                None => {}
            }
        }
        if counting_metrics {
            for m in metrics
                .iter_mut()
                .filter(|m| m.query.collection == collection)
            {
                if m.query.matches(&after) {
                    m.count += 1;
                }
            }
        }
        Ok(())
    })?;
    Ok(changed)
}

/// `properties.reported.lastDesiredStatus.code` when it counts: for a deployment only once the
/// edge agent has answered the current desired `$version` (`lastDesiredVersion`), as IoT Hub's
/// system metric queries say.
fn reported_code(twin: &Value, deployment: bool) -> Option<i64> {
    let props = &twin["properties"];
    if deployment
        && (props["desired"]["$version"].as_i64()
            != props["reported"]["lastDesiredVersion"].as_i64())
    {
        return None;
    }
    props["reported"]["lastDesiredStatus"]["code"].as_i64()
}

/// Evaluates one twin again inside a write (it may have changed since the survey) and writes
/// its outcome if that still changes it. Connected devices hear of the desired write like any
/// other.
fn apply(tx: &mut Tx<'_>, target: &Target, rules: &Rules) -> Result<(), Error> {
    let Some(mut rec) = tx.twin_record(target)? else {
        return Ok(());
    };
    let decision = decide(&rec.twin_json(), rec.twin(), target, rules);
    if !decision.changes(rec.twin()) {
        return Ok(());
    }
    let now = tx.now.clone();
    apply_decision(rec.twin_mut(), decision, &now);
    tx.save_twin_record(&mut rec)
}

/// Writes a decision into a twin: the desired patch as a real service write (etag, versions and
/// metadata move), then the statuses and the deployments' paths (which alone move nothing).
/// Content the twin's limits refuse is not written and its configurations count as targeted only.
fn apply_decision(twin: &mut TwinState, decision: Decision, now: &str) {
    let Decision {
        mut outcome,
        deployment_paths,
    } = decision;
    let mut written = true;
    if !outcome.patch.is_empty() {
        let write = ServiceWrite {
            tags: None,
            desired: Desired::Set(outcome.patch.clone()),
        };
        if let Err(e) = twin.patch(write, now) {
            tracing::warn!(error = %e, "configuration content refused by the twin's limits");
            outcome = outcome.unapplied();
            written = false;
        }
    }
    if let (true, Some(p)) = (written, deployment_paths) {
        twin.deployment_paths = p;
    }
    twin.configurations = outcome.statuses;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, content: Value, target: &str, seq: u64) -> ConfigurationRecord {
        ConfigurationRecord {
            id: id.into(),
            schema_version: None,
            labels: None,
            content: content.as_object().cloned().unwrap(),
            content_type: None,
            target_condition: target.into(),
            priority: 0,
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
        }
    }

    /// A module twin that a deployment and a module configuration both write gets one patch: the
    /// deployment's paths, and the configuration's value written exactly (its deletions too).
    #[test]
    fn a_module_twin_gets_deployment_and_configuration_content_in_one_exact_patch() {
        let records = [
            record(
                "dep",
                json!({"modulesContent": {
                    "$edgeAgent": {"properties.desired.modules.m": {"type": "docker"}},
                    "m": {"properties.desired.dep": 1}}}),
                "*",
                1,
            ),
            record(
                "mods",
                json!({"moduleContent": {"properties.desired.settings": {"rate": 99}}}),
                "FROM devices.modules WHERE moduleId = 'm'",
                2,
            ),
        ];
        let mut rules = Rules {
            compiled: compile(&records),
            deployments: deployments(&records),
            outcomes: HashMap::new(),
        };
        let device = json!({"deviceId": "d", "capabilities": {"iotEdge": true}});
        let outcome = deployment::evaluate(&device, &rules.deployments);
        rules.outcomes.insert("d".into(), outcome);
        let mut twin = TwinState::new("2024-01-01T00:00:00Z");
        twin.desired = json!({"settings": {"rate": 1, "old": true}})
            .as_object()
            .cloned()
            .unwrap();
        let doc = json!({"deviceId": "d", "moduleId": "m"});
        let target = Target::Module("d".into(), "m".into());
        let decision = decide(&doc, &twin, &target, &rules);
        assert_eq!(
            Value::Object(decision.outcome.patch.clone()),
            json!({"dep": 1, "settings": {"rate": 99, "old": null}})
        );
        assert_eq!(
            decision.deployment_paths,
            Some(vec![vec!["dep".to_string()]])
        );
        assert_eq!(
            Value::Object(decision.outcome.statuses.clone()),
            json!({"mods": {"status": "Applied"}, "dep": {"status": "Applied"}})
        );
        // Once written, the twin is as the rules want it: nothing more to write.
        apply_decision(&mut twin, decision, "2024-01-01T00:00:01Z");
        assert_eq!(
            Value::Object(twin.desired.clone()),
            json!({"dep": 1, "settings": {"rate": 99}})
        );
        assert!(!decide(&doc, &twin, &target, &rules).changes(&twin));
    }
}
