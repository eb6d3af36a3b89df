//! `apply`: the plan to execute (made now from the manifests, or a saved plan checked and
//! resolved), the executor run, and `--wait`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::connect::Connection;
use crate::apply::{self, Options};
use twinops_core::model::Fleet;
use twinops_core::plan::Kind;
use twinops_core::plan::secret::DigestKey;
use twinops_core::plan::{FORMAT_VERSION, Plan, SavedPlan};
use twinops_core::report::{Outcome, Reason, Report, Reporter, Status};

/// Where the plan comes from.
pub(crate) enum Source<'a> {
    /// Planned now.
    Manifests(super::plan::Request<'a>),
    /// A saved plan, executed exactly; `fleet` are the manifests it was made from, when given
    /// (its inline sensitive values come from them, and they must not have changed).
    Saved {
        path: &'a Path,
        plan: Box<SavedPlan>,
        fleet: Option<&'a Fleet>,
    },
}

/// The plan to execute. A saved plan must be for this hub, owner and format, and gets its
/// concealed sensitive values back (references from the environment, inline values from the
/// manifests), each checked against the plan's digest; nothing is sent before that.
pub(crate) async fn prepare(
    conn: &Connection,
    source: Source<'_>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Plan> {
    match source {
        Source::Manifests(request) => super::plan::plan(conn, request, reporter).await,
        Source::Saved { path, plan, fleet } => {
            saved(path, *plan, &conn.identity, fleet, conn.digest_key)
        }
    }
}

/// Reads a saved plan: a file that is not JSON, not a plan document, or a plan that does not
/// parse is reported as what it is (with serde's line and column), a plan of another
/// `format_version` as that. Nothing is sent before this.
pub(crate) fn read(path: &Path) -> anyhow::Result<SavedPlan> {
    let text = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
    let at = |e: &serde_json::Error| format!("{}:{}:{}", path.display(), e.line(), e.column());
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not JSON ({}), so not a plan saved by `twinops plan --out`; nothing was written",
            at(&e),
            serde_message(&e)
        )
    })?;
    let not_a_plan = |what: &str| {
        anyhow::anyhow!(
            "`{}` is not a plan document ({what}); save one with `twinops plan --out FILE`; nothing was written",
            path.display()
        )
    };
    let version = match &doc {
        serde_json::Value::Object(o) => match o.get("format_version") {
            None => return Err(not_a_plan("no `format_version`")),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| not_a_plan("`format_version` is not a number"))?,
        },
        serde_json::Value::Array(_) => return Err(not_a_plan("an array, not an object")),
        _ => return Err(not_a_plan("not an object")),
    };
    if version != u64::from(FORMAT_VERSION) {
        bail!(
            "`{}` is a plan of format_version {version}; this twinops reads format_version {FORMAT_VERSION}; nothing was written",
            path.display(),
        );
    }
    serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a twinops plan of format_version {FORMAT_VERSION} ({}); nothing was written",
            at(&e),
            serde_message(&e)
        )
    })
}

/// serde_json's message without the ` at line L column C` it ends with (the caller puts the
/// place first, as `file:line:column`).
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let place = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&place).unwrap_or(&text).to_string()
}

/// A saved plan checked against this hub and, when given, the manifests it was made from, then
/// resolved.
fn saved(
    path: &Path,
    p: SavedPlan,
    identity: &str,
    fleet: Option<&Fleet>,
    key: DigestKey,
) -> anyhow::Result<Plan> {
    if p.hub != identity {
        bail!(
            "`{}` was made for hub `{}`, not `{identity}`; nothing was written",
            path.display(),
            p.hub
        );
    }
    if let Some(f) = fleet {
        if f.owner != p.owner {
            bail!(
                "`{}` was made for owner `{}`, but the manifests name `{}`; nothing was written",
                path.display(),
                p.owner,
                f.owner
            );
        }
        if f.digest != p.manifest_digest {
            bail!(
                "the manifests changed since `{}` was made (digest {} vs {}); plan again; nothing was written",
                path.display(),
                &p.manifest_digest[..p.manifest_digest.len().min(12)],
                &f.digest[..f.digest.len().min(12)]
            );
        }
    }
    p.resolve(&super::manifests::env, fleet, key)
        .map_err(|e| anyhow::anyhow!("refusing `{}`, nothing was written: {e}", path.display()))
}

/// Refuses a plan that deletes more identities than `max` (`--max-deletes`), before anything is
/// written.
pub(crate) fn check_deletions(plan: &Plan, max: usize) -> anyhow::Result<()> {
    let deletions = twinops_core::plan::deletion_count(plan);
    if deletions > max {
        bail!(
            "the plan deletes {deletions} identities, more than --max-deletes {max}; nothing was written"
        );
    }
    Ok(())
}

/// Executes the plan.
pub(crate) async fn execute(
    conn: &Connection,
    plan: &Plan,
    options: &Options,
    reporter: &dyn Reporter,
) -> Report {
    let mut report = apply::apply(&conn.hub, plan, options, reporter).await;
    // The twins the plan found in conflict are outcomes too: the totals and the JSON report count
    // them, so an apply that exits 1 for them never says "0 conflicts".
    report
        .outcomes
        .extend(plan.conflicts.iter().map(|k| Outcome {
            kind: if k.address.module.is_some() {
                Kind::UpdateModuleTwin
            } else {
                Kind::UpdateDeviceTwin
            },
            address: k.address.clone().into(),
            status: Status::Conflict,
            reason: Some(Reason::PlanConflict(k.reason.clone())),
            keys: k.keys.clone(),
        }));
    report
}

/// `--wait`: waits until the devices acknowledge the desired values the run wrote (or found at
/// the target) and those earlier runs wrote that they have not acknowledged yet (SPEC §18), and
/// puts what they answered into the report.
pub(crate) async fn wait(
    conn: &Connection,
    plan: &Plan,
    report: &mut Report,
    limit: Duration,
    concurrency: usize,
    stop: &CancellationToken,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let items = apply::wait::items(plan, report);
    let objects = apply::wait::objects(plan, report);
    let waited = apply::wait::wait(
        &conn.hub,
        items,
        objects,
        limit,
        concurrency,
        stop,
        reporter,
    )
    .await
    .context("waiting for the devices to acknowledge")?;
    report.wait = Some(waited);
    Ok(())
}
