//! Whether a device or module is connected over MQTT, and when it was last heard from: the
//! `connectionState`, `connectionStateUpdatedTime` and `lastActivityTime` of identities and twins.
//!
//! Kept in the identity records (durable, queryable) but written without moving any etag or
//! version: a connection is not a change of the identity or its twin. A hub that starts finds no
//! connection alive, so [`Store::reset_presence`] marks every identity disconnected on start.

use serde::{Deserialize, Serialize};

use super::error::Error;
use super::store::{Store, Target};

/// An identity's connection, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Presence {
    pub(crate) connected: bool,
    /// When `connected` last changed; `None` is IoT Hub's "never".
    pub(crate) state_updated: Option<String>,
    pub(crate) last_activity: Option<String>,
}

impl Presence {
    /// `Connected` or `Disconnected`.
    pub(crate) fn state(&self) -> &'static str {
        if self.connected {
            "Connected"
        } else {
            "Disconnected"
        }
    }

    pub(crate) fn state_updated_time(&self) -> &str {
        self.state_updated
            .as_deref()
            .unwrap_or(super::identity::NEVER)
    }

    pub(crate) fn last_activity_time(&self) -> &str {
        self.last_activity
            .as_deref()
            .unwrap_or(super::identity::NEVER)
    }

    fn apply(&mut self, event: Event, now: &str) {
        match event {
            Event::Connected | Event::Disconnected => {
                let connected = event == Event::Connected;
                if self.connected != connected || self.state_updated.is_none() {
                    self.state_updated = Some(now.to_string());
                }
                self.connected = connected;
            }
            Event::Active => {}
        }
        self.last_activity = Some(now.to_string());
    }
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Connected,
    Disconnected,
    /// The device sent something.
    Active,
}

impl Store {
    /// Applies presence events in order, in one transaction; identities that no longer exist
    /// are skipped.
    pub(crate) fn record_presence(&self, events: &[(Target, Event)]) -> Result<(), Error> {
        self.write(|tx| {
            let now = tx.now.clone();
            for (target, event) in events {
                match target {
                    Target::Device(d) => {
                        if let Some(mut rec) = tx.device(d)? {
                            rec.presence.apply(*event, &now);
                            tx.save_device(&rec)?;
                        }
                    }
                    Target::Module(d, m) => {
                        if let Some(mut rec) = tx.module(d, m)? {
                            rec.presence.apply(*event, &now);
                            tx.save_module(&rec)?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// Marks every identity recorded as connected disconnected (a hub that starts has no
    /// connections). Only rows that say `"connected":true` are decoded.
    pub(crate) fn reset_presence(&self) -> Result<(), Error> {
        const MARK: &[u8] = b"\"connected\":true";
        let mut targets = Vec::new();
        self.scan_raw(|modules, key, bytes| {
            if bytes.windows(MARK.len()).any(|w| w == MARK) {
                targets.push(match key.split_once('\0') {
                    Some((d, m)) if modules => Target::Module(d.to_string(), m.to_string()),
                    _ => Target::Device(key.to_string()),
                });
            }
        })?;
        if targets.is_empty() {
            return Ok(());
        }
        let events: Vec<(Target, Event)> = targets
            .into_iter()
            .map(|t| (t, Event::Disconnected))
            .collect();
        self.record_presence(&events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IfMatch;
    use twinops_iothub::wire;

    #[test]
    fn presence_moves_no_etag_and_resets_on_start() {
        let s = Store::open(None).unwrap();
        let dev = wire::Device {
            device_id: "d".into(),
            ..Default::default()
        };
        let before = s.put_device("d", &dev, &IfMatch::Absent).unwrap();
        let t = Target::Device("d".into());
        s.record_presence(&[
            (t.clone(), Event::Connected),
            (Target::Device("gone".into()), Event::Connected),
        ])
        .unwrap();
        let after = s.device("d").unwrap();
        assert_eq!(after.etag, before.etag);
        assert_eq!(after.twin.etag(), before.twin.etag());
        assert_eq!(
            after.to_wire().connection_state.as_deref(),
            Some("Connected")
        );
        let twin = s.twin(&t).unwrap();
        assert_eq!(twin["connectionState"], "Connected");
        assert_ne!(twin["lastActivityTime"], super::super::identity::NEVER);
        s.reset_presence().unwrap();
        assert_eq!(s.twin(&t).unwrap()["connectionState"], "Disconnected");
    }
}
