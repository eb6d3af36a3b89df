//! The registry's actions that are no identity CRUD: applying deployment content to one edge
//! device (`applyConfigurationContent`) and regenerating keys in bulk (`keys/regenerate`), each
//! one durable transaction.

use serde::{Deserialize, Serialize};

use super::{Store, Target};
use crate::configuration::deployment;
use crate::error::Error;
use crate::identity::{Auth, generate_key};
use crate::twin::{Desired, ServiceWrite};
use twinops_iothub::error_code::ErrorCode;
use twinops_iothub::wire::{AuthenticationType, JsonMap};

/// At most this many identities per regeneration call (the Azure CLI sends batches of 100).
pub(crate) const MAX_REGENERATE_ROWS: usize = 100;

/// `POST /devices/keys/regenerate`'s body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegenerateRequest {
    pub(crate) policy_key: String,
    pub(crate) devices: Vec<RegenerateRow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegenerateRow {
    pub(crate) id: String,
    pub(crate) module_id: Option<String>,
}

/// Its answer (`BulkRegenerateKeyResult`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegenerateResult {
    pub(crate) policy_key: String,
    pub(crate) rotated_keys: Vec<RotatedKeys>,
    pub(crate) errors: Vec<RegenerateError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotatedKeys {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) module_id: Option<String>,
    pub(crate) primary_key: String,
    pub(crate) secondary_key: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegenerateError {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) module_id: Option<String>,
    pub(crate) error_code: ErrorCode,
    pub(crate) error_status: String,
}

impl Store {
    /// `POST /devices/{id}/applyConfigurationContent`: writes each module's
    /// `properties.desired` (whole, or the dotted paths) of `modulesContent` into the device's
    /// module twins, creating the module identities it names, as a per-device deployment does.
    /// No `configurations` status is written (a per-device deployment has none).
    pub(crate) fn apply_configuration_content(
        &self,
        device: &str,
        content: &JsonMap,
    ) -> Result<(), Error> {
        let modules = deployment::modules(content)?;
        self.write(|tx| {
            let d = tx
                .device(device)?
                .ok_or_else(|| Error::DeviceNotFound(device.to_string()))?;
            if !d.edge {
                return Err(Error::ArgumentInvalid(format!(
                    "device {device} is not an IoT Edge device: configuration content applies to edge devices only"
                )));
            }
            for (module, entries) in modules.iter().filter(|(_, e)| !e.is_empty()) {
                tx.create_deployment_module(device, module)?;
                let now = tx.now.clone();
                tx.update_twin(&Target::Module(device.into(), module.clone()), |t| {
                    let (patch, _) = deployment::module_patch(&t.desired, &[], entries);
                    if patch.is_empty() {
                        return Ok(());
                    }
                    let write = ServiceWrite {
                        tags: None,
                        desired: Desired::Set(patch),
                    };
                    t.patch(write, &now)
                })?;
            }
            Ok(())
        })
    }

    /// `POST /devices/keys/regenerate`: new symmetric keys for the listed devices and modules
    /// (`primaryKey`, `secondaryKey` or `both`). Identities that cannot take new keys (missing,
    /// or not using SAS) are reported in `errors`; the others are rotated in the same commit.
    pub(crate) fn regenerate_keys(
        &self,
        req: &RegenerateRequest,
    ) -> Result<RegenerateResult, Error> {
        let (primary, secondary) = match req.policy_key.as_str() {
            "primaryKey" => (true, false),
            "secondaryKey" => (false, true),
            "both" => (true, true),
            other => {
                return Err(Error::ArgumentInvalid(format!(
                    "policyKey `{other}` is not primaryKey, secondaryKey or both"
                )));
            }
        };
        if req.devices.is_empty() {
            return Err(Error::ArgumentInvalid("devices is empty".into()));
        }
        if req.devices.len() > MAX_REGENERATE_ROWS {
            return Err(Error::TooManyDevices(format!(
                "at most {MAX_REGENERATE_ROWS} identities per call"
            )));
        }
        self.write(|tx| {
            let mut out = RegenerateResult {
                policy_key: req.policy_key.clone(),
                rotated_keys: Vec::new(),
                errors: Vec::new(),
            };
            let regenerate = |auth: &mut Auth| {
                if primary {
                    auth.primary_key = Some(generate_key());
                }
                if secondary {
                    auth.secondary_key = Some(generate_key());
                }
            };
            for row in &req.devices {
                let refused = |code: ErrorCode, status: String| RegenerateError {
                    id: row.id.clone(),
                    module_id: row.module_id.clone(),
                    error_code: code,
                    error_status: status,
                };
                let not_sas = || {
                    refused(
                        ErrorCode::ArgumentInvalid,
                        "only identities with SAS authentication have keys to regenerate".into(),
                    )
                };
                let rotated = match &row.module_id {
                    None => match tx.device(&row.id)? {
                        None => Err(refused(
                            ErrorCode::DeviceNotFound,
                            format!("{} does not exist", row.id),
                        )),
                        Some(d) if d.auth.kind != AuthenticationType::Sas => Err(not_sas()),
                        Some(mut d) => {
                            regenerate(&mut d.auth);
                            d.etag = tx.next_etag()?;
                            tx.save_device(&d)?;
                            Ok(d.auth)
                        }
                    },
                    Some(m) => match tx.module(&row.id, m)? {
                        None => Err(refused(
                            ErrorCode::ModuleNotFound,
                            format!("{}/{m} does not exist", row.id),
                        )),
                        Some(r) if r.auth.kind != AuthenticationType::Sas => Err(not_sas()),
                        Some(mut r) => {
                            regenerate(&mut r.auth);
                            r.etag = tx.next_etag()?;
                            tx.save_module(&r)?;
                            Ok(r.auth)
                        }
                    },
                };
                match rotated {
                    Ok(auth) => out.rotated_keys.push(RotatedKeys {
                        id: row.id.clone(),
                        module_id: row.module_id.clone(),
                        primary_key: auth.primary_key.unwrap_or_default(),
                        secondary_key: auth.secondary_key.unwrap_or_default(),
                    }),
                    Err(e) => out.errors.push(e),
                }
            }
            Ok(out)
        })
    }
}
