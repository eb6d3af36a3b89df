//! Command-line types (clap derive only). Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// GitOps for Azure IoT Hub fleets: plan and apply devices, modules, twin tags and desired properties
/// from YAML manifests, with etag-conditional writes that never overwrite anyone else's change.
#[derive(Debug, Parser)]
#[command(name = "twinops", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate manifests offline and print the expanded device/module count.
    Validate(ValidateArgs),
    /// Read the live hub and show what apply would change.
    Plan(PlanArgs),
    /// Create missing identities and apply etag-conditional twin patches.
    Apply(ApplyArgs),
    /// Report drift between the manifests and the hub (exit 2 on drift).
    Drift(DriftArgs),
    /// Write manifests from a live hub (never any key).
    Export(ExportArgs),
    /// Print one identity's connection string (contains its key).
    ConnectionString(ConnectionStringArgs),
    /// Run the local IoT Hub emulator.
    Emulator(Box<crate::emulator::Args>),
}

/// Output format of data written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Markdown,
}

/// Flags every hub-facing command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The hub: a service connection string, `local`, or `local:DIR` (the embedded emulator).
    #[arg(long, env = "TWINOPS_HUB", hide_env_values = true, global = true)]
    pub hub: Option<String>,
    /// A PEM CA certificate to trust in addition to the system roots (e.g. the emulator's).
    #[arg(long, env = "TWINOPS_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// How to authenticate: `sas` (the connection string's key) or `token` (TWINOPS_ACCESS_TOKEN).
    #[arg(long, value_enum, default_value_t = AuthMode::Sas, global = true)]
    pub auth: AuthMode,
    /// Output format of the data printed to stdout.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
    /// Only these identities: `device`, `device/module`, `*` globs (repeatable).
    #[arg(long = "target", global = true)]
    pub targets: Vec<String>,
    /// At most this many requests in flight.
    #[arg(long, default_value_t = 16, global = true)]
    pub concurrency: usize,
    /// Print only data and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More logging on stderr (-v, -vv).
    #[arg(long, short, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No colours (also NO_COLOR).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AuthMode {
    #[default]
    Sas,
    Token,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Manifest files or directories (default `manifests/`).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Manifest files or directories (default `manifests/`).
    pub paths: Vec<PathBuf>,
    /// Save the plan as JSON for `apply --plan`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes or conflicts.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan to take over twins whose ledger names another owner.
    #[arg(long)]
    pub adopt: bool,
    /// Plan deletions of owned identities no manifest declares.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub pace: Pace,
    #[command(flatten)]
    pub common: Common,
}

/// Request pacing per operation class.
#[derive(Debug, Clone, Args, Default)]
pub struct Pace {
    /// A rate for one class: `CLASS=N/s` or `CLASS=N/min` (repeatable).
    #[arg(long = "rate")]
    pub rates: Vec<String>,
    /// IoT Hub tier whose published quotas to pace at: S1, S2 or S3.
    #[arg(long)]
    pub tier: Option<String>,
    /// Units of the tier.
    #[arg(long, default_value_t = 1)]
    pub units: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Manifest files or directories (default `manifests/`).
    pub paths: Vec<PathBuf>,
    /// Execute this saved plan exactly.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Delete owned identities that no manifest declares.
    #[arg(long)]
    pub prune: bool,
    /// Refuse the run when more deletions than this are planned.
    #[arg(long, default_value_t = 10)]
    pub max_deletes: usize,
    /// Take over twins whose ledger names another owner.
    #[arg(long)]
    pub adopt: bool,
    /// Wait until devices acknowledge the desired values (`30s`, `5m`, bare seconds; default 5m).
    #[arg(long, num_args = 0..=1, default_missing_value = "5m", require_equals = true)]
    pub wait: Option<String>,
    #[command(flatten)]
    pub pace: Pace,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// Manifest files or directories (default `manifests/`).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Directory to write manifests into (default: print to stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only twins this query selects (`SELECT * FROM devices WHERE ...`).
    #[arg(long)]
    pub query: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectionStringArgs {
    /// `DEVICE` or `DEVICE/MODULE`.
    pub identity: String,
    #[command(flatten)]
    pub common: Common,
}
