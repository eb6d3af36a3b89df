//! What the MQTT tests (over TLS on the MQTT port and over WebSockets on the HTTPS port) share:
//! identities to connect as, their keys, SAS expiries and payloads.

use std::time::Duration;

use serde_json::Value;
use twinops_emulator::mqtt::codec::Publish;
use twinops_emulator::mqtt::credentials::Who;
use twinops_iothub::connection_string::Secret;

/// The longest a test waits for one packet from the hub.
pub const WAIT: Duration = Duration::from_secs(10);

/// Seconds since the Unix epoch, what a SAS token's expiry counts in.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Device `d`, or its module `m`.
pub fn who(d: &str, m: Option<&str>) -> Who {
    Who {
        device: d.into(),
        module: m.map(str::to_string),
    }
}

/// The primary key of an identity as the registry answers it.
pub fn key_of(identity: &Value) -> Secret {
    Secret::new(
        identity["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .expect("a primary key"),
    )
}

/// A PUBLISH's JSON payload.
pub fn body(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("a JSON payload")
}
