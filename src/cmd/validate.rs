//! `twinops validate`: offline validation only.

use serde_json::json;

use super::{ExitStatus, print, talk_problems};
use crate::cli::{Format, ValidateArgs};
use crate::ops::manifests;
use crate::output;

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let result = manifests::load(&args.paths)?;
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
        print(|b| twinops_core::render::json(b, &doc))?;
        return Ok(match result {
            Ok(_) => ExitStatus::Success,
            Err(_) => ExitStatus::Failure,
        });
    }
    let fleet = match result {
        Ok(f) => f,
        Err(errors) => {
            talk_problems(&errors);
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
