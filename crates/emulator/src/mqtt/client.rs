//! A small MQTT-over-TLS client on the broker's codec, speaking as a device SDK does: used by
//! the simulated fleet and by the integration tests. Not a general MQTT client: no QoS 2, no
//! retransmission, no reconnect (callers reconnect).
//!
//! Incoming packets are read by a task of their own into a queue, so waiting for one is
//! cancel-safe inside `select!`.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWriteExt, BufReader, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use super::codec::{self, Connect, Packet, Publish};
use super::credentials::Who;
use twinops_iothub::connection_string::Secret;
use twinops_iothub::sas;

/// The largest packet accepted from the hub (twin documents are far smaller).
const MAX_INCOMING_BYTES: usize = 1 << 20;

/// Why a connection did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the hub refused the connection with CONNACK {0}")]
    Refused(u8),
    #[error("the hub closed the connection without a CONNACK")]
    NoConnAck,
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the CONNACK: {0}")]
    Codec(#[from] codec::Error),
    #[error("the server name is not valid")]
    ServerName,
}

/// A TLS client configuration trusting exactly the PEM certificates in `pem`.
pub fn tls_trusting(pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The CONNECT a device SDK sends for `who` on hub `host` (no port), with a SAS token signed by
/// `key` until `expiry` (seconds since the epoch).
pub fn device_connect(
    host: &str,
    who: &Who,
    key: &Secret,
    expiry: u64,
) -> Result<Connect, sas::Error> {
    let resource = match &who.module {
        None => format!("{host}/devices/{}", who.device),
        Some(m) => format!("{host}/devices/{}/modules/{m}", who.device),
    };
    let token = sas::sign(&resource, key, None, expiry)?;
    Ok(Connect {
        protocol_level: codec::PROTOCOL_LEVEL,
        clean_session: false,
        keep_alive: 60,
        client_id: who.name(),
        will: None,
        username: Some(format!(
            "{host}/{}/?api-version=2021-04-12&DeviceClientType=twinops",
            who.name()
        )),
        password: Some(token.expose().as_bytes().to_vec()),
    })
}

/// A connected client.
pub struct Client {
    writer: WriteHalf<TlsStream<TcpStream>>,
    incoming: mpsc::Receiver<Packet>,
    reader: JoinHandle<()>,
    next_id: u16,
}

impl Client {
    /// Connects over TLS (checking the certificate for `server_name`), sends `connect` and waits
    /// for the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        connect: &Connect,
    ) -> Result<Client, ConnectError> {
        let name =
            ServerName::try_from(server_name.to_string()).map_err(|_| ConnectError::ServerName)?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        stream
            .write_all(&codec::encode(&Packet::Connect(connect.clone())))
            .await?;
        stream.flush().await?;
        let (r, writer) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        match codec::read(&mut r, MAX_INCOMING_BYTES).await? {
            Some(Packet::ConnAck { code: 0, .. }) => {}
            Some(Packet::ConnAck { code, .. }) => return Err(ConnectError::Refused(code)),
            _ => return Err(ConnectError::NoConnAck),
        }
        let (tx, incoming) = mpsc::channel(1024);
        let reader = tokio::spawn(async move {
            while let Ok(Some(p)) = codec::read(&mut r, MAX_INCOMING_BYTES).await {
                if tx.send(p).await.is_err() {
                    break;
                }
            }
        });
        Ok(Client {
            writer,
            incoming,
            reader,
            next_id: 0,
        })
    }

    /// A fresh packet ID (never 0).
    pub(crate) fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    pub async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        self.writer.write_all(&codec::encode(p)).await?;
        self.writer.flush().await
    }

    /// Publishes with QoS 1 (the acknowledgement arrives through [`Client::recv`]).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> std::io::Result<u16> {
        let id = self.next_id();
        let p = Packet::Publish(Publish {
            topic: topic.to_string(),
            qos: 1,
            id: Some(id),
            payload: payload.to_vec(),
            ..Publish::default()
        });
        self.send(&p).await?;
        Ok(id)
    }

    /// Subscribes to `filters` with QoS 1 (the SUBACK arrives through [`Client::recv`]).
    pub async fn subscribe(&mut self, filters: &[&str]) -> std::io::Result<u16> {
        let id = self.next_id();
        let filters = filters.iter().map(|f| (f.to_string(), 1)).collect();
        self.send(&Packet::Subscribe { id, filters }).await?;
        Ok(id)
    }

    /// The next packet from the hub; `None` once the connection is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.incoming.recv().await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
