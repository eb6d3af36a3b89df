//! The blob container an export job writes to (SPEC §17): a container SAS URL, which is a secret
//! (its query string grants access to the container), and the two Blob REST calls twinops makes
//! to it: read one blob as a stream of lines, and delete it.
//!
//! The URL is kept as a [`Secret`] and shown only as its scheme, host and path with the SAS left
//! out. Storage URLs must be `https`, except on loopback (Azurite, Microsoft's storage emulator).

use std::fmt;
use std::time::Duration;

use twinops_iothub::connection_string::Secret;
use twinops_iothub::host::is_loopback;

/// A container SAS URL: `https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…`.
#[derive(Clone)]
pub(crate) struct StorageUrl {
    /// Scheme, host, port and path, without the query.
    base: String,
    /// The SAS query string, without `?`.
    sas: Secret,
}

/// What went wrong with the storage account, in words (never the SAS).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("the storage answered {status} to {what}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        what: &'static str,
        status: u16,
        code: Option<String>,
    },
    #[error("{what}: {reason}")]
    Transport { what: &'static str, reason: String },
}

impl StorageUrl {
    /// Checks a `--storage` value: an absolute `https` URL (or `http` on loopback) with a path (the
    /// container) and a SAS query holding a signature.
    pub(crate) fn parse(text: &str) -> Result<StorageUrl, String> {
        let url = reqwest::Url::parse(text.trim()).map_err(|e| {
            format!("--storage is not a URL ({e}); pass a container SAS URL such as https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…")
        })?;
        let host = url.host_str().unwrap_or_default().to_string();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(format!(
                    "--storage must be an https URL (http is allowed on loopback only, for Azurite); got http://{host}/…"
                ));
            }
            other => return Err(format!("--storage must be an https URL, not {other}:")),
        }
        let path = url.path().trim_end_matches('/').to_string();
        if path.is_empty() {
            return Err(
                "--storage names no container: the URL's path must be the container, e.g. https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…"
                    .into(),
            );
        }
        let query = url.query().unwrap_or_default().to_string();
        if !query.split('&').any(|p| p.starts_with("sig=")) {
            return Err(
                "--storage holds no SAS signature (`sig=`): pass a container SAS URL with read, write, list and delete permissions"
                    .into(),
            );
        }
        let base = match url.port() {
            Some(p) => format!("{}://{host}:{p}{path}", url.scheme()),
            None => format!("{}://{host}{path}", url.scheme()),
        };
        Ok(StorageUrl {
            base,
            sas: Secret::new(query),
        })
    }

    /// The container URL with its SAS, for the job's `outputBlobContainerUri`.
    pub(crate) fn container_uri(&self) -> Secret {
        Secret::new(format!("{}?{}", self.base, self.sas.expose()))
    }

    /// A blob of the container, with the SAS.
    fn blob(&self, name: &str) -> Secret {
        Secret::new(format!("{}/{name}?{}", self.base, self.sas.expose()))
    }
}

/// Without the SAS.
impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SAS not shown)", self.base)
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({self})")
    }
}

/// A client of the storage account's Blob REST API.
pub(crate) struct Blobs {
    http: reqwest::Client,
    url: StorageUrl,
}

/// The error code the Blob service puts in its `x-ms-error-code` header.
fn error_code(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A transport error in words, without the URL (which holds the SAS).
fn transport(what: &'static str, e: &reqwest::Error) -> StorageError {
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    StorageError::Transport {
        what,
        reason: reason.into(),
    }
}

impl Blobs {
    pub(crate) fn new(url: StorageUrl) -> anyhow::Result<Blobs> {
        crate::hub::install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("twinops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the storage client: {e}"))?;
        Ok(Blobs { http, url })
    }

    pub(crate) fn url(&self) -> &StorageUrl {
        &self.url
    }

    /// Streams blob `name` line by line into `each` (the whole blob is never held: a line at a
    /// time, plus what one chunk of the answer holds); the bytes read. The first error of `each`
    /// ends the read: the rest of the blob is not downloaded.
    pub(crate) async fn lines<E: From<StorageError>>(
        &self,
        name: &str,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut r = self
            .http
            .get(self.url.blob(name).expose())
            .header("x-ms-version", "2021-08-06")
            .send()
            .await
            .map_err(|e| transport("reading the export blob", &e))?;
        if !r.status().is_success() {
            return Err(StorageError::Status {
                what: "reading the export blob",
                status: r.status().as_u16(),
                code: error_code(&r),
            }
            .into());
        }
        let mut line: Vec<u8> = Vec::new();
        let mut bytes = 0u64;
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| transport("reading the export blob", &e))?
        {
            bytes += chunk.len() as u64;
            for part in chunk.split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(part);
                if line.ends_with(b"\n") {
                    each(&line[..line.len() - 1])?;
                    line.clear();
                }
            }
        }
        if !line.is_empty() {
            each(&line)?;
        }
        Ok(bytes)
    }

    /// Deletes blob `name` (gone already is fine).
    pub(crate) async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let r = self
            .http
            .delete(self.url.blob(name).expose())
            .header("x-ms-version", "2021-08-06")
            .send()
            .await
            .map_err(|e| transport("deleting the export blob", &e))?;
        if r.status().is_success() || r.status().as_u16() == 404 {
            return Ok(());
        }
        Err(StorageError::Status {
            what: "deleting the export blob",
            status: r.status().as_u16(),
            code: error_code(&r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_url_is_checked_and_never_shows_its_sas() {
        let u = StorageUrl::parse(
            "https://acct.blob.core.windows.net/exports?sv=2021&sp=rwdl&sig=SECRET%2Fsig",
        )
        .unwrap();
        assert_eq!(
            u.to_string(),
            "https://acct.blob.core.windows.net/exports (SAS not shown)"
        );
        assert!(!format!("{u:?}").contains("SECRET"));
        assert!(u.container_uri().expose().ends_with("sig=SECRET%2Fsig"));
        // Azurite on loopback may be http; other http is refused, and a URL without a SAS too.
        assert!(StorageUrl::parse("http://127.0.0.1:10000/devstoreaccount1/c?sig=x").is_ok());
        assert!(
            StorageUrl::parse("http://acct.blob.core.windows.net/c?sig=x")
                .unwrap_err()
                .contains("https")
        );
        assert!(
            StorageUrl::parse("https://acct.blob.core.windows.net/c")
                .unwrap_err()
                .contains("sig=")
        );
        assert!(
            StorageUrl::parse("https://acct.blob.core.windows.net/?sig=x")
                .unwrap_err()
                .contains("container")
        );
        assert!(
            !StorageUrl::parse("not a url sig=SECRET")
                .unwrap_err()
                .contains("SECRET")
        );
    }
}
