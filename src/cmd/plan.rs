//! `twinops plan`: read live state, diff, print; `--out` saves the JSON plan.

use anyhow::Context;

use super::{ExitStatus, connect};
use crate::cli::{Format, PlanArgs};
use crate::hub::{OpClass, read};
use crate::output;
use twinops_core::model::Fleet;
use twinops_core::model::Targets;
use twinops_core::plan::{self, Options, Plan};

/// Reads the hub and diffs it against the fleet.
pub async fn make(
    conn: &connect::Connection,
    fleet: &Fleet,
    options: &Options,
    concurrency: usize,
) -> anyhow::Result<Plan> {
    let observed = read::observe(
        &conn.hub,
        fleet,
        &options.targets,
        options.prune,
        concurrency,
    )
    .await
    .context("reading the hub")?;
    check_targets(&options.targets, fleet, &observed)?;
    let mut p = plan::diff(fleet, &observed, &conn.identity, options);
    if !options.prune {
        p.no_longer_declared = no_longer_declared(&conn.hub, fleet, &observed, &options.targets)
            .await
            .context("looking for owned identities no manifest declares")?;
    }
    confirm_deletions(&conn.hub, &mut p)
        .await
        .context("confirming planned deletions")?;
    if conn.sas {
        for device in plan::disabled_with_module_changes(&p, &observed) {
            output::talk(&format!(
                "warning: device `{device}` is disabled: under SAS, IoT Hub refuses module identity operations on a disabled device (401); use --auth token (Entra ID), or enable the device first"
            ));
        }
    }
    p.requests = conn.hub.counts().snapshot();
    p.estimated_apply_seconds = estimate(&p, conn);
    Ok(p)
}

/// Owned identities that no manifest declares, for the plan's hint and drift: from a complete read
/// when the plan made one, else from two projection queries of this owner's ledgers (a page per
/// 100 rows, whatever the fleet's size).
pub async fn no_longer_declared(
    hub: &crate::hub::Hub,
    fleet: &Fleet,
    observed: &twinops_core::model::Observed,
    targets: &Targets,
) -> Result<Vec<String>, crate::hub::Error> {
    let owner = fleet.owner.as_str();
    let text = |(d, m): (&str, Option<&str>)| twinops_core::model::address(d, m);
    if observed.complete {
        let owned = plan::owned_identities(observed, owner);
        return Ok(plan::undeclared(fleet, owned, targets)
            .into_iter()
            .map(text)
            .collect());
    }
    // The owner is 1..64 of `A-Za-z0-9._-` (checked by `Owner`), so it can stand in quotes.
    let mut rows: Vec<(String, Option<String>)> = Vec::new();
    for sql in [
        format!("SELECT deviceId FROM devices WHERE tags.twinops.owner = '{owner}'"),
        format!(
            "SELECT deviceId, moduleId FROM devices.modules WHERE tags.twinops.owner = '{owner}'"
        ),
    ] {
        hub.query_all(&sql, crate::hub::read::QUERY_PAGE_REQUEST, |page| {
            rows.extend(page.iter().filter_map(|r| {
                let field = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
                Some((field("deviceId")?, field("moduleId")))
            }));
            Ok(())
        })
        .await?;
    }
    let owned = rows.iter().map(|(d, m)| (d.as_str(), m.as_deref()));
    let mut out: Vec<String> = plan::undeclared(fleet, owned, targets)
        .into_iter()
        .map(text)
        .collect();
    // Query rows can repeat while the index catches up.
    out.sort();
    out.dedup();
    Ok(out)
}

/// A `--target` that selects no declared and no observed identity is an error naming it: a typo
/// must not pass CI as "No changes".
pub fn check_targets(
    targets: &Targets,
    fleet: &Fleet,
    observed: &twinops_core::model::Observed,
) -> anyhow::Result<()> {
    if let Some(pattern) = targets.unmatched(fleet.identities().chain(observed.identities())) {
        anyhow::bail!("--target `{pattern}` matches no declared or observed identity");
    }
    Ok(())
}

/// Query rows lag behind the registry (live-hub.md: a device deleted 25 minutes earlier was still
/// listed), so a deletion planned from them is confirmed with a targeted GET of its twin: a 404
/// means it is gone already, and it is not planned (SPEC §12).
async fn confirm_deletions(hub: &crate::hub::Hub, p: &mut Plan) -> Result<(), crate::hub::Error> {
    let is_delete = |c: &plan::Change| {
        matches!(
            c,
            plan::Change::DeleteDevice(_) | plan::Change::DeleteModule(_)
        )
    };
    let mut gone = std::collections::BTreeSet::new();
    for address in p
        .changes
        .iter()
        .filter(|c| is_delete(c))
        .map(plan::Change::address)
    {
        match hub.get_twin(&address.device, address.module_id()).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                gone.insert(address);
            }
            Err(e) => return Err(e),
        }
    }
    if !gone.is_empty() {
        p.changes
            .retain(|c| !(is_delete(c) && gone.contains(&c.address())));
        p.recount();
    }
    Ok(())
}

/// Apply time at the chosen pace: per class, requests / rate.
fn estimate(p: &Plan, conn: &connect::Connection) -> Option<f64> {
    let pacer = conn.hub.pacer()?;
    let mut per_class: std::collections::HashMap<OpClass, f64> = Default::default();
    for c in &p.changes {
        let (class, n) = match c.kind() {
            plan::Kind::CreateDevice | plan::Kind::CreateModule => (OpClass::RegistryWrite, 1.0),
            plan::Kind::UpdateDeviceTwin | plan::Kind::UpdateModuleTwin => {
                (OpClass::TwinWrite, 1.0)
            }
            _ => (OpClass::RegistryWrite, 2.0),
        };
        *per_class.entry(class).or_default() += n;
    }
    let secs = per_class
        .iter()
        .filter_map(|(c, n)| pacer.rate(*c).map(|r| n / r))
        .fold(0.0, f64::max);
    Some((secs * 10.0).round() / 10.0)
}

/// Prints a plan; text and markdown group identical changes unless `expand` (JSON always lists
/// every change).
pub fn print(plan: &Plan, format: Format, expand: bool) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    match format {
        Format::Text => twinops_core::render::text::plan_with(&mut buf, plan, expand)?,
        Format::Json => twinops_core::render::json(&mut buf, plan)?,
        Format::Markdown => twinops_core::render::markdown::plan_with(&mut buf, plan, expand)?,
    }
    output::data(&String::from_utf8_lossy(&buf));
    Ok(())
}

/// Writes a file readable by its owner only (0600): a saved plan holds no sensitive value, but it
/// names the twins, their etags and their values, and digests of the sensitive ones.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(path)?;
        // An existing file keeps its mode on open: tighten it as well.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(bytes)
    }
}

/// One stderr line on what reading cost.
pub fn requests_line(plan: &Plan) -> String {
    let total: u64 = plan.requests.values().sum();
    let parts: Vec<String> = plan
        .requests
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let mut s = format!(
        "Read the hub with {total} request(s) ({})",
        parts.join(", ")
    );
    if let Some(e) = plan.estimated_apply_seconds {
        s.push_str(&format!("; apply estimated at {e:.1}s at the chosen pace"));
    }
    s
}

pub async fn run(args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = super::validate::load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
    };
    let conn = connect::connect(&args.common.hub, Some(&args.pace)).await?;
    let options = Options {
        adopt: args.adopt,
        prune: args.prune,
        targets: Targets::new(&args.common.targets),
    };
    let result = make(&conn, &fleet, &options, args.common.concurrency).await;
    conn.close().await;
    let p = result?;
    if !args.common.output.quiet {
        output::talk(&requests_line(&p));
    }
    if let Some(out) = &args.out {
        // The same document as `--format json`: sensitive values concealed (plan::secret).
        let mut buf = Vec::new();
        twinops_core::render::json(&mut buf, &p)?;
        write_private(out, &buf)
            .with_context(|| format!("writing the plan to `{}`", out.display()))?;
    }
    print(&p, args.common.output.format, args.expand)?;
    Ok(if args.detailed_exitcode && p.has_differences() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}
