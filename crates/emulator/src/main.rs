//! The standalone `twinops-emulator` binary: the local IoT Hub with exactly the flags, output and
//! exit codes of `twinops emulator` (both run `twinops_emulator::cli`), for those who want the
//! emulator without the reconciler, and for the emulator's own integration tests, which can only
//! spawn their package's binaries.

use std::io::Write;

use clap::Parser;

use twinops_emulator::cli::{self, Console, EmulatorArgs};

/// Run the local IoT Hub emulator (the same as `twinops emulator`).
#[derive(Debug, Parser)]
#[command(name = "twinops-emulator", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

/// Stdout for data, stderr for talk.
struct Std;

// The binary's one printer: the startup lines, warnings and the error chain.
#[allow(clippy::print_stderr)]
impl Console for Std {
    fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn talk(&self, line: &str) {
        eprintln!("{line}");
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1, as `twinops`' do: 2 means "changes present" to its scripts.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&anyhow::Error::new(e).context("starting the async runtime")),
    };
    if let Err(e) = runtime.block_on(cli::run(&cli.args, &Std)) {
        fail(&e);
    }
    // As `twinops` does: the hub is shut down, so exit without waiting on the runtime's threads.
    std::process::exit(0);
}

/// Prints an error and its cause chain once, as `twinops` does, and exits 1.
fn fail(e: &anyhow::Error) -> ! {
    let mut s = format!("error: {e}");
    for cause in e.chain().skip(1) {
        s.push_str(&format!("\n  caused by: {cause}"));
    }
    Std.talk(&s);
    std::process::exit(1);
}

/// Logs to stderr: warnings, or what `RUST_LOG` asks for; colour only on a terminal without
/// `NO_COLOR`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let color = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}
