//! `twinops emulator`: the emulator crate's command line (`twinops_emulator::cli`, shared with the
//! standalone `twinops-emulator` binary) run with twinops' own output: it starts the local IoT Hub,
//! prints the three startup lines and waits for SIGINT/SIGTERM.

use twinops_emulator::cli::Console;

use super::ExitStatus;
use crate::cli::EmulatorArgs;
use crate::output;

/// The emulator's lines go through `output`, the one place twinops prints.
struct Output;

impl Console for Output {
    fn data(&self, text: &str) {
        output::data(text);
    }

    fn talk(&self, line: &str) {
        output::talk(line);
    }
}

/// Runs `twinops emulator` until interrupted.
pub(crate) async fn run(args: &EmulatorArgs) -> anyhow::Result<ExitStatus> {
    twinops_emulator::cli::run(args, &Output).await?;
    Ok(ExitStatus::Success)
}
