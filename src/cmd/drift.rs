//! `twinops drift`: a read-only drift report for scheduled runs (exit 0 in sync, 2 drift, 1 error).

use anyhow::Context;

use super::{ExitStatus, connect};
use crate::cli::{DriftArgs, Format};
use crate::hub::read;
use crate::output;
use twinops_core::model::Targets;
use twinops_core::plan::{self, Options, drift};

pub async fn run(args: &DriftArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = super::validate::load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
    };
    let conn = connect::connect(&args.common.hub, None).await?;
    let result = report(&conn, &fleet, args).await;
    conn.close().await;
    let r = result?;
    let mut buf = Vec::new();
    match args.common.output.format {
        Format::Text => twinops_core::render::text::drift(&mut buf, &r)?,
        Format::Json => twinops_core::render::json(&mut buf, &r)?,
        Format::Markdown => twinops_core::render::markdown::drift(&mut buf, &r)?,
    }
    output::data(&String::from_utf8_lossy(&buf));
    Ok(if r.in_sync {
        ExitStatus::Success
    } else {
        ExitStatus::Changes
    })
}

async fn report(
    conn: &connect::Connection,
    fleet: &twinops_core::model::Fleet,
    args: &DriftArgs,
) -> anyhow::Result<drift::Report> {
    let targets = Targets::new(&args.common.targets);
    let observed = read::observe(&conn.hub, fleet, &targets, false, args.common.concurrency)
        .await
        .context("reading the hub")?;
    let options = Options {
        targets: targets.clone(),
        ..Options::default()
    };
    let (mut p, seen) = plan::diff_seen(fleet, &observed, &conn.identity, &options);
    super::plan::check_targets(&targets, fleet, &seen)?;
    p.no_longer_declared = super::plan::no_longer_declared(&conn.hub, fleet, &seen, &targets)
        .await
        .context("looking for owned identities no manifest declares")?;
    let any_configured = observed.devices.values().any(|d| {
        !d.twin.configurations.is_empty()
            || d.modules
                .values()
                .any(|m| !m.twin.configurations.is_empty())
    });
    let configs = if any_configured {
        conn.hub
            .list_configurations()
            .await
            .context("reading automatic configurations")?
            .into_iter()
            .map(|c| {
                let mut o = drift::content_keys(&c.content.unwrap_or_default());
                o.id = c.id;
                o.priority = c.priority.unwrap_or(0);
                o
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(drift::report(&p, fleet, &observed, &configs, &targets))
}
