//! What each command does, as cargo's `ops` does it: each operation is a function from a request
//! to a typed result, composed from the hub client ([`crate::hub`]), the executor
//! ([`crate::apply`]) and the pure core. Nothing here prints or picks an exit code; progress goes
//! out as typed events through a `Reporter`, and `cmd` draws it.
//!
//! - [`manifests`]: loading and validating manifests, and the manifests at a git revision
//!   (`--changed-from`);
//! - [`connect`]: the hub a run talks to (`--hub`, the embedded emulator, pacing);
//! - [`plan`]: read the hub and diff, into a complete plan; [`objects`]: its managed objects;
//! - [`apply`]: a plan (made now, or saved and resolved) executed, and `--wait`;
//! - [`drift`] and [`export`]: the read-only reports.

pub(crate) mod apply;
pub(crate) mod connect;
pub(crate) mod drift;
pub(crate) mod export;
pub(crate) mod export_objects;
pub(crate) mod manifests;
pub(crate) mod objects;
pub(crate) mod plan;
pub(crate) mod read;
