//! The emulator's device side (SPEC §9, reference §12 and §15.2): an MQTT 3.1.1 broker subset over
//! TLS 1.2+ that Microsoft's `azure-iot-device` SDK talks to unchanged, on the MQTT port and, as
//! MQTT over WebSockets, on the HTTPS port (IoT Hub's port 443 path for devices behind a firewall).
//!
//! - [`Devices`] is the part both transports share: the broker every connection registers with.
//! - `websocket` upgrades `GET /$iothub/websocket` (subprotocol `mqtt`) on the HTTPS listener and
//!   runs the same session over the WebSocket's binary frames.
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

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::presence::Event;
use super::server::Hub;
use super::store::Target;
use super::tls;

mod broker;
pub mod client;
pub mod codec;
pub mod credentials;
mod edge_agent;
mod session;
pub mod simulate;
pub mod topic;
pub(crate) mod websocket;

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

/// What every device connection shares, whichever transport it came over: the broker (one
/// connection per identity, desired-change fan-out, presence) and the hub's stop signal.
pub(crate) struct Devices {
    broker: Arc<broker::Broker>,
    stop: watch::Receiver<bool>,
}

/// The presence events of a [`Devices`]' connections, for [`run_broker`] to write.
pub(crate) struct Presence(mpsc::UnboundedReceiver<(Target, Event)>);

impl Devices {
    /// The device side of a hub that stops when `stop` turns true.
    pub(crate) fn new(stop: watch::Receiver<bool>) -> (Devices, Presence) {
        let (broker, presence) = broker::Broker::new();
        (Devices { broker, stop }, Presence(presence))
    }

    /// Serves one device connection (a TLS stream, or a WebSocket's bytes) until it closes or
    /// the hub stops.
    pub(crate) async fn serve_connection<S>(&self, hub: Arc<Hub>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        session::run(stream, hub, self.broker.clone(), self.stop.clone()).await;
    }
}

/// Forwards the store's desired changes to the connections and writes their presence, until
/// `stop` turns true.
pub(crate) async fn run_broker(hub: Arc<Hub>, presence: Presence, mut stop: watch::Receiver<bool>) {
    let Some(devices) = hub.devices.as_ref() else {
        return;
    };
    let fan_out = broker::fan_out(
        devices.broker.clone(),
        hub.store.subscribe_desired_changes(),
    );
    let presence = broker::write_presence(hub.clone(), presence.0);
    tokio::select! {
        _ = stop.changed() => {}
        () = fan_out => {}
        () = presence => {}
    }
}

/// Serves MQTT over TLS on `listener` until `stop` turns true, then drops every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    mut stop: watch::Receiver<bool>,
) {
    if hub.devices.is_none() {
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            tcp = tls::next_connection(&listener, "MQTT") => {
                let (acceptor, hub) = (acceptor.clone(), hub.clone());
                tasks.spawn(async move {
                    if let Some(tls) = tls::handshake(&acceptor, tcp).await
                        && let Some(devices) = hub.devices.as_ref()
                    {
                        devices.serve_connection(hub.clone(), tls).await;
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
