//! `twinops plan`: read live state, diff, print; `--out` saves the JSON plan.

use anyhow::{Context, bail};

use super::{ExitStatus, Progress, changed_from, load, print_plan};
use crate::cli::{AuthMode, PlanArgs};
use crate::ops::{self, connect, manifests};
use crate::output;
use twinops_core::plan::Options;

pub(crate) async fn run(args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
    };
    let changed = match &args.changed_from {
        Some(rev) => match changed_from(rev, &args.paths, &fleet)? {
            Some(c) => Some(c),
            None => return Ok(ExitStatus::Failure),
        },
        None => None,
    };
    let no_plan_key = std::env::var(connect::PLAN_KEY_VAR).map_or(true, |k| k.is_empty());
    if args.out.is_some()
        && args.common.hub.auth == AuthMode::Token
        && no_plan_key
        && fleet.has_sensitive()
    {
        bail!(
            "refusing to save a plan with sensitive values under --auth token without {}: its digests are keyed (SPEC §13), and without a plan key no later run could check them; set {} to a secret of your CI (the same for plan and apply)",
            connect::PLAN_KEY_VAR,
            connect::PLAN_KEY_VAR
        );
    }
    let read = ops::read::ReadChoice::of(&args.read)?;
    let conn = connect::connect(&args.common.hub, Some(&args.pace)).await?;
    let quiet = args.common.output.quiet;
    let request = ops::plan::Request {
        fleet: &fleet,
        options: Options {
            awaiting: false,
            // Set from the connection by `ops::plan`.
            digest_key: Default::default(),
            force_conflicts: super::force_conflicts(args.force_conflicts, args.adopt),
            prune: args.prune,
            targets: manifests::targets(&args.common.targets, changed.as_ref()),
        },
        concurrency: args.common.concurrency,
        changed: changed.map(|c| c.doc),
        read,
    };
    let result = ops::plan::plan(&conn, request, &Progress::lines(quiet)).await;
    conn.close().await;
    let p = result?;
    if !quiet {
        output::talk(&twinops_core::render::text::requests_line(&p));
    }
    if let Some(out) = &args.out {
        // The same document as `--format json`: sensitive values concealed (plan::secret).
        let mut buf = Vec::new();
        twinops_core::render::json(&mut buf, &p)?;
        write_private(out, &buf)
            .with_context(|| format!("writing the plan to `{}`", out.display()))?;
    }
    print_plan(&p, args.common.output.format, args.expand)?;
    Ok(if args.detailed_exitcode && p.has_differences() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
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
