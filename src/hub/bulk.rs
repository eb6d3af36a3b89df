//! Identity creates through the bulk registry API (`POST /devices`, at most [`BULK_ROWS`] rows a
//! call): one call creates identities with their twin content. A device row that names a parent
//! carries the parent's scope (IoT Hub's `deviceScope`/`parentScopes` rules), so the parent must
//! be an edge device in the hub already.

use super::{Error, Hub, body};
use twinops_core::model::DeviceStatus;
use twinops_core::plan::{CreateDevice, CreateModule, TwinPatch};
use twinops_core::report::{Doing, Reason};
use twinops_iothub::wire::{Capabilities, ExportImportDevice, TwinProperties};

/// Rows per bulk call (IoT Hub's limit).
pub const BULK_ROWS: usize = 100;

/// An identity to create.
#[derive(Debug, Clone, Copy)]
pub enum NewIdentity<'a> {
    /// A device; `enabled_first` creates it enabled whatever it declares (its modules are created
    /// next, which IoT Hub refuses on a disabled device under SAS), for
    /// [`Hub::disable_created`] to disable after them.
    Device {
        create: &'a CreateDevice,
        enabled_first: bool,
    },
    Module(&'a CreateModule),
}

/// How one create ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It exists already (409): the caller adopts it.
    Exists,
    /// Not created, for this reason.
    Refused(Reason),
}

fn twin_fields(row: &mut ExportImportDevice, twin: &TwinPatch) {
    row.tags = Some(twin.tags.clone());
    row.properties = (!twin.desired.is_empty()).then(|| TwinProperties {
        desired: Some(twin.desired.clone()),
        reported: None,
    });
}

const CREATE: &str = "create";

fn device_row(d: &CreateDevice, enabled_first: bool, scope: Option<&str>) -> ExportImportDevice {
    let edge = d.identity.edge;
    let status = if enabled_first {
        DeviceStatus::Enabled
    } else {
        d.identity.status
    };
    let mut row = ExportImportDevice {
        id: d.id.to_string(),
        import_mode: CREATE.into(),
        status: Some(body::status(status)),
        status_reason: d.identity.status_reason.clone(),
        authentication: Some(body::authentication(&d.identity.auth)),
        capabilities: Some(Capabilities { iot_edge: edge }),
        // An edge child keeps its own scope and names its parent's; a leaf takes the parent's.
        device_scope: scope.filter(|_| !edge).map(str::to_string),
        parent_scopes: scope.map(|s| vec![s.to_string()]),
        ..ExportImportDevice::default()
    };
    twin_fields(&mut row, &d.twin);
    row
}

fn module_row(m: &CreateModule) -> ExportImportDevice {
    let mut row = ExportImportDevice {
        id: m.device.to_string(),
        module_id: Some(m.module.to_string()),
        import_mode: CREATE.into(),
        authentication: Some(body::authentication(&m.auth)),
        managed_by: m.managed_by.clone(),
        ..ExportImportDevice::default()
    };
    twin_fields(&mut row, &m.twin);
    row
}

impl Hub {
    /// Creates at most [`BULK_ROWS`] identities in one bulk call; an outcome per identity, in
    /// order. `Err` when the call itself failed (nothing was created by it).
    pub async fn create(&self, identities: &[NewIdentity<'_>]) -> Result<Vec<Created>, Error> {
        let mut out: Vec<Option<Created>> = vec![None; identities.len()];
        let mut rows = Vec::with_capacity(identities.len());
        let mut at = Vec::with_capacity(identities.len());
        for (i, n) in identities.iter().enumerate() {
            let row = match n {
                NewIdentity::Module(m) => module_row(m),
                NewIdentity::Device {
                    create,
                    enabled_first,
                } => match &create.identity.parent {
                    None => device_row(create, *enabled_first, None),
                    Some(parent) => match self.parent_scope(parent).await {
                        Ok(Some(scope)) => device_row(create, *enabled_first, Some(&scope)),
                        Ok(None) => {
                            out[i] = Some(Created::Refused(Reason::ParentNotEdge(parent.clone())));
                            continue;
                        }
                        Err(e) => {
                            out[i] = Some(Created::Refused(Reason::Hub {
                                doing: Doing::ReadingParent,
                                error: e.chain().to_string(),
                                refusal: None,
                            }));
                            continue;
                        }
                    },
                },
            };
            rows.push(row);
            at.push(i);
        }
        if !rows.is_empty() {
            let result = self.rest.bulk(&rows).await?;
            for (row, i) in rows.iter().zip(at) {
                let err = result
                    .errors
                    .iter()
                    .find(|e| e.device_id == row.id && e.module_id == row.module_id);
                out[i] = Some(match err {
                    None => Created::Created,
                    Some(e) if e.error_code.is_already_exists() => Created::Exists,
                    Some(e) => Created::Refused(Reason::Row {
                        code: e.error_code.to_string(),
                        status: e.error_status.clone(),
                    }),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Created::Created))
            .collect())
    }
}
