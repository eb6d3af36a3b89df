//! The Azure Blob REST API as an export job uses it, with a container SAS URL: list the container,
//! put, read and delete a blob, and write a block blob in blocks (Put Block, then Put Block List).
//! Requests carry the SAS's query string as given and `x-ms-version`; nothing else authenticates.
//!
//! A SAS URL is a secret: it is never logged, echoed or kept, and errors name the operation, the
//! status and the storage error code, never the URL (reqwest's errors are stripped of theirs).
//! Storage is reached over HTTPS; plain HTTP only on loopback (Azurite, Microsoft's storage
//! emulator, serves it there).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use twinops_iothub::host::is_loopback;

/// The Blob service version the requests ask for (block IDs, block lists and SAS rules of it).
const STORAGE_VERSION: &str = "2021-08-06";

/// Characters kept as they are in a blob name's path segments (`/` separates segments).
const NAME_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A blob container addressed by a SAS URL: where it is, and the SAS's query string.
#[derive(Clone)]
pub(crate) struct Container {
    /// `scheme://host[:port]/path` of the container, without a trailing `/`.
    base: String,
    /// The SAS query string, as given (already percent-encoded).
    sas: String,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container").finish_non_exhaustive()
    }
}

impl Container {
    /// Reads a container SAS URL. The reason it is refused never quotes the URL.
    pub(crate) fn parse(uri: &str) -> Result<Container, String> {
        let url =
            Url::parse(uri.trim()).map_err(|_| "the container URI is not a URL".to_string())?;
        let host = url
            .host_str()
            .ok_or_else(|| "the container URI names no host".to_string())?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => {
                return Err(
                    "the container URI must use https (plain http only on loopback)".to_string(),
                );
            }
            _ => return Err("the container URI must be an https URL".to_string()),
        }
        let sas = url.query().unwrap_or_default().to_string();
        if sas.is_empty() {
            return Err(
                "the container URI carries no SAS token (keyBased authentication needs one)"
                    .to_string(),
            );
        }
        let path = url.path().trim_end_matches('/');
        if path.is_empty() {
            return Err("the container URI names no container".to_string());
        }
        // `host_str` keeps an IPv6 address in brackets.
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(Container {
            base: format!("{}://{host}{port}{path}", url.scheme()),
            sas,
        })
    }

    fn container_url(&self, params: &str) -> String {
        format!("{}?{params}&{}", self.base, self.sas)
    }

    fn blob_url(&self, name: &str, params: &str) -> String {
        let encoded: Vec<String> = name
            .split('/')
            .map(|s| utf8_percent_encode(s, NAME_SEGMENT).to_string())
            .collect();
        let sep = if params.is_empty() { "" } else { "&" };
        format!(
            "{}/{}?{params}{sep}{}",
            self.base,
            encoded.join("/"),
            self.sas
        )
    }
}

/// A storage request that failed: which operation, and what the store answered (or that it could
/// not be reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) operation: String,
    pub(crate) status: Option<u16>,
    /// `x-ms-error-code` (`AuthenticationFailed`, `ContainerNotFound`, ...).
    pub(crate) code: Option<String>,
    /// The transport's reason when there was no answer.
    pub(crate) transport: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.code, &self.transport) {
            (Some(s), Some(c), _) => write!(f, "{} answered {s} {c}", self.operation),
            (Some(s), None, _) => write!(f, "{} answered {s}", self.operation),
            (None, _, Some(t)) => write!(f, "{} failed: {t}", self.operation),
            (None, _, None) => write!(f, "{} failed", self.operation),
        }
    }
}

/// An HTTP client for blob storage.
#[derive(Clone)]
pub(crate) struct Blobs {
    http: reqwest::Client,
}

impl Blobs {
    pub(crate) fn new() -> anyhow::Result<Blobs> {
        // The process's TLS provider: the same one the twinops client installs.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("twinops-emulator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the blob storage client: {e}"))?;
        Ok(Blobs { http })
    }

    async fn send(
        &self,
        operation: &str,
        method: Method,
        url: String,
        headers: &[(&str, String)],
        body: Vec<u8>,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, Failure> {
        let method_is_put = method == Method::PUT;
        let mut req = self
            .http
            .request(method, url)
            .header("x-ms-version", STORAGE_VERSION)
            .header("x-ms-date", httpdate_now());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if method_is_put {
            // The Blob service requires a length on every write, an empty one included (which
            // the HTTP client would leave out).
            req = req.header(reqwest::header::CONTENT_LENGTH, body.len());
        }
        let resp = req.body(body).send().await.map_err(|e| Failure {
            operation: operation.to_string(),
            status: None,
            code: None,
            transport: Some(e.without_url().to_string()),
        })?;
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        Err(Failure {
            operation: operation.to_string(),
            status: Some(resp.status().as_u16()),
            code: resp
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            transport: None,
        })
    }

    /// Checks that the container can be listed, deleted from, written and read, as an export
    /// needs (IoT Hub asks a container SAS for read, write, delete and list): lists it, deletes
    /// the blob `probe` before it exists (the store checks the permission first, so 404 means
    /// allowed), then writes, reads and deletes it. A refusal leaves nothing behind.
    pub(crate) async fn validate(&self, c: &Container, probe: &str) -> Result<(), Failure> {
        self.send(
            "listing the container",
            Method::GET,
            c.container_url("restype=container&comp=list&maxresults=1"),
            &[],
            Vec::new(),
            &[StatusCode::OK],
        )
        .await?;
        self.delete(c, probe, "deleting from the container").await?;
        self.send(
            "writing to the container",
            Method::PUT,
            c.blob_url(probe, ""),
            &[("x-ms-blob-type", "BlockBlob".to_string())],
            Vec::new(),
            &[StatusCode::CREATED],
        )
        .await?;
        self.send(
            "reading from the container",
            Method::HEAD,
            c.blob_url(probe, ""),
            &[],
            Vec::new(),
            &[StatusCode::OK],
        )
        .await?;
        self.delete(c, probe, "deleting from the container").await
    }

    /// Deletes a blob (and its snapshots); one that does not exist is no failure.
    pub(crate) async fn delete(
        &self,
        c: &Container,
        name: &str,
        operation: &str,
    ) -> Result<(), Failure> {
        self.send(
            operation,
            Method::DELETE,
            c.blob_url(name, ""),
            &[("x-ms-delete-snapshots", "include".to_string())],
            Vec::new(),
            &[StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
        )
        .await
        .map(drop)
    }

    /// Stages block number `n` of blob `name` (Put Block) and returns its block ID.
    pub(crate) async fn put_block(
        &self,
        c: &Container,
        name: &str,
        n: u32,
        bytes: Vec<u8>,
    ) -> Result<String, Failure> {
        let id = block_id(n);
        let encoded = utf8_percent_encode(&id, NON_ALPHANUMERIC).to_string();
        self.send(
            &format!("writing block {n} of the blob"),
            Method::PUT,
            c.blob_url(name, &format!("comp=block&blockid={encoded}")),
            &[],
            bytes,
            &[StatusCode::CREATED],
        )
        .await?;
        Ok(id)
    }

    /// Commits the staged blocks `ids`, in order, as blob `name` (Put Block List).
    pub(crate) async fn put_block_list(
        &self,
        c: &Container,
        name: &str,
        ids: &[String],
    ) -> Result<(), Failure> {
        self.send(
            "committing the blob",
            Method::PUT,
            c.blob_url(name, "comp=blocklist"),
            &[(
                "x-ms-blob-content-type",
                "text/plain; charset=utf-8".to_string(),
            )],
            block_list_xml(ids).into_bytes(),
            &[StatusCode::CREATED],
        )
        .await
        .map(drop)
    }
}

/// Block IDs of one blob must all have the same length: base64 of a zero-padded number.
fn block_id(n: u32) -> String {
    B64.encode(format!("block-{n:010}"))
}

fn block_list_xml(ids: &[String]) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
    for id in ids {
        // Base64 holds no character XML needs escaped.
        xml.push_str("<Latest>");
        xml.push_str(id);
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    xml
}

/// Now in the RFC 1123 form `x-ms-date` takes (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_sas_url_splits_into_where_and_the_token() {
        let c =
            Container::parse("https://acct.blob.core.windows.net/exports?sv=2021-08-06&sig=a%2Bb")
                .unwrap();
        assert_eq!(
            c.blob_url("devices.txt", "comp=block&blockid=x"),
            "https://acct.blob.core.windows.net/exports/devices.txt?comp=block&blockid=x&sv=2021-08-06&sig=a%2Bb"
        );
        assert_eq!(
            c.container_url("restype=container&comp=list"),
            "https://acct.blob.core.windows.net/exports?restype=container&comp=list&sv=2021-08-06&sig=a%2Bb"
        );
        let azurite = Container::parse("http://127.0.0.1:10000/devstoreaccount1/c/?sig=x").unwrap();
        assert_eq!(
            azurite.blob_url("runs/a b.txt", ""),
            "http://127.0.0.1:10000/devstoreaccount1/c/runs/a%20b.txt?sig=x"
        );
    }

    #[test]
    fn plain_http_is_for_loopback_only_and_a_sas_is_required() {
        assert!(Container::parse("http://[::1]:9/acct/c?sig=x").is_ok());
        assert!(Container::parse("http://localhost:9/acct/c?sig=x").is_ok());
        let refusals = [
            "http://storage.example/acct/c?sig=x",
            "https://acct.blob.core.windows.net/c",
            "https://acct.blob.core.windows.net/?sig=x",
            "ftp://acct/c?sig=x",
            "not a url",
        ];
        for uri in refusals {
            let e = Container::parse(uri).unwrap_err();
            assert!(!e.contains("sig=x") && !e.contains("example"), "{e}");
        }
    }

    #[test]
    fn a_container_never_shows_its_token() {
        let c = Container::parse("https://a.blob.core.windows.net/c?sig=secret").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn block_ids_have_one_length_and_lists_keep_their_order() {
        assert_eq!(block_id(0).len(), block_id(u32::MAX).len());
        let xml = block_list_xml(&[block_id(0), block_id(1)]);
        assert!(xml.find(&block_id(0)) < xml.find(&block_id(1)), "{xml}");
        assert!(xml.starts_with("<?xml") && xml.ends_with("</BlockList>"));
    }

    #[test]
    fn failures_say_what_the_store_answered() {
        let f = Failure {
            operation: "listing the container".into(),
            status: Some(403),
            code: Some("AuthenticationFailed".into()),
            transport: None,
        };
        assert_eq!(
            f.to_string(),
            "listing the container answered 403 AuthenticationFailed"
        );
        assert!(httpdate_now().ends_with(" GMT"));
    }
}
