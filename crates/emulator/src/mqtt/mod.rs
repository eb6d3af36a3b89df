//! The emulator's device side (SPEC §9, reference §12 and §15.2): an MQTT 3.1.1 broker subset over
//! TLS 1.2+ that Microsoft's `azure-iot-device` SDK talks to unchanged.
//!
//! - `codec` frames packets (hand-written, bounded); `topic` knows IoT Hub's topic names;
//!   `credentials` checks CONNECT's client ID, username and SAS password.
//! - `session` serves one connection: twin GET and reported PATCH through the same store calls as
//!   the REST side, subscriptions, keep-alive.
//! - `broker` keeps one connection per identity, fans the store's committed desired changes out
//!   to subscribers, and records presence (`connectionState`, `lastActivityTime`).
//! - `client` is a small TLS MQTT client on the same codec; `simulate` runs a fleet of virtual
//!   devices with it (`--simulate-devices`).
//!
//! Not served: cloud-to-device messages, direct methods, X.509 authentication, retained
//! messages, persistent sessions (CONNACK never reports a session present).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::server::Hub;
use super::tls;

mod broker;
pub mod client;
pub mod codec;
pub mod credentials;
mod edge_agent;
mod session;
pub mod simulate;
pub mod topic;

/// The port IoT Hub's device SDKs always use.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8883";

/// `--mqtt`: `ADDR:PORT`, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("`{s}` is not ADDR:PORT (e.g. 127.0.0.1:8883) or `off`"))
    }
}

/// The emulator's TLS settings without HTTP's ALPN protocols (MQTT clients offer none, and one
/// offering an unknown protocol must not be refused over it).
pub(crate) fn tls_config(rest: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut c = rest.clone();
    c.alpn_protocols.clear();
    Arc::new(c)
}

/// Serves MQTT over TLS on `listener` until `stop` turns true, then drops every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (broker, presence) = broker::Broker::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(broker::fan_out(
        broker.clone(),
        hub.store.subscribe_desired_changes(),
    ));
    tasks.spawn(broker::write_presence(hub.clone(), presence));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            tcp = tls::next_connection(&listener, "MQTT") => {
                let (acceptor, hub, broker, stop) =
                    (acceptor.clone(), hub.clone(), broker.clone(), stop.clone());
                tasks.spawn(async move {
                    if let Some(tls) = tls::handshake(&acceptor, tcp).await {
                        session::run(tls, hub, broker, stop).await;
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
