//! Whole-hub reads through an export job (SPEC §17): the hub writes every identity with its twin
//! into a blob of the operator's container, off the query quota; twinops streams that blob line by
//! line into the same sink as the API read ([`super::read::read`]), so the plan built from it is
//! the plan built from queries and GETs for the same hub state.
//!
//! The job's container SAS URL is a secret: it is only ever sent in the job's body, and the
//! errors here say what failed without it. A job that fails or times out is cancelled
//! and its blob deleted; a finished export's blob is deleted unless the operator keeps it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::read::Observation;
use super::{Error, Hub, observe};
use crate::storage::{Blobs, StorageError};
use twinops_core::model::{DeviceId, ObservedModule};
use twinops_core::plan::rollout::delivery::Cadence;
use twinops_iothub::error_code::ErrorCode;
use twinops_iothub::wire::{ExportImportDevice, JobProperties, Twin};

/// How an export read is asked for.
pub(crate) struct ExportRequest<'a> {
    pub blobs: &'a Blobs,
    /// From the job's creation to its completion.
    pub timeout: Duration,
    /// Keep the blob afterwards (`--keep-export`).
    pub keep: bool,
}

/// Why an export read failed, in words; nothing is written when it does.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("the export job failed: {0}")]
    Failed(String),
    #[error(
        "the hub cannot use the storage container (BlobContainerValidationError): {0}; the container SAS needs read, write, list and delete permissions"
    )]
    Storage(String),
    #[error(
        "another import or export job is running on this hub (JobQuotaExceeded): IoT Hub runs one at a time; try again when it ends"
    )]
    Busy,
    #[error("the export job did not finish within --export-timeout {0}; it was cancelled")]
    Timeout(String),
    #[error("{0}")]
    Blob(#[from] StorageError),
    #[error("{0}")]
    Hub(#[from] Error),
}

/// What an export read did.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExportCost {
    pub job_id: String,
    pub polls: usize,
    pub bytes: u64,
    pub identities: usize,
}

/// IoT Hub's error message without anything that looks like a SAS (a live hub may quote the
/// container URI it was given).
fn without_sas(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            if w.contains("sig=") || w.contains("?sv=") || w.contains("&sv=") {
                "<container URL>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why the hub refused to create the job: another job holds its one slot (`JobQuotaExceeded`),
/// or it cannot use the container; anything else (the daily message quota included) as it is.
fn refused(e: Error) -> ExportError {
    match e.code() {
        Some(ErrorCode::JobQuotaExceeded) => ExportError::Busy,
        Some(ErrorCode::BlobContainerValidationError) => {
            ExportError::Storage(without_sas(&e.message()))
        }
        _ => e.into(),
    }
}

impl Hub {
    async fn job(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<JobProperties, Error> {
        self.rest.job(method, path, body).await
    }

    /// Runs an export job into the container and hands every identity to `sink` as the blob is
    /// read: a device before its modules, as [`super::read::read`] does.
    pub(crate) async fn read_export(
        &self,
        req: &ExportRequest<'_>,
        mut sink: impl FnMut(Observation) -> Result<(), Error>,
    ) -> Result<ExportCost, ExportError> {
        let name = format!("twinops-export-{:016x}.txt", rand::random::<u64>());
        let body = json!({
            "type": "export",
            "outputBlobContainerUri": req.blobs.url().container_uri().expose(),
            "excludeKeysInExport": true,
            "outputBlobName": name,
            "storageAuthenticationType": "keyBased",
        });
        let job = self
            .job(Method::POST, "/jobs/create", Some(&body))
            .await
            .map_err(refused)?;
        let mut cost = ExportCost {
            job_id: job.job_id.clone(),
            ..ExportCost::default()
        };
        let started = Instant::now();
        let mut cadence = Cadence::new();
        let path = format!("/jobs/{}", job.job_id);
        let outcome = loop {
            let j = self.job(Method::GET, &path, None).await?;
            cost.polls += 1;
            match j.status.as_deref() {
                Some("completed") => break Ok(()),
                Some("failed") => {
                    break Err(ExportError::Failed(without_sas(
                        j.failure_reason
                            .as_deref()
                            .unwrap_or("no failureReason given"),
                    )));
                }
                Some("cancelled") => break Err(ExportError::Failed("it was cancelled".into())),
                _ => {}
            }
            let left = req.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break Err(ExportError::Timeout(twinops_iothub::duration::format(
                    req.timeout,
                )));
            }
            tokio::time::sleep(cadence.next(left)).await;
        };
        if let Err(e) = outcome {
            // Best effort: the job is cancelled and its blob goes; the first error is the one told.
            let _ = self.job(Method::DELETE, &path, None).await;
            let _ = req.blobs.delete(&name).await;
            return Err(e);
        }
        let read = stream_export(req.blobs, &name, &mut sink, &mut cost).await;
        if !req.keep {
            let deleted = req.blobs.delete(&name).await;
            if read.is_ok() {
                deleted?;
            }
        }
        read?;
        Ok(cost)
    }
}

/// Reads the export blob: the warning line a keys-excluded export starts with is skipped;
/// each other line is one identity. A module line whose device line has not come yet waits
/// (reduced) for it.
async fn stream_export(
    blobs: &Blobs,
    name: &str,
    sink: &mut impl FnMut(Observation) -> Result<(), Error>,
    cost: &mut ExportCost,
) -> Result<(), ExportError> {
    let mut seen: std::collections::HashSet<DeviceId> = std::collections::HashSet::new();
    let mut waiting: HashMap<DeviceId, Vec<ObservedModule>> = HashMap::new();
    let mut identities = 0usize;
    let bytes = blobs
        .lines(name, |line| -> Result<(), ExportError> {
            let text = line.strip_suffix(b"\r").unwrap_or(line);
            if text.iter().all(u8::is_ascii_whitespace) || text.first() != Some(&b'{') {
                return Ok(()); // the warning line of a keys-excluded export
            }
            identities += 1;
            match observation(text)? {
                Observation::Device(d) => {
                    let id = d.id.clone();
                    sink(Observation::Device(d))?;
                    for m in waiting.remove(&id).into_iter().flatten() {
                        sink(Observation::Module(id.clone(), m))?;
                    }
                    seen.insert(id);
                }
                Observation::Module(device, m) if seen.contains(&device) => {
                    sink(Observation::Module(device, m))?;
                }
                Observation::Module(device, m) => waiting.entry(device).or_default().push(m),
            }
            Ok(())
        })
        .await?;
    cost.bytes = bytes;
    cost.identities = identities;
    Ok(())
}

/// One export line as the reader's observation: the line's fields in a twin's shape, read by the
/// same conversion as query rows and GETs.
fn observation(line: &[u8]) -> Result<Observation, Error> {
    let e: ExportImportDevice = serde_json::from_slice(line).map_err(|source| Error::Decode {
        what: "a line of the export".into(),
        source,
    })?;
    let auth = e.authentication.unwrap_or_default();
    let twin = Twin {
        device_id: e.id,
        module_id: e.module_id,
        etag: e.twin_etag,
        device_etag: e.e_tag,
        status: e.status,
        status_reason: e.status_reason,
        authentication_type: auth.kind,
        x509_thumbprint: auth.x509_thumbprint,
        capabilities: e.capabilities,
        device_scope: e.device_scope,
        parent_scopes: e.parent_scopes,
        tags: e.tags,
        properties: e.properties,
        ..Twin::default()
    };
    Ok(match &twin.module_id {
        Some(_) => {
            Observation::Module(observe::device_id(&twin.device_id)?, observe::module(twin)?)
        }
        None => Observation::Device(observe::device(twin)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_line_reads_as_the_twin_a_query_row_would_give() {
        let line = br#"{"id":"gw","eTag":"MQ==","status":"disabled","statusReason":"r","authentication":{"symmetricKey":{"primaryKey":null,"secondaryKey":null},"x509Thumbprint":{"primaryThumbprint":"AB","secondaryThumbprint":null},"type":"selfSigned"},"twinETag":"AAAAAAAAAAI=","tags":{"site":"b"},"properties":{"desired":{"fw":2,"$metadata":{"fw":{"$lastUpdatedVersion":2}},"$version":2},"reported":{"$version":1}},"capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://gw-1"}"#;
        let Observation::Device(d) = observation(line).unwrap() else {
            panic!()
        };
        assert_eq!(d.identity_etag.as_str(), "MQ==");
        assert_eq!(d.twin.etag.as_str(), "AAAAAAAAAAI=");
        assert_eq!(d.status, twinops_core::model::DeviceStatus::Disabled);
        assert!(d.edge);
        assert_eq!(d.auth.primary_thumbprint.as_deref(), Some("AB"));
        assert_eq!(d.twin.key_version("fw"), 2);
        let module = br#"{"id":"gw","moduleId":"m","eTag":"Mg==","twinETag":"AAAAAAAAAAE=","authentication":{"type":"sas"},"properties":{"desired":{"$version":1},"reported":{"$version":1}}}"#;
        let Observation::Module(dev, m) = observation(module).unwrap() else {
            panic!()
        };
        assert_eq!((dev.as_str(), m.id.as_str()), ("gw", "m"));
    }

    /// A blob server whose blob starts with `start` and whose rest never comes (as if it were
    /// gigabytes long): a reader that goes on after `start` waits for ever.
    async fn endless_blob(start: String) -> (Blobs, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request).await.unwrap();
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(start.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
        });
        let url =
            crate::storage::StorageUrl::parse(&format!("http://127.0.0.1:{port}/c?sig=x")).unwrap();
        (Blobs::new(url).unwrap(), server)
    }

    #[tokio::test]
    async fn the_first_failing_line_ends_the_read_without_reading_the_rest_of_the_blob() {
        const WARNING: &str = "Keys are excluded from this export.\n";
        const DEVICE: &str = r#"{"id":"d1","eTag":"MQ==","status":"enabled","twinETag":"AAAAAAAAAAE=","properties":{"desired":{"$version":1},"reported":{"$version":1}}}"#;
        // A line that does not decode.
        let (blobs, server) = endless_blob(format!("{WARNING}{{not json\n")).await;
        let mut cost = ExportCost::default();
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            stream_export(&blobs, "b", &mut |_| Ok(()), &mut cost),
        )
        .await;
        server.abort();
        assert!(
            matches!(read, Ok(Err(ExportError::Hub(Error::Decode { .. })))),
            "{read:?}"
        );
        // A sink that refuses the first identity.
        let (blobs, server) = endless_blob(format!("{WARNING}{DEVICE}\n")).await;
        let mut seen = 0;
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            stream_export(
                &blobs,
                "b",
                &mut |_| {
                    seen += 1;
                    Err(Error::Decode {
                        what: "the sink".into(),
                        source: serde_json::from_str::<u8>("x").unwrap_err(),
                    })
                },
                &mut cost,
            ),
        )
        .await;
        server.abort();
        assert!(
            matches!(read, Ok(Err(ExportError::Hub(Error::Decode { .. })))),
            "{read:?}"
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn only_a_running_job_is_busy_and_the_daily_quota_is_told_as_it_is() {
        let answer = |status, code| Error::from_response(status, Some(code), None, b"");
        assert!(matches!(
            refused(answer(403, "JobQuotaExceeded")),
            ExportError::Busy
        ));
        let daily = refused(answer(403, "IotHubQuotaExceeded"));
        assert!(
            matches!(daily, ExportError::Hub(Error::QuotaExceeded { .. })),
            "{daily:?}"
        );
        assert!(!daily.to_string().contains("another"), "{daily}");
        let body = br#"{"Message":"ErrorCode:BlobContainerValidationError;cannot reach https://a.blob.core.windows.net/c?sv=1&sig=SECRET","ExceptionMessage":""}"#;
        let storage = refused(Error::from_response(
            400,
            Some("BlobContainerValidationError"),
            None,
            body,
        ));
        assert!(matches!(storage, ExportError::Storage(_)), "{storage:?}");
        assert!(!storage.to_string().contains("SECRET"), "{storage}");
    }

    #[test]
    fn a_message_that_quotes_the_container_url_loses_it() {
        assert_eq!(
            without_sas("cannot write to https://a.blob.core.windows.net/c?sv=1&sig=SECRET now"),
            "cannot write to <container URL> now"
        );
    }
}
