//! One small module per subcommand: turn arguments into a request, call the library, return an
//! [`ExitStatus`]. Exit codes are chosen here and nowhere else.

use crate::cli::{Cli, Command};

/// What the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success, no changes.
    Success,
    /// 1: an error, a conflict, a refusal or a usage error.
    Failure,
    /// 2: changes present (`plan --detailed-exitcode`) or drift.
    Changes,
    /// 130: interrupted by Ctrl-C.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Interrupted => 130,
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Emulator(args) => crate::emulator::run(args).await,
        _ => anyhow::bail!("not implemented yet"),
    }
}
