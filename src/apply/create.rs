//! Identity creates through the bulk registry API (`POST /devices`, at most 100 rows a call): one call
//! creates identities and their twin content. A row that already exists (409) is adopted: its twin is
//! read and brought to the content with an etag-conditional patch.

use serde_json::Value;

use super::{Event, Executor, Outcome, Status, auth_body, content_patch, outcome};
use crate::hub::{Error, observe};
use twinops_core::plan::Change;
use twinops_iothub::wire::{Capabilities, ExportImportDevice, TwinProperties};

/// Rows per bulk call (IoT Hub's limit).
pub const BULK_MAX: usize = 100;

fn row(ex_scope: Option<&str>, c: &Change) -> ExportImportDevice {
    let p = &c.patch;
    let twin = p.get("twin");
    let tags = twin
        .and_then(|t| t.get("tags"))
        .and_then(Value::as_object)
        .cloned();
    let desired = twin
        .and_then(|t| t.pointer("/properties/desired"))
        .and_then(Value::as_object)
        .cloned();
    let edge = p
        .pointer("/capabilities/iotEdge")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ExportImportDevice {
        id: c.device_id.clone(),
        module_id: c.module_id.clone(),
        import_mode: "create".into(),
        status: p.get("status").and_then(Value::as_str).map(str::to_string),
        status_reason: p
            .get("statusReason")
            .and_then(Value::as_str)
            .map(str::to_string),
        authentication: Some(auth_body(p.get("authentication"))),
        tags,
        properties: desired.map(|d| TwinProperties {
            desired: Some(d),
            reported: None,
        }),
        capabilities: c
            .module_id
            .is_none()
            .then_some(Capabilities { iot_edge: edge }),
        device_scope: ex_scope.filter(|_| !edge).map(str::to_string),
        parent_scopes: ex_scope.map(|s| vec![s.to_string()]),
        managed_by: p
            .get("managedBy")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..ExportImportDevice::default()
    }
}

async fn adopt(ex: &Executor<'_>, c: &Change) -> Outcome {
    let module = c.module_id.as_deref();
    let content = c.patch.get("twin").cloned().unwrap_or(Value::Null);
    for _ in 0..=ex.options.max_resends {
        let seen = match ex.hub.get_twin(&c.device_id, module).await {
            Ok(t) => observe::twin(&t),
            Err(e) => {
                return outcome(c, Status::Failed, format!("reading the existing twin: {e}"));
            }
        };
        if let twinops_core::plan::ledger::Found::Ledger(l) =
            twinops_core::plan::ledger::read(&seen.tags)
            && content
                .pointer("/tags/twinops/owner")
                .and_then(Value::as_str)
                .is_some_and(|o| o != l.owner)
        {
            return outcome(
                c,
                Status::Conflict,
                format!("it already exists and is owned by `{}`", l.owner),
            );
        }
        let patch = content_patch(&seen, &content);
        if patch.as_object().is_some_and(|m| m.is_empty()) {
            return outcome(c, Status::Adopted, "already existed with this content");
        }
        match ex
            .hub
            .patch_twin(&c.device_id, module, &patch, &seen.etag)
            .await
        {
            Ok(_) => {
                return outcome(c, Status::Adopted, "already existed; twin content applied");
            }
            Err(Error::PreconditionFailed { .. }) => continue,
            Err(e) => return outcome(c, Status::Failed, e.to_string()),
        }
    }
    outcome(
        c,
        Status::Conflict,
        "changing too fast: the etag moved on every attempt",
    )
}

async fn batch(
    ex: &Executor<'_>,
    changes: &[&Change],
    rows: Vec<ExportImportDevice>,
) -> Vec<Outcome> {
    if ex.stopped() {
        return changes
            .iter()
            .map(|c| ex.done(outcome(c, Status::Skipped, "interrupted")))
            .collect();
    }
    let result = match ex.hub.bulk(&rows).await {
        Ok(r) => r,
        Err(e) => {
            return changes
                .iter()
                .map(|c| ex.done(outcome(c, Status::Failed, e.to_string())))
                .collect();
        }
    };
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let err = result
            .errors
            .iter()
            .find(|e| e.device_id == c.device_id && e.module_id == c.module_id);
        let o = match err {
            None => outcome(c, Status::Applied, ""),
            Some(e)
                if e.error_code == "DeviceAlreadyExists"
                    || e.error_code == "ModuleAlreadyExistsOnDevice" =>
            {
                adopt(ex, c).await
            }
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
pub(super) async fn devices(ex: &Executor<'_>, changes: &[&Change]) -> Vec<Outcome> {
    if changes.is_empty() {
        return Vec::new();
    }
    ex.reporter.event(Event::Phase {
        name: "device creates",
        items: changes.len(),
    });
    let (with_parent, plain): (Vec<&Change>, Vec<&Change>) = changes
        .iter()
        .partition(|c| c.patch.get("parent").and_then(Value::as_str).is_some());
    let mut out = Vec::new();
    for chunk in plain.chunks(BULK_MAX) {
        let rows = chunk.iter().map(|c| row(None, c)).collect();
        out.extend(batch(ex, chunk, rows).await);
    }
    let mut ready: Vec<&Change> = Vec::new();
    let mut rows = Vec::new();
    for c in with_parent {
        let parent = c
            .patch
            .get("parent")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match ex.parent_scope(parent).await {
            Ok(Some(scope)) => {
                rows.push(row(Some(&scope), c));
                ready.push(c);
            }
            Ok(None) => out.push(ex.done(outcome(
                c,
                Status::Failed,
                format!("parent `{parent}` is not an edge device in the hub"),
            ))),
            Err(e) => out.push(ex.done(outcome(c, Status::Failed, format!("reading parent: {e}")))),
        }
    }
    for (chunk, rows) in ready.chunks(BULK_MAX).zip(chunk_rows(rows)) {
        out.extend(batch(ex, chunk, rows).await);
    }
    out
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
    changes: &[&Change],
    failed_devices: &std::collections::HashSet<String>,
) -> Vec<Outcome> {
    if changes.is_empty() {
        return Vec::new();
    }
    ex.reporter.event(Event::Phase {
        name: "module creates",
        items: changes.len(),
    });
    let mut out = Vec::new();
    let (skip, go): (Vec<&Change>, Vec<&Change>) = changes
        .iter()
        .partition(|c| failed_devices.contains(&c.device_id));
    for c in skip {
        out.push(ex.done(outcome(c, Status::Skipped, "its device was not created")));
    }
    for chunk in go.chunks(BULK_MAX) {
        let rows = chunk.iter().map(|c| row(None, c)).collect();
        out.extend(batch(ex, chunk, rows).await);
    }
    out
}
