//! Manifest loading (PURE apart from [`read`]): YAML documents -> validated, expanded [`crate::model::Fleet`].
//!
//! Owns every validation rule of SPEC §2, the secret references of SPEC §13 and the offline rules of the
//! managed hub objects of SPEC §16 (`configurations`, `deployments`), and reports each problem
//! with `file:line:column`. It must not touch the network or the clock; [`read`] is the only function
//! that touches the filesystem, and the environment comes in as an argument of [`load`].

use std::fmt;
use std::path::PathBuf;

mod configuration;
mod deployment;
mod expand;
mod objects;
mod range;
mod raw;
mod resolve;
mod rollout;
pub mod schema;
pub mod secret;
mod twin;
mod yaml;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::model::{Fleet, Location, ObjectKind, Owner, RolloutSpec};
pub use secret::{Env, NoEnv};

/// Largest manifest file accepted.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// One manifest file's name (as shown in messages) and raw bytes.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Everything wrong with a manifest set (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads every `*.yaml`/`*.yml` file under `paths` (directories recursively, sorted; hidden entries and
/// symlinked directories skipped). A path naming a file is read whatever its extension. Files are read up to
/// one byte past [`MAX_FILE_BYTES`], so that [`load`] reports an oversized file with a location while memory
/// stays bounded.
pub fn read(paths: &[PathBuf]) -> std::io::Result<Vec<Source>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| context(e, "reading", path))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut sources = Vec::new();
    for file in files {
        let display = file.to_string_lossy().into_owned();
        if !seen.insert(display.clone()) {
            continue;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&file)
            .and_then(|f| f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| context(e, "reading", &file))?;
        sources.push(Source {
            path: display,
            bytes,
        });
    }
    Ok(sources)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| context(e, "listing", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        let kind = entry
            .file_type()
            .map_err(|e| context(e, "reading", &path))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if is_manifest(&path) && (kind.is_file() || path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

fn context(e: std::io::Error, doing: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{doing} `{}`: {e}", path.display()))
}

/// Parses and validates a manifest set: every problem is reported (sorted by file, line, column), except
/// that a file stops at its first syntax error and set-wide rules wait until every file parses.
/// `${env:NAME}` values are looked up in `env` (the CLI passes the process environment; a variable
/// that is not set is a problem at the value). The digest covers the files, not what `env` holds.
pub fn load(sources: &[Source], env: &dyn Env) -> Result<Fleet, Errors> {
    let mut sorted: Vec<&Source> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let digest = digest(&sorted);

    let mut sink = Sink::default();
    let mut budget = yaml::Budget::default();
    let mut stopped = false;
    let mut documents = Vec::new();
    for source in sorted {
        let file: Arc<str> = Arc::from(source.path.as_str());
        let text = match text(&file, &source.bytes) {
            Ok(text) => text,
            Err(d) => {
                sink.diagnostics.push(d);
                stopped = true;
                continue;
            }
        };
        let parsed = yaml::parse(&file, text, &mut budget);
        sink.diagnostics.extend(parsed.diagnostics);
        if parsed.stopped {
            stopped = true;
            continue;
        }
        for root in &parsed.documents {
            documents.push(raw::document(root, &mut sink));
        }
    }
    if stopped {
        return Err(sink.finish());
    }

    let owner = owner(&documents, &mut sink);
    let rollout = rollout(&documents, &mut sink);
    let configurations = objects::collect(
        ObjectKind::Configuration,
        documents.iter().flat_map(|d| &d.configurations),
        &mut sink,
    );
    let deployments = objects::collect(
        ObjectKind::Deployment,
        documents.iter().flat_map(|d| &d.deployments),
        &mut sink,
    );
    let templates = resolve::Templates::new(&documents, &mut sink);
    let declarations: Vec<_> = documents
        .iter()
        .flat_map(|d| &d.devices)
        .map(|d| (d, templates.resolve(d, &mut sink)))
        .collect();
    let mut lookup = secret::Lookup::new(env);
    let devices = expand::expand(
        &owner,
        &declarations,
        &mut lookup,
        rollout.is_some(),
        &mut sink,
    );
    if !sink.diagnostics.is_empty() {
        return Err(sink.finish());
    }
    Ok(Fleet {
        owner,
        devices,
        digest,
        rollout,
        configurations,
        deployments,
    })
}

/// The documents of one file as JSON, read as [`load`] reads them (for checking a file against
/// [`schema::manifest`]); a file that does not parse gives its diagnostics.
pub fn documents(source: &Source) -> Result<Vec<serde_json::Value>, Errors> {
    let file: Arc<str> = Arc::from(source.path.as_str());
    let text = text(&file, &source.bytes).map_err(|d| Errors(vec![d]))?;
    let parsed = yaml::parse(&file, text, &mut yaml::Budget::default());
    if parsed.stopped {
        return Err(Errors(parsed.diagnostics));
    }
    Ok(parsed.documents.iter().map(yaml::Node::to_json).collect())
}

/// Hex SHA-256 over each source in path order: path, 0, content, 0.
fn digest(sorted: &[&Source]) -> crate::model::Digest {
    let mut hasher = Sha256::new();
    for s in sorted {
        hasher.update(s.path.as_bytes());
        hasher.update([0u8]);
        hasher.update(&s.bytes);
        hasher.update([0u8]);
    }
    crate::model::Digest::from_sha256(hasher.finalize().into())
}

/// The file's text without a BOM, or why it is not a manifest at all.
fn text<'a>(file: &Arc<str>, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    let at = |line, column| Location {
        file: file.clone(),
        line,
        column,
    };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic {
            location: at(1, 1),
            message: format!(
                "file is larger than 16 MiB; manifest files may be at most {MAX_FILE_BYTES} bytes"
            ),
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = 1 + String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count();
        Diagnostic {
            location: at(line, column),
            message: format!(
                "invalid utf-8 at byte offset {}; manifest files must be utf-8 text",
                e.valid_up_to()
            ),
        }
    })
}

/// The set's one owner, [`crate::model::DEFAULT_OWNER`] when none is named.
fn owner(documents: &[raw::Document], sink: &mut Sink) -> Owner {
    let mut first: Option<&raw::Located<String>> = None;
    for owner in documents.iter().filter_map(|d| d.owner.as_ref()) {
        match first {
            Some(f) => sink.error(
                &owner.loc,
                format!(
                    "owner is already set to `{}` at {}; a manifest set has exactly one owner",
                    f.value, f.loc
                ),
            ),
            None => first = Some(owner),
        }
    }
    match first {
        None => Owner::default_owner(),
        Some(o) => Owner::new(o.value.clone()).unwrap_or_else(|e| {
            // `raw` checked the name already; a disagreement is reported, not trusted.
            sink.error(&o.loc, e.to_string());
            Owner::default_owner()
        }),
    }
}

/// The set's one `rollout` block, if any; a second one is reported naming the first.
fn rollout(documents: &[raw::Document], sink: &mut Sink) -> Option<RolloutSpec> {
    let mut blocks = documents.iter().filter_map(|d| d.rollout.as_ref());
    let first = blocks.next()?;
    for again in blocks {
        sink.error(
            &again.loc,
            format!(
                "rollout is already set at {}; a manifest set has at most one `rollout` block",
                first.loc
            ),
        );
    }
    first.value.clone()
}

/// Collects diagnostics; `once` keeps one report per location and kind (ranges and templates repeat).
#[derive(Debug, Default)]
struct Sink {
    diagnostics: Vec<Diagnostic>,
    seen: HashSet<(Location, String)>,
}

impl Sink {
    fn error(&mut self, location: &Location, message: String) {
        self.diagnostics.push(Diagnostic {
            location: location.clone(),
            message,
        });
    }

    fn once(&mut self, location: &Location, kind: &str, message: String) {
        if self.seen.insert((location.clone(), kind.to_string())) {
            self.error(location, message);
        }
    }

    fn finish(mut self) -> Errors {
        self.diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
        self.diagnostics.dedup();
        Errors(self.diagnostics)
    }
}
