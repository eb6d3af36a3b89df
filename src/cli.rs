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
    Emulator(Box<EmulatorArgs>),
    /// Print a shell completion script (`twinops completions bash > /etc/bash_completion.d/twinops`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `twinops man | man -l -`.
    Man,
    /// Print the JSON Schema of the manifest format, for editors (`# yaml-language-server: $schema=...`).
    Schema,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Output format of data written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Markdown,
}

/// How to reach the hub: every command that talks to one takes these.
#[derive(Debug, Clone, Args)]
pub struct HubArgs {
    /// The hub: a service connection string, `local`, or `local:DIR` (the embedded emulator).
    #[arg(long, env = "TWINOPS_HUB", hide_env_values = true)]
    pub hub: Option<String>,
    /// A PEM CA certificate to trust in addition to the system roots (e.g. the emulator's).
    #[arg(long, env = "TWINOPS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How to authenticate: `sas` (the connection string's key) or `token` (TWINOPS_ACCESS_TOKEN).
    #[arg(long, value_enum, default_value_t = AuthMode::Sas)]
    pub auth: AuthMode,
}

/// How results and talk are printed: every command that prints a result takes these.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format of the data printed to stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print only data and errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// More logging on stderr (-v, -vv).
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No colours (also NO_COLOR).
    #[arg(long)]
    pub no_color: bool,
}

/// Flags of the commands that read and write twins (`plan`, `apply`, `drift`). Commands take only
/// the groups they use, so a flag a command would ignore is a usage error naming it.
#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Only these identities: `device`, `device/module`, `*` and `?` globs (repeatable).
    #[arg(long = "target", value_parser = parse_target)]
    pub targets: Vec<String>,
    /// At most this many requests in flight (at least 1).
    #[arg(long, default_value_t = 16, value_parser = parse_concurrency)]
    pub concurrency: usize,
}

/// How a command reads the hub (SPEC §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReadMode {
    /// An export job when `--storage` is given and the API read would take longer than two
    /// minutes at the pace in force; else queries and GETs.
    #[default]
    Auto,
    /// Queries and twin GETs, at the hub's read quota.
    Api,
    /// An export job into the `--storage` container, off the query quota.
    Export,
}

/// Flags of the commands that read the whole hub (`plan`, `apply`, `drift`, `export`).
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// How to read the hub: `api`, `export` (an export job into --storage) or `auto`.
    #[arg(long = "read", value_enum, default_value_t = ReadMode::Auto)]
    pub mode: ReadMode,
    /// A blob container SAS URL (read, write, list and delete) that the hub's export job writes
    /// to; a secret, never printed.
    // Checked by `ops::read::ReadChoice::of`, not by clap: clap's error would echo the value, SAS
    // and all.
    #[arg(long, env = "TWINOPS_STORAGE", hide_env_values = true)]
    pub storage: Option<String>,
    /// The longest an export job may take, from its creation to its completion.
    #[arg(long, default_value = "30m", value_parser = twinops_iothub::duration::parse)]
    pub export_timeout: std::time::Duration,
    /// Keep the export blob instead of deleting it once read.
    #[arg(long)]
    pub keep_export: bool,
    /// Under `--read auto`, read through an export job when the API read would take longer than
    /// this at the pace in force.
    #[arg(long, default_value = "2m", value_parser = twinops_iothub::duration::parse)]
    pub export_above: std::time::Duration,
}

/// `--concurrency`: a count of requests in flight, of which 0 would start none.
fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 request must be in flight".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; give a number of requests, at least 1")),
    }
}

/// Checks a `--target` pattern's syntax: `device` or `device/module`, neither part empty.
/// `DEVICE` or `DEVICE/MODULE`, checked against IoT Hub's ID rules before anything is sent.
fn parse_identity(text: &str) -> Result<twinops_core::model::TwinAddress, String> {
    text.parse()
        .map_err(|e: twinops_core::model::NameError| e.to_string())
}

pub fn parse_target(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let id_char = |c: char| twinops_iothub::ids::is_id_char(c) || c == '*' || c == '?';
    let ok = matches!(parts.len(), 1 | 2)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(id_char));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a target: write `DEVICE` or `DEVICE/MODULE`, with `*` and `?` as wildcards"
        ))
    }
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
    pub output: OutputArgs,
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
    /// Show every change on its own (text and markdown group identical ones by default).
    #[arg(long)]
    pub expand: bool,
    /// Take over the declared fields and keys that another owner manages (their ledger entries
    /// give them up in the same conditional write).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Deprecated alias of --force-conflicts (it warns).
    #[arg(long, hide = true)]
    pub adopt: bool,
    /// Plan deletions of owned identities no manifest declares.
    #[arg(long)]
    pub prune: bool,
    /// Plan only the twins whose declaration differs from the manifests at git revision REF (a
    /// commit, branch or tag of the repository that holds PATHS), and read only those.
    #[arg(long, value_name = "REF")]
    pub changed_from: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
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
    /// Manifest files or directories (default `manifests/`). With `--plan`: the manifests the plan
    /// was made from, checked against it, and where its inline sensitive values come from (none by
    /// default).
    pub paths: Vec<PathBuf>,
    /// Execute this saved plan exactly, as it was reviewed (so `--prune`, `--force-conflicts` and
    /// `--target`, which shape a plan, are refused with it).
    #[arg(
        long,
        conflicts_with_all = ["prune", "force_conflicts", "adopt", "targets", "changed_from", "storage", "keep_export"]
    )]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Show every change of the plan on its own (identical ones are grouped by default).
    #[arg(long)]
    pub expand: bool,
    /// Write every twin at once, ignoring the manifests' `rollout` block.
    #[arg(long)]
    pub no_rollout: bool,
    /// Continue a halted rollout: accept its last written wave as it stands (rejections and
    /// pending twins included) and write the next one.
    #[arg(long, conflicts_with = "no_rollout")]
    pub resume: bool,
    /// Delete owned identities that no manifest declares.
    #[arg(long)]
    pub prune: bool,
    /// Refuse the run when more deletions than this are planned.
    #[arg(long, default_value_t = 10)]
    pub max_deletes: usize,
    /// Take over the declared fields and keys that another owner manages (their ledger entries
    /// give them up in the same conditional write).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Deprecated alias of --force-conflicts (it warns).
    #[arg(long, hide = true)]
    pub adopt: bool,
    /// Apply only to the twins whose declaration differs from the manifests at git revision REF
    /// (as `plan --changed-from`).
    #[arg(long, value_name = "REF")]
    pub changed_from: Option<String>,
    /// Wait until devices acknowledge the desired values (`30s`, `5m`, bare seconds; default 5m).
    /// `--wait 2m` works like `--wait=2m`.
    // (`normalize` below rewrites the space form: clap cannot decide an optional value by its
    // content. A plain comment: doc comments are help text, where a rustdoc link shows as text.)
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "5m",
        require_equals = true,
        value_parser = twinops_iothub::duration::parse
    )]
    pub wait: Option<std::time::Duration>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub pace: Pace,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct DriftArgs {
    /// Manifest files or directories (default `manifests/`).
    pub paths: Vec<PathBuf>,
    /// A declared desired key still not acknowledged this long after it last changed is stale:
    /// drift (exit 2) instead of information (`30m`, `2h`, bare seconds).
    #[arg(long, value_name = "DURATION", value_parser = twinops_iothub::duration::parse)]
    pub stale_after: Option<std::time::Duration>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Directory to write manifests into (default: print to stdout). Existing files are never
    /// overwritten unless --force.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --out: overwrite the files export writes (nothing else in the directory is touched).
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Only twins this query selects (`SELECT * FROM devices WHERE ...`).
    #[arg(long)]
    pub query: Option<String>,
    /// Also write the hub's configurations and IoT Edge deployments (those labelled with an
    /// owner) as `configurations:` and `deployments:` blocks.
    #[arg(long)]
    pub configurations: bool,
    /// Only these identities: `device`, `device/module`, `*` and `?` globs (repeatable).
    #[arg(long = "target", value_parser = parse_target)]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectionStringArgs {
    /// `DEVICE` or `DEVICE/MODULE`.
    #[arg(value_parser = parse_identity)]
    pub identity: twinops_core::model::TwinAddress,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `twinops emulator` flags: defined once in the emulator crate, which the standalone
/// `twinops-emulator` binary shares.
pub use twinops_emulator::cli::EmulatorArgs;

/// Rewrites `--wait DURATION` into `--wait=DURATION` when the next argument is a duration, so the
/// flag takes its value with a space as well as with `=`, while `--wait manifests/` still means
/// "wait 5m" on the path `manifests/`. clap cannot decide an optional value by its content.
pub fn normalize(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--wait"
            && let Some(next) = it.peek().and_then(|n| n.to_str())
            && twinops_iothub::duration::parse(next).is_ok()
        {
            let mut joined = std::ffi::OsString::from("--wait=");
            joined.push(next);
            it.next();
            out.push(joined);
            continue;
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(std::ffi::OsString::from).collect()
    }

    #[test]
    fn wait_takes_its_value_with_a_space_when_it_is_a_duration() {
        assert_eq!(
            normalize(os(&["twinops", "apply", "--wait", "2m", "m/"])),
            os(&["twinops", "apply", "--wait=2m", "m/"])
        );
        assert_eq!(
            normalize(os(&["twinops", "apply", "--wait", "m/"])),
            os(&["twinops", "apply", "--wait", "m/"])
        );
    }

    #[test]
    fn concurrency_is_at_least_one() {
        assert_eq!(parse_concurrency("1"), Ok(1));
        assert_eq!(parse_concurrency("64"), Ok(64));
        assert!(parse_concurrency("0").is_err());
        assert!(parse_concurrency("-1").is_err());
        assert!(parse_concurrency("many").is_err());
    }

    #[test]
    fn targets_are_checked_up_front() {
        assert!(parse_target("dev-*").is_ok());
        assert!(parse_target("dev/sensor").is_ok());
        assert!(parse_target("a/b/c").is_err());
        assert!(parse_target("").is_err());
        assert!(parse_target("dev/").is_err());
        assert!(parse_target("has space").is_err());
    }
}
