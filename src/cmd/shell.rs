//! `twinops completions SHELL`, `twinops man` and `twinops schema`: the shell completion script and the
//! manual page, generated from the same clap definitions the parser uses, and the manifest JSON Schema,
//! generated from the loader's own key lists; none of them can drift from what it describes.
//!
//! The manual is one page, `twinops(1)`: every command with its synopsis and flags (clap_mangen's
//! sections, as subsections), then the exit status (from [`ExitStatus`]), the environment and the
//! files. No other page is installed, so it refers to none.

use clap::CommandFactory;
use roff::{Roff, bold, roman};

use super::ExitStatus;
use crate::cli::{Cli, CompletionsArgs};
use crate::ops::connect::LOCAL_STATE;
use crate::output;

pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "twinops", &mut buf);
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}

pub(crate) fn man() -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    page(&mut buf)?;
    output::data(&String::from_utf8_lossy(&buf));
    Ok(ExitStatus::Success)
}

/// What twinops reads from the environment, besides each `${env:NAME}` of the manifests.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "TWINOPS_HUB",
        "The hub, as --hub: a service connection string, `local` or `local:DIR`.",
    ),
    (
        "IOTHUB_CONNECTION_STRING",
        "The hub's service connection string when neither --hub nor TWINOPS_HUB is given.",
    ),
    (
        "TWINOPS_CA_CERT",
        "A PEM CA certificate to trust, as --ca-cert.",
    ),
    (
        "TWINOPS_ACCESS_TOKEN",
        "The Entra ID bearer token that --auth token sends (e.g. from `az account get-access-token --resource https://iothubs.azure.net`).",
    ),
    (
        "TWINOPS_PLAN_KEY",
        "The key of the digests of sensitive values in plans (HMAC-SHA256; never written anywhere). Without it the key is derived from the hub's SAS key; with --auth token set it, the same for plan and apply, to save plans that hold sensitive values.",
    ),
    (
        "TWINOPS_STORAGE",
        "The blob container export-job reads use, as --storage: a container URL with a SAS (write, list, read, delete), or `local` for the embedded hub's own store. Its SAS never appears in output, logs or plans.",
    ),
    (
        "RUST_LOG",
        "Which log lines go to stderr, in tracing's filter syntax (e.g. `twinops=debug`); it takes the place of -v and -vv.",
    ),
    ("NO_COLOR", "Set to anything: no colours, as --no-color."),
];

/// The manual page: clap_mangen's title, name, synopsis and description of the whole tool, one
/// subsection per command (its synopsis, description and flags), then what clap does not know.
fn page(w: &mut Vec<u8>) -> std::io::Result<()> {
    let mut cmd = Cli::command()
        .bin_name("twinops")
        .disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    // The title carries the apostrophe preamble that every render repeats; the rest go without.
    man.render_title(w)?;
    let mut body = Vec::new();
    man.render_name_section(&mut body)?;
    man.render_synopsis_section(&mut body)?;
    man.render_description_section(&mut body)?;
    Roff::new()
        .control("SH", ["COMMANDS"])
        .to_writer(&mut body)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        Roff::new().control("SS", [name]).to_writer(&mut body)?;
        // The command's own sections, their `.SH` headings left out: they are its subsection.
        let sub = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        sub.render_synopsis_section(&mut part)?;
        Roff::new().control("PP", []).to_writer(&mut part)?;
        sub.render_description_section(&mut part)?;
        sub.render_options_section(&mut part)?;
        body.extend(lines(&part, |l| !l.starts_with(".SH ")));
    }
    tail().to_writer(&mut body)?;
    man.render_version_section(&mut body)?;
    w.extend(lines(&body, |_| true));
    Ok(())
}

/// The sections clap does not know: exit status, environment, files.
fn tail() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for status in ExitStatus::ALL {
        r.control("TP", [])
            .text([bold(status.code().to_string())])
            .text([roman(status.meaning())]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (name, what) in ENVIRONMENT {
        r.control("TP", []).text([bold(*name)]).text([roman(*what)]);
    }
    r.control("TP", [])
        .text([bold("NAME"), roman(" of each ${env:NAME} in the manifests")])
        .text([roman(
            "The value of that secret reference, read by validate, plan, apply and drift; never printed, and never saved in a plan file.",
        )]);
    r.control("SH", ["FILES"]);
    r.control("TP", [])
        .text([bold("manifests/")])
        .text([roman("The manifests read when no PATHS are given.")]);
    r.control("TP", []).text([bold(LOCAL_STATE)]).text([roman(
        "The state of --hub local (the embedded emulator), readable by its owner only: it holds the hub's keys.",
    )]);
    r
}

/// The lines of rendered roff that `keep` keeps, without the apostrophe preamble each render
/// writes (the page has it once, from its title).
fn lines(rendered: &[u8], keep: impl Fn(&str) -> bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(rendered);
    let mut out = String::new();
    for line in text.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if !preamble && keep(line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// Pretty-printed with a final newline: the form committed as `schema/manifest.schema.json`.
pub(crate) fn schema() -> anyhow::Result<ExitStatus> {
    let schema = twinops_core::manifest::schema::manifest();
    output::data(&format!("{}\n", serde_json::to_string_pretty(&schema)?));
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable a flag takes its value from is in the manual's ENVIRONMENT.
    #[test]
    fn the_environment_section_names_every_variable_a_flag_reads() {
        fn walk(cmd: &clap::Command, found: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    found.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, found);
            }
        }
        let mut found = Vec::new();
        walk(&Cli::command(), &mut found);
        assert!(found.iter().any(|v| v == "TWINOPS_HUB"), "{found:?}");
        for var in found {
            assert!(
                ENVIRONMENT.iter().any(|(name, _)| *name == var),
                "{var} is missing from ENVIRONMENT"
            );
        }
    }
}
