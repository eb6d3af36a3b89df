//! The emulator's three startup lines, written and read in one place, and [`Spawned`]: an emulator
//! run as a child process (the real `twinops emulator` or `twinops-emulator` binary, for
//! integration tests and benchmarks), its lines parsed into what a client needs.
//!
//! ```text
//! twinops emulator listening on https://localhost:PORT
//! connection string: HostName=localhost:PORT;SharedAccessKeyName=iothubowner;SharedAccessKey=...
//! ca certificate: PATH
//! ```
//!
//! [`crate::Running::startup_lines`] writes them (the binary prints them on stdout); scripts and
//! [`Spawned::start`] read them. The connection string carries the owner key: these lines describe
//! a local test hub, and they are the one place the emulator prints a key.
//!
//! It knows nothing of the binary: the caller builds the command. [`terminate`] is the one way to
//! end a child gently (SIGTERM, a grace period, then SIGKILL), for this and any other child.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use twinops_iothub::connection_string::{self, Secret, ServiceConnectionString};

const LISTENING: &str = "twinops emulator listening on ";
const CONNECTION_STRING: &str = "connection string: ";
const CA_CERTIFICATE: &str = "ca certificate: ";

/// Why a spawned emulator could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the emulator")]
    Spawn(#[source] std::io::Error),
    #[error("reading the emulator's startup lines")]
    Read(#[source] std::io::Error),
    #[error("the emulator exited before printing its startup lines (it printed {printed:?})")]
    Exited { printed: Vec<String> },
    #[error("the emulator printed `{line}` where a line starting `{expected}` belongs")]
    UnexpectedLine {
        line: String,
        expected: &'static str,
    },
    #[error("the emulator's connection string has no owner key")]
    ConnectionString(#[source] Option<connection_string::Error>),
}

/// The three startup lines (each ending in a newline) of a hub at `url`.
pub(crate) fn startup_lines(url: &str, connection_string: &Secret, ca_path: &Path) -> String {
    format!(
        "{LISTENING}{url}\n{CONNECTION_STRING}{}\n{CA_CERTIFICATE}{}\n",
        connection_string.expose(),
        ca_path.display()
    )
}

/// An emulator child process whose startup lines were read. Dropping it ends the child
/// ([`terminate`] with a second's grace).
pub struct Spawned {
    child: Child,
    /// Held open so that whatever the emulator prints later does not fail on a closed pipe.
    _stdout: BufReader<ChildStdout>,
    url: String,
    host: String,
    connection_string: Secret,
    owner_key: Secret,
    ca_path: PathBuf,
}

impl Spawned {
    /// Runs `command` with stdin closed and stdout piped, reads the three startup lines from its
    /// stdout and returns once they are read (the hub then accepts connections). Everything else
    /// about the command (binary, flags, environment, stderr) is the caller's. On an error the
    /// child is killed.
    pub fn start(mut command: Command) -> Result<Spawned, Error> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(Error::Spawn)?;
        let Some(stdout) = child.stdout.take() else {
            end(&mut child);
            return Err(Error::Read(std::io::Error::other("no stdout pipe")));
        };
        let mut stdout = BufReader::new(stdout);
        match read_startup(&mut stdout) {
            Ok(startup) => Ok(Spawned {
                child,
                _stdout: stdout,
                url: startup.url,
                host: startup.host,
                connection_string: startup.connection_string,
                owner_key: startup.owner_key,
                ca_path: startup.ca_path,
            }),
            Err(e) => {
                end(&mut child);
                Err(e)
            }
        }
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `localhost:PORT`: the connection string's HostName.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `iothubowner` connection string (contains the key: never print it).
    pub fn connection_string(&self) -> &Secret {
        &self.connection_string
    }

    /// The `iothubowner` primary key.
    pub fn owner_key(&self) -> &Secret {
        &self.owner_key
    }

    /// The PEM file a client must trust.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The child's process ID, to signal it or read `/proc`.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would, and waits for the process to end.
    pub fn kill(&mut self) {
        end(&mut self.child);
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace` ([`terminate`]); its exit status.
    pub fn terminate(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        terminate(&mut self.child, grace)
    }
}

impl Drop for Spawned {
    /// Ends the emulator with SIGTERM first, so that a hub without `--state` removes the scratch
    /// directory its TLS files live in (a SIGKILL leaves one in the temp directory per run); SIGKILL
    /// after a second. [`Spawned::kill`] stays a plain SIGKILL, as a crash would be.
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Duration::from_secs(1));
    }
}

/// Ends a child process: SIGTERM, up to `grace` for it to exit on its own (an emulator closes its
/// state and removes its scratch directory), then SIGKILL. Returns its exit status; one that has
/// ended already is only reaped. Off Unix there is no SIGTERM: it is killed at once.
pub fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process};
        // Not reaped yet (`try_wait` just said so), so the ID still names our child.
        kill_process(Pid::from_child(child), Signal::TERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    #[cfg(not(unix))]
    let _ = grace;
    child.kill()?;
    child.wait()
}

fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What the startup lines say.
#[derive(Debug)]
struct Startup {
    url: String,
    host: String,
    connection_string: Secret,
    owner_key: Secret,
    ca_path: PathBuf,
}

fn read_startup(stdout: &mut impl BufRead) -> Result<Startup, Error> {
    let mut printed = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        if stdout.read_line(&mut line).map_err(Error::Read)? == 0 {
            return Err(Error::Exited { printed });
        }
        printed.push(line.trim_end().to_string());
    }
    parse_startup(&printed)
}

fn parse_startup(lines: &[String]) -> Result<Startup, Error> {
    let field = |i: usize, expected: &'static str| {
        let line = lines.get(i).map(String::as_str).unwrap_or_default();
        line.strip_prefix(expected)
            .ok_or_else(|| Error::UnexpectedLine {
                line: line.to_string(),
                expected,
            })
    };
    let url = field(0, LISTENING)?;
    let host = url
        .strip_prefix("https://")
        .ok_or_else(|| Error::UnexpectedLine {
            line: lines[0].clone(),
            expected: "twinops emulator listening on https://",
        })?;
    let connection_string = field(1, CONNECTION_STRING)?;
    let owner_key = ServiceConnectionString::parse(connection_string)
        .map_err(|e| Error::ConnectionString(Some(e)))?
        .key
        .ok_or(Error::ConnectionString(None))?;
    Ok(Startup {
        url: url.to_string(),
        host: host.to_string(),
        connection_string: Secret::new(connection_string),
        owner_key,
        ca_path: PathBuf::from(field(2, CA_CERTIFICATE)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[cfg(unix)]
    #[test]
    fn terminate_sends_sigterm_first_and_reaps() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let status = terminate(&mut child, Duration::from_secs(30)).unwrap();
        assert_eq!(status.signal(), Some(15), "{status:?}");
        // Ended already: reaped once, the same status again, no signal sent.
        assert_eq!(terminate(&mut child, Duration::ZERO).unwrap(), status);
    }

    #[cfg(unix)]
    #[test]
    fn terminate_kills_a_child_that_ignores_sigterm_after_the_grace() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ignoring; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Signal only once the trap is set.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ignoring\n");
        let status = terminate(&mut child, Duration::from_millis(200)).unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    #[test]
    fn the_lines_written_are_the_lines_read() {
        let cs = Secret::new(format!(
            "HostName=localhost:4433;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        ));
        let text = startup_lines("https://localhost:4433", &cs, Path::new("/tmp/ca.pem"));
        assert_eq!(
            text,
            format!(
                "twinops emulator listening on https://localhost:4433\nconnection string: {}\nca certificate: /tmp/ca.pem\n",
                cs.expose()
            )
        );
        let s = read_startup(&mut text.as_bytes()).unwrap();
        assert_eq!(s.url, "https://localhost:4433");
        assert_eq!(s.host, "localhost:4433");
        assert_eq!(s.connection_string, cs);
        assert_eq!(s.owner_key.expose(), KEY);
        assert_eq!(s.ca_path, Path::new("/tmp/ca.pem"));
    }

    #[test]
    fn fewer_than_three_lines_means_the_emulator_exited() {
        let e = read_startup(&mut "twinops emulator listening on https://x:1\n".as_bytes())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Exited { printed } if printed.len() == 1),
            "{e:?}"
        );
    }

    #[test]
    fn a_line_out_of_place_is_named() {
        let e = parse_startup(&lines(
            "error: nope\nconnection string: x\nca certificate: y",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("`error: nope`")
                && e.to_string().contains("twinops emulator listening on"),
            "{e}"
        );
        let e = parse_startup(&lines(
            "twinops emulator listening on https://h:1\nconnection string: HostName=h:1\nca certificate: y",
        ))
        .unwrap_err();
        assert!(matches!(e, Error::ConnectionString(_)), "{e:?}");
    }
}
