//! `twinops drift`: a read-only drift report for scheduled runs (exit 0 in sync, 2 drift, 1 error).

use super::{ExitStatus, load, print};
use crate::cli::{DriftArgs, Format};
use crate::ops::{self, connect};
use twinops_core::model::Targets;

pub(crate) async fn run(args: &DriftArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
    };
    let choice = ops::read::ReadChoice::of(&args.read)?;
    let conn = connect::connect(&args.common.hub, None).await?;
    let targets = Targets::new(&args.common.targets);
    let result = ops::drift::drift(
        &conn,
        &fleet,
        targets,
        args.stale_after,
        args.common.concurrency,
        &choice,
        &super::Progress::lines(args.common.output.quiet),
    )
    .await;
    conn.close().await;
    let r = result?;
    print(|b| match args.common.output.format {
        Format::Text => twinops_core::render::text::drift(b, &r),
        Format::Json => twinops_core::render::json(b, &r),
        Format::Markdown => twinops_core::render::markdown::drift(b, &r),
    })?;
    Ok(if r.in_sync {
        ExitStatus::Success
    } else {
        ExitStatus::Changes
    })
}
