//! Conformance: Microsoft's Python service SDK (`azure-iot-hub` 2.7.0) runs the walkthrough's
//! backend code, unchanged except for the connection string, against the emulator binary.
//!
//! `scripts/sdk-venv.sh` builds the virtualenv (once, under `target/sdk-venv`). When pip cannot
//! install the SDK this test fails: a conformance test that skips proves nothing.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

use crate::support::Emulator;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn python_sdk_backend_flow_runs_unchanged_against_the_emulator() {
    let python = crate::support::sdk_python();
    let hub = Emulator::start();
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .arg(repo().join("tests/sdk/python/backend_flow.py"))
        .env("IOTHUB_CONNECTION_STRING", &hub.connection_string)
        .env("REQUESTS_CA_BUNDLE", &hub.ca_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK flow failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("backend flow: all steps passed"),
        "{stdout}"
    );
    eprintln!("python SDK flow took {:?}", started.elapsed());
}
