//! `twinops export`: writes manifests from a live hub (to adopt an existing fleet).

use anyhow::bail;

use super::{ExitStatus, print};
use crate::cli::{ExportArgs, Format};
use crate::ops::export::{self, Note};
use crate::ops::{self, connect};
use crate::output;

pub(crate) async fn run(args: &ExportArgs) -> anyhow::Result<ExitStatus> {
    let read = ops::read::ReadChoice::of(&args.read)?;
    if args.query.is_some() && args.read.mode == crate::cli::ReadMode::Export {
        anyhow::bail!(
            "--query cannot be used with --read export: an export job writes every identity; drop --query or read with --read api"
        );
    }
    let conn = connect::connect(&args.hub, None).await?;
    let request = export::Request {
        query: args.query.as_deref(),
        targets: &args.targets,
        into: args.out.as_deref(),
        concurrency: 16,
        configurations: args.configurations,
        read,
    };
    let result =
        ops::export::export(&conn, request, &super::Progress::lines(args.output.quiet)).await;
    conn.close().await;
    let exported = result?;
    for note in &exported.notes {
        match note {
            Note::MarkersNotKept { dir, problems } => output::talk(&format!(
                "warning: the manifests in `{}` do not load ({problems} problem(s)); their ignore/sensitive markers are not kept",
                dir.display()
            )),
            Note::UnlabelledObjects(n) => output::talk(&format!(
                "warning: {n} configuration(s) or deployment(s) are labelled as no owner's and were not exported; label them `twinops-owner: OWNER` and `twinops-name: NAME` to manage them"
            )),
        }
    }
    let groups = &exported.groups;
    let Some(dir) = &args.out else {
        if groups.len() > 1 {
            bail!(
                "the hub holds twins of {} owners ({}); pass --out DIR to write one manifest set per owner",
                groups.len(),
                groups.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for doc in groups.values() {
            match args.output.format {
                Format::Json => print(|b| twinops_core::render::json(b, doc))?,
                Format::Text | Format::Markdown => output::data(&export::to_yaml(doc)?),
            }
        }
        return Ok(ExitStatus::Success);
    };
    for path in export::write(dir, groups, args.force)? {
        output::talk(&format!("wrote {}", path.display()));
    }
    Ok(ExitStatus::Success)
}
