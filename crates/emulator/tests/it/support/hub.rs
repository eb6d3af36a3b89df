//! The emulator test support both integration-test packages compile: this package's (`mod hub` of
//! `support/mod.rs`, next to this file) and the root package's (`tests/it/support/mod.rs`, through
//! `#[path]`). It runs a real emulator binary on `127.0.0.1:0` (through
//! `twinops_emulator::spawn`, which reads its three startup lines), talks to it over HTTPS with a
//! client that trusts its certificate, and waits for state that changes in the background. The
//! child is ended when the handle drops.
//!
//! Which binary runs is the including package's choice: its `support` module defines
//! `emulator_command()`, a `Command` for the emulator (`twinops emulator` or `twinops-emulator`,
//! the same flags), to which this adds the listen address, MQTT and the test's flags.
// Each package's tests use a part of this file, and a part differing by package: what one does
// not use is not dead, the other one uses it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use twinops_emulator::spawn::Spawned;
use twinops_iothub::connection_string::Secret;
use twinops_iothub::sas;

pub const API: &str = "api-version=2021-04-12";

/// How long a test waits for a state change with [`eventually`] when it has no reason to wait
/// longer or shorter: long enough for a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running emulator process.
pub struct Emulator {
    process: Spawned,
    pub url: String,
    pub host: String,
    pub connection_string: String,
    pub owner_key: String,
    pub ca_path: PathBuf,
    pub client: reqwest::Client,
}

/// A response, its body parsed as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The `iothub-errorcode` header.
    pub fn code(&self) -> Option<&str> {
        self.header("iothub-errorcode")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Emulator {
    /// An in-memory emulator.
    pub fn start() -> Emulator {
        Emulator::start_with(&[])
    }

    /// An emulator on a state directory.
    pub fn start_on(state: &Path) -> Emulator {
        Emulator::start_with(&["--state", state.to_str().expect("utf-8 path")])
    }

    /// An emulator with extra flags. Its MQTT side is off unless `extra` names `--mqtt`: tests run
    /// in parallel and must not fight over port 8883.
    pub fn start_with(extra: &[&str]) -> Emulator {
        Emulator::spawn(extra, &[], Stdio::inherit())
    }

    /// An emulator with extra flags, environment variables and its stderr sent to `stderr`
    /// (a file, to read what it logged). MQTT is off as in [`Emulator::start_with`].
    pub fn spawn(extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Emulator {
        let mqtt_off: &[&str] = if extra.iter().any(|a| a.starts_with("--mqtt")) {
            &[]
        } else {
            &["--mqtt", "off"]
        };
        let mut command = super::emulator_command();
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(mqtt_off)
            .args(extra)
            .envs(env.iter().copied())
            .stderr(stderr);
        let program = format!("{command:?}");
        let process = Spawned::start(command)
            .unwrap_or_else(|e| panic!("spawning the emulator {program}: {e} ({e:?})"));
        Emulator {
            url: process.url().to_string(),
            host: process.host().to_string(),
            connection_string: process.connection_string().expose().to_string(),
            owner_key: process.owner_key().expose().to_string(),
            ca_path: process.ca_path().to_path_buf(),
            client: client_trusting(process.ca_path()),
            process,
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then the exit status once the process has ended. One that has not stopped 5 s
    /// after SIGTERM is killed, and its status says so (not a success).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process
            .terminate(Duration::from_secs(5))
            .expect("ending the emulator")
    }

    /// A SAS token for `policy` signed with `key`, scoped to `resource` (defaults to the host).
    pub fn token(
        &self,
        policy: Option<&str>,
        key: &str,
        resource: Option<&str>,
        ttl_secs: i64,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let expiry = u64::try_from(now + ttl_secs).expect("expiry");
        let sr = resource
            .map(str::to_string)
            .unwrap_or_else(|| self.host.clone());
        sas::sign(&sr, &Secret::new(key), policy, expiry)
            .expect("signing")
            .expose()
            .to_string()
    }

    pub fn owner_token(&self) -> String {
        self.token(Some("iothubowner"), &self.owner_key, None, 3600)
    }

    /// A request with the owner token, `api-version` appended, and `headers`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}{API}");
        let mut all = vec![("authorization", self.owner_token())];
        all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
        self.raw(
            method,
            &path,
            body.map(|b| b.to_string().into_bytes()),
            &all,
        )
        .await
    }

    /// A request exactly as given: no auth, no api-version.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Resp {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.url, path_and_query));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json; charset=utf-8")
                .body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn put(&self, path: &str, body: Value, if_match: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = if_match.map(|e| ("if-match", e)).into_iter().collect();
        self.call(Method::PUT, path, Some(body), &h).await
    }

    pub async fn patch(&self, path: &str, body: Value, if_match: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = if_match.map(|e| ("if-match", e)).into_iter().collect();
        self.call(Method::PATCH, path, Some(body), &h).await
    }

    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = if_match.map(|e| ("if-match", e)).into_iter().collect();
        self.call(Method::DELETE, path, None, &h).await
    }

    /// Creates a device with hub-generated keys and returns its JSON.
    pub async fn create_device(&self, id: &str) -> Value {
        let r = self
            .put(
                &format!("/devices/{id}"),
                serde_json::json!({"deviceId": id}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    pub async fn create_module(&self, id: &str, mid: &str) -> Value {
        let r = self
            .put(
                &format!("/devices/{id}/modules/{mid}"),
                serde_json::json!({"deviceId": id, "moduleId": mid}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// `GET /_emulator/info`.
    pub async fn info(&self) -> Value {
        let r = self
            .raw(
                Method::GET,
                "/_emulator/info",
                None,
                &[("authorization", self.owner_token())],
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// The MQTT side's port (from `/_emulator/info`); panics when it is off.
    pub async fn mqtt_port(&self) -> u16 {
        let info = self.info().await;
        let addr: std::net::SocketAddr = info["mqtt"]
            .as_str()
            .unwrap_or_else(|| panic!("the MQTT side is off: {info}"))
            .parse()
            .expect("an address");
        addr.port()
    }

    /// `GET /_emulator/stats`.
    pub async fn stats(&self) -> Value {
        let r = self
            .raw(
                Method::GET,
                "/_emulator/stats",
                None,
                &[("authorization", self.owner_token())],
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }
}

/// How often [`eventually`] looks again: short, so that a test goes on as soon as the state arrives.
const POLL: Duration = Duration::from_millis(25);

/// Looks with `look` until `until` holds for what it saw, at most `within`, and returns that; then
/// fails saying `what` was awaited and what it saw last. Tests wait for a state this way, never
/// with a fixed sleep: on a busy machine a sleep is either too short (flaky) or too long (slow).
pub async fn eventually<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut look: impl AsyncFnMut() -> T,
    until: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = look().await;
        if until(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            not_in_time(what, within, &seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a look that blocks (a child process, a file), outside an async test.
pub fn eventually_blocking<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut look: impl FnMut() -> T,
    until: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = look();
        if until(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            not_in_time(what, within, &seen);
        }
        std::thread::sleep(POLL);
    }
}

fn not_in_time(what: &str, within: Duration, seen: &dyn std::fmt::Debug) -> ! {
    panic!("waited {within:?} for: {what}; last saw: {seen:#?}")
}

/// A reqwest client that trusts the PEM certificate at `ca` (and nothing else), on ring.
pub fn client_trusting(ca: &Path) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("reading the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("trusting the certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the client")
}

/// Percent-encodes a path segment (as the SDKs do with IDs).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
