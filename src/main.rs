//! The `twinops` binary: parse arguments, run the command, print the error chain once, exit.

use clap::Parser;

fn main() {
    let args = twinops::cli::normalize(std::env::args_os().collect());
    let cli = match twinops::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1: 2 means "changes present" to scripts.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            twinops::output::error(&anyhow::Error::new(e).context("starting the async runtime"));
            std::process::exit(1);
        }
    };
    let status = runtime.block_on(twinops::cmd::run(cli));
    let code = match status {
        Ok(s) => s.code(),
        Err(e) => {
            twinops::output::error(&e);
            1
        }
    };
    std::process::exit(code);
}
