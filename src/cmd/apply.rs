//! `twinops apply`: plan then execute, or execute a saved plan exactly; confirmation, Ctrl-C, outcomes.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};

use super::{ExitStatus, connect};
use crate::apply::{self, Event, Report, Reporter};
use crate::cli::{ApplyArgs, Format};
use crate::output;
use twinops_core::plan::{self, FORMAT_VERSION, Options, Plan, SavedPlan};

/// Reads a saved plan, checks it is for this hub, owner and format, and gets its concealed sensitive
/// values back (references from the environment, inline values from the manifests), refusing any
/// whose digest differs from the plan's. Nothing here talks to the hub.
fn saved_plan(
    path: &std::path::Path,
    identity: &str,
    fleet: Option<&twinops_core::model::Fleet>,
) -> anyhow::Result<Plan> {
    let text = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
    let version: Option<u64> = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format_version").and_then(|v| v.as_u64()));
    if version != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "`{}` is a plan of format_version {}; this twinops reads format_version {FORMAT_VERSION}; nothing was written",
            path.display(),
            version.map_or("(none)".to_string(), |v| v.to_string())
        );
    }
    let p: SavedPlan = serde_json::from_slice(&text)
        .with_context(|| format!("`{}` is not a twinops plan", path.display()))?;
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
    p.resolve(&super::validate::env, fleet)
        .map_err(|e| anyhow::anyhow!("refusing `{}`, nothing was written: {e}", path.display()))
}

fn confirm(hub: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to apply without confirmation: stdin is not a terminal; review the plan and pass --yes"
        );
    }
    output::prompt(&format!(
        "Apply these changes to `{hub}`? Only 'yes' will be accepted: "
    ));
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    Ok(line.trim() == "yes")
}

/// Draws progress on stderr when it is a terminal, and a rollout's notes (waves, gates, bake) on
/// stderr unless `--quiet`, terminal or not (CI logs need them most).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Reporter for Progress {
    fn event(&self, e: Event) {
        if let Event::Note(line) = &e {
            match &self.bar {
                Some(bar) => bar.println(line),
                None if !self.quiet => output::talk(line),
                None => {}
            }
            return;
        }
        let Some(bar) = &self.bar else { return };
        match e {
            Event::Note(_) => {}
            Event::Phase { name, items } => {
                bar.set_length(items as u64);
                bar.set_position(0);
                bar.set_message(name);
            }
            Event::Done(o) => {
                // Failures scroll above the bar as they happen, not only in the final report.
                if o.is_error() {
                    bar.println(format!("{:?} {}: {}", o.status, o.address(), o.detail));
                }
                bar.inc(1);
            }
        }
    }
}

pub async fn run(args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    let fleet = if args.plan.is_none() || !args.paths.is_empty() {
        match super::validate::load(&args.paths)? {
            Some(f) => Some(f),
            None => return Ok(ExitStatus::Failure),
        }
    } else {
        None
    };
    let changed = match (&args.changed_from, &fleet) {
        (Some(rev), Some(f)) => match super::plan::changed_from(rev, &args.paths, f)? {
            Some(c) => Some(c),
            None => return Ok(ExitStatus::Failure),
        },
        _ => None,
    };
    let conn = connect::connect(&args.common.hub, Some(&args.pace)).await?;
    let result = execute(args, &conn, fleet, changed).await;
    conn.close().await;
    result
}

async fn execute(
    args: &ApplyArgs,
    conn: &connect::Connection,
    fleet: Option<twinops_core::model::Fleet>,
    changed: Option<super::plan::Changed>,
) -> anyhow::Result<ExitStatus> {
    let quiet = args.common.output.quiet;
    let p = match &args.plan {
        Some(path) => saved_plan(path, &conn.identity, fleet.as_ref())?,
        None => {
            let fleet = fleet.as_ref().context("no manifests")?;
            let options = Options {
                adopt: args.adopt,
                prune: args.prune,
                targets: super::plan::targets(&args.common.targets, changed.as_ref()),
            };
            let p = super::plan::make(
                conn,
                fleet,
                &options,
                args.common.concurrency,
                changed.as_ref().map(|c| &c.doc),
            )
            .await?;
            if !quiet {
                output::talk(&super::plan::requests_line(&p));
            }
            p
        }
    };
    // The plan holds all that apply needs: the manifests' memory goes back before the writes start.
    drop(fleet);
    let deletions = plan::deletion_count(&p);
    if deletions > args.max_deletes {
        bail!(
            "the plan deletes {deletions} identities, more than --max-deletes {}; nothing was written",
            args.max_deletes
        );
    }
    if args.common.output.format == Format::Text {
        super::plan::print(&p, Format::Text, args.expand)?;
    }
    if p.changes.is_empty() {
        if args.common.output.format == Format::Json {
            twinops_core::render::json(
                &mut std::io::stdout(),
                &Report {
                    outcomes: Vec::new(),
                    interrupted: false,
                    rollout: None,
                },
            )?;
        }
        return Ok(if p.conflicts.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        });
    }
    if !args.yes && !confirm(&conn.identity)? {
        output::talk("Apply cancelled.");
        return Ok(ExitStatus::Failure);
    }
    let options = apply::Options {
        concurrency: args.common.concurrency,
        no_rollout: args.no_rollout,
        resume: args.resume,
        ..apply::Options::default()
    };
    let stop = Arc::clone(&options.stop);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::SeqCst);
            output::talk(
                "Interrupted: letting in-flight operations finish, starting no new ones...",
            );
        }
    });
    let progress = Progress {
        bar: (!quiet && std::io::stderr().is_terminal()).then(output::progress_bar),
        quiet,
    };
    let report = apply::apply(&conn.hub, &p, &options, &progress).await;
    ctrl_c.abort();
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let mut buf = Vec::new();
    match args.common.output.format {
        Format::Json => twinops_core::render::json(&mut buf, &report)?,
        _ => twinops_core::render::text::report(&mut buf, &report)?,
    }
    output::data(&String::from_utf8_lossy(&buf));
    let halted = report.rollout.as_ref().and_then(|r| r.halted.as_ref());
    if let Some(h) = halted {
        output::talk(&format!("error: {}", h.message));
    }
    let mut wait_failed = false;
    if let Some(limit) = args.wait
        && !report.interrupted
        && halted.is_none()
    {
        let items = crate::apply::wait::pending(&p, &report);
        if !quiet {
            output::talk(&format!(
                "Waiting up to {:?} for {} twin(s) to acknowledge their desired values...",
                limit,
                items.len()
            ));
        }
        let items = crate::apply::wait::wait(
            &conn.hub,
            items,
            limit,
            args.common.concurrency,
            &options.stop,
        )
        .await?;
        let mut buf = Vec::new();
        twinops_core::render::text::acknowledgements(&mut buf, &items)?;
        output::data(&String::from_utf8_lossy(&buf));
        let rejected: Vec<String> = items
            .iter()
            .filter_map(|i| Some(format!("{} ({})", i.address(), i.rejected.as_ref()?)))
            .collect();
        let missing: Vec<String> = items
            .iter()
            .filter(|i| i.is_open())
            .map(crate::apply::wait::Pending::address)
            .collect();
        if !rejected.is_empty() {
            output::talk(&format!(
                "error: rejected by the device: {}",
                rejected.join(", ")
            ));
            wait_failed = true;
        } else if !missing.is_empty() {
            output::talk(&format!(
                "error: timed out after {limit:?}; not acknowledged: {}",
                missing.join(", ")
            ));
            wait_failed = true;
        }
    }
    if !p.conflicts.is_empty() && !quiet {
        output::talk(&format!(
            "{} twin(s) were skipped as conflicts at plan time",
            p.conflicts.len()
        ));
    }
    Ok(
        if report.interrupted || options.stop.load(Ordering::SeqCst) {
            ExitStatus::Interrupted
        } else if report.ok() && p.conflicts.is_empty() && !wait_failed {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        },
    )
}
