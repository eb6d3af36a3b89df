//! One pass of the configuration loop (the loop, which runs it on creation, after each change and
//! every `--config-interval`, is in the crate root): every configuration's content into the twins
//! it targets, their statuses, and the configurations' counts and metrics.
//!
//! It reads first and writes only the twins that change, in batches so that requests interleave,
//! so an idle hub only reads. The rule for one twin is [`super::reconcile`]; the store keeps the
//! records and knows nothing of the rule.

use std::collections::HashMap;

use serde_json::Value;

use super::{APPLIED, Compiled, ConfigurationRecord, Outcome, by_precedence, reconcile};
use crate::clock::now;
use crate::error::Error;
use crate::query::{self, Collection, Query};
use crate::store::{PassResult, Store, Target, Tx};
use crate::twin::{ServiceWrite, TwinState};

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

/// Per configuration ID: the twins it targets and the twins it is applied to.
type Counts = HashMap<String, (i64, i64)>;

/// Runs one pass over the whole hub.
pub(crate) fn run(store: &Store) -> Result<(), Error> {
    let (records, sweep) = store.configurations_to_apply()?;
    if records.is_empty() && sweep.is_none() {
        return Ok(());
    }
    let compiled = compile(&records);
    let mut metrics = metrics(&records);
    let mut counts = Counts::new();
    for modules in [false, true] {
        let collection = collection(modules);
        // A sweep visits twins even without configurations: they may hold a deleted one's status.
        let needed = sweep.is_some()
            || compiled.iter().any(|c| c.target.modules == modules)
            || metrics.iter().any(|m| m.query.collection == collection);
        if !needed {
            continue;
        }
        let changed = survey(store, modules, &compiled, &mut counts, &mut metrics)?;
        for batch in changed.chunks(BATCH) {
            store.write(|tx| {
                batch
                    .iter()
                    .try_for_each(|target| apply(tx, target, modules, &compiled))
            })?;
        }
    }
    let results: Vec<(String, PassResult)> = records
        .iter()
        .map(|r| {
            let (targeted, applied) = counts.get(&r.id).copied().unwrap_or_default();
            let metric_results = metrics
                .iter()
                .filter(|m| m.configuration == r.id)
                .map(|m| (m.name.clone(), Value::from(m.count)))
                .collect();
            let result = PassResult {
                targeted_count: targeted,
                applied_count: applied,
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

/// The configurations that can be evaluated, by precedence; one that cannot is skipped (and
/// logged), not fatal to the others.
fn compile(records: &[ConfigurationRecord]) -> Vec<Compiled> {
    let mut compiled = Vec::new();
    for r in records {
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

/// Every configuration's custom metrics whose query parses, counting from zero.
fn metrics(records: &[ConfigurationRecord]) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for r in records {
        for (name, q) in &r.metric_queries {
            if let Some(query) = q.as_str().and_then(|q| query::parse(q).ok()) {
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

/// Reads every device (or module) twin: counts the twins each configuration targets and is
/// applied to, and the metric matches (on each twin as it will be once its outcome is written).
/// Returns the twins whose outcome changes them.
fn survey(
    store: &Store,
    modules: bool,
    compiled: &[Compiled],
    counts: &mut Counts,
    metrics: &mut [Metric],
) -> Result<Vec<Target>, Error> {
    let collection = collection(modules);
    let counting_metrics = metrics.iter().any(|m| m.query.collection == collection);
    let now = now();
    let mut changed = Vec::new();
    store.visit_twin_records(modules, |mut rec| {
        let twin = rec.twin_json();
        let out = reconcile(&twin, &rec.twin().desired, modules, compiled);
        for id in &out.targeted {
            counts.entry(id.clone()).or_default().0 += 1;
        }
        for (id, s) in &out.statuses {
            if s["status"] == APPLIED {
                counts.entry(id.clone()).or_default().1 += 1;
            }
        }
        let changes = out.changes(&rec.twin().configurations);
        if changes {
            changed.push(rec.target());
        }
        if counting_metrics {
            let after = if changes {
                apply_outcome(rec.twin_mut(), out, &now);
                rec.twin_json()
            } else {
                twin
            };
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

/// Evaluates one twin again inside a write (it may have changed since the survey) and writes
/// its outcome if that still changes it. Connected devices hear of the desired write like any
/// other.
fn apply(
    tx: &mut Tx<'_>,
    target: &Target,
    modules: bool,
    compiled: &[Compiled],
) -> Result<(), Error> {
    let Some(mut rec) = tx.twin_record(target)? else {
        return Ok(());
    };
    let out = reconcile(&rec.twin_json(), &rec.twin().desired, modules, compiled);
    if !out.changes(&rec.twin().configurations) {
        return Ok(());
    }
    let now = tx.now.clone();
    apply_outcome(rec.twin_mut(), out, &now);
    tx.save_twin_record(&mut rec)
}

/// Writes an outcome into a twin: the desired patch as a real service write (etag, versions and
/// metadata move), then the statuses (which alone move nothing). Content the twin's limits refuse
/// is not written and its configurations count as targeted only.
fn apply_outcome(twin: &mut TwinState, out: Outcome, now: &str) {
    let out = if out.patch.is_empty() {
        out
    } else {
        let write = ServiceWrite {
            tags: None,
            desired: Some(out.patch.clone()),
        };
        match twin.patch(write, now) {
            Ok(()) => out,
            Err(e) => {
                tracing::warn!(error = %e, "configuration content refused by the twin's limits");
                out.unapplied()
            }
        }
    };
    twin.configurations = out.statuses;
}
