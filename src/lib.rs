//! twinops: GitOps for Azure IoT Hub fleets. This crate is the command line, the hub client and the
//! executor; the workspace's other crates hold what they build on, and the compiler keeps the arrows
//! pointing down:
//!
//! - `twinops-iothub` is IoT Hub's protocol, defined once for client and emulator: wire types, SAS
//!   tokens, connection strings, error bodies, ID and twin rules, operation classes and quotas, the
//!   token bucket, the duration grammar and the query language (which the emulator answers queries
//!   with and the manifest loader checks target conditions with). Plain data and crypto.
//! - `twinops-core` is the pure reconciler: manifests → model → plan (ledger, typed changes, drift),
//!   the report types, and the renderers.
//! - `twinops-emulator` is the local IoT Hub. It depends on `twinops-iothub` only, never on the
//!   reconciler.
//!
//! In this crate, data flows down this list:
//!
//! - [`cli`] parses arguments; [`cmd`] turns each subcommand into a request for [`ops`], renders
//!   the result and picks the exit status; no command calls another.
//! - `ops` is what each command does (plan, apply, drift, export, with the manifests and the hub
//!   they need), a function from a request to a typed result; it prints nothing.
//! - [`git`] reads the manifests at a git revision (`--changed-from`) through the `git` command;
//!   which twins differ is decided in `twinops_core::plan::scope`.
//! - `apply` executes a plan: phases, bounded concurrency, the 412 re-read rule, the rollout's
//!   waves, per-item outcomes and typed progress events.
//! - [`hub`] is the client edge and the only place that knows IoT Hub's protocol: `hub::Hub` in
//!   model terms over the REST API (SAS or bearer auth, typed errors, retry policy, pacing, query
//!   paging), bulk rows, scope rules, SQL, and the one twin reader (`hub::read`).
//! - [`output`] is the only place that prints.
//!
//! `docs/architecture.md` follows a plan through these modules.

// What code outside this crate does not use is `pub(crate)`, so rustc reports what is dead.
#![warn(unreachable_pub)]

pub(crate) mod apply;
pub mod cli;
pub mod cmd;
pub(crate) mod git;
pub mod hub;
pub(crate) mod ops;
pub mod output;
pub(crate) mod storage;
