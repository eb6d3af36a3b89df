//! Test support for running the real `twinops` binary against a test emulator: the hub and its CA
//! certificate go through `TWINOPS_HUB` / `TWINOPS_CA_CERT` (never on the command line), and manifests are
//! written into temporary directories.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::Emulator;

/// The outcome of one `twinops` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `twinops ARGS` against the emulator.
pub fn twinops(em: &Emulator, args: &[&str]) -> Run {
    twinops_env(em, args, &[])
}

/// Runs `twinops ARGS` against the emulator with extra environment variables.
pub fn twinops_env(em: &Emulator, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command(em, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

/// `twinops ARGS` against the emulator, not started: for tests that watch or kill it while it runs.
pub fn command(em: &Emulator, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(args)
        .env("TWINOPS_HUB", &em.connection_string)
        .env("TWINOPS_CA_CERT", &em.ca_path)
        .env_remove("IOTHUB_CONNECTION_STRING")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs `twinops ARGS` with no hub configured.
pub fn twinops_bare(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(args)
        .env_remove("TWINOPS_HUB")
        .env_remove("TWINOPS_CA_CERT")
        .env_remove("IOTHUB_CONNECTION_STRING")
        .env("NO_COLOR", "1");
    run(cmd)
}

pub fn run(mut cmd: Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().expect("running twinops");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes manifest files into `dir` (replacing what was there).
pub fn manifests(dir: &Path, files: &[(&str, &str)]) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("clearing manifests");
    }
    std::fs::create_dir_all(dir).expect("manifest dir");
    for (name, text) in files {
        let mut f = std::fs::File::create(dir.join(name)).expect("manifest file");
        f.write_all(text.as_bytes()).expect("writing manifest");
    }
}

/// Writes (registry writes, bulk calls and twin writes) counted by the emulator so far.
pub fn writes(stats: &Value) -> u64 {
    ["registry_write", "bulk", "twin_write"]
        .iter()
        .map(|k| stats["by_class"][k].as_u64().unwrap_or(0))
        .sum()
}

pub fn class(stats: &Value, name: &str) -> u64 {
    stats["by_class"][name].as_u64().unwrap_or(0)
}

/// The twin of `device` or `device/module`.
pub async fn twin(em: &Emulator, address: &str) -> Value {
    let path = match address.split_once('/') {
        Some((d, m)) => format!(
            "/twins/{}/modules/{}",
            crate::support::seg(d),
            crate::support::seg(m)
        ),
        None => format!("/twins/{}", crate::support::seg(address)),
    };
    let r = em.get(&path).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// Writes reported properties as if the device had sent them.
pub async fn report(em: &Emulator, address: &str, patch: Value) {
    let path = match address.split_once('/') {
        Some((d, m)) => format!("/_emulator/twins/{d}/modules/{m}/reported"),
        None => format!("/_emulator/twins/{address}/reported"),
    };
    let r = em
        .raw(
            reqwest::Method::PATCH,
            &path,
            Some(patch.to_string().into_bytes()),
            &[("authorization", em.owner_token())],
        )
        .await;
    assert!(r.status < 300, "{r:?}");
}

/// Another writer's merge patch of tags/desired (unconditional), as a back end would send it.
pub async fn other_writer(em: &Emulator, address: &str, patch: Value) {
    let path = match address.split_once('/') {
        Some((d, m)) => format!("/twins/{d}/modules/{m}"),
        None => format!("/twins/{address}"),
    };
    let r = em.patch(&path, patch, Some("\"*\"")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// [`twin`] through injected faults: retried until the hub answers 200.
pub async fn twin_retrying(em: &Emulator, address: &str) -> Value {
    let path = match address.split_once('/') {
        Some((d, m)) => format!(
            "/twins/{}/modules/{}",
            crate::support::seg(d),
            crate::support::seg(m)
        ),
        None => format!("/twins/{}", crate::support::seg(address)),
    };
    for _ in 0..50 {
        let sent = em
            .client
            .get(format!("{}{path}?api-version=2021-04-12", em.url))
            .header("authorization", em.owner_token())
            .send()
            .await;
        if let Ok(resp) = sent
            && resp.status().is_success()
            && let Ok(v) = resp.json::<Value>().await
        {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("could not read {address}");
}

/// A temporary directory for manifests and plans, removed when dropped.
pub fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The first outcome of an `apply --format json` report whose `field` equals `value`.
pub fn outcome(report: &Value, field: &str, value: &str) -> Value {
    report["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o[field] == value)
        .unwrap_or_else(|| panic!("no outcome with {field} = {value} in {report}"))
        .clone()
}
