//! Test support: the emulator support shared with the root package's tests (`hub.rs`: `Emulator`,
//! `Resp`, `eventually`, …), run on this package's `twinops-emulator` binary (the same command
//! line as `twinops emulator`), and Azurite as the blob store of export jobs (`azurite.rs`, shared
//! the same way).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::Command;

mod azurite;
mod hub;
pub mod mqtt;
pub use azurite::Azurite;
pub use hub::*;

/// The standalone emulator binary of this package.
pub const BIN: &str = env!("CARGO_BIN_EXE_twinops-emulator");

/// The emulator `hub.rs` starts: this package's binary, to which it adds its flags.
fn emulator_command() -> Command {
    Command::new(BIN)
}
