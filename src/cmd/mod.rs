//! One small module per subcommand: turn arguments into a request, call [`crate::ops`], render the
//! result, and pick the [`ExitStatus`]. Exit codes are chosen here and nowhere else; a command never
//! calls another (what several share — loading manifests with their problems printed, drawing
//! progress, printing a plan — is in this module).

pub(crate) mod apply;
pub(crate) mod connection_string;
pub(crate) mod drift;
pub(crate) mod emulator;
pub(crate) mod export;
pub(crate) mod plan;
pub(crate) mod shell;
pub(crate) mod validate;

use std::path::PathBuf;

use crate::cli::{Cli, Command, Format};
use crate::ops::manifests::{self, Changed};
use crate::output;
use twinops_core::manifest::Errors;
use twinops_core::model::Fleet;
use twinops_core::plan::Plan;
use twinops_core::report::{Event, Reporter};

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
    /// Every status, in the order the manual lists them.
    pub const ALL: [ExitStatus; 4] = [
        ExitStatus::Success,
        ExitStatus::Failure,
        ExitStatus::Changes,
        ExitStatus::Interrupted,
    ];

    /// What the status means, in the manual's words.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "Success: valid, no changes, applied, in sync.",
            ExitStatus::Failure => {
                "An error, a conflict, a refusal or a usage error (never 2, which scripts read as changes)."
            }
            ExitStatus::Changes => {
                "Changes or conflicts present (plan --detailed-exitcode), or drift (drift)."
            }
            ExitStatus::Interrupted => {
                "Interrupted by Ctrl-C: operations in flight finished, no new one started."
            }
        }
    }

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
        output::init_logging(c.verbose, c.no_color);
        output::set_quiet(c.quiet);
    } else {
        output::init_logging(0, false);
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

/// `--force-conflicts`, or its deprecated alias `--adopt` (with a warning).
fn force_conflicts(force: bool, adopt: bool) -> bool {
    if adopt {
        output::talk(
            "warning: --adopt is deprecated; it means --force-conflicts: declared fields and keys another owner manages are taken over",
        );
    }
    force || adopt
}

/// Prints every manifest problem at `file:line:column`, then how many.
fn talk_problems(errors: &Errors) {
    for d in &errors.0 {
        output::talk(&format!("error: {d}"));
    }
    output::talk(&format!(
        "{} problem(s) found; nothing was sent to the hub",
        errors.0.len()
    ));
}

/// Loads the manifests; `None` (problems printed) when they do not validate.
fn load(paths: &[PathBuf]) -> anyhow::Result<Option<Fleet>> {
    Ok(match manifests::load(paths)? {
        Ok(f) => Some(f),
        Err(errors) => {
            talk_problems(&errors);
            None
        }
    })
}

/// The change `--changed-from REV` covers; `None` (problems printed) when the manifests at REV do
/// not validate. Nothing is sent to the hub either way: this runs before connecting.
fn changed_from(rev: &str, paths: &[PathBuf], fleet: &Fleet) -> anyhow::Result<Option<Changed>> {
    Ok(match manifests::changed_from(rev, paths, fleet)? {
        Ok(c) => Some(c),
        Err(invalid) => {
            for d in &invalid.errors.0 {
                output::talk(&format!("error: {d}"));
            }
            output::talk(&format!(
                "the manifests at --changed-from `{rev}` ({}) do not validate: {} problem(s); nothing was sent to the hub",
                invalid.commit,
                invalid.errors.0.len()
            ));
            None
        }
    })
}

/// Renders into a buffer and prints it on stdout (data).
fn print(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    output::data(&String::from_utf8_lossy(&buf));
    Ok(())
}

/// Prints a plan; text and markdown group identical changes unless `expand` (JSON always lists
/// every change).
fn print_plan(plan: &Plan, format: Format, expand: bool) -> anyhow::Result<()> {
    print(|b| match format {
        Format::Text => twinops_core::render::text::plan_with(b, plan, expand),
        Format::Json => twinops_core::render::json(b, plan),
        Format::Markdown => twinops_core::render::markdown::plan_with(b, plan, expand),
    })
}

/// Draws progress events on stderr: a bar for phases and items when stderr is a terminal, and the
/// lines people follow (reads, rollout waves, waits) unless `--quiet`, terminal or not (CI logs
/// need them most). Warnings are printed even with `--quiet`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// Lines only.
    fn lines(quiet: bool) -> Progress {
        Progress { bar: None, quiet }
    }

    /// Lines, and a bar when stderr is a terminal.
    fn with_bar(quiet: bool) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress {
            bar: (!quiet && tty).then(output::progress_bar),
            quiet,
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn line(&self, line: &str, always: bool) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if always || !self.quiet => output::talk(line),
            None => {}
        }
    }
}

impl Reporter for Progress {
    fn event(&self, e: Event) {
        match &e {
            Event::Phase { phase, items } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*items as u64);
                    bar.set_position(0);
                    bar.set_message(twinops_core::render::text::phase(*phase));
                }
            }
            Event::Done(o) => {
                let Some(bar) = &self.bar else { return };
                // Failures scroll above the bar as they happen, not only in the final report.
                if o.is_error() {
                    let detail = o
                        .reason
                        .as_ref()
                        .map(|r| twinops_core::render::text::Words(r).to_string())
                        .unwrap_or_default();
                    bar.println(format!("{:?} {}: {detail}", o.status, o.address));
                }
                bar.inc(1);
            }
            Event::Warning(w) => self.line(&twinops_core::render::text::warning(w), true),
            other => {
                if let Some(line) = twinops_core::render::text::event(other) {
                    self.line(&line, false);
                }
            }
        }
    }
}
