//! Manifests: the paths a command reads (`manifests/` by default), the environment that
//! `${env:NAME}` takes values from, and the manifests at a git revision (`--changed-from`), with
//! which twins a change touches. Nothing here talks to the hub.

use std::path::PathBuf;

use anyhow::Context;

use twinops_core::manifest::Errors;
use twinops_core::model::{Fleet, Scope, Targets};
use twinops_core::plan::scope::ScopeDoc;

/// The manifest paths, `manifests/` by default.
pub(crate) fn paths(given: &[PathBuf]) -> Vec<PathBuf> {
    if given.is_empty() {
        vec![PathBuf::from("manifests")]
    } else {
        given.to_vec()
    }
}

/// The process environment, where `${env:NAME}` values come from (a value that is not UTF-8 counts
/// as not set: a twin value is JSON text).
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads and validates manifests: the fleet, or every problem at `file:line:column`.
pub(crate) fn load(given: &[PathBuf]) -> anyhow::Result<Result<Fleet, Errors>> {
    let sources = twinops_core::manifest::read(&paths(given)).context("reading manifests")?;
    Ok(twinops_core::manifest::load(&sources, &env))
}

/// A plan narrowed to the twins a manifest change touched (`--changed-from`): what the plan
/// document records and which twins it covers.
pub(crate) struct Changed {
    pub doc: ScopeDoc,
    pub scope: Scope,
}

/// Manifests at a revision that do not validate.
pub(crate) struct Invalid {
    /// The full commit ID the revision named.
    pub commit: String,
    pub errors: Errors,
}

/// Reads the manifests at `rev` and compares them with `fleet` (the working tree's). An error when
/// `rev` is no commit; `Err(Invalid)` when its manifests do not validate.
pub(crate) fn changed_from(
    rev: &str,
    given: &[PathBuf],
    fleet: &Fleet,
) -> anyhow::Result<Result<Changed, Invalid>> {
    let at = crate::git::manifests_at(rev, &paths(given))?;
    // `${env:NAME}` at REF takes the same environment as the working tree's manifests; a variable
    // the working tree no longer uses (and the job may not set) stands in as a placeholder, which
    // makes that twin differ, so it is read and planned like any other changed twin.
    let env = |name: &str| {
        Some(
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| format!("(${{env:{name}}} is not set)")),
        )
    };
    let before = match twinops_core::manifest::load(&at.sources, &env) {
        Ok(f) => f,
        Err(errors) => {
            return Ok(Err(Invalid {
                commit: at.commit,
                errors,
            }));
        }
    };
    let scope = twinops_core::plan::scope::changed(&before, fleet);
    Ok(Ok(Changed {
        doc: ScopeDoc {
            changed_from: at.commit,
            twins: scope.twins(),
        },
        scope,
    }))
}

/// The targets of a plan: the `--target` patterns, narrowed to a change's twins.
pub(crate) fn targets(patterns: &[String], changed: Option<&Changed>) -> Targets {
    let t = Targets::new(patterns);
    match changed {
        Some(c) => t.within(c.scope.clone()),
        None => t,
    }
}
