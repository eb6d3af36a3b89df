//! The local IoT Hub emulator: routes, store, authz, query language, faults, MQTT device side.

pub mod query;
