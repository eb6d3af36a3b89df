//! Manifests at a git revision, for change-scoped plans (`--changed-from REF`, SPEC §12), read
//! through the `git` command: `rev-parse` resolves REF to a full commit id, `ls-tree` lists the
//! files under the same repository-relative paths as PATHS, and `cat-file --batch` reads them.
//!
//! The `git` command, not a library: it is on every machine that has the repository (CI checkouts
//! included), it reads whatever that checkout is (worktrees, alternates, partial and shallow
//! clones, `safe.directory`) exactly as the user's own git does, and it adds no dependency tree
//! to the build. It never writes: no checkout, no index, no temporary work tree.
//!
//! Files are named `REF:path` (the path from the repository's top), so a loader error points at
//! what `git show REF:path` prints.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use twinops_core::manifest::{MAX_FILE_BYTES, Source};

/// The manifests of a revision.
#[derive(Debug)]
pub(crate) struct Revision {
    /// The full commit id REF resolved to.
    pub commit: String,
    pub sources: Vec<Source>,
}

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir).stdin(Stdio::null());
    // Never a pager or a prompt from a CI job.
    c.env("GIT_TERMINAL_PROMPT", "0").env("GIT_PAGER", "cat");
    c
}

/// Runs git and returns its stdout; a failure says what git said.
fn run(mut c: Command, doing: &str) -> anyhow::Result<Vec<u8>> {
    let out = c.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("--changed-from needs the `git` command, which was not found: {e}")
        } else {
            anyhow::anyhow!("running git to {doing}: {e}")
        }
    })?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!("git could not {doing}: {}", said.trim());
    }
    Ok(out.stdout)
}

/// The directory git should run in for a manifest path (the path itself, or a file's directory).
fn dir_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// The repository-relative path of `path`, with `/` separators ("" for the top itself).
fn relative(top: &Path, path: &Path) -> anyhow::Result<String> {
    let full = path
        .canonicalize()
        .with_context(|| format!("reading `{}`", path.display()))?;
    let rel = full.strip_prefix(top).map_err(|_| {
        anyhow::anyhow!(
            "`{}` is not inside the git repository at `{}`",
            path.display(),
            top.display()
        )
    })?;
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    Ok(parts.join("/"))
}

/// Whether the loader's directory walk would read this file (`*.yaml`/`*.yml`, no hidden entry
/// below the directory given), so the set at REF is read by the same rule as the working tree.
fn walked(below: &str) -> bool {
    let hidden = below.split('/').any(|part| part.starts_with('.'));
    let manifest = below.ends_with(".yaml") || below.ends_with(".yml");
    !hidden && manifest
}

/// One `ls-tree` entry: a blob and its repository-relative path.
struct Entry {
    object: String,
    path: String,
}

/// Lists the blobs at `commit` under `rel` (a file or directory; everything for "").
fn list(top: &Path, commit: &str, rel: &str) -> anyhow::Result<Vec<Entry>> {
    let mut c = git(top);
    c.args(["ls-tree", "-r", "-z", "--full-tree", commit]);
    if !rel.is_empty() {
        c.arg("--").arg(rel);
    }
    let out = run(c, &format!("list `{rel}` at {commit}"))?;
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(record);
        // `<mode> SP <type> SP <object> TAB <path>`
        let Some((meta, path)) = text.split_once('\t') else {
            continue;
        };
        let mut meta = meta.split(' ');
        let (Some(mode), Some(kind), Some(object)) = (meta.next(), meta.next(), meta.next()) else {
            continue;
        };
        // Regular files only: a symlink's blob is its target's name, and a submodule is another
        // repository. TODO(correctness): the working-tree walk follows symlinked files; a
        // manifest reached through a symlink is "added" in a change-scoped plan.
        if kind == "blob" && mode != "120000" {
            entries.push(Entry {
                object: object.to_string(),
                path: path.to_string(),
            });
        }
    }
    Ok(entries)
}

/// Reads blobs through one `git cat-file --batch`, each cut one byte past [`MAX_FILE_BYTES`] so
/// the loader reports an oversized file as it does in the working tree.
fn read_blobs(top: &Path, objects: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = git(top)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git cat-file")?;
    let mut stdin = child.stdin.take().context("git cat-file's stdin")?;
    let request: String = objects.iter().map(|o| format!("{o}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .context("git cat-file's stdout")?
        .read_to_end(&mut out)
        .context("reading git cat-file's output")?;
    let status = child.wait().context("waiting for git cat-file")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to git cat-file panicked"))?
        .context("writing to git cat-file")?;
    if !status.success() {
        bail!("git cat-file failed ({status})");
    }
    let mut blobs = Vec::with_capacity(objects.len());
    let mut at = 0;
    for object in objects {
        // `<object> SP <type> SP <size> LF <contents> LF`
        let eol = out[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| at + p)
            .context("git cat-file's answer ended early")?;
        let header = String::from_utf8_lossy(&out[at..eol]).into_owned();
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| header.starts_with(object) && !header.ends_with("missing"))
            .with_context(|| format!("git cat-file answered `{header}` for {object}"))?;
        let start = eol + 1;
        let end = start + size;
        if end > out.len() {
            bail!("git cat-file's answer for {object} is cut short");
        }
        blobs.push(out[start..end.min(start + MAX_FILE_BYTES + 1)].to_vec());
        at = end + 1;
    }
    Ok(blobs)
}

/// The manifest files that `paths` (default `manifests/`, as for the working tree) held at
/// revision `rev`. A bad revision, or paths outside one git repository, is an error; a path that
/// did not exist at `rev` holds no files there.
pub(crate) fn manifests_at(rev: &str, paths: &[PathBuf]) -> anyhow::Result<Revision> {
    let first = paths.first().context("no manifest paths")?;
    let top_text = run(
        {
            let mut c = git(&dir_of(first));
            c.args(["rev-parse", "--show-toplevel"]);
            c
        },
        &format!(
            "find the repository that holds `{}` (--changed-from reads the manifests from git)",
            first.display()
        ),
    )?;
    let top = PathBuf::from(String::from_utf8_lossy(&top_text).trim())
        .canonicalize()
        .context("the repository's top directory")?;
    let commit = {
        let mut c = git(&top);
        c.args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"));
        let out = c.output().context("running git rev-parse")?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || id.is_empty() {
            bail!(
                "--changed-from `{rev}` is not a commit of the repository at `{}` (with a shallow clone, fetch it first: `git fetch --depth=1 origin {rev}`); nothing was sent to the hub",
                top.display()
            );
        }
        id
    };
    let mut sources: Vec<Source> = Vec::new();
    for path in paths {
        let rel = relative(&top, path)?;
        let is_dir = path.is_dir();
        let entries: Vec<Entry> = list(&top, &commit, &rel)?
            .into_iter()
            .filter(|e| {
                if !is_dir {
                    return e.path == rel;
                }
                let below = if rel.is_empty() {
                    Some(e.path.as_str())
                } else {
                    e.path
                        .strip_prefix(rel.as_str())
                        .and_then(|p| p.strip_prefix('/'))
                };
                below.is_some_and(walked)
            })
            .filter(|e| {
                !sources
                    .iter()
                    .any(|s| s.path == format!("{rev}:{}", e.path))
            })
            .collect();
        let objects: Vec<&str> = entries.iter().map(|e| e.object.as_str()).collect();
        let blobs = read_blobs(&top, &objects)?;
        sources.extend(entries.into_iter().zip(blobs).map(|(e, bytes)| Source {
            path: format!("{rev}:{}", e.path),
            bytes,
        }));
    }
    Ok(Revision { commit, sources })
}
