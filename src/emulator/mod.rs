//! The local IoT Hub emulator (SPEC §9): IoT Hub's service REST API over HTTPS with durable state.

use std::path::PathBuf;

pub mod error;
pub mod identity;
pub mod store;
pub mod twin;

/// `twinops emulator` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory of the durable state (default: in memory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
}

/// Runs `twinops emulator` until interrupted.
pub async fn run(_args: Args) -> anyhow::Result<crate::cmd::ExitStatus> {
    anyhow::bail!("the emulator is not built yet")
}
