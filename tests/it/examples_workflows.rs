//! The CI story of SPEC §18, run here. Every example under `examples/github/` and
//! `examples/azure-pipelines/` parses, and its jobs run step by step, in the order and under the
//! conditions the CI system would use, in a real git repository (commits, a pull request's merge
//! commit, `--changed-from` its base) against emulators on `127.0.0.1:0`:
//! - `run:`/`bash:` steps run in bash as the runner would run them, with the environment the
//!   workflow sets (secrets replaced by the emulators' connection strings) and twinops on PATH only
//!   if an earlier step installed it: the action (`uses: OWNER/twinops@v1`, i.e. this repository's
//!   `action.yml`) and Azure's `install-twinops.yml` install it from a local release built the way
//!   `.github/workflows/release.yml` builds one (`scripts/release-assets.sh`), over `file://`;
//! - a recorder in front of the installed twinops notes each call and its exit code, which the
//!   tests check against what the workflow expects;
//! - artifacts go to a local store by name (what is uploaded is what is downloaded);
//! - what cannot run offline is not run, and the test gives its result instead: steps that talk to
//!   GitHub (`gh`) or Azure DevOps (`/_apis/`), which must hold no twinops call, and
//!   `actions/cache`/`Cache@2`.
//!
//! `install` tests the install script, the release script and `action.yml` on their own.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod azure_pipelines;
mod condition;
mod github;
mod install;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::Emulator;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example (or any YAML file of this repository) as JSON.
pub fn yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// The release that the Azure Pipelines examples pin (`install-twinops.yml`'s `version`); the local
/// release and the stamped action install it too.
pub fn pinned_version() -> String {
    let template = yaml(&repo_root().join("examples/azure-pipelines/install-twinops.yml"));
    template["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "version")
        .and_then(|p| p["default"].as_str())
        .expect("install-twinops.yml has a version parameter")
        .to_string()
}

/// A release of this build of twinops laid out as the GitHub release's downloads:
/// `DIR/VERSION/{twinops-VERSION-TARGET.tar.gz, install-twinops.sh, SHA256SUMS}`, made with the
/// release workflow's script. Built once per test process (and kept under the target directory
/// while the binary is the same: archiving a 200 MB debug binary takes seconds).
pub fn release() -> &'static Path {
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let binary = Path::new(env!("CARGO_BIN_EXE_twinops"));
        let version = pinned_version();
        let meta = std::fs::metadata(binary).unwrap();
        let stamp = format!("{version} {} {:?}", meta.len(), meta.modified().unwrap());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples-release");
        if std::fs::read_to_string(dir.join("built-from"))
            .ok()
            .as_deref()
            == Some(&stamp)
        {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.join(&version);
        let target = host_target();
        let archive = Command::new("bash")
            .arg(repo_root().join("scripts/release-assets.sh"))
            .args(["archive", &version, &target])
            .arg(binary)
            .arg(&out)
            .env("GZIP_LEVEL", "1")
            .output()
            .unwrap();
        assert!(archive.status.success(), "{archive:?}");
        std::fs::copy(
            repo_root().join("scripts/install-twinops.sh"),
            out.join("install-twinops.sh"),
        )
        .unwrap();
        let sums = Command::new("bash")
            .arg(repo_root().join("scripts/release-assets.sh"))
            .arg("checksums")
            .arg(&out)
            .output()
            .unwrap();
        assert!(sums.status.success(), "{sums:?}");
        std::fs::write(dir.join("built-from"), stamp).unwrap();
        dir
    })
}

/// The release target of this machine, as the install script computes it.
pub fn host_target() -> String {
    script(&repo_root().join("scripts/install-twinops.sh"), &["target"])
        .trim()
        .to_string()
}

/// Runs a script of `scripts/` and returns its stdout (it must succeed).
pub fn script(path: &Path, args: &[&str]) -> String {
    let out = Command::new("bash").arg(path).args(args).output().unwrap();
    assert!(out.status.success(), "{} {args:?}: {out:?}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

/// A git repository with real commits, as a CI checkout has it.
pub struct Checkout {
    pub dir: PathBuf,
}

impl Checkout {
    pub fn init(dir: &Path) -> Checkout {
        std::fs::create_dir_all(dir).unwrap();
        let c = Checkout {
            dir: dir.to_path_buf(),
        };
        c.git(&["init", "-q", "-b", "main"]);
        c
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("running git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes a file and stages it: what the runs leave in the working tree is never committed.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self.git(&["add", rel]);
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel))
            .unwrap_or_else(|e| panic!("reading {rel} in the checkout: {e}"))
    }

    /// Commits what was written on the current branch and returns the commit.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The merge commit a CI system checks out for a pull request of `branch` into `into`, as
    /// `refs/pull/N/merge`; the working tree is left on it (detached).
    pub fn pull_request_merge(&self, branch: &str, into: &str) -> String {
        self.git(&["checkout", "-q", "--detach", into]);
        self.git(&["merge", "-q", "--no-ff", "-m", "pull request merge", branch]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Merges `branch` into main as a pull request's merge button does, and checks main out.
    pub fn merge(&self, branch: &str) -> String {
        self.git(&["checkout", "-q", "main"]);
        self.git(&[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            &format!("Merge {branch}"),
            branch,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Removes what earlier steps left in the working tree (a CI checkout starts clean).
    pub fn clean(&self) {
        self.git(&["clean", "-q", "-fdx"]);
    }
}

/// The hub a workflow's secret names: an emulator of its own.
pub struct Hub {
    pub emulator: Emulator,
}

/// What a workflow's environment needs to reach `hubs`: TWINOPS_CA_CERT for the one whose
/// connection string TWINOPS_HUB holds (a real hub has a publicly trusted certificate; the
/// emulator's is its own).
pub fn trust(env: &mut BTreeMap<String, String>, hubs: &BTreeMap<String, Hub>) {
    let host = |cs: &str| cs.split(';').next().unwrap_or_default().to_string();
    if let Some(cs) = env.get("TWINOPS_HUB")
        && let Some(hub) = hubs
            .values()
            .find(|h| host(&h.emulator.connection_string) == host(cs))
    {
        env.insert(
            "TWINOPS_CA_CERT".into(),
            hub.emulator.ca_path.display().to_string(),
        );
    }
}

/// One twinops call a step made.
#[derive(Debug, Clone)]
pub struct Call {
    pub args: Vec<String>,
    pub code: i32,
}

/// A `twinops` in front of the one the step's PATH holds after it: records each call (arguments
/// and exit code) and runs the real binary. With no twinops installed, it fails as bash would.
pub struct Recorder {
    pub dir: PathBuf,
    log: PathBuf,
}

impl Recorder {
    pub fn new(dir: &Path) -> Recorder {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("calls.log");
        let script = format!(
            "#!/usr/bin/env bash\n\
             PATH=\"${{PATH#'{dir}':}}\"\n\
             real=\"$(command -v twinops)\" || {{ echo 'twinops: command not found (no step installed it)' >&2; exit 127; }}\n\
             \"$real\" \"$@\"\n\
             code=$?\n\
             {{ printf '%s' \"$code\"; printf '\\037%s' \"$@\"; printf '\\036'; }} >> '{log}'\n\
             exit \"$code\"\n",
            dir = dir.display(),
            log = log.display()
        );
        let path = dir.join("twinops");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Recorder {
            dir: dir.to_path_buf(),
            log,
        }
    }

    /// The calls since the last `take`.
    pub fn take(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.split('\x1e')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut parts = r.split('\x1f');
                let code = parts.next().unwrap().parse().unwrap();
                Call {
                    code,
                    args: parts.map(str::to_string).collect(),
                }
            })
            .collect()
    }
}

/// The outcome of one shell step.
#[derive(Debug)]
pub struct Shell {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub calls: Vec<Call>,
}

/// Runs `script` as a runner runs a step's script: `bash` with `flags` (GitHub: `-eo pipefail`;
/// Azure: none), in `cwd`, with exactly `env` plus PATH (the recorder, then `path` as earlier
/// steps added to it, last first, then the system's), HOME and CI.
pub fn bash(
    cwd: &Path,
    script: &str,
    flags: &[&str],
    env: &BTreeMap<String, String>,
    path: &[PathBuf],
    recorder: &Recorder,
    home: &Path,
) -> Shell {
    let file = home.join(".step.sh");
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(&file, script).unwrap();
    let mut dirs = vec![recorder.dir.clone()];
    dirs.extend(path.iter().rev().cloned());
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    let out = Command::new("/bin/bash")
        .args(["--noprofile", "--norc"])
        .args(flags)
        .arg(&file)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("HOME", home)
        .env("CI", "true")
        .output()
        .unwrap();
    Shell {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        calls: recorder.take(),
    }
}

/// Whether a script talks to the CI service (GitHub's `gh`, Azure DevOps' REST API): such a step
/// is not run here, so it must not hold a twinops call.
pub fn talks_to_ci_service(script: &str) -> bool {
    script.contains("/_apis/")
        || script.lines().any(|l| {
            l.split(|c: char| c.is_whitespace() || matches!(c, '(' | '|' | ';' | '&'))
                .any(|w| w == "gh")
        })
}

/// The twinops calls a script makes (the words after `twinops` at a command position, unexpanded):
/// what the test expects the recorder to see.
pub fn twinops_lines(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let start = l.find("twinops ")?;
            let before = l[..start].trim_end();
            let command_position = before.is_empty()
                || before.ends_with("if !")
                || before.ends_with("||")
                || before.ends_with("&&")
                || before.ends_with(';')
                || before.ends_with("$(");
            command_position.then(|| l[start..].to_string())
        })
        .collect()
}

/// What must never leave a job: the emulators' keys and the example fleet's inline sensitive value.
pub fn assert_no_secret(what: &str, text: &str, hubs: &BTreeMap<String, Hub>) {
    assert!(
        !text.contains("not-a-real-token"),
        "{what} holds the sensitive value of manifests/thermostats.yaml"
    );
    for hub in hubs.values() {
        assert!(
            !text.contains(&hub.emulator.owner_key),
            "{what} holds a hub's key"
        );
    }
    assert!(!text.contains("SharedAccessKey="), "{what} holds a key");
}

/// An artifact's files: name and bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// A store of artifacts by run and name, as the CI service keeps them.
#[derive(Default)]
pub struct Artifacts {
    by_run: BTreeMap<(u32, String), Files>,
}

impl Artifacts {
    pub fn upload(&mut self, run: u32, name: &str, files: Files) {
        assert!(!files.is_empty(), "artifact {name} has no file");
        self.by_run.insert((run, name.to_string()), files);
    }

    /// The files of artifact `name` of run `run`; panics when there is none: the download
    /// names an artifact no upload made.
    pub fn download(&self, run: u32, name: &str) -> &[(String, Vec<u8>)] {
        self.by_run
            .get(&(run, name.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "run {run} uploaded no artifact `{name}` (it has {:?})",
                    self.by_run.keys().collect::<Vec<_>>()
                )
            })
    }
}

/// Manifests of a hub of three devices with a desired value, for the per-hub examples.
pub fn small_fleet(owner: &str, interval: u32) -> String {
    format!(
        "owner: {owner}\ndevices:\n  \"{owner}-{{1..3}}\":\n    tags: {{site: {owner}}}\n    desired: {{telemetryInterval: {interval}}}\n"
    )
}

/// One step as it ran (or did not).
#[derive(Debug)]
pub struct StepRun {
    pub name: String,
    pub ran: bool,
    pub ok: bool,
    pub calls: Vec<Call>,
    pub log: String,
}

impl StepRun {
    pub fn skipped(name: String) -> StepRun {
        StepRun {
            name,
            ran: false,
            ok: true,
            calls: vec![],
            log: String::new(),
        }
    }
}

/// One job (one matrix combination: `name` is its hub then) as it ran.
#[derive(Debug)]
pub struct JobRun {
    pub name: String,
    pub ok: bool,
    pub steps: Vec<StepRun>,
}

impl JobRun {
    pub fn step(&self, name: &str) -> &StepRun {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name} in {self:#?}"))
    }

    /// The exit codes of the twinops calls of step `name`.
    pub fn codes(&self, name: &str) -> Vec<i32> {
        self.step(name).calls.iter().map(|c| c.code).collect()
    }

    /// The names of the steps that ran.
    pub fn ran(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.ran)
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// What the CI service's cache (`actions/cache`, `Cache@2`) keeps between runs: a directory per
/// key, restored where the key's path is (a link to the kept directory), saved after the job when
/// the key missed.
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    /// Restores `key` at `path`, or returns what to save after the job.
    pub fn restore(&self, key: &str, path: &Path) -> Option<(String, PathBuf)> {
        assert!(
            key.contains(&pinned_version()),
            "the cache key {key} names the exact version"
        );
        let kept = self.dir.join(key.replace(['/', ' ', '"', '|'], "_"));
        if kept.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&kept, path).unwrap();
            None
        } else {
            Some((key.to_string(), path.to_path_buf()))
        }
    }

    pub fn save(&self, key: &str, path: &Path) {
        if path.is_dir() && !path.is_symlink() {
            std::fs::create_dir_all(&self.dir).unwrap();
            let kept = self.dir.join(key.replace(['/', ' ', '"', '|'], "_"));
            std::fs::rename(path, &kept).unwrap();
            std::os::unix::fs::symlink(&kept, path).unwrap();
        }
    }
}

/// A YAML scalar as the CI system reads it: text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
