//! `twinops validate`: offline validation only.

use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use crate::cli::ValidateArgs;
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
    let sources = twinops_core::manifest::read(&paths(given)).context("reading manifests")?;
    match twinops_core::manifest::load(&sources) {
        Ok(f) => Ok(Some(f)),
        Err(errors) => {
            for d in &errors.0 {
                output::talk(&format!("error: {d}"));
            }
            output::talk(&format!(
                "{} problem(s) found; nothing was sent to the hub",
                errors.0.len()
            ));
            Ok(None)
        }
    }
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let Some(fleet) = load(&args.paths)? else {
        return Ok(ExitStatus::Failure);
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
