//! `twinops completions SHELL` and `twinops man`: the shell completion script and the manual page,
//! both generated from the same clap definitions the parser uses, so they cannot drift from it.

use clap::CommandFactory;

use super::ExitStatus;
use crate::cli::{Cli, CompletionsArgs};
use crate::output;

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "twinops", &mut buf);
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}

pub fn man() -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}
