//! The integration tests of twinops, one test binary (so a change links one binary, not one per file):
//! the real `twinops` binary against a real emulator on `127.0.0.1:0`, the hub client against the
//! emulator, Microsoft's SDKs against the emulator, and the manifest schema in Python's, Node's and
//! `check-jsonschema`'s validators. `support` spawns emulators and talks to them;
//! `cli` runs the binary. The emulator's own tests live in its package (`crates/emulator/tests/it/`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod cli;
mod cli_acknowledgements;
mod cli_apply;
mod cli_args;
mod cli_changed_from;
mod cli_corpus;
mod cli_deployments;
mod cli_export_read;
mod cli_gitops;
mod cli_live_hub;
mod cli_objects;
mod cli_output;
mod cli_ownership;
mod cli_rollout;
mod cli_secrets;
mod cli_snapshots;
mod cli_twin_rules;
mod crash;
mod examples_workflows;
mod fuzz_regressions;
mod hub_client;
mod reliability;
mod schema_tools;
mod sdk_node;
mod sdk_python;
mod sdk_python_device;
mod simulated_answers;
mod simulated_fleet;
mod soak;
mod support;
