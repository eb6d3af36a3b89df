//! The connected identities: at most one connection each (a new CONNECT closes the old one, as
//! IoT Hub does), the desired-change fan-out from the store to the connections that subscribed,
//! and the ordered, batched presence writes (`connectionState`, `lastActivityTime`).
//!
//! Owns no I/O of its own: sessions hand it an outbound queue; it never waits on a slow client
//! (a full queue closes that connection, which then reconnects and re-reads its twin).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};

use super::codec::{self, Packet, Publish};
use super::topic;
use crate::presence::Event;
use crate::server::Hub;
use crate::store::{DesiredChange, Target};

/// Packets queued for one connection before it counts as too slow and is closed.
pub(crate) const OUTBOUND_QUEUE: usize = 256;

/// How long activity-only presence updates are gathered before one write.
const ACTIVITY_BATCH: Duration = Duration::from_millis(500);

/// One live connection, as the broker sees it.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) out: mpsc::Sender<Vec<u8>>,
    /// Closes the connection (superseded or too slow).
    pub(crate) kick: Arc<Notify>,
    /// Subscribed to desired changes.
    pub(crate) desired: Arc<AtomicBool>,
}

pub(crate) struct Broker {
    conns: Mutex<HashMap<Target, Conn>>,
    next_id: AtomicU64,
    presence: mpsc::UnboundedSender<(Target, Event)>,
}

impl Broker {
    /// A broker and the receiving end of its presence events (for [`write_presence`]).
    pub(crate) fn new() -> (Arc<Broker>, mpsc::UnboundedReceiver<(Target, Event)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let broker = Broker {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            presence: tx,
        };
        (Arc::new(broker), rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Conn>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection for `target`, closing the one it replaces. Returns its ID.
    pub(crate) fn register(&self, target: &Target, mut conn: Conn) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conn.id = id;
        let mut conns = self.lock();
        if let Some(old) = conns.insert(target.clone(), conn) {
            old.kick.notify_one();
        }
        // Sent under the lock so presence events reach the writer in registration order.
        let _ = self.presence.send((target.clone(), Event::Connected));
        id
    }

    /// Removes connection `id` of `target` unless a newer one has replaced it.
    pub(crate) fn unregister(&self, target: &Target, id: u64) {
        let mut conns = self.lock();
        if conns.get(target).is_some_and(|c| c.id == id) {
            conns.remove(target);
            let _ = self.presence.send((target.clone(), Event::Disconnected));
        }
    }

    /// Notes that the device sent something.
    pub(crate) fn active(&self, target: &Target) {
        let _ = self.presence.send((target.clone(), Event::Active));
    }

    /// Sends a desired change to its identity's connection if it subscribed; a connection whose
    /// queue is full is closed.
    pub(crate) fn notify(&self, change: &DesiredChange) {
        let conns = self.lock();
        let Some(conn) = conns.get(&change.target) else {
            return;
        };
        if !conn.desired.load(Ordering::Acquire) {
            return;
        }
        let packet = Packet::Publish(Publish {
            topic: topic::desired_change(change.version),
            payload: desired_payload(change),
            ..Publish::default()
        });
        if conn.out.try_send(codec::encode(&packet)).is_err() {
            conn.kick.notify_one();
        }
    }

    /// Closes every connection (desired changes were lost: clients must re-read their twins).
    fn kick_all(&self) {
        for c in self.lock().values() {
            c.kick.notify_one();
        }
    }
}

/// The patch as written plus `"$version"`.
pub(crate) fn desired_payload(change: &DesiredChange) -> Vec<u8> {
    let mut body = change.patch.clone();
    body.insert("$version".into(), Value::from(change.version));
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// Forwards the store's desired changes to the connections until the store goes away.
pub(crate) async fn fan_out(broker: Arc<Broker>, mut changes: broadcast::Receiver<DesiredChange>) {
    loop {
        match changes.recv().await {
            Ok(c) => broker.notify(&c),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    lost = n,
                    "desired changes outran the MQTT fan-out; closing device connections"
                );
                broker.kick_all();
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Writes presence events in order, many per transaction; activity alone waits a little to
/// gather more, connects and disconnects are written at once.
pub(crate) async fn write_presence(
    hub: Arc<Hub>,
    mut events: mpsc::UnboundedReceiver<(Target, Event)>,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Ok(e) = events.try_recv() {
            batch.push(e);
        }
        if batch.iter().all(|(_, e)| *e == Event::Active) {
            tokio::time::sleep(ACTIVITY_BATCH).await;
            while let Ok(e) = events.try_recv() {
                batch.push(e);
            }
        }
        // Consecutive activity of one identity is one write.
        batch.dedup();
        let hub = hub.clone();
        let done = tokio::task::spawn_blocking(move || hub.store.record_presence(&batch)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "recording device presence failed");
        }
    }
}
