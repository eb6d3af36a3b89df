//! IoT Hub's protocol, defined once and shared by the client ([`crate::hub`]) and the emulator
//! ([`crate::emulator`]): wire types, SAS tokens, connection strings and error bodies, ID and twin
//! rules, operation classes and quotas with the token bucket that paces and simulates them, the
//! duration grammar of the flags, which hosts are loopback, and the query language (grammar and
//! evaluation) that the emulator answers queries with and the manifest loader checks target
//! conditions with.
//!
//! Nothing here performs I/O or reads the clock: callers pass the time in.

// What code outside this crate does not use is `pub(crate)`, so rustc reports what is dead.
#![warn(unreachable_pub)]

pub mod bucket;
pub mod connection_string;
pub mod duration;
pub mod error_body;
pub mod error_code;
pub mod host;
pub mod ids;
pub mod query;
pub mod quota;
pub mod sas;
pub mod twin_rules;
pub mod wire;

/// The api-version twinops sends (the one the service SDKs and the swagger use).
pub const API_VERSION: &str = "2021-04-12";

/// api-versions the emulator accepts, as IoT Hub accepts several.
pub const ACCEPTED_API_VERSIONS: &[&str] = &[
    "2021-04-12",
    "2020-05-31-preview",
    "2020-09-30",
    "2020-03-13",
    "2019-10-01",
    "2018-06-30",
    "2024-03-31",
];

/// The response header that names IoT Hub's error code.
pub const ERROR_CODE_HEADER: &str = "iothub-errorcode";
/// Query paging request header (page size).
pub const MAX_ITEM_COUNT_HEADER: &str = "x-ms-max-item-count";
/// Query paging header (request and response).
pub const CONTINUATION_HEADER: &str = "x-ms-continuation";
/// Query response header naming the row type.
pub const ITEM_TYPE_HEADER: &str = "x-ms-item-type";
