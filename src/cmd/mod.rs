//! One small module per subcommand: turn arguments into a request, call the library, return an
//! [`ExitStatus`]. Exit codes are chosen here and nowhere else.

pub(crate) mod apply;
pub(crate) mod connect;
pub(crate) mod connection_string;
pub(crate) mod drift;
pub(crate) mod emulator;
pub(crate) mod export;
pub(crate) mod plan;
pub(crate) mod shell;
pub(crate) mod validate;

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
    let common = match &cli.command {
        Command::Validate(a) => Some(&a.output),
        Command::Plan(a) => Some(&a.common.output),
        Command::Apply(a) => Some(&a.common.output),
        Command::Drift(a) => Some(&a.common.output),
        Command::Export(a) => Some(&a.output),
        Command::ConnectionString(a) => Some(&a.output),
        Command::Emulator(_) | Command::Completions(_) | Command::Man | Command::Schema => None,
    };
    if let Some(c) = common {
        crate::output::init_logging(c.verbose, c.no_color);
        crate::output::set_quiet(c.quiet);
    } else {
        crate::output::init_logging(0, false);
    }
    match cli.command {
        Command::Validate(a) => validate::run(&a),
        Command::Plan(a) => plan::run(&a).await,
        Command::Apply(a) => apply::run(&a).await,
        Command::Emulator(args) => emulator::run(&args).await,
        Command::Drift(a) => drift::run(&a).await,
        Command::Export(a) => export::run(&a).await,
        Command::ConnectionString(a) => connection_string::run(&a).await,
        Command::Completions(a) => shell::completions(&a),
        Command::Man => shell::man(),
        Command::Schema => shell::schema(),
    }
}
