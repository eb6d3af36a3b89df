//! `twinops plan`: read live state, diff, print; `--out` saves the JSON plan.

use anyhow::Context;

use super::{ExitStatus, connect};
use crate::cli::{Format, PlanArgs};
use crate::hub::{OpClass, read};
use crate::output;
use twinops_core::model::{Fleet, Scope, Targets};
use twinops_core::plan::scope::ScopeDoc;
use twinops_core::plan::{self, Options, Plan};

/// A plan narrowed to the twins a manifest change touched (`--changed-from`): what the plan
/// document records and which twins it covers.
pub struct Changed {
    pub doc: ScopeDoc,
    pub scope: Scope,
}

/// Reads the manifests at `rev` and compares them with `fleet` (the working tree's). `Ok(None)`
/// when they do not validate (the problems are printed, naming `REF:path`); an error when `rev`
/// is no commit. Nothing is sent to the hub either way: this runs before connecting.
pub fn changed_from(
    rev: &str,
    paths: &[std::path::PathBuf],
    fleet: &Fleet,
) -> anyhow::Result<Option<Changed>> {
    let at = crate::git::manifests_at(rev, &super::validate::paths(paths))?;
    // `${env:NAME}` at REF takes the same environment as the working tree's manifests; a variable
    // the working tree no longer uses (and the job may not set) stands in as a placeholder, which
    // makes that twin differ, so it is read and planned like any other changed twin.
    let env = |name: &str| {
        Some(
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| format!("(${{env:{name}}} is not set)")),
        )
    };
    let before = match twinops_core::manifest::load(&at.sources, &env) {
        Ok(f) => f,
        Err(errors) => {
            for d in &errors.0 {
                output::talk(&format!("error: {d}"));
            }
            output::talk(&format!(
                "the manifests at --changed-from `{rev}` ({}) do not validate: {} problem(s); nothing was sent to the hub",
                at.commit,
                errors.0.len()
            ));
            return Ok(None);
        }
    };
    let scope = plan::scope::changed(&before, fleet);
    Ok(Some(Changed {
        doc: ScopeDoc {
            changed_from: at.commit,
            twins: scope.twins(),
        },
        scope,
    }))
}

/// The targets of a plan: the `--target` patterns, narrowed to a change's twins.
pub fn targets(patterns: &[String], changed: Option<&Changed>) -> Targets {
    let t = Targets::new(patterns);
    match changed {
        Some(c) => t.within(c.scope.clone()),
        None => t,
    }
}

fn round1(s: f64) -> f64 {
    (s * 10.0).round() / 10.0
}

/// Reads the hub and diffs it against the fleet: each twin is diffed as its page or GET arrives
/// and only what the plan needs of it is kept (`plan::Seen`), so the read never holds the fleet's
/// twins. `changed` is the change a scoped plan covers.
pub async fn make(
    conn: &connect::Connection,
    fleet: &Fleet,
    options: &Options,
    concurrency: usize,
    changed: Option<&ScopeDoc>,
) -> anyhow::Result<Plan> {
    let started = std::time::Instant::now();
    let targets = &options.targets;
    let scoped = targets.scope().is_some();
    let reads = read::plan(
        read::wanted(fleet, targets, options.prune),
        read::declared(fleet),
        read::Rates::of(&conn.hub),
        scoped,
        options.prune,
    );
    if reads.estimated_seconds.is_some() {
        output::progress(&reads.describe());
    }
    let mut differ = plan::Differ::new(fleet, &conn.identity, options);
    read::read(&conn.hub, &reads, concurrency, |o| {
        match o {
            read::Observation::Device(d) => differ.device(&d),
            read::Observation::Module(id, m) => differ.module(&id, &m),
        }
        Ok(())
    })
    .await
    .context("reading the hub")?;
    let (mut p, seen) = differ.finish(reads.complete);
    check_targets(targets, fleet, &seen)?;
    if !options.prune {
        p.no_longer_declared = no_longer_declared(&conn.hub, fleet, &seen, targets)
            .await
            .context("looking for owned identities no manifest declares")?;
    }
    confirm_deletions(&conn.hub, &mut p)
        .await
        .context("confirming planned deletions")?;
    if conn.sas {
        for device in plan::disabled_with_module_changes(&p, &seen) {
            output::talk(&format!(
                "warning: device `{device}` is disabled: under SAS, IoT Hub refuses module identity operations on a disabled device (401); use --auth token (Entra ID), or enable the device first"
            ));
        }
    }
    p.requests = conn.hub.counts().snapshot();
    p.estimated_apply_seconds = estimate(&p, conn);
    p.estimated_read_seconds = reads.estimated_seconds.map(round1);
    p.read_seconds = Some(round1(started.elapsed().as_secs_f64()));
    p.scope = changed.cloned();
    Ok(p)
}

/// Owned identities that no manifest declares, for the plan's hint and drift. From the read
/// itself when it was complete for the plan's targets; else when two `COUNT()` queries of this
/// owner's ledgers find no more owned identities in the hub than the read saw (the common case,
/// two requests whatever the fleet's size); else from two projection queries of those ledgers (a
/// page per 100 rows).
pub async fn no_longer_declared(
    hub: &crate::hub::Hub,
    fleet: &Fleet,
    seen: &plan::Seen,
    targets: &Targets,
) -> Result<Vec<String>, crate::hub::Error> {
    let owner = fleet.owner.as_str();
    let text = |(d, m): (&str, Option<&str>)| twinops_core::model::address(d, m);
    let from_seen = || {
        plan::undeclared(fleet, seen.owned(), targets)
            .into_iter()
            .map(text)
            .collect()
    };
    if seen.complete {
        return Ok(from_seen());
    }
    // The owner is 1..64 of `A-Za-z0-9._-` (checked by `Owner`), so it can stand in quotes.
    let mut counts = Vec::new();
    for collection in ["devices", "devices.modules"] {
        let sql =
            format!("SELECT COUNT() AS n FROM {collection} WHERE tags.twinops.owner = '{owner}'");
        let mut n = 0;
        hub.query_all(&sql, crate::hub::read::QUERY_PAGE_REQUEST, |page| {
            n += page
                .iter()
                .filter_map(|r| r.get("n").and_then(serde_json::Value::as_u64))
                .sum::<u64>();
            Ok(())
        })
        .await?;
        counts.push(n);
    }
    let (devices, modules) = seen.owned_counts();
    if counts == [devices, modules] {
        return Ok(from_seen());
    }
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
pub fn check_targets(targets: &Targets, fleet: &Fleet, seen: &plan::Seen) -> anyhow::Result<()> {
    if let Some(pattern) = targets.unmatched(fleet.identities().chain(seen.identities())) {
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
    if let Some(r) = plan.read_seconds {
        s.push_str(&format!(" in {r:.1}s"));
        if let Some(e) = plan.estimated_read_seconds {
            s.push_str(&format!(" (estimated {e:.1}s)"));
        }
    }
    if let Some(c) = &plan.scope {
        s.push_str(&format!(
            "; {} twin(s) changed since {}",
            c.twins,
            &c.changed_from[..c.changed_from.len().min(12)]
        ));
    }
    if let Some(e) = plan.estimated_apply_seconds {
        s.push_str(&format!("; apply estimated at {e:.1}s at the chosen pace"));
    }
    s
}

pub async fn run(args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = super::validate::load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
    };
    let changed = match &args.changed_from {
        Some(rev) => match changed_from(rev, &args.paths, &fleet)? {
            Some(c) => Some(c),
            None => return Ok(ExitStatus::Failure),
        },
        None => None,
    };
    let conn = connect::connect(&args.common.hub, Some(&args.pace)).await?;
    let options = Options {
        adopt: args.adopt,
        prune: args.prune,
        targets: targets(&args.common.targets, changed.as_ref()),
    };
    let result = make(
        &conn,
        &fleet,
        &options,
        args.common.concurrency,
        changed.as_ref().map(|c| &c.doc),
    )
    .await;
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
