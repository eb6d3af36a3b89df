//! One device connection, from CONNECT to close: authentication against the registry, then the
//! twin requests (GET, reported PATCH) answered in order through the same store calls as the
//! REST side, subscriptions, pings and the keep-alive deadline (1.5 × the client's, capped at
//! IoT Hub's 1767 s). Other publishes (telemetry, method responses) are acknowledged and dropped.
//!
//! A writer task owns the TLS write half and drains the connection's outbound queue, so desired
//! notifications from the broker interleave with answers without blocking the reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc, watch};

use super::broker::{Broker, Conn, OUTBOUND_QUEUE};
use super::codec::{self, Connect, Packet, Publish, connack};
use super::credentials::{self, Refusal, Who};
use super::topic::{self, Inbound};
use crate::clock::unix_now;
use crate::error::Error;
use crate::server::Hub;
use crate::store::Target;

/// Packets above this are refused and the connection closed (IoT Hub's message limit).
pub(crate) const MAX_PACKET_BYTES: usize = 256 * 1024;
/// A new connection must send CONNECT within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// IoT Hub's largest keep-alive.
const MAX_KEEP_ALIVE_SECS: u64 = 1767;

/// Serves one accepted (TLS) connection until it closes or the hub stops.
pub(crate) async fn run<S>(
    stream: S,
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, codec::read(&mut r, MAX_PACKET_BYTES)).await;
    let Ok(Ok(Some(Packet::Connect(connect)))) = first else {
        return;
    };
    if connect.protocol_level != codec::PROTOCOL_LEVEL {
        let _ = send_now(&mut w, connack_packet(connack::UNACCEPTABLE_PROTOCOL)).await;
        return;
    }
    let hub2 = hub.clone();
    let checked = tokio::task::spawn_blocking(move || authenticate(&hub2, &connect)).await;
    let (who, keep_alive) = match checked {
        Ok(Ok(ok)) => ok,
        Ok(Err(refusal)) => {
            tracing::debug!(%refusal, "MQTT connect refused");
            let _ = send_now(&mut w, connack_packet(refusal.connack())).await;
            return;
        }
        Err(_) => return,
    };
    let target = who.target();
    let (out, mut queue) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    let kick = Arc::new(Notify::new());
    let desired = Arc::new(AtomicBool::new(false));
    // CONNACK goes first in the queue, before anything the broker may send once registered.
    let _ = out.try_send(codec::encode(&connack_packet(connack::ACCEPTED)));
    let id = broker.register(
        &target,
        Conn {
            id: 0,
            out: out.clone(),
            kick: kick.clone(),
            desired: desired.clone(),
        },
    );
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if w.write_all(&bytes).await.is_err() {
                return;
            }
            // Write what is queued together, then flush once.
            while let Ok(more) = queue.try_recv() {
                if w.write_all(&more).await.is_err() {
                    return;
                }
            }
            if w.flush().await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let session = Session {
        hub,
        broker: broker.clone(),
        who,
        target: target.clone(),
        out,
        desired,
    };
    let silence = keep_alive;
    loop {
        let next = async {
            match silence {
                Some(d) => tokio::time::timeout(d, codec::read(&mut r, MAX_PACKET_BYTES))
                    .await
                    .unwrap_or(Ok(None)),
                None => codec::read(&mut r, MAX_PACKET_BYTES).await,
            }
        };
        let packet = tokio::select! {
            p = next => p,
            _ = kick.notified() => break,
            _ = stop.changed() => break,
        };
        match packet {
            Ok(Some(p)) => {
                if !session.handle(p).await {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    broker.unregister(&target, id);
    drop(session);
    // The broker's copy of the queue went with the registration: the writer drains and ends.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

fn connack_packet(code: u8) -> Packet {
    Packet::ConnAck {
        session_present: false,
        code,
    }
}

async fn send_now<W: AsyncWrite + Unpin>(w: &mut W, p: Packet) -> std::io::Result<()> {
    w.write_all(&codec::encode(&p)).await?;
    w.flush().await
}

/// Checks a CONNECT against the registry; returns the identity and the silence allowed.
fn authenticate(hub: &Hub, c: &Connect) -> Result<(Who, Option<Duration>), Refusal> {
    let hosts = &hub.authority.hosts;
    let who = credentials::identify(&c.client_id, c.username.as_deref(), hosts)?;
    let auth = match &who.module {
        None => {
            let d = hub
                .store
                .device(&who.device)
                .map_err(|_| Refusal::Identity)?;
            (d.status == "enabled").then_some(d.auth)
        }
        Some(m) => {
            let d = hub
                .store
                .device(&who.device)
                .map_err(|_| Refusal::Identity)?;
            let module = hub
                .store
                .module(&who.device, m)
                .map_err(|_| Refusal::Identity)?;
            // IoT Edge's `$edgeAgent` and `$edgeHub` have no keys of their own: the runtime
            // signs their tokens with the device's keys.
            let auth = if twinops_iothub::ids::is_system_module(m) && d.edge {
                d.auth
            } else {
                module.auth
            };
            (d.status == "enabled").then_some(auth)
        }
    }
    .ok_or(Refusal::Identity)?;
    let keys: Vec<&str> = [&auth.primary_key, &auth.secondary_key]
        .into_iter()
        .filter_map(|k| k.as_deref())
        .collect();
    credentials::verify(
        c.password.as_deref(),
        &who,
        &keys,
        &hub.authority.policies,
        hosts,
        unix_now(),
    )?;
    let keep_alive = (c.keep_alive > 0).then(|| {
        let secs = u64::from(c.keep_alive).min(MAX_KEEP_ALIVE_SECS);
        Duration::from_millis(secs * 1500)
    });
    Ok((who, keep_alive))
}

struct Session {
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    who: Who,
    target: Target,
    out: mpsc::Sender<Vec<u8>>,
    desired: Arc<AtomicBool>,
}

impl Session {
    async fn send(&self, p: Packet) -> bool {
        self.out.send(codec::encode(&p)).await.is_ok()
    }

    /// Handles one packet; `false` closes the connection.
    async fn handle(&self, p: Packet) -> bool {
        match p {
            Packet::Publish(p) => self.publish(p).await,
            Packet::Subscribe { id, filters } => {
                let module = self.who.module.as_deref();
                let codes = filters
                    .iter()
                    .map(|(f, qos)| {
                        if !topic::may_subscribe(f, &self.who.device, module) {
                            return codec::SUBSCRIPTION_FAILED;
                        }
                        if f == topic::DESIRED_CHANGES {
                            self.desired.store(true, Ordering::Release);
                        }
                        (*qos).min(1)
                    })
                    .collect();
                self.send(Packet::SubAck { id, codes }).await
            }
            Packet::Unsubscribe { id, filters } => {
                if filters.iter().any(|f| f == topic::DESIRED_CHANGES) {
                    self.desired.store(false, Ordering::Release);
                }
                self.send(Packet::UnsubAck { id }).await
            }
            Packet::PingReq => self.send(Packet::PingResp).await,
            // Acknowledgements of our QoS 0 publishes are not expected but harmless.
            Packet::PubAck { .. } => true,
            // DISCONNECT, QoS 2 flows, a second CONNECT, server-side packets: close.
            _ => false,
        }
    }

    async fn publish(&self, p: Publish) -> bool {
        if p.qos > 1 {
            return false;
        }
        self.broker.active(&self.target);
        let puback = p.id.filter(|_| p.qos == 1).map(|id| Packet::PubAck { id });
        if let Some(ack) = puback
            && !self.send(ack).await
        {
            return false;
        }
        let answer = match topic::classify(&p.topic) {
            Inbound::TwinGet { rid } => self.twin_get(&rid).await,
            Inbound::TwinReported { rid } => self.twin_reported(&rid, &p.payload).await,
            Inbound::Other => return true,
        };
        self.send(Packet::Publish(answer)).await
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Hub) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || f(&hub))
            .await
            .map_err(|e| Error::Server(format!("worker failed: {e}")))?
    }

    /// `res/200` with `{"desired": {..., "$version"}, "reported": {..., "$version"}}`.
    async fn twin_get(&self, rid: &str) -> Publish {
        let target = self.target.clone();
        let (status, payload) = match self.store(move |h| h.store.twin(&target)).await {
            Ok(twin) => {
                let section = |name: &str| {
                    let mut s = twin["properties"][name]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    s.remove("$metadata");
                    Value::Object(s)
                };
                let body = json!({"desired": section("desired"), "reported": section("reported")});
                (200, body.to_string().into_bytes())
            }
            Err(e) => (e.status().as_u16(), Vec::new()),
        };
        Publish {
            topic: topic::response(status, rid, None),
            payload,
            ..Publish::default()
        }
    }

    /// `res/204` with the new reported `$version`, or the error's status (400 for bad JSON).
    async fn twin_reported(&self, rid: &str, payload: &[u8]) -> Publish {
        let status_and_version = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(patch)) => {
                let target = self.target.clone();
                let done = self
                    .store(move |h| h.store.patch_reported(&target, &patch))
                    .await;
                match done {
                    Ok(twin) => (204, twin["properties"]["reported"]["$version"].as_i64()),
                    Err(e) => (e.status().as_u16(), None),
                }
            }
            _ => (400, None),
        };
        let (status, version) = status_and_version;
        Publish {
            topic: topic::response(status, rid, version),
            ..Publish::default()
        }
    }
}
