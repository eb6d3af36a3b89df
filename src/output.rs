//! The only place that prints. Stdout is data, stderr is talk.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Prints an error and its cause chain to stderr, once.
pub fn error(e: &anyhow::Error) {
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

/// Writes one line of talk to stderr.
pub fn talk(s: &str) {
    eprintln!("{s}");
}
