//! Test support: the emulator support shared with the emulator package's tests
//! (`crates/emulator/tests/it/support/hub.rs`: `Emulator`, `Resp`, `eventually`, …), run on the
//! real `twinops emulator`, Azurite as a blob store (`azurite.rs`, shared the same way), and what
//! only these tests use: the SDK and schema-tool set-ups.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

#[path = "../../../crates/emulator/tests/it/support/hub.rs"]
mod hub;
pub use hub::*;

#[path = "../../../crates/emulator/tests/it/support/azurite.rs"]
mod azurite;
#[allow(unused_imports)] // export-job tests of the reconciler come with SPEC §17's client side
pub use azurite::Azurite;

/// The emulator `hub.rs` starts: this package's `twinops emulator`, to which it adds its flags.
fn emulator_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_twinops"));
    command.arg("emulator");
    command
}

/// Runs a set-up script of `scripts/` (an SDK's or a schema tool's; idempotent, installs under
/// `target/`) and returns the path it prints last. Panics when the registry cannot install it: a
/// conformance test that skips proves nothing.
pub fn sdk_setup(script: &str, registry: &str) -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed (is {registry} reachable?):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("scripts/{script} prints the path it set up"))
            .trim(),
    )
}

/// The Python of the SDK virtualenv (`scripts/sdk-venv.sh` builds it once under `target/`).
pub fn sdk_python() -> PathBuf {
    sdk_setup("sdk-venv.sh", "PyPI")
}
