//! `twinops validate`: offline validation only.

use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use serde_json::json;

use crate::cli::{Format, ValidateArgs};
use crate::output;
use twinops_core::model::Fleet;

/// The manifest paths, `manifests/` by default.
pub fn paths(given: &[PathBuf]) -> Vec<PathBuf> {
    if given.is_empty() {
        vec![PathBuf::from("manifests")]
    } else {
        given.to_vec()
    }
}

/// Reads and validates manifests; every problem is printed with `file:line:column`.
pub fn load(given: &[PathBuf]) -> anyhow::Result<Option<Fleet>> {
    match read(given)? {
        Ok(f) => Ok(Some(f)),
        Err(errors) => {
            talk_errors(&errors);
            Ok(None)
        }
    }
}

fn read(given: &[PathBuf]) -> anyhow::Result<Result<Fleet, twinops_core::manifest::Errors>> {
    let sources = twinops_core::manifest::read(&paths(given)).context("reading manifests")?;
    Ok(twinops_core::manifest::load(&sources, &env))
}

/// The process environment, where `${env:NAME}` values come from (a value that is not UTF-8 counts
/// as not set: a twin value is JSON text).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn talk_errors(errors: &twinops_core::manifest::Errors) {
    for d in &errors.0 {
        output::talk(&format!("error: {d}"));
    }
    output::talk(&format!(
        "{} problem(s) found; nothing was sent to the hub",
        errors.0.len()
    ));
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let result = read(&args.paths)?;
    if args.output.format == Format::Json {
        // The result as data: `{"valid": true, "owner", "devices", "modules", "identities"}` or
        // `{"valid": false, "errors": [{"file", "line", "column", "message"}]}`.
        let doc = match &result {
            Ok(f) => json!({
                "valid": true,
                "owner": f.owner,
                "devices": f.devices.len(),
                "modules": f.devices.iter().map(|d| d.modules.len()).sum::<usize>(),
                "identities": f.identity_count(),
            }),
            Err(errors) => json!({
                "valid": false,
                "errors": errors.0.iter().map(|d| json!({
                    "file": &*d.location.file,
                    "line": d.location.line,
                    "column": d.location.column,
                    "message": d.message,
                })).collect::<Vec<_>>(),
            }),
        };
        let mut buf = Vec::new();
        twinops_core::render::json(&mut buf, &doc)?;
        output::data(&String::from_utf8_lossy(&buf));
        return Ok(match result {
            Ok(_) => ExitStatus::Success,
            Err(_) => ExitStatus::Failure,
        });
    }
    let fleet = match result {
        Ok(f) => f,
        Err(errors) => {
            talk_errors(&errors);
            return Ok(ExitStatus::Failure);
        }
    };
    let modules: usize = fleet.devices.iter().map(|d| d.modules.len()).sum();
    output::data(&format!(
        "Valid: {} devices, {} modules ({} identities) owned by `{}`.\n",
        fleet.devices.len(),
        modules,
        fleet.identity_count(),
        fleet.owner
    ));
    Ok(ExitStatus::Success)
}
