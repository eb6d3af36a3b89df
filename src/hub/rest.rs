//! IoT Hub's service REST API as wire documents: HTTPS calls with SAS (or bearer) auth, typed
//! errors, retries by policy, pacing and request counting per operation class, and the one query
//! paging loop. Conditional requests take an [`ETag`], which cannot be empty, so `If-Match: ""`
//! cannot be sent.
//!
//! This is the protocol, not the model: [`super::Hub`] builds on it and is what the rest of
//! twinops calls. It is public for the client's own integration tests and benchmarks.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::pace::Pacer;
use super::{Backoff, Error, Permission};
use futures::Stream;
use twinops_core::model::ETag;

use twinops_iothub::connection_string::{Secret, ServiceConnectionString};
use twinops_iothub::wire::{
    BulkRegistryOperationResult, Configuration, Device, ExportImportDevice, Module,
    QuerySpecification, Twin, quote_etag,
};
use twinops_iothub::{
    API_VERSION, CONTINUATION_HEADER, ERROR_CODE_HEADER, ITEM_TYPE_HEADER, MAX_ITEM_COUNT_HEADER,
    sas,
};

pub(super) use twinops_iothub::quota::OpClass;

/// The quoted `If-Match` header of an etag (never empty: [`ETag`] cannot be).
fn if_match(etag: &ETag) -> (&'static str, String) {
    ("If-Match", quote_etag(etag.as_str()))
}

/// Requests sent, by class (every attempt counts, retries included).
#[derive(Debug, Default)]
pub struct RequestCounts([AtomicU64; OpClass::ALL.len()]);

impl RequestCounts {
    fn add(&self, class: OpClass) {
        self.0[class.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts by class, classes with no request left out.
    pub fn snapshot(&self) -> std::collections::BTreeMap<OpClass, u64> {
        OpClass::ALL
            .into_iter()
            .map(|c| (c, self.0[c.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// A policy key: a SAS token is signed per request (one-hour TTL, refreshed).
    Sas { key_name: String, key: Secret },
    /// An Entra ID access token.
    Bearer(Secret),
}

/// Client settings beyond the hub's address.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Extra CA certificate (PEM) to trust, e.g. the emulator's.
    pub ca_pem: Option<Vec<u8>>,
    pub backoff: Backoff,
    /// Per-request timeout (default 60 s).
    pub timeout: Option<Duration>,
}

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn seg(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One page of query results.
#[derive(Debug, Clone)]
pub struct QueryPage {
    pub items: Vec<Value>,
    pub item_type: Option<String>,
    pub continuation: Option<String>,
}

/// A client of one hub's REST API.
pub struct Rest {
    http: reqwest::Client,
    host: String,
    credentials: Credentials,
    token: std::sync::Mutex<Option<(Secret, u64)>>,
    backoff: Backoff,
    counts: Arc<RequestCounts>,
    pace: Option<Arc<Pacer>>,
    notify: Option<Arc<dyn Fn(String) + Send + Sync>>,
}

/// Installs the ring crypto provider for rustls once per process.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Rest {
    /// A client for the hub a connection string names.
    pub fn new(
        cs: &ServiceConnectionString,
        bearer: Option<Secret>,
        options: ClientOptions,
    ) -> anyhow::Result<Rest> {
        install_crypto();
        let credentials = match (bearer, &cs.key_name, &cs.key) {
            (Some(t), _, _) => Credentials::Bearer(t),
            (None, Some(n), Some(k)) => Credentials::Sas {
                key_name: n.clone(),
                key: k.clone(),
            },
            _ => anyhow::bail!(
                "the connection string has no SharedAccessKeyName/SharedAccessKey; use --auth token with TWINOPS_ACCESS_TOKEN for Entra ID"
            ),
        };
        let mut b = reqwest::Client::builder()
            .timeout(options.timeout.unwrap_or(Duration::from_secs(60)))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("twinops/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("reading the CA certificate: {e}"))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let http = b
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTPS client: {e}"))?;
        Ok(Rest {
            http,
            host: cs.host.clone(),
            credentials,
            token: std::sync::Mutex::new(None),
            backoff: options.backoff,
            counts: Arc::new(RequestCounts::default()),
            pace: None,
            notify: None,
        })
    }

    /// Reads a PEM file for [`ClientOptions::ca_pem`].
    pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading CA certificate `{}`: {e}", path.display()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .filter(Result::is_ok)
            .count();
        if certificates == 0 {
            anyhow::bail!(
                "--ca-cert `{}` holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block); pass the CA certificate the hub's TLS certificate is signed with (the emulator prints its path as `ca certificate:`)",
                path.display()
            );
        }
        Ok(pem)
    }

    /// Where retry progress goes (a line of talk each), so that a hub that does not answer is
    /// said within seconds instead of silence.
    pub fn set_notify(&mut self, notify: Arc<dyn Fn(String) + Send + Sync>) {
        self.notify = Some(notify);
    }

    /// Paces requests per class from now on.
    pub fn set_pace(&mut self, pacer: Arc<Pacer>) {
        self.pace = Some(pacer);
    }

    pub fn pacer(&self) -> Option<&Arc<Pacer>> {
        self.pace.as_ref()
    }

    /// The host name (with port) this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn counts(&self) -> &Arc<RequestCounts> {
        &self.counts
    }

    fn authorization(&self) -> Result<String, Error> {
        match &self.credentials {
            Credentials::Bearer(t) => Ok(format!("Bearer {}", t.expose())),
            Credentials::Sas { key_name, key } => {
                let now = now_secs();
                let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((t, exp)) = cached.as_ref()
                    && *exp > now + 300
                {
                    return Ok(t.expose().to_string());
                }
                let exp = now + 3600;
                let t = sas::sign(&self.host, key, Some(key_name), exp).map_err(Error::Sign)?;
                let s = t.expose().to_string();
                *cached = Some((t, exp));
                Ok(s)
            }
        }
    }

    /// Sends one request with retries; returns the successful response's headers and body.
    async fn call(
        &self,
        class: OpClass,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        weight: u32,
    ) -> Result<(StatusCode, header::HeaderMap, Vec<u8>), Error> {
        self.call_accepting(class, method, path, headers, body, weight, None)
            .await
    }

    /// [`Hub::call`], also returning the body of one non-success status (bulk answers 400 with results).
    #[allow(clippy::too_many_arguments)]
    async fn call_accepting(
        &self,
        class: OpClass,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        weight: u32,
        also_ok: Option<StatusCode>,
    ) -> Result<(StatusCode, header::HeaderMap, Vec<u8>), Error> {
        let url = format!("https://{}{}?api-version={}", self.host, path, API_VERSION);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(p) = &self.pace {
                p.acquire(class, weight).await;
            }
            self.counts.add(class);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(header::AUTHORIZATION, self.authorization()?)
                .header(header::ACCEPT, "application/json");
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &body {
                req = req
                    .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(b.clone());
            }
            tracing::debug!(%method, path, attempt, "request");
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let hdrs = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(bytes) if status.is_success() || Some(status) == also_ok => {
                            return Ok((status, hdrs, bytes.to_vec()));
                        }
                        Ok(bytes) => {
                            let code = hdrs.get(ERROR_CODE_HEADER).and_then(|v| v.to_str().ok());
                            let retry_after = hdrs
                                .get(header::RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(Duration::from_secs);
                            Error::from_response(status.as_u16(), code, retry_after, &bytes)
                        }
                        Err(e) => Error::Transport {
                            what: "reading the answer failed",
                            source: e,
                        },
                    }
                }
                Err(e) if is_tls(&e) => return Err(Error::Tls(e)),
                Err(e) => Error::Transport {
                    what: transport_kind(&e),
                    source: e,
                },
            };
            let result = match result {
                Error::Unauthorized { code, message, .. } => Error::Unauthorized {
                    code,
                    message,
                    needs: Some(Permission {
                        permission: needed_permission(class, &method),
                        policy: match &self.credentials {
                            Credentials::Sas { key_name, .. } => Some(key_name.clone()),
                            Credentials::Bearer(_) => None,
                        },
                    }),
                },
                other => other,
            };
            if matches!(result, Error::Throttled { .. })
                && let Some(p) = &self.pace
            {
                p.throttled(class);
            }
            let jitter = rand::random::<f64>();
            match self.backoff.delay(attempt, &result, jitter) {
                Some(wait) => {
                    tracing::info!(%method, path, attempt, error = %result.chain(), wait_ms = wait.as_millis() as u64, "retrying");
                    if let Some(notify) = &self.notify {
                        notify(format!(
                            "{}: retrying in {:.1}s (attempt {} of {})",
                            result,
                            wait.as_secs_f64(),
                            attempt + 1,
                            self.backoff.max_attempts
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
                None => return Err(result),
            }
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        class: OpClass,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|source| Error::Encode {
                what: format!("a request to {path}"),
                source,
            })?;
        let (_, _, bytes) = self.call(class, method, path, headers, body, 1).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: format!("the hub's answer to {path}"),
            source,
        })
    }

    // ---- device identities

    pub async fn get_device(&self, id: &str) -> Result<Device, Error> {
        let path = format!("/devices/{}", seg(id));
        self.json(OpClass::RegistryRead, Method::GET, &path, &[], None::<&()>)
            .await
    }

    /// Creates a device (no `If-Match`: create only; 409 when it exists).
    pub async fn create_device(&self, device: &Device) -> Result<Device, Error> {
        let path = format!("/devices/{}", seg(&device.device_id));
        self.json(
            OpClass::RegistryWrite,
            Method::PUT,
            &path,
            &[],
            Some(device),
        )
        .await
    }

    /// Updates a device under `If-Match`; the body must echo the current authentication.
    pub async fn update_device(&self, device: &Device, etag: &ETag) -> Result<Device, Error> {
        let path = format!("/devices/{}", seg(&device.device_id));
        let h = [if_match(etag)];
        self.json(OpClass::RegistryWrite, Method::PUT, &path, &h, Some(device))
            .await
    }

    pub async fn delete_device(&self, id: &str, etag: &ETag) -> Result<(), Error> {
        let path = format!("/devices/{}", seg(id));
        let h = [if_match(etag)];
        self.call(OpClass::RegistryWrite, Method::DELETE, &path, &h, None, 1)
            .await
            .map(|_| ())
    }

    // ---- module identities

    pub async fn get_module(&self, device: &str, module: &str) -> Result<Module, Error> {
        let path = format!("/devices/{}/modules/{}", seg(device), seg(module));
        self.json(OpClass::RegistryRead, Method::GET, &path, &[], None::<&()>)
            .await
    }

    pub async fn list_modules(&self, device: &str) -> Result<Vec<Module>, Error> {
        let path = format!("/devices/{}/modules", seg(device));
        self.json(OpClass::RegistryRead, Method::GET, &path, &[], None::<&()>)
            .await
    }

    pub async fn create_module(&self, module: &Module) -> Result<Module, Error> {
        let path = format!(
            "/devices/{}/modules/{}",
            seg(&module.device_id),
            seg(&module.module_id)
        );
        self.json(
            OpClass::RegistryWrite,
            Method::PUT,
            &path,
            &[],
            Some(module),
        )
        .await
    }

    pub async fn update_module(&self, module: &Module, etag: &ETag) -> Result<Module, Error> {
        let path = format!(
            "/devices/{}/modules/{}",
            seg(&module.device_id),
            seg(&module.module_id)
        );
        let h = [if_match(etag)];
        self.json(OpClass::RegistryWrite, Method::PUT, &path, &h, Some(module))
            .await
    }

    pub async fn delete_module(
        &self,
        device: &str,
        module: &str,
        etag: &ETag,
    ) -> Result<(), Error> {
        let path = format!("/devices/{}/modules/{}", seg(device), seg(module));
        let h = [if_match(etag)];
        self.call(OpClass::RegistryWrite, Method::DELETE, &path, &h, None, 1)
            .await
            .map(|_| ())
    }

    // ---- twins

    fn twin_path(device: &str, module: Option<&str>) -> String {
        match module {
            Some(m) => format!("/twins/{}/modules/{}", seg(device), seg(m)),
            None => format!("/twins/{}", seg(device)),
        }
    }

    pub async fn get_twin(&self, device: &str, module: Option<&str>) -> Result<Twin, Error> {
        let path = Self::twin_path(device, module);
        self.json(OpClass::TwinRead, Method::GET, &path, &[], None::<&()>)
            .await
    }

    /// Merge-patches tags and desired properties under `If-Match: "<etag>"`.
    pub async fn patch_twin(
        &self,
        device: &str,
        module: Option<&str>,
        patch: &Value,
        etag: &ETag,
    ) -> Result<Twin, Error> {
        let path = Self::twin_path(device, module);
        let h = [if_match(etag)];
        self.json(OpClass::TwinWrite, Method::PATCH, &path, &h, Some(patch))
            .await
    }

    /// Replaces tags and desired properties under `If-Match: "<etag>"`.
    pub async fn replace_twin(
        &self,
        device: &str,
        module: Option<&str>,
        twin: &Value,
        etag: &ETag,
    ) -> Result<Twin, Error> {
        let path = Self::twin_path(device, module);
        let h = [if_match(etag)];
        self.json(OpClass::TwinWrite, Method::PUT, &path, &h, Some(twin))
            .await
    }

    // ---- configurations

    /// `GET /configurations` (no paging on IoT Hub; a hub holds at most 100).
    pub async fn list_configurations(&self) -> Result<Vec<Configuration>, Error> {
        self.json(
            OpClass::Configuration,
            Method::GET,
            "/configurations",
            &[],
            None::<&()>,
        )
        .await
    }

    /// `GET /configurations/{id}`.
    pub async fn get_configuration(&self, id: &str) -> Result<Configuration, Error> {
        let path = format!("/configurations/{}", seg(id));
        self.json(OpClass::Configuration, Method::GET, &path, &[], None::<&()>)
            .await
    }

    /// `DELETE /configurations/{id}` under the etag it was planned against.
    pub async fn delete_configuration(&self, id: &str, etag: &ETag) -> Result<(), Error> {
        let path = format!("/configurations/{}", seg(id));
        let h = [if_match(etag)];
        self.call(OpClass::Configuration, Method::DELETE, &path, &h, None, 1)
            .await
            .map(|_| ())
    }

    pub async fn put_configuration(
        &self,
        config: &Configuration,
        etag: Option<&ETag>,
    ) -> Result<Configuration, Error> {
        let path = format!("/configurations/{}", seg(&config.id));
        let h: Vec<(&str, String)> = etag.map(if_match).into_iter().collect();
        self.json(OpClass::Configuration, Method::PUT, &path, &h, Some(config))
            .await
    }

    // ---- import/export jobs

    /// A request of the jobs API (`POST /jobs/create`, `GET /jobs/{id}`, `DELETE /jobs/{id}`):
    /// the job's record, or a default one for an empty answer (a cancel).
    pub async fn job(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<twinops_iothub::wire::JobProperties, Error> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|source| Error::Encode {
                what: "a job".into(),
                source,
            })?;
        let (_, _, answer) = self
            .call(OpClass::Jobs, method, path, &[], bytes, 1)
            .await?;
        if answer.is_empty() {
            return Ok(Default::default());
        }
        serde_json::from_slice(&answer).map_err(|source| Error::Decode {
            what: "a job record".into(),
            source,
        })
    }

    // ---- query and bulk

    /// One page of `POST /devices/query`. Continuations must repeat the same query.
    pub async fn query_page(
        &self,
        sql: &str,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<QueryPage, Error> {
        let mut h = vec![(MAX_ITEM_COUNT_HEADER, page_size.to_string())];
        if let Some(c) = continuation {
            h.push((CONTINUATION_HEADER, c.to_string()));
        }
        let body = serde_json::to_vec(&QuerySpecification {
            query: sql.to_string(),
        })
        .map_err(|source| Error::Encode {
            what: "a query".into(),
            source,
        })?;
        let (_, hdrs, bytes) = self
            .call(
                OpClass::Query,
                Method::POST,
                "/devices/query",
                &h,
                Some(body),
                1,
            )
            .await?;
        let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: "a query page".into(),
            source,
        })?;
        let text = |name: &str| {
            hdrs.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(QueryPage {
            items,
            item_type: text(ITEM_TYPE_HEADER),
            continuation: text(CONTINUATION_HEADER).filter(|c| !c.is_empty()),
        })
    }

    /// A query's pages, first to last: the one paging loop (each continuation repeats the query).
    pub fn pages<'a>(
        &'a self,
        sql: &'a str,
        page_size: usize,
    ) -> impl Stream<Item = Result<Vec<Value>, Error>> + 'a {
        // `None`: done; `Some(None)`: the first page; `Some(Some(c))`: the page after `c`.
        futures::stream::try_unfold(Some(None::<String>), move |next| async move {
            let Some(cont) = next else {
                return Ok(None);
            };
            let page = self.query_page(sql, page_size, cont.as_deref()).await?;
            Ok(Some((page.items, page.continuation.map(Some))))
        })
    }

    /// Runs a query to its last page, handing each page's rows to `each`.
    pub async fn query_all(
        &self,
        sql: &str,
        page_size: usize,
        mut each: impl FnMut(Vec<Value>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        use futures::TryStreamExt;
        let pages = self.pages(sql, page_size);
        futures::pin_mut!(pages);
        while let Some(rows) = pages.try_next().await? {
            each(rows)?;
        }
        Ok(())
    }

    /// `POST /devices` with at most 100 rows; 200 and 400 both carry per-row results.
    pub async fn bulk(
        &self,
        rows: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, Error> {
        let body = serde_json::to_vec(rows).map_err(|source| Error::Encode {
            what: "bulk rows".into(),
            source,
        })?;
        let weight = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let (status, hdrs, bytes) = self
            .call_accepting(
                OpClass::Bulk,
                Method::POST,
                "/devices",
                &[],
                Some(body),
                weight,
                Some(StatusCode::BAD_REQUEST),
            )
            .await?;
        match serde_json::from_slice::<BulkRegistryOperationResult>(&bytes) {
            Ok(r) => Ok(r),
            Err(_) if status == StatusCode::BAD_REQUEST => {
                let code = hdrs.get(ERROR_CODE_HEADER).and_then(|v| v.to_str().ok());
                Err(Error::from_response(400, code, None, &bytes))
            }
            Err(source) => Err(Error::Decode {
                what: "a bulk result".into(),
                source,
            }),
        }
    }
}

/// The IoT Hub permission a request of this class needs (twins and queries need ServiceConnect).
fn needed_permission(class: OpClass, method: &Method) -> &'static str {
    match class {
        OpClass::TwinRead | OpClass::TwinWrite | OpClass::Query => "ServiceConnect",
        // Export jobs read the registry; which permission IoT Hub asks of them is not documented.
        OpClass::RegistryRead | OpClass::Jobs => "RegistryRead",
        OpClass::Configuration if method == Method::GET => "RegistryRead",
        OpClass::RegistryWrite | OpClass::Bulk | OpClass::Configuration => "RegistryWrite",
    }
}

/// Whether a request failed in the TLS handshake (found by the error's type, not its text).
fn is_tls(e: &reqwest::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| super::error::find_rustls(s).is_some())
}

/// What kind of transport failure this was, for the message; the cause stays the error's source.
fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    }
}
