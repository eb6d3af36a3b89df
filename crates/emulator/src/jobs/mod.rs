//! Import and export jobs (SPEC §17; live-hub.md, "Import/export jobs"): `POST /jobs/create`,
//! `GET /jobs/{id}`, `GET /jobs` and `DELETE /jobs/{id}` for **export** jobs, which write the
//! registry with its twins in IoT Hub's export format (`export`) to a blob container through the
//! Azure Blob REST API (`blob`).
//!
//! As a live hub: one import/export job at a time (a second → 403 `JobQuotaExceeded`); a
//! container the hub cannot use → a synchronous 400 `BlobContainerValidationError` (checked by
//! listing it and writing, reading and deleting a probe blob before the job is accepted); the
//! container URI is never echoed in the job record; `GET /jobs/{unknown}` → 404 `JobNotFound`;
//! cancelling is immediate. Statuses go `enqueued` → `running` → `completed`, `failed` (with
//! `failureReason`) or `cancelled`.
//!
//! What the export contains: the view queries read (`--index-lag`), taken when the job starts
//! running, and held unchanged while it is written. Writes made later are not in it; with an
//! index lag, neither are writes younger than the lag, and deleted identities stay in it.
//!
//! Not served (400 `ArgumentInvalid`, saying the emulator does not support it): import jobs,
//! `storageAuthenticationType: identityBased` (the emulator has no managed identity) and
//! `includeConfigurations`; scheduled jobs (`/jobs/v2`) are no route (404 `NotFound`). Records persist in the state (never the container URI, which holds a
//! SAS); a job that was enqueued or running when the hub stopped has failed at the next start.
//!
//! `PUT /_emulator/jobs/hold` (`{"hold": true}`) holds jobs once they are running, before they
//! write, until `{"hold": false}`: tests observe `running`, the one-job rule and cancellation
//! without racing the job.

use std::sync::{Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::error::Error;
use crate::server::{Path, Shared, json, parse_object, read_body};
use crate::store::Store;

mod blob;
mod export;

/// The blob an export writes unless `outputBlobName` names another.
const DEFAULT_BLOB_NAME: &str = "devices.txt";
/// A create request is a small JSON object.
const MAX_CREATE_BODY: usize = 64 * 1024;

/// A job's status, as IoT Hub spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Status {
    Enqueued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn is_active(self) -> bool {
        matches!(self, Status::Enqueued | Status::Running)
    }
}

/// A job as the hub keeps it, in memory and in the state. Never the container URI.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    id: String,
    /// Creation order: `GET /jobs` lists in it.
    seq: u64,
    status: Status,
    start_time: String,
    end_time: Option<String>,
    progress: u8,
    exclude_keys: bool,
    output_blob_name: String,
    failure_reason: Option<String>,
}

impl JobRecord {
    /// IoT Hub's `JobProperties` as a live hub answers them: no container URI, no
    /// `storageAuthenticationType`.
    fn to_wire(&self) -> Value {
        let mut v = json!({
            "jobId": self.id,
            "startTimeUtc": self.start_time,
            "type": "export",
            "status": self.status,
            "progress": self.progress,
            "excludeKeysInExport": self.exclude_keys,
            "failureReason": self.failure_reason,
        });
        if let (Some(end), Value::Object(m)) = (&self.end_time, &mut v) {
            m.insert("endTimeUtc".into(), json!(end));
        }
        v
    }
}

/// `POST /jobs/create`'s body: IoT Hub's `JobProperties`; read-only fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    output_blob_container_uri: Option<String>,
    #[serde(default)]
    exclude_keys_in_export: bool,
    output_blob_name: Option<String>,
    storage_authentication_type: Option<String>,
    #[serde(default)]
    include_configurations: bool,
}

/// An export job as asked for and checked.
#[derive(Debug, Clone)]
struct ExportSpec {
    container: blob::Container,
    exclude_keys: bool,
    blob_name: String,
}

impl CreateRequest {
    fn check(self) -> Result<ExportSpec, Error> {
        match self.kind.as_deref() {
            Some(k) if k.eq_ignore_ascii_case("export") => {}
            Some(k) if k.eq_ignore_ascii_case("import") => {
                return Err(Error::ArgumentInvalid(
                    "import jobs are not supported by the emulator; it serves export jobs".into(),
                ));
            }
            _ => {
                return Err(Error::ArgumentInvalid(
                    "type must be `export` (the emulator serves export jobs)".into(),
                ));
            }
        }
        match self.storage_authentication_type.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("keyBased") => {}
            Some(t) if t.eq_ignore_ascii_case("identityBased") => {
                return Err(Error::ArgumentInvalid(
                    "identity-based storage authentication is not supported by the emulator (it has no managed identity): give a container SAS URL with keyBased".into(),
                ));
            }
            Some(_) => {
                return Err(Error::ArgumentInvalid(
                    "storageAuthenticationType must be keyBased or identityBased".into(),
                ));
            }
        }
        if self.include_configurations {
            return Err(Error::ArgumentInvalid(
                "includeConfigurations is not supported by the emulator".into(),
            ));
        }
        let uri = self
            .output_blob_container_uri
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                Error::ArgumentInvalid("an export job needs outputBlobContainerUri".into())
            })?;
        let container = blob::Container::parse(&uri).map_err(Error::BlobContainerValidation)?;
        let blob_name = self
            .output_blob_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BLOB_NAME.to_string());
        if blob_name.len() > 1024 || blob_name.chars().any(char::is_control) {
            return Err(Error::ArgumentInvalid(
                "outputBlobName must be a blob name of at most 1024 characters".into(),
            ));
        }
        Ok(ExportSpec {
            container,
            exclude_keys: self.exclude_keys_in_export,
            blob_name,
        })
    }
}

/// The hub's jobs: their records, the one that runs, and the storage client.
pub(crate) struct Jobs {
    inner: Mutex<Inner>,
    /// `/_emulator/jobs/hold`.
    hold: watch::Sender<bool>,
    blobs: blob::Blobs,
    /// Turns true when the hub stops; a running job then stops where it is.
    stop: watch::Receiver<bool>,
    /// Serialises saving records (see `persist`).
    saving: Mutex<()>,
}

struct Inner {
    records: Vec<JobRecord>,
    /// The one import/export job a hub runs, from its creation's container check until it ends.
    active: Option<Active>,
    next_seq: u64,
}

struct Active {
    id: String,
    cancel: watch::Sender<bool>,
}

impl Jobs {
    /// The jobs kept in `store`. One that was enqueued or running when the hub stopped has failed.
    pub(crate) fn open(store: &Store, stop: watch::Receiver<bool>) -> anyhow::Result<Jobs> {
        let mut records: Vec<JobRecord> = store
            .jobs()
            .map_err(|e| anyhow::anyhow!("reading the jobs of the state: {e}"))?;
        for r in records.iter_mut().filter(|r| r.status.is_active()) {
            r.status = Status::Failed;
            r.end_time = Some(clock::now());
            r.failure_reason = Some("the hub stopped while the job ran".into());
            store
                .save_job(&r.id, r)
                .map_err(|e| anyhow::anyhow!("recording an interrupted job: {e}"))?;
        }
        records.sort_by_key(|r| r.seq);
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        Ok(Jobs {
            inner: Mutex::new(Inner {
                records,
                active: None,
                next_seq,
            }),
            hold: watch::channel(false).0,
            blobs: blob::Blobs::new()?,
            stop,
            saving: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain records: a panic elsewhere leaves nothing half-written that matters more.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the one job slot for a new job, or answers 403 `JobQuotaExceeded`.
    fn reserve(&self) -> Result<(String, watch::Receiver<bool>), Error> {
        let mut inner = self.lock();
        if let Some(a) = &inner.active {
            return Err(Error::JobQuotaExceeded(format!(
                "job {} is running; a hub runs one import or export job at a time",
                a.id
            )));
        }
        let id = job_id();
        let (cancel, cancelled) = watch::channel(false);
        inner.active = Some(Active {
            id: id.clone(),
            cancel,
        });
        Ok((id, cancelled))
    }

    /// Frees the slot `id` holds (a job refused after it was reserved, or one that ended).
    fn release(&self, id: &str) {
        let mut inner = self.lock();
        if inner.active.as_ref().is_some_and(|a| a.id == id) {
            inner.active = None;
        }
    }

    fn enqueue(&self, id: &str, spec: &ExportSpec) -> JobRecord {
        let mut inner = self.lock();
        let record = JobRecord {
            id: id.to_string(),
            seq: inner.next_seq,
            status: Status::Enqueued,
            start_time: clock::now(),
            end_time: None,
            progress: 0,
            exclude_keys: spec.exclude_keys,
            output_blob_name: spec.blob_name.clone(),
            failure_reason: None,
        };
        inner.next_seq += 1;
        inner.records.push(record.clone());
        record
    }

    /// Changes a job that is still active with `f`; `None` when it is not (it was cancelled).
    fn update(&self, id: &str, f: impl FnOnce(&mut JobRecord)) -> Option<JobRecord> {
        let mut inner = self.lock();
        let r = inner
            .records
            .iter_mut()
            .find(|r| r.id == id && r.status.is_active())?;
        f(r);
        let r = r.clone();
        if !r.status.is_active() && inner.active.as_ref().is_some_and(|a| a.id == id) {
            inner.active = None;
        }
        Some(r)
    }

    fn get(&self, id: &str) -> Option<JobRecord> {
        self.lock().records.iter().find(|r| r.id == id).cloned()
    }

    fn list(&self) -> Vec<JobRecord> {
        self.lock().records.clone()
    }

    /// Cancels a job: an active one ends `cancelled` at once (its writing stops), one that has
    /// ended stays as it is. 404 `JobNotFound` for an ID the hub does not know.
    /// Whether it changed the job.
    fn cancel(&self, id: &str) -> Result<bool, Error> {
        let mut inner = self.lock();
        let r = inner
            .records
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::JobNotFound(format!("no job {id}")))?;
        if !r.status.is_active() {
            return Ok(false);
        }
        r.status = Status::Cancelled;
        r.end_time = Some(clock::now());
        if let Some(a) = inner.active.take_if(|a| a.id == id) {
            let _ = a.cancel.send(true);
        }
        Ok(true)
    }
}

/// A job ID in the GUID form IoT Hub gives its import/export jobs.
fn job_id() -> String {
    let h = crate::random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Holds the job slot while a create request checks the container; frees it when dropped
/// unarmed (the check failed, or the client went away mid-request).
struct Reservation {
    hub: Shared,
    id: String,
    armed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.armed {
            self.hub.jobs.release(&self.id);
        }
    }
}

/// The job routes, and the emulator's `/_emulator/jobs/hold`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/create", post(create))
        .route("/jobs/{id}", get(get_job).delete(cancel))
        // Scheduled jobs (twin updates, direct methods) live under `/jobs/v2`; not served.
        .route("/jobs/v2", any(scheduled_jobs))
        .route("/jobs/v2/{*rest}", any(scheduled_jobs))
        .route("/_emulator/jobs/hold", put(hold))
}

async fn scheduled_jobs() -> Error {
    Error::RouteNotFound("scheduled jobs (/jobs/v2) are not served by the emulator".into())
}

/// Saves job `id` as it is now, on a blocking thread (commits wait for fsync). Saves are
/// serialised and each reads the record when it runs, so the state ends with the newest record
/// whatever order concurrent saves were asked in. A failure is logged: the job itself goes on, and
/// only its history after a restart would miss the change.
async fn persist(hub: &Shared, id: &str) {
    let (h, id) = (hub.clone(), id.to_string());
    let saved = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = h
            .jobs
            .saving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match h.jobs.get(&id) {
            Some(record) => h.store.save_job(&id, &record),
            None => Ok(()),
        }
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "recording a job failed"),
        Err(e) => tracing::warn!(error = %e, "the job recording worker failed"),
    }
}

async fn create(State(hub): State<Shared>, body: Body) -> Result<Response, Error> {
    // The container URI holds a SAS: `parse_object` blanks the strings serde's message quotes.
    let request: CreateRequest = parse_object(&read_body(body, MAX_CREATE_BODY).await?)?;
    let spec = request.check()?;
    let (id, cancelled) = hub.jobs.reserve()?;
    let mut reservation = Reservation {
        hub: hub.clone(),
        id: id.clone(),
        armed: false,
    };
    let probe = format!(".twinops-emulator-probe-{id}");
    if let Err(f) = hub.jobs.blobs.validate(&spec.container, &probe).await {
        return Err(Error::BlobContainerValidation(format!(
            "the output blob container cannot be used: {f}"
        )));
    }
    reservation.armed = true;
    let record = hub.jobs.enqueue(&id, &spec);
    // From here the job is the task's: nothing below may be cut short by a client going away.
    tokio::spawn(run(hub.clone(), id, spec, cancelled));
    Ok(json(StatusCode::OK, &record.to_wire()))
}

async fn get_job(State(hub): State<Shared>, Path(id): Path<String>) -> Result<Response, Error> {
    let r = hub
        .jobs
        .get(&id)
        .ok_or_else(|| Error::JobNotFound(format!("no job {id}")))?;
    Ok(json(StatusCode::OK, &r.to_wire()))
}

async fn list(State(hub): State<Shared>) -> Response {
    let all: Vec<Value> = hub.jobs.list().iter().map(JobRecord::to_wire).collect();
    json(StatusCode::OK, &Value::Array(all))
}

async fn cancel(State(hub): State<Shared>, Path(id): Path<String>) -> Result<Response, Error> {
    if hub.jobs.cancel(&id)? {
        persist(&hub, &id).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct Hold {
    hold: bool,
}

async fn hold(State(hub): State<Shared>, body: Body) -> Result<Response, Error> {
    let Hold { hold } = parse_object(&read_body(body, 1024).await?)
        .map_err(|_| Error::Deserialization("the body is {\"hold\": true|false}".into()))?;
    hub.jobs.hold.send_replace(hold);
    Ok(json(StatusCode::OK, &json!({ "hold": hold })))
}

/// Runs an accepted job to its end, unless it is cancelled (the canceller records that) or the
/// hub stops (the job stays `running` in the state and fails at the next start).
async fn run(hub: Shared, id: String, spec: ExportSpec, mut cancelled: watch::Receiver<bool>) {
    persist(&hub, &id).await;
    let mut stop = hub.jobs.stop.clone();
    let outcome = tokio::select! {
        outcome = export(&hub, &id, &spec) => outcome,
        _ = cancelled.wait_for(|c| *c) => return,
        _ = stop.wait_for(|s| *s) => return,
    };
    let ended = hub.jobs.update(&id, |r| {
        r.end_time = Some(clock::now());
        match outcome {
            Ok(()) => {
                r.status = Status::Completed;
                r.progress = 100;
            }
            Err(reason) => {
                r.status = Status::Failed;
                r.failure_reason = Some(reason);
            }
        }
    });
    if ended.is_some() {
        persist(&hub, &id).await;
    }
}

/// The job's work: snapshot, then the blob, written block by block as the snapshot is rendered.
/// `Err` holds the failure reason the job record gives.
async fn export(hub: &Shared, id: &str, spec: &ExportSpec) -> Result<(), String> {
    let h = hub.clone();
    let snapshot = tokio::task::spawn_blocking(move || h.store.index_snapshot())
        .await
        .map_err(|e| format!("the export worker failed: {e}"))?
        .map_err(|e| format!("reading the registry: {e}"))?;
    if hub
        .jobs
        .update(id, |r| r.status = Status::Running)
        .is_some()
    {
        persist(hub, id).await;
    }
    let mut hold = hub.jobs.hold.subscribe();
    let _ = hold.wait_for(|held| !*held).await;

    let blobs = &hub.jobs.blobs;
    let (c, name) = (&spec.container, spec.blob_name.as_str());
    // A live hub deletes an existing output blob before it writes.
    blobs
        .delete(c, name, "deleting the previous output blob")
        .await
        .map_err(|f| f.to_string())?;
    let total = snapshot
        .len()
        .map_err(|e| format!("reading the registry: {e}"))?;
    // At most one block waits here while one is uploaded and the next is rendered.
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, u64)>(1);
    let exclude_keys = spec.exclude_keys;
    let producer = tokio::task::spawn_blocking(move || {
        export::write(
            &snapshot,
            exclude_keys,
            export::BLOCK_BYTES,
            |block, done| tx.blocking_send((block, done)).is_ok(),
        )
    });
    let mut ids = Vec::new();
    while let Some((block, done)) = rx.recv().await {
        let n =
            u32::try_from(ids.len()).map_err(|_| "the export has too many blocks".to_string())?;
        ids.push(
            blobs
                .put_block(c, name, n, block)
                .await
                .map_err(|f| f.to_string())?,
        );
        // 100 is for a committed blob.
        let progress = u8::try_from(done.saturating_mul(99) / total.max(1)).unwrap_or(99);
        hub.jobs.update(id, |r| r.progress = progress);
    }
    let written = producer
        .await
        .map_err(|e| format!("the export worker failed: {e}"))?
        .map_err(|e| format!("rendering the export: {e}"))?;
    blobs
        .put_block_list(c, name, &ids)
        .await
        .map_err(|f| f.to_string())?;
    tracing::info!(
        job = id,
        identities = written.identities,
        blocks = written.blocks,
        bytes = written.bytes,
        "export job wrote its blob"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> Result<ExportSpec, Error> {
        serde_json::from_value::<CreateRequest>(v).unwrap().check()
    }

    const SAS: &str = "https://a.blob.core.windows.net/c?sv=2021-08-06&sig=x";

    #[test]
    fn an_export_request_defaults_its_blob_name_and_keeps_keys() {
        let s = request(json!({"type": "export", "outputBlobContainerUri": SAS})).unwrap();
        assert_eq!(s.blob_name, "devices.txt");
        assert!(!s.exclude_keys);
        let s = request(json!({"type": "export", "outputBlobContainerUri": SAS,
            "excludeKeysInExport": true, "outputBlobName": "run-1.txt",
            "storageAuthenticationType": "keyBased"}))
        .unwrap();
        assert_eq!(s.blob_name, "run-1.txt");
        assert!(s.exclude_keys);
    }

    #[test]
    fn what_the_emulator_does_not_serve_is_an_invalid_argument_that_says_so() {
        for (body, says) in [
            (
                json!({"type": "import", "outputBlobContainerUri": SAS}),
                "import",
            ),
            (
                json!({"type": "export", "outputBlobContainerUri": SAS,
                       "storageAuthenticationType": "identityBased"}),
                "identity-based",
            ),
            (
                json!({"type": "export", "outputBlobContainerUri": SAS, "includeConfigurations": true}),
                "includeConfigurations",
            ),
            (json!({"outputBlobContainerUri": SAS}), "export"),
            (json!({"type": "export"}), "outputBlobContainerUri"),
        ] {
            match request(body) {
                Err(Error::ArgumentInvalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_container_uri_the_hub_cannot_use_fails_validation_without_being_quoted() {
        let Err(Error::BlobContainerValidation(m)) = request(
            json!({"type": "export", "outputBlobContainerUri": "http://storage.example/c?sig=secret"}),
        ) else {
            panic!("plain http off loopback");
        };
        assert!(!m.contains("secret"), "{m}");
    }

    #[test]
    fn the_job_record_never_holds_the_container_uri() {
        let r = JobRecord {
            id: job_id(),
            seq: 1,
            status: Status::Enqueued,
            start_time: clock::now(),
            end_time: None,
            progress: 0,
            exclude_keys: true,
            output_blob_name: "devices.txt".into(),
            failure_reason: None,
        };
        let wire = r.to_wire();
        assert_eq!(wire["status"], "enqueued");
        assert_eq!(wire["type"], "export");
        assert!(wire.get("outputBlobContainerUri").is_none());
        assert!(wire.get("endTimeUtc").is_none());
        assert_eq!(wire["failureReason"], Value::Null);
        assert_eq!(r.id.len(), 36);
    }
}
