//! Azurite, Microsoft's storage emulator, as the real blob store that export jobs write to: both
//! integration-test packages compile this file (this package's `support/mod.rs`, the root
//! package's through `#[path]`, as `hub.rs`).
//!
//! [`Azurite::start`] runs `scripts/azurite.sh` (which installs the pinned `azurite` npm package
//! under `target/` on first use, and fails loudly when it cannot), then starts Azurite's blob
//! service on a free loopback port (`--blobPort 0`; the port is read from its startup line) with a
//! temporary location and telemetry off; the process ends when the handle drops. Requests are
//! authorized as Azure Storage authorizes them: SAS tokens signed here with Azurite's well-known
//! development account key (HMAC-SHA256 over the Blob service's string-to-sign, version
//! 2021-08-06): an account SAS for the test's own calls, container SAS URLs for the hub.
// Each package's tests use a part of this file: what one does not use is not dead.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Azurite's development account (the documented well-known name and key; no secret).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Blob service version the SAS tokens are signed for.
const SAS_VERSION: &str = "2021-08-06";

/// How long Azurite may take to install (first use) and to start on a loaded machine.
const STARTUP: Duration = Duration::from_secs(120);

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint (path style).
    pub endpoint: String,
    client: reqwest::Client,
    _location: tempfile::TempDir,
}

/// The repository root: the nearest ancestor of this package that holds `scripts/azurite.sh`.
fn repo() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("scripts/azurite.sh").is_file())
        .unwrap_or_else(|| panic!("no scripts/azurite.sh above {}", here.display()))
        .to_path_buf()
}

/// Installs Azurite (idempotent) and returns the blob service's entry point.
fn install() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/azurite.sh"))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/azurite.sh: {e}"));
    assert!(
        out.status.success(),
        "scripts/azurite.sh failed (is the npm registry reachable?):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("scripts/azurite.sh prints the entry point")
            .trim(),
    )
}

impl Azurite {
    /// Starts a blob service of its own, on a free port, with an empty temporary location.
    pub fn start() -> Azurite {
        let entry = install();
        let location = tempfile::tempdir().expect("a temporary location");
        let mut child = Command::new("node")
            .arg(&entry)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(location.path())
            .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting Azurite ({}): {e}", entry.display()));
        let stdout = child.stdout.take().expect("Azurite's stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the startup line, then keeps draining stdout so Azurite never blocks on it.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("successfully listens on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(STARTUP) {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Azurite did not say where it listens within {STARTUP:?}: {e}");
            }
        };
        // The client's TLS needs a process-wide provider, though Azurite is plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Azurite {
            child,
            endpoint: format!("{url}/{ACCOUNT}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            _location: location,
        }
    }

    /// An account SAS (all blob permissions, an hour) for the test's own storage calls.
    fn account_sas(&self) -> String {
        let (permissions, services, types, expiry) = ("rwdlac", "b", "sco", expiry());
        let to_sign = [
            ACCOUNT,
            permissions,
            services,
            types,
            "",
            &expiry,
            "",
            "",
            SAS_VERSION,
            "",
            "",
        ]
        .join("\n");
        format!(
            "sv={SAS_VERSION}&ss={services}&srt={types}&sp={permissions}&se={}&sig={}",
            encode(&expiry),
            encode(&sign(ACCOUNT_KEY, &to_sign))
        )
    }

    /// Creates a container.
    pub async fn create_container(&self, name: &str) {
        let url = format!(
            "{}/{name}?restype=container&{}",
            self.endpoint,
            self.account_sas()
        );
        let resp = self.client.put(url).send().await.expect("create container");
        assert_eq!(resp.status().as_u16(), 201, "creating container {name}");
    }

    /// A container SAS URL (a service SAS, `sr=c`) with `permissions` (e.g. `racwdl`), valid for
    /// an hour: what a hub is given as `outputBlobContainerUri`.
    pub fn container_sas_url(&self, container: &str, permissions: &str) -> String {
        self.container_sas_url_signed_with(container, permissions, ACCOUNT_KEY)
    }

    /// [`Azurite::container_sas_url`] signed with another key (a SAS the store refuses).
    pub fn container_sas_url_signed_with(
        &self,
        container: &str,
        permissions: &str,
        key: &str,
    ) -> String {
        let expiry = expiry();
        let resource = format!("/blob/{ACCOUNT}/{container}");
        // sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, encryption scope,
        // rscc, rscd, rsce, rscl, rsct.
        let to_sign = [
            permissions,
            "",
            &expiry,
            &resource,
            "",
            "",
            "",
            SAS_VERSION,
            "c",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        format!(
            "{}/{container}?sv={SAS_VERSION}&sr=c&sp={permissions}&se={}&sig={}",
            self.endpoint,
            encode(&expiry),
            encode(&sign(key, &to_sign))
        )
    }

    /// A blob's content, `None` when it does not exist.
    pub async fn blob(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let url = format!(
            "{}/{container}/{name}?{}",
            self.endpoint,
            self.account_sas()
        );
        let resp = self.client.get(url).send().await.expect("get blob");
        match resp.status().as_u16() {
            200 => Some(resp.bytes().await.expect("blob content").to_vec()),
            404 => None,
            s => panic!("reading blob {container}/{name} answered {s}"),
        }
    }

    /// The sizes of a blob's committed blocks, in order (Get Block List).
    pub async fn committed_blocks(&self, container: &str, name: &str) -> Vec<u64> {
        let url = format!(
            "{}/{container}/{name}?comp=blocklist&blocklisttype=committed&{}",
            self.endpoint,
            self.account_sas()
        );
        let resp = self.client.get(url).send().await.expect("get block list");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "block list of {container}/{name}"
        );
        let xml = resp.text().await.expect("block list");
        elements(&xml, "Size")
            .iter()
            .map(|s| s.parse().expect("a block size"))
            .collect()
    }

    /// The names of the blobs in a container, committed or not.
    pub async fn blob_names(&self, container: &str) -> Vec<String> {
        let url = format!(
            "{}/{container}?restype=container&comp=list&include=uncommittedblobs&{}",
            self.endpoint,
            self.account_sas()
        );
        let resp = self.client.get(url).send().await.expect("list blobs");
        assert_eq!(resp.status().as_u16(), 200, "listing {container}");
        let xml = resp.text().await.expect("blob list");
        elements(&xml, "Name")
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An hour from now, as SAS tokens write times (`2026-01-31T12:00:00Z`).
fn expiry() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).expect("a time")
}

/// Base64 of HMAC-SHA256 of `text` with the base64 `key`: a SAS token's signature.
fn sign(key: &str, text: &str) -> String {
    let key = B64.decode(key).expect("a base64 key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("an HMAC key");
    mac.update(text.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The text of every `<tag>…</tag>` in `xml`, in order (the storage answers read here hold no
/// nested or escaped values that matter).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}
