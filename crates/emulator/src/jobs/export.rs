//! IoT Hub's export format, written in blocks: one `ExportImportDevice` JSON document per line,
//! modules as lines of their own after their device, and with keys excluded a plain-text warning
//! line first, as a live hub writes it (live-hub.md), so the file is not pure NDJSON.
//!
//! A line holds `id`, `moduleId` (module lines), `eTag` (the identity's), `status`,
//! `statusReason`, `authentication` (type, thumbprints and keys; with keys excluded the keys are
//! `null`, as IoT Hub documents `excludeKeysInExport`), `twinETag`, `tags`, `properties` (desired
//! and reported, each with `$metadata` and `$version`), `capabilities`, `deviceScope` and
//! `parentScopes` (device lines, when set). Module lines carry `status: "enabled"` and
//! `capabilities.iotEdge: false`, as an export from a live hub shows them
//! (`Azure/azure-iot-sdk-csharp#1146`), and `managedBy` when set.
//!
//! Pure apart from reading a [`Snapshot`]: no I/O here. The whole file is never in memory: lines
//! are rendered one identity at a time into a block, and each block goes to the caller as it fills.

use std::ops::ControlFlow;

use serde_json::{Value, json};

use crate::error::Error;
use crate::identity::{Auth, DeviceRecord, ModuleRecord};
use crate::store::{Identity, Snapshot};
use twinops_iothub::wire::JsonMap;

/// The first line of an export without keys. A live hub writes a plain-text warning line there;
/// its exact words are not recorded in the references, so these are the emulator's own. Readers
/// skip a first line that is not JSON rather than match its text.
pub(crate) const KEYS_EXCLUDED_WARNING: &str = "WARNING: authentication keys were excluded from this export (excludeKeysInExport); identities imported from it get new keys.";

/// How large a block grows before it is handed on: a few MB, far below the Blob service's block
/// limit, so a hub of a million twins is written in a few hundred blocks and held in memory one
/// or two blocks at a time.
pub(crate) const BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Written {
    /// Identity lines (devices and modules).
    pub(crate) identities: u64,
    pub(crate) blocks: u32,
    pub(crate) bytes: u64,
}

/// Renders the snapshot's identities into blocks of about `block_bytes` (a block is only larger
/// when one line alone is), handing each to `emit` with the count of identities written so far.
/// `emit` answers whether to go on; when it says stop, nothing more is rendered.
pub(crate) fn write(
    snapshot: &Snapshot,
    exclude_keys: bool,
    block_bytes: usize,
    mut emit: impl FnMut(Vec<u8>, u64) -> bool,
) -> Result<Written, Error> {
    let mut written = Written::default();
    let mut block = Vec::with_capacity(block_bytes.min(BLOCK_BYTES));
    if exclude_keys {
        block.extend_from_slice(KEYS_EXCLUDED_WARNING.as_bytes());
        block.push(b'\n');
    }
    let mut line = Vec::new();
    let mut stopped = false;
    let mut failed = None;
    snapshot.visit(|identity| {
        line.clear();
        let doc = match &identity {
            Identity::Device(d) => device_line(d, exclude_keys),
            Identity::Module(m) => module_line(m, exclude_keys),
        };
        if let Err(e) = serde_json::to_writer(&mut line, &doc) {
            failed = Some(Error::Server(format!("rendering an export line: {e}")));
            return ControlFlow::Break(());
        }
        line.push(b'\n');
        if !block.is_empty() && block.len() + line.len() > block_bytes {
            let full = std::mem::replace(&mut block, Vec::with_capacity(block_bytes));
            written.blocks += 1;
            written.bytes += full.len() as u64;
            if !emit(full, written.identities) {
                stopped = true;
                return ControlFlow::Break(());
            }
        }
        block.extend_from_slice(&line);
        written.identities += 1;
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !stopped && !block.is_empty() {
        written.blocks += 1;
        written.bytes += block.len() as u64;
        emit(block, written.identities);
    }
    Ok(written)
}

/// `authentication` as exported: the identity's, with `null` keys when they are excluded.
fn authentication(auth: &Auth, exclude_keys: bool) -> Value {
    let mut wire = auth.to_wire();
    if exclude_keys && let Some(keys) = wire.symmetric_key.as_mut() {
        keys.primary_key = None;
        keys.secondary_key = None;
    }
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

/// The export line of a device.
pub(crate) fn device_line(d: &DeviceRecord, exclude_keys: bool) -> Value {
    let mut m = JsonMap::new();
    m.insert("id".into(), json!(d.device_id));
    m.insert("eTag".into(), json!(d.etag));
    m.insert("status".into(), json!(d.status));
    if let Some(r) = &d.status_reason {
        m.insert("statusReason".into(), json!(r));
    }
    m.insert(
        "authentication".into(),
        authentication(&d.auth, exclude_keys),
    );
    m.insert("twinETag".into(), json!(d.twin.etag()));
    m.insert("tags".into(), Value::Object(d.twin.tags.clone()));
    m.insert("properties".into(), d.twin.properties_json());
    m.insert("capabilities".into(), json!({"iotEdge": d.edge}));
    if let Some(s) = d.device_scope.as_deref().filter(|s| !s.is_empty()) {
        m.insert("deviceScope".into(), json!(s));
    }
    if !d.parent_scopes.is_empty() {
        m.insert("parentScopes".into(), json!(d.parent_scopes));
    }
    Value::Object(m)
}

/// The export line of a module: `id` is its device's ID.
pub(crate) fn module_line(md: &ModuleRecord, exclude_keys: bool) -> Value {
    let mut m = JsonMap::new();
    m.insert("id".into(), json!(md.device_id));
    m.insert("moduleId".into(), json!(md.module_id));
    m.insert("eTag".into(), json!(md.etag));
    m.insert("status".into(), json!("enabled"));
    m.insert(
        "authentication".into(),
        authentication(&md.auth, exclude_keys),
    );
    m.insert("twinETag".into(), json!(md.twin.etag()));
    m.insert("tags".into(), Value::Object(md.twin.tags.clone()));
    m.insert("properties".into(), md.twin.properties_json());
    m.insert("capabilities".into(), json!({"iotEdge": false}));
    if let Some(by) = &md.managed_by {
        m.insert("managedBy".into(), json!(by));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviceSpec, IfMatch, Store};
    use twinops_iothub::wire::{self, AuthenticationType};

    fn store() -> Store {
        Store::open(None).unwrap()
    }

    fn device(s: &Store, id: &str, spec: DeviceSpec) {
        s.write(|tx| tx.create_device(id, &spec).map(drop)).unwrap();
    }

    fn lines(s: &Store, exclude_keys: bool, block_bytes: usize) -> (Vec<Vec<u8>>, Written) {
        let snap = s.index_snapshot().unwrap();
        let mut blocks = Vec::new();
        let w = write(&snap, exclude_keys, block_bytes, |b, _| {
            blocks.push(b);
            true
        })
        .unwrap();
        (blocks, w)
    }

    #[test]
    fn devices_are_followed_by_their_modules_and_the_warning_comes_first() {
        let s = store();
        device(&s, "b", DeviceSpec::default());
        device(&s, "a", DeviceSpec::default());
        s.put_module("a", "m2", &wire::Module::default(), &IfMatch::Absent)
            .unwrap();
        s.put_module("a", "m1", &wire::Module::default(), &IfMatch::Absent)
            .unwrap();
        let (blocks, w) = lines(&s, true, BLOCK_BYTES);
        assert_eq!((w.identities, w.blocks), (4, 1));
        let text = String::from_utf8(blocks.concat()).unwrap();
        let mut it = text.lines();
        assert_eq!(it.next(), Some(KEYS_EXCLUDED_WARNING));
        let rows: Vec<Value> = it.map(|l| serde_json::from_str(l).unwrap()).collect();
        let ids: Vec<(String, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["moduleId"].as_str().map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("a".into(), None),
                ("a".into(), Some("m1".into())),
                ("a".into(), Some("m2".into())),
                ("b".into(), None)
            ]
        );
        for r in &rows {
            assert_eq!(
                r["authentication"]["symmetricKey"]["primaryKey"],
                Value::Null
            );
            assert_eq!(r["authentication"]["type"], "sas");
            assert!(r["properties"]["desired"]["$metadata"].is_object(), "{r}");
            assert_eq!(r["properties"]["reported"]["$version"], 1, "{r}");
        }
    }

    #[test]
    fn keys_are_exported_unless_excluded() {
        let s = store();
        device(&s, "d", DeviceSpec::default());
        let key = s.device("d").unwrap().auth.primary_key.unwrap();
        let (blocks, _) = lines(&s, false, BLOCK_BYTES);
        let text = String::from_utf8(blocks.concat()).unwrap();
        assert!(text.starts_with('{'), "no warning line with keys: {text}");
        let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(row["authentication"]["symmetricKey"]["primaryKey"], key);
    }

    #[test]
    fn x509_devices_keep_type_and_thumbprints_without_keys() {
        let s = store();
        let thumb = "AB".repeat(20);
        device(
            &s,
            "x",
            DeviceSpec {
                authentication: Some(wire::Authentication {
                    kind: Some(AuthenticationType::SelfSigned),
                    x509_thumbprint: Some(wire::X509Thumbprint {
                        primary_thumbprint: Some(thumb.clone()),
                        secondary_thumbprint: None,
                    }),
                    symmetric_key: None,
                }),
                status: Some("disabled".into()),
                status_reason: Some("stolen".into()),
                ..Default::default()
            },
        );
        let d = s.device("x").unwrap();
        let row = device_line(&d, true);
        assert_eq!(row["authentication"]["type"], "selfSigned");
        assert_eq!(
            row["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            thumb.as_str()
        );
        assert_eq!(row["status"], "disabled");
        assert_eq!(row["statusReason"], "stolen");
        assert_eq!(row["eTag"], d.etag.as_str());
        assert_eq!(row["twinETag"], d.twin.etag().as_str());
        assert_eq!(row["capabilities"]["iotEdge"], false);
        assert!(row.get("deviceScope").is_none() && row.get("parentScopes").is_none());
    }

    #[test]
    fn blocks_hold_whole_lines_and_stay_near_their_size() {
        let s = store();
        for i in 0..50 {
            device(&s, &format!("d{i:02}"), DeviceSpec::default());
        }
        let (blocks, w) = lines(&s, true, 2048);
        assert_eq!(w.identities, 50);
        assert_eq!(w.blocks as usize, blocks.len());
        assert!(blocks.len() > 5, "{} blocks", blocks.len());
        for b in &blocks {
            assert!(b.len() <= 2048, "a block of {} bytes", b.len());
            assert_eq!(b.last(), Some(&b'\n'), "blocks end at a line's end");
        }
        assert_eq!(w.bytes, blocks.iter().map(|b| b.len() as u64).sum::<u64>());
    }

    #[test]
    fn a_caller_that_stops_gets_no_more_blocks() {
        let s = store();
        for i in 0..50 {
            device(&s, &format!("d{i:02}"), DeviceSpec::default());
        }
        let snap = s.index_snapshot().unwrap();
        let mut seen = 0;
        write(&snap, false, 1024, |_, _| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
    }

    #[test]
    fn the_snapshot_does_not_see_later_writes() {
        let s = store();
        device(&s, "before", DeviceSpec::default());
        let snap = s.index_snapshot().unwrap();
        device(&s, "after", DeviceSpec::default());
        s.delete_device("before", &IfMatch::Any).unwrap();
        let mut ids = Vec::new();
        snap.visit(|i| {
            if let Identity::Device(d) = i {
                ids.push(d.device_id);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(ids, ["before"]);
        assert_eq!(snap.len().unwrap(), 1);
    }
}
