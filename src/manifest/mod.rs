//! Manifest loading (PURE apart from [`read`]): YAML documents -> validated, expanded [`crate::model::Fleet`].
//!
//! Owns every validation rule of SPEC §2 and reports each problem with `file:line:column`. It must not
//! touch the network or the clock; [`read`] is the only function that touches the filesystem.

use std::fmt;
use std::path::PathBuf;

use crate::model::{Fleet, Location};

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

/// Reads every `*.yaml`/`*.yml` file under `paths` (directories recursively, sorted).
pub fn read(_paths: &[PathBuf]) -> std::io::Result<Vec<Source>> {
    Ok(Vec::new())
}

/// Parses and validates a manifest set.
pub fn load(_sources: &[Source]) -> Result<Fleet, Errors> {
    Err(Errors(Vec::new()))
}
