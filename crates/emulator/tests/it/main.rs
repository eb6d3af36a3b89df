//! The emulator's integration tests, one test binary: the real `twinops-emulator` binary (the same
//! command line as `twinops emulator`) on `127.0.0.1:0`, driven over HTTPS and MQTT, and the
//! in-process library API (`twinops_emulator::start`). `support` spawns emulators and talks to them.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod emulator_auth;
mod emulator_az_cli;
mod emulator_configurations;
mod emulator_deployments;
mod emulator_faults;
mod emulator_hostile;
mod emulator_identity;
mod emulator_jobs;
mod emulator_kill;
mod emulator_live_hub;
mod emulator_mqtt;
mod emulator_mqtt_websocket;
mod emulator_query_bulk;
mod emulator_sas;
mod emulator_twins;
mod support;
