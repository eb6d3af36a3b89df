//! `twinops completions SHELL`, `twinops man` and `twinops schema`: the shell completion script and the
//! manual page, generated from the same clap definitions the parser uses, and the manifest JSON Schema,
//! generated from the loader's own key lists; none of them can drift from what it describes.

use clap::CommandFactory;

use super::ExitStatus;
use crate::cli::{Cli, CompletionsArgs};
use crate::output;

pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "twinops", &mut buf);
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}

pub(crate) fn man() -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}

/// Pretty-printed with a final newline: the form committed as `schema/manifest.schema.json`.
pub(crate) fn schema() -> anyhow::Result<ExitStatus> {
    let schema = twinops_core::manifest::schema::manifest();
    output::data(&format!("{}\n", serde_json::to_string_pretty(&schema)?));
    Ok(ExitStatus::Success)
}
