//! Identity creates through the bulk registry API (`POST /devices`, at most 100 rows a call): one call
//! creates identities and their twin content. A row that already exists (409) is adopted: its twin is
//! read and brought to the content with an etag-conditional patch.

use std::collections::HashSet;

use super::{Event, Executor, Outcome, Status, content_patch, outcome};
use crate::hub::{Error, body};
use twinops_core::model::{DeviceId, DeviceStatus};
use twinops_core::plan::{Change, CreateDevice, CreateModule, TwinPatch, ledger};
use twinops_iothub::wire::{Capabilities, ExportImportDevice, TwinProperties};

/// Rows per bulk call (IoT Hub's limit).
pub const BULK_MAX: usize = 100;

fn twin_fields(row: &mut ExportImportDevice, twin: &TwinPatch) {
    row.tags = Some(twin.tags.clone());
    row.properties = (!twin.desired.is_empty()).then(|| TwinProperties {
        desired: Some(twin.desired.clone()),
        reported: None,
    });
}

fn device_row(scope: Option<&str>, d: &CreateDevice, enabled_first: bool) -> ExportImportDevice {
    let edge = d.identity.edge;
    let status = if enabled_first {
        DeviceStatus::Enabled
    } else {
        d.identity.status
    };
    let mut row = ExportImportDevice {
        id: d.id.to_string(),
        import_mode: "create".into(),
        status: Some(body::status(status)),
        status_reason: d.identity.status_reason.clone(),
        authentication: Some(body::authentication(&d.identity.auth)),
        capabilities: Some(Capabilities { iot_edge: edge }),
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
        import_mode: "create".into(),
        authentication: Some(body::authentication(&m.auth)),
        managed_by: m.managed_by.clone(),
        ..ExportImportDevice::default()
    };
    twin_fields(&mut row, &m.twin);
    row
}

async fn adopt(ex: &Executor<'_>, c: &Change, content: &TwinPatch) -> Outcome {
    let address = c.address();
    let (device, module) = (&address.device, address.module_id());
    let ours = match ledger::read(&content.tags) {
        ledger::Found::Ledger(l) => Some(l.owner),
        _ => None,
    };
    for _ in 0..=ex.options.max_resends {
        let seen = ex.hub.observed_twin(device, module).await;
        let seen = match seen {
            Ok(s) => s,
            Err(e) => {
                return outcome(
                    c,
                    Status::Failed,
                    format!("reading the existing twin: {}", e.chain()),
                );
            }
        };
        if let ledger::Found::Ledger(l) = ledger::read(&seen.tags)
            && ours.as_ref().is_some_and(|o| *o != l.owner)
        {
            return outcome(
                c,
                Status::Conflict,
                format!("it already exists and is owned by `{}`", l.owner),
            );
        }
        let patch = content_patch(&seen, content);
        if patch.is_empty() {
            return outcome(c, Status::Adopted, "already existed with this content");
        }
        match ex
            .hub
            .patch_twin(device, module, &patch.to_value(), seen.etag.as_str())
            .await
        {
            Ok(_) => {
                return outcome(c, Status::Adopted, "already existed; twin content applied");
            }
            Err(Error::PreconditionFailed { .. }) => continue,
            Err(e) => return outcome(c, Status::Failed, e.chain().to_string()),
        }
    }
    outcome(
        c,
        Status::Conflict,
        "changing too fast: the etag moved on every attempt",
    )
}

/// One bulk call for these creates (rows in the same order), then an outcome per create.
async fn batch(
    ex: &Executor<'_>,
    changes: &[(&Change, &TwinPatch)],
    rows: Vec<ExportImportDevice>,
) -> Vec<Outcome> {
    if ex.stopped() {
        return changes
            .iter()
            .map(|(c, _)| ex.done(outcome(c, Status::Skipped, "interrupted")))
            .collect();
    }
    let result = match ex.hub.bulk(&rows).await {
        Ok(r) => r,
        Err(e) => {
            let mut out = Vec::with_capacity(changes.len());
            for (c, _) in changes {
                let o = match (&e, c) {
                    (Error::Unauthorized { .. }, Change::CreateModule(m)) => {
                        ex.module_failed(c, &m.device, "", &e).await
                    }
                    _ => outcome(c, Status::Failed, e.chain().to_string()),
                };
                out.push(ex.done(o));
            }
            return out;
        }
    };
    let mut out = Vec::with_capacity(changes.len());
    for (c, content) in changes {
        let address = c.address();
        let err = result.errors.iter().find(|e| {
            e.device_id == address.device.as_str() && e.module_id.as_deref() == address.module_id()
        });
        let o = match err {
            None => outcome(c, Status::Applied, ""),
            Some(e) if e.error_code.is_already_exists() => adopt(ex, c, content).await,
            Some(e) => outcome(
                c,
                Status::Failed,
                format!("{}: {}", e.error_code, e.error_status),
            ),
        };
        out.push(ex.done(o));
    }
    out
}

/// Creates devices: edge parents and parentless devices first, then devices that name a parent.
/// Devices in `enabled_first` are created enabled whatever they declare (their modules are created
/// next, which IoT Hub refuses on a disabled device under SAS); [`disable`] disables them after.
pub(super) async fn devices(
    ex: &Executor<'_>,
    changes: &[(&Change, &CreateDevice)],
    enabled_first: &HashSet<DeviceId>,
) -> Vec<Outcome> {
    if changes.is_empty() {
        return Vec::new();
    }
    ex.reporter.event(Event::Phase {
        name: "device creates".into(),
        items: changes.len(),
    });
    let (with_parent, plain): (Vec<_>, Vec<_>) = changes
        .iter()
        .partition(|(_, d)| d.identity.parent.is_some());
    let mut out = Vec::new();
    for chunk in plain.chunks(BULK_MAX) {
        let rows = chunk
            .iter()
            .map(|(_, d)| device_row(None, d, enabled_first.contains(&d.id)))
            .collect();
        let items: Vec<_> = chunk.iter().map(|(c, d)| (*c, &d.twin)).collect();
        out.extend(batch(ex, &items, rows).await);
    }
    let mut ready: Vec<(&Change, &TwinPatch)> = Vec::new();
    let mut rows = Vec::new();
    for (c, d) in with_parent {
        let Some(parent) = &d.identity.parent else {
            continue;
        };
        match ex.parent_scope(parent).await {
            Ok(Some(scope)) => {
                rows.push(device_row(Some(&scope), d, enabled_first.contains(&d.id)));
                ready.push((c, &d.twin));
            }
            Ok(None) => out.push(ex.done(outcome(
                c,
                Status::Failed,
                format!("parent `{parent}` is not an edge device in the hub"),
            ))),
            Err(e) => out.push(ex.done(outcome(
                c,
                Status::Failed,
                format!("reading parent: {}", e.chain()),
            ))),
        }
    }
    for (chunk, rows) in ready.chunks(BULK_MAX).zip(chunk_rows(rows)) {
        out.extend(batch(ex, chunk, rows).await);
    }
    out
}

/// Disables a device that was created enabled so that its modules could be created; an error says
/// what failed, for the device create's outcome.
pub(super) async fn disable(ex: &Executor<'_>, d: &CreateDevice) -> Result<(), String> {
    let mut dev = ex
        .hub
        .get_device(&d.id)
        .await
        .map_err(|e| format!("reading it to disable it: {}", e.chain()))?;
    let etag = dev
        .etag
        .clone()
        .filter(|e| !e.is_empty())
        .ok_or("the hub sent the device without an etag")?;
    dev.status = Some(body::status(DeviceStatus::Disabled));
    dev.status_reason = d.identity.status_reason.clone();
    ex.hub
        .update_device(&dev, &etag)
        .await
        .map(|_| ())
        .map_err(|e| format!("disabling it after its modules: {}", e.chain()))
}

fn chunk_rows(rows: Vec<ExportImportDevice>) -> Vec<Vec<ExportImportDevice>> {
    let mut out = Vec::new();
    let mut it = rows.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(BULK_MAX).collect());
    }
    out
}

/// Creates modules in bulk, skipping those whose device could not be created.
pub(super) async fn modules(
    ex: &Executor<'_>,
    changes: &[(&Change, &CreateModule)],
    failed_devices: &std::collections::HashSet<String>,
) -> Vec<Outcome> {
    if changes.is_empty() {
        return Vec::new();
    }
    ex.reporter.event(Event::Phase {
        name: "module creates".into(),
        items: changes.len(),
    });
    let mut out = Vec::new();
    let (skip, go): (Vec<_>, Vec<_>) = changes
        .iter()
        .partition(|(_, m)| failed_devices.contains(m.device.as_str()));
    for (c, _) in skip {
        out.push(ex.done(outcome(c, Status::Skipped, "its device was not created")));
    }
    for chunk in go.chunks(BULK_MAX) {
        let rows = chunk.iter().map(|(_, m)| module_row(m)).collect();
        let items: Vec<_> = chunk.iter().map(|(c, m)| (*c, &m.twin)).collect();
        out.extend(batch(ex, &items, rows).await);
    }
    out
}
