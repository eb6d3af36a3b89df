//! The only place that prints. Stdout is data, stderr is talk.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Prints an error and its cause chain to stderr, once. A TLS failure is one line that leads with
/// the fix (`--ca-cert`) and ends with the handshake's reason, not a chain of transport layers.
pub fn error(e: &anyhow::Error) {
    if let Some(tls) = e.chain().find_map(|c| {
        c.downcast_ref::<crate::hub::Error>()
            .filter(|h| matches!(h, crate::hub::Error::Tls(_)))
    }) {
        // One line that leads with the fix; the context around it and the causes below it
        // would only repeat rustls' words.
        eprintln!("error: {tls}");
        return;
    }
    let mut s = format!("error: {e}");
    for cause in e.chain().skip(1) {
        s.push_str(&format!("\n  caused by: {cause}"));
    }
    eprintln!("{s}");
}

/// Writes data to stdout and flushes it.
pub fn data(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--quiet`: progress lines are not printed (data and errors still are).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Writes one line of progress to stderr, unless `--quiet`.
pub fn progress(s: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{s}");
    }
}

/// Writes one line of talk to stderr.
pub fn talk(s: &str) {
    eprintln!("{s}");
}

/// Writes a prompt to stderr without a newline.
pub fn prompt(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.flush();
}

/// A progress bar drawn on stderr.
pub fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Sets up tracing on stderr: `-v` info, `-vv` debug, or `RUST_LOG`.
pub fn init_logging(verbose: u8, no_color: bool) {
    // The platform verifier logs each rejected certificate itself; twinops reports it once, with
    // the fix (`output::error`), so its own line is left out unless asked for with RUST_LOG.
    let default = match verbose {
        0 => "warn,rustls_platform_verifier=off",
        1 => "twinops=info,rustls_platform_verifier=off",
        _ => "twinops=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = !no_color
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}
