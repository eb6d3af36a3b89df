//! `twinops apply`: plan then execute, or execute a saved plan exactly; confirmation, Ctrl-C,
//! outcomes, `--wait`. With `--format json` stdout holds exactly one document, the report (with
//! what `--wait` saw); text and markdown print the plan, the outcomes, then the wait's table.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};

use super::{ExitStatus, Progress, changed_from, load, print, print_plan};
use crate::apply::Options;
use crate::cli::{ApplyArgs, Format};
use crate::ops::apply::Source;
use crate::ops::connect::Connection;
use crate::ops::manifests::{self, Changed};
use crate::ops::{self, connect};
use crate::output;
use twinops_core::model::Fleet;
use twinops_core::plan::{self, Plan, SavedPlan};
use twinops_core::render::text;
use twinops_core::report::Report;

pub(crate) async fn run(args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    let fleet = if args.plan.is_none() || !args.paths.is_empty() {
        match load(&args.paths)? {
            Some(f) => Some(f),
            None => return Ok(ExitStatus::Failure),
        }
    } else {
        None
    };
    let changed = match (&args.changed_from, &fleet) {
        (Some(rev), Some(f)) => match changed_from(rev, &args.paths, f)? {
            Some(c) => Some(c),
            None => return Ok(ExitStatus::Failure),
        },
        _ => None,
    };
    // A saved plan is read before connecting: a file that is not one is refused with nothing sent.
    let saved = match args.plan.as_deref() {
        Some(path) => Some((path, ops::apply::read(path)?)),
        None => None,
    };
    // `--read export` without `--storage`, or a bad timeout: refused before anything is sent.
    let read = ops::read::ReadChoice::of(&args.read)?;
    let conn = connect::connect(&args.common.hub, Some(&args.pace)).await?;
    let result = apply(args, &conn, fleet, changed, saved, read).await;
    conn.close().await;
    result
}

/// The plan to execute: made now, or the saved one (checked and resolved).
async fn prepare(
    args: &ApplyArgs,
    conn: &Connection,
    fleet: Option<&Fleet>,
    changed: Option<Changed>,
    saved: Option<(&Path, SavedPlan)>,
    read: ops::read::ReadChoice,
) -> anyhow::Result<Plan> {
    let quiet = args.common.output.quiet;
    let source = match saved {
        Some((path, plan)) => Source::Saved {
            path,
            plan: Box::new(plan),
            fleet,
        },
        None => Source::Manifests(ops::plan::Request {
            fleet: fleet.context("no manifests")?,
            options: plan::Options {
                force_conflicts: super::force_conflicts(args.force_conflicts, args.adopt),
                awaiting: args.wait.is_some(),
                // Set from the connection by `ops::plan`.
                digest_key: Default::default(),
                prune: args.prune,
                targets: manifests::targets(&args.common.targets, changed.as_ref()),
            },
            concurrency: args.common.concurrency,
            changed: changed.map(|c| c.doc),
            read,
        }),
    };
    let p = ops::apply::prepare(conn, source, &Progress::lines(quiet)).await?;
    if args.plan.is_none() && !quiet {
        output::talk(&text::requests_line(&p));
    }
    Ok(p)
}

async fn apply(
    args: &ApplyArgs,
    conn: &Connection,
    fleet: Option<Fleet>,
    changed: Option<Changed>,
    saved: Option<(&Path, SavedPlan)>,
    read: ops::read::ReadChoice,
) -> anyhow::Result<ExitStatus> {
    let format = args.common.output.format;
    let p = prepare(args, conn, fleet.as_ref(), changed, saved, read).await?;
    // The plan holds all that apply needs: the manifests' memory goes back before the writes start.
    drop(fleet);
    ops::apply::check_deletions(&p, args.max_deletes)?;
    if format == Format::Text {
        if args.common.output.quiet {
            // `--quiet`: the plan's summary, not one block per change.
            output::data(&format!("{}\n", text::summary_line(&p)));
        } else {
            print_plan(&p, Format::Text, args.expand)?;
        }
    }
    // With `--wait`, devices that have not acknowledged what an earlier run wrote are waited for
    // even when there is nothing left to write (SPEC §18).
    let nothing_to_wait_for = args.wait.is_none() || p.awaiting.is_empty();
    let nothing_to_write = p.changes.is_empty() && p.objects.changes.is_empty();
    if nothing_to_write && nothing_to_wait_for {
        if format == Format::Json {
            print(|b| twinops_core::render::json(b, &Report::empty()))?;
        }
        return Ok(if p.conflicts.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        });
    }
    if !nothing_to_write && !args.yes && !confirm(&conn.identity)? {
        output::talk("Apply cancelled.");
        return Ok(ExitStatus::Failure);
    }
    let report = execute(args, conn, &p).await?;
    if !p.conflicts.is_empty() && !args.common.output.quiet {
        output::talk(&format!(
            "{} twin(s) were skipped as conflicts at plan time",
            p.conflicts.len()
        ));
    }
    Ok(if report.interrupted {
        ExitStatus::Interrupted
    } else if report.ok() && p.conflicts.is_empty() && report.wait.as_ref().is_none_or(|w| w.ok()) {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Runs the plan (Ctrl-C stops starting new operations), waits with `--wait`, and prints the
/// report once: a JSON document, or the outcomes as text followed by the wait's table.
async fn execute(args: &ApplyArgs, conn: &Connection, p: &Plan) -> anyhow::Result<Report> {
    let quiet = args.common.output.quiet;
    let format = args.common.output.format;
    let options = Options {
        concurrency: args.common.concurrency,
        no_rollout: args.no_rollout,
        resume: args.resume,
        ..Options::default()
    };
    let stop = options.stop.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
            output::talk(
                "Interrupted: letting in-flight operations finish, starting no new ones...",
            );
        }
    });
    let mut report = if p.changes.is_empty() && p.objects.changes.is_empty() {
        // Nothing to write: only the wait for what earlier runs wrote.
        Report::empty()
    } else {
        let progress = Progress::with_bar(quiet);
        let report = ops::apply::execute(conn, p, &options, &progress).await;
        progress.finish();
        if format != Format::Json {
            print(|b| text::report_with(b, &report, !quiet))?;
        }
        report
    };
    let halted = report.rollout.as_ref().and_then(|r| r.halted.as_ref());
    if let Some(h) = halted {
        output::talk(&format!("error: {}", h.message));
    }
    if let Some(limit) = args.wait
        && !report.interrupted
        && halted.is_none()
    {
        let waiting = Progress::lines(quiet);
        ops::apply::wait(
            conn,
            p,
            &mut report,
            limit,
            options.concurrency,
            &options.stop,
            &waiting,
        )
        .await?;
        if let Some(w) = &report.wait {
            if format != Format::Json {
                print(|b| text::acknowledgements_with(b, w, !quiet))?;
            }
            talk_wait(w);
        }
    }
    ctrl_c.abort();
    report.interrupted |= options.stop.is_cancelled();
    if format == Format::Json {
        print(|b| twinops_core::render::json(b, &report))?;
    }
    Ok(report)
}

/// Says why a wait failed: rejected values, else twins that never acknowledged.
fn talk_wait(w: &twinops_core::report::WaitReport) {
    let rejected: Vec<String> = w
        .rejected()
        .map(|t| {
            format!(
                "{} ({})",
                t.address,
                t.rejected.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let failed: Vec<String> = w
        .objects
        .iter()
        .filter(|o| !o.failed.is_empty())
        .map(|o| format!("{} ({})", o.address, o.failed.join("; ")))
        .collect();
    if !failed.is_empty() {
        output::talk(&format!(
            "error: edge agents report a failed deployment: {}",
            failed.join(", ")
        ));
        return;
    }
    let mut open: Vec<String> = w.open().map(|t| t.address.to_string()).collect();
    open.extend(
        w.objects
            .iter()
            .filter(|o| o.done_after.is_none())
            .map(|o| o.address.to_string()),
    );
    if !rejected.is_empty() {
        output::talk(&format!(
            "error: rejected by the device: {}",
            rejected.join(", ")
        ));
    } else if !open.is_empty() {
        output::talk(&format!(
            "error: timed out after {:?}; not acknowledged: {}",
            w.limit,
            open.join(", ")
        ));
    }
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
