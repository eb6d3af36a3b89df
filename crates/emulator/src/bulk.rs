//! The bulk registry call (`POST /devices`): up to 100 rows of `ExportImportDevice`, each a create,
//! update or delete of a device or module identity, or a twin update.
//!
//! Choices where IoT Hub is not documented: more than 100 rows answers 413 `TooManyDevices`
//! (as .NET maps it); an identity named by two rows fails the whole call with 400 and a
//! `DeviceDefinedMultipleTimes` row error per duplicate, applying nothing; otherwise each row is
//! applied on its own (a failing row changes nothing, the others are applied) and the answer is 200
//! when every row succeeded, else 400 with the failed rows. The whole call is one transaction
//! committed durably before the answer.

use std::collections::HashSet;
use twinops_iothub::error_code::ErrorCode;

use super::error::Error;
use super::store::{DeviceSpec, ModuleSpec, Store, Target, Tx, check_id, check_module_id_writable};
use super::twin::{Desired, ServiceWrite, strip_read_only};
use twinops_iothub::wire::{
    BulkRegistryOperationResult, DeviceRegistryOperationError, ExportImportDevice,
};

/// At most this many rows per call.
pub(crate) const MAX_ROWS: usize = 100;

/// One row of a call as the HTTP edge decoded it.
#[derive(Debug)]
pub(crate) enum Row {
    Valid(Box<ExportImportDevice>),
    /// A row refused on its own (an authentication type IoT Hub does not define): it fails, the
    /// other rows are applied.
    Refused {
        device_id: String,
        module_id: Option<String>,
        import_mode: String,
        error: Error,
    },
}

/// Runs a bulk call; `Err` only for a call refused as a whole.
pub(crate) fn run(store: &Store, rows: Vec<Row>) -> Result<BulkRegistryOperationResult, Error> {
    let total = rows.len();
    let mut refused = Vec::new();
    let mut valid = Vec::with_capacity(total);
    for r in rows {
        match r {
            Row::Valid(row) => valid.push(*row),
            Row::Refused {
                device_id,
                module_id,
                import_mode,
                error,
            } => refused.push(DeviceRegistryOperationError {
                device_id,
                module_id,
                error_code: error.code(),
                error_status: error.text(),
                operation: Some(import_mode),
            }),
        }
    }
    if total > MAX_ROWS {
        return Err(Error::TooManyDevices(format!(
            "a bulk call takes at most {MAX_ROWS} rows, got {total}"
        )));
    }
    let mut result = apply(store, valid, total)?;
    result.is_successful &= refused.is_empty();
    result.errors.extend(refused);
    Ok(result)
}

/// Applies the valid rows of a call of `total` rows.
fn apply(
    store: &Store,
    rows: Vec<ExportImportDevice>,
    total: usize,
) -> Result<BulkRegistryOperationResult, Error> {
    if total == 0 {
        return Err(Error::ArgumentInvalid(
            "a bulk call needs at least one row".into(),
        ));
    }
    let duplicates = duplicates(&rows);
    if !duplicates.is_empty() {
        return Ok(BulkRegistryOperationResult {
            is_successful: false,
            errors: duplicates,
            warnings: Vec::new(),
        });
    }
    store.write(|tx| {
        let mut errors = Vec::new();
        for row in &rows {
            if let Err(e) = apply_row(tx, row) {
                errors.push(DeviceRegistryOperationError {
                    device_id: row.id.clone(),
                    module_id: row.module_id.clone(),
                    error_code: e.code(),
                    error_status: e.text(),
                    operation: Some(row.import_mode.clone()),
                });
            }
        }
        Ok(BulkRegistryOperationResult {
            is_successful: errors.is_empty(),
            errors,
            warnings: Vec::new(),
        })
    })
}

fn duplicates(rows: &[ExportImportDevice]) -> Vec<DeviceRegistryOperationError> {
    let mut seen = HashSet::new();
    let mut dup = HashSet::new();
    for r in rows {
        let key = (r.id.as_str(), r.module_id.as_deref().unwrap_or(""));
        if !seen.insert(key) {
            dup.insert(key);
        }
    }
    rows.iter()
        .filter(|r| dup.contains(&(r.id.as_str(), r.module_id.as_deref().unwrap_or(""))))
        .map(|r| DeviceRegistryOperationError {
            device_id: r.id.clone(),
            module_id: r.module_id.clone(),
            error_code: ErrorCode::DeviceDefinedMultipleTimes,
            error_status: "the identity appears in more than one row".into(),
            operation: Some(r.import_mode.clone()),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    CreateOrUpdate { if_match: bool },
    Update { if_match: bool },
    Delete { if_match: bool },
    UpdateTwin { if_match: bool },
}

fn mode(s: &str) -> Result<Mode, Error> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "create" => Mode::Create,
        "createorupdate" => Mode::CreateOrUpdate { if_match: false },
        "createorupdateifmatchetag" => Mode::CreateOrUpdate { if_match: true },
        "update" => Mode::Update { if_match: false },
        "updateifmatchetag" => Mode::Update { if_match: true },
        "delete" => Mode::Delete { if_match: false },
        "deleteifmatchetag" => Mode::Delete { if_match: true },
        "updatetwin" => Mode::UpdateTwin { if_match: false },
        "updatetwinifmatchetag" => Mode::UpdateTwin { if_match: true },
        _ => {
            return Err(Error::ArgumentInvalid(format!(
                "importMode `{}` is not known",
                s.chars().take(40).collect::<String>()
            )));
        }
    })
}

fn etag_matches(given: &Option<String>, actual: &str) -> Result<(), Error> {
    let given = given.as_deref().map(|e| e.trim().trim_matches('"'));
    match given {
        Some("*") => Ok(()),
        Some(e) if e == actual => Ok(()),
        _ => Err(Error::PreconditionFailed("eTag does not match".into())),
    }
}

fn twin_write(row: &ExportImportDevice) -> ServiceWrite {
    ServiceWrite {
        tags: row.tags.clone().map(strip_read_only),
        desired: Desired::patch(
            row.properties
                .as_ref()
                .and_then(|p| p.desired.clone())
                .map(strip_read_only),
        ),
    }
}

/// Applies one row. Every check that can fail runs before the row's first write, except the twin
/// of a new identity, which is validated before the identity is written.
fn apply_row(tx: &mut Tx<'_>, row: &ExportImportDevice) -> Result<(), Error> {
    let mode = mode(&row.import_mode)?;
    check_id(&row.id, "device")?;
    let write = twin_write(row);
    let has_twin = write.tags.is_some() || write.desired != Desired::Untouched;
    // Validate the twin of a create before anything is written, on a scratch twin.
    if has_twin && matches!(mode, Mode::Create | Mode::CreateOrUpdate { .. }) {
        let mut scratch = super::twin::TwinState::new(&tx.now);
        scratch.patch(write.clone(), &tx.now)?;
    }
    match row.module_id.as_deref().filter(|m| !m.is_empty()) {
        None => apply_device_row(tx, row, mode, write, has_twin),
        Some(module) => apply_module_row(tx, row, module, mode, write, has_twin),
    }
}

/// A row about a device identity or twin. `write` is the row's twin part (`has_twin`: not empty).
fn apply_device_row(
    tx: &mut Tx<'_>,
    row: &ExportImportDevice,
    mode: Mode,
    write: ServiceWrite,
    has_twin: bool,
) -> Result<(), Error> {
    let now = tx.now.clone();
    let spec = DeviceSpec {
        status: row.status.clone(),
        status_reason: row.status_reason.clone(),
        authentication: row.authentication.clone(),
        edge: row.capabilities.as_ref().map(|c| c.iot_edge),
        device_scope: row.device_scope.clone(),
        parent_scopes: row.parent_scopes.clone(),
    };
    let current = tx.device(&row.id)?;
    let target = Target::Device(row.id.clone());
    match (mode, current) {
        (Mode::Create, Some(_)) => Err(Error::DeviceAlreadyExists(row.id.clone())),
        (Mode::Create | Mode::CreateOrUpdate { .. }, None) => {
            tx.create_device(&row.id, &spec)?;
            if has_twin {
                tx.update_twin(&target, |t| t.patch(write, &now))?;
            }
            Ok(())
        }
        (_, None) => Err(Error::DeviceNotFound(row.id.clone())),
        (Mode::CreateOrUpdate { if_match } | Mode::Update { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.e_tag, &cur.etag)?;
            }
            tx.update_device(cur, &spec).map(|_| ())
        }
        (Mode::Delete { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.e_tag, &cur.etag)?;
            }
            tx.remove_device(&row.id)
        }
        (Mode::UpdateTwin { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.twin_etag, &cur.twin.etag())?;
            }
            tx.update_twin(&target, |t| t.patch(write, &now))
                .map(|_| ())
        }
    }
}

/// A row about a module identity or twin (`module` is its non-empty module ID).
fn apply_module_row(
    tx: &mut Tx<'_>,
    row: &ExportImportDevice,
    module: &str,
    mode: Mode,
    write: ServiceWrite,
    has_twin: bool,
) -> Result<(), Error> {
    let now = tx.now.clone();
    check_id(module, "module")?;
    if tx.device(&row.id)?.is_none() {
        return Err(Error::DeviceNotFound(row.id.clone()));
    }
    let spec = ModuleSpec {
        managed_by: row.managed_by.clone(),
        authentication: row.authentication.clone(),
    };
    let target = Target::Module(row.id.clone(), module.to_string());
    let current = tx.module(&row.id, module)?;
    if !matches!(mode, Mode::UpdateTwin { .. }) {
        check_module_id_writable(module)?;
    }
    let missing = || Error::ModuleNotFound {
        device: row.id.clone(),
        module: module.to_string(),
    };
    match (mode, current) {
        (Mode::Create, Some(_)) => Err(Error::ModuleAlreadyExists {
            device: row.id.clone(),
            module: module.to_string(),
        }),
        (Mode::Create | Mode::CreateOrUpdate { .. }, None) => {
            tx.create_module(&row.id, module, &spec)?;
            if has_twin {
                tx.update_twin(&target, |t| t.patch(write, &now))?;
            }
            Ok(())
        }
        (_, None) => Err(missing()),
        (Mode::CreateOrUpdate { if_match } | Mode::Update { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.e_tag, &cur.etag)?;
            }
            tx.update_module(cur, &spec).map(|_| ())
        }
        (Mode::Delete { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.e_tag, &cur.etag)?;
            }
            tx.remove_module(&row.id, module)
        }
        (Mode::UpdateTwin { if_match }, Some(cur)) => {
            if if_match {
                etag_matches(&row.twin_etag, &cur.twin.etag())?;
            }
            tx.update_twin(&target, |t| t.patch(write, &now))
                .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twinops_iothub::wire::TwinProperties;

    fn run_valid(
        s: &Store,
        rows: Vec<ExportImportDevice>,
    ) -> Result<BulkRegistryOperationResult, Error> {
        run(
            s,
            rows.into_iter().map(|r| Row::Valid(Box::new(r))).collect(),
        )
    }

    fn row(id: &str, mode: &str) -> ExportImportDevice {
        ExportImportDevice {
            id: id.into(),
            import_mode: mode.into(),
            ..Default::default()
        }
    }

    fn module_row(id: &str, m: &str, mode: &str) -> ExportImportDevice {
        ExportImportDevice {
            module_id: Some(m.into()),
            ..row(id, mode)
        }
    }

    #[test]
    fn create_rows_apply_tags_and_desired_in_the_same_step() {
        let s = Store::open(None).unwrap();
        let mut r = row("d1", "create");
        r.tags = json!({"site": "b"}).as_object().cloned();
        r.properties = Some(TwinProperties {
            desired: json!({"x": 1}).as_object().cloned(),
            reported: None,
        });
        let res = run_valid(&s, vec![r, module_row("d1", "m1", "create")]).unwrap();
        assert!(res.is_successful, "{res:?}");
        let twin = s.twin(&Target::Device("d1".into())).unwrap();
        assert_eq!(twin["tags"]["site"], "b");
        assert_eq!(twin["properties"]["desired"]["x"], 1);
        assert!(s.module("d1", "m1").is_ok());
    }

    #[test]
    fn failing_rows_are_reported_and_the_others_applied() {
        let s = Store::open(None).unwrap();
        run_valid(&s, vec![row("d1", "create")]).unwrap();
        let res = run_valid(
            &s,
            vec![
                row("d1", "create"),
                row("d2", "create"),
                row("nope", "update"),
                row("d2x", "bogusMode"),
            ],
        )
        .unwrap();
        assert!(!res.is_successful);
        let codes: Vec<_> = res.errors.iter().map(|e| e.error_code.as_str()).collect();
        assert_eq!(
            codes,
            ["DeviceAlreadyExists", "DeviceNotFound", "ArgumentInvalid"]
        );
        assert!(s.device("d2").is_ok());
    }

    #[test]
    fn etag_modes_compare_identity_and_twin_etags() {
        let s = Store::open(None).unwrap();
        run_valid(&s, vec![row("d", "create")]).unwrap();
        let d = s.device("d").unwrap();
        let mut upd = row("d", "updateIfMatchETag");
        upd.e_tag = Some("stale".into());
        let mut tw = row("d", "updateTwinIfMatchETag");
        tw.twin_etag = Some(d.twin.etag());
        tw.tags = json!({"a": 1}).as_object().cloned();
        let res = run_valid(&s, vec![upd]).unwrap();
        assert_eq!(res.errors.len(), 1);
        assert_eq!(res.errors[0].error_code, ErrorCode::PreconditionFailed);
        assert!(run_valid(&s, vec![tw]).unwrap().is_successful);
        assert_eq!(s.twin(&Target::Device("d".into())).unwrap()["tags"]["a"], 1);
        let mut del = row("d", "deleteIfMatchETag");
        del.e_tag = Some(d.etag.clone());
        assert!(run_valid(&s, vec![del]).unwrap().is_successful);
        assert!(s.device("d").is_err());
    }

    #[test]
    fn duplicates_and_oversized_calls_are_refused_whole() {
        let s = Store::open(None).unwrap();
        let res = run_valid(
            &s,
            vec![row("d", "create"), row("e", "create"), row("d", "delete")],
        )
        .unwrap();
        assert!(!res.is_successful);
        assert_eq!(res.errors.len(), 2);
        assert!(
            res.errors
                .iter()
                .all(|e| e.error_code == ErrorCode::DeviceDefinedMultipleTimes)
        );
        assert!(s.device("e").is_err(), "nothing applied");
        let many = (0..101).map(|i| row(&format!("d{i}"), "create")).collect();
        assert!(matches!(run_valid(&s, many), Err(Error::TooManyDevices(_))));
    }

    #[test]
    fn a_row_with_an_invalid_twin_creates_nothing() {
        let s = Store::open(None).unwrap();
        let mut r = row("d", "create");
        r.tags = json!({"bad.key": 1}).as_object().cloned();
        let res = run_valid(&s, vec![r]).unwrap();
        assert_eq!(res.errors[0].error_code, ErrorCode::ArgumentInvalid);
        assert!(s.device("d").is_err());
    }
}
