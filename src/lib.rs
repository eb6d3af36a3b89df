//! twinops: GitOps for Azure IoT Hub fleets.
//!
//! Data flows down this list:
//!
//! - [`cli`] parses arguments; [`cmd`] turns each subcommand into a request and picks the exit status.
//! - [`manifest`] (pure) reads YAML manifests into a validated [`model::Fleet`]: templates, ranges,
//!   `${device}` substitution, every validation rule with `file:line:column`.
//! - [`hub`] is the client edge: HTTPS calls to IoT Hub's service REST API with SAS or bearer auth, typed
//!   errors, retry policy, pacing and query paging; it converts wire twins into [`model`] observations.
//! - [`plan`] (pure) diffs the fleet against what the hub holds, through the ownership ledger, into a
//!   [`plan::Plan`] of changes with minimal merge patches and the etags they were computed against.
//! - [`apply`] executes a plan: phases, bounded concurrency, the 412 re-read rule, per-item outcomes.
//! - [`render`] (pure) turns plans and reports into text, JSON and markdown; [`output`] is the only place
//!   that prints.
//! - [`iothub`] holds IoT Hub's protocol, shared by the client and the [`emulator`]: wire types, SAS tokens,
//!   connection strings, error bodies. The emulator is a local IoT Hub (REST over HTTPS, durable state,
//!   and the device side over MQTT with a simulated fleet).

pub mod apply;
pub mod cli;
pub mod cmd;
pub mod emulator;
pub mod hub;
pub mod iothub;
pub mod manifest;
pub mod model;
pub mod output;
pub mod plan;
pub mod render;
