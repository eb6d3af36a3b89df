//! The executor: runs a [`Plan`] against a hub in SPEC §7 phase order with bounded concurrency, the 412
//! re-read rule, bulk creates, and one outcome per item, reported as a stream of events.
//!
//! It never overwrites a change it did not plan against: every update and delete carries `If-Match`, and a
//! 412 leads to a re-read and the owned-keys rule, never a blind retry with `*`.

mod create;
mod twin;
pub mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, stream};
use serde_json::{Value, json};

use crate::hub::{Error, Hub};
use twinops_core::plan::{Change, Kind, Plan};
use twinops_iothub::wire::{Authentication, Capabilities, SymmetricKey, X509Thumbprint};

pub use twinops_core::report::{Outcome, Report, Status};

/// An item's outcome for a change.
pub(crate) fn outcome(c: &Change, status: Status, detail: impl Into<String>) -> Outcome {
    Outcome {
        kind: c.kind,
        device_id: c.device_id.clone(),
        module_id: c.module_id.clone(),
        status,
        detail: detail.into(),
        keys: Vec::new(),
    }
}

/// Progress events, drawn at the edge.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase starts with this many items.
    Phase {
        name: &'static str,
        items: usize,
    },
    Done(Outcome),
}

/// Receives progress events.
pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
}

/// A reporter that ignores events.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _e: Event) {}
}

/// Executor settings.
#[derive(Clone)]
pub struct Options {
    pub concurrency: usize,
    /// Set to stop starting new operations (Ctrl-C); in-flight ones finish.
    pub stop: Arc<AtomicBool>,
    /// Resends of a patch whose twin moved only outside the owned keys.
    pub max_resends: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 16,
            stop: Arc::new(AtomicBool::new(false)),
            max_resends: 5,
        }
    }
}

pub(crate) fn auth_body(v: Option<&Value>) -> Authentication {
    let kind = v
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("sas")
        .to_string();
    let thumb = |k: &str| {
        v.and_then(|a| a.pointer(&format!("/x509Thumbprint/{k}")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Authentication {
        symmetric_key: (kind == "sas").then(SymmetricKey::default),
        x509_thumbprint: (kind == "selfSigned").then(|| X509Thumbprint {
            primary_thumbprint: thumb("primaryThumbprint"),
            secondary_thumbprint: thumb("secondaryThumbprint"),
        }),
        kind: Some(kind),
    }
}

struct Executor<'a> {
    hub: &'a Hub,
    options: &'a Options,
    reporter: &'a dyn Reporter,
    parents: tokio::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
}

impl Executor<'_> {
    fn stopped(&self) -> bool {
        self.options.stop.load(Ordering::SeqCst)
    }

    fn done(&self, o: Outcome) -> Outcome {
        self.reporter.event(Event::Done(o.clone()));
        o
    }

    /// The deviceScope of an edge parent, read once per parent.
    async fn parent_scope(&self, parent: &str) -> Result<Option<String>, Error> {
        if let Some(s) = self.parents.lock().await.get(parent) {
            return Ok(s.clone());
        }
        let scope = match self.hub.get_device(parent).await {
            Ok(d) => d.device_scope.filter(|s| !s.is_empty()),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        self.parents
            .lock()
            .await
            .insert(parent.to_string(), scope.clone());
        Ok(scope)
    }

    async fn update_device(&self, c: &Change) -> Outcome {
        let mut d = match self.hub.get_device(&c.device_id).await {
            Ok(d) => d,
            Err(e) => return outcome(c, Status::Failed, format!("reading the identity: {e}")),
        };
        let planned = c.if_match.as_deref().unwrap_or("");
        if d.etag.as_deref().unwrap_or("") != planned {
            return outcome(
                c,
                Status::Conflict,
                "the identity changed since the plan was made",
            );
        }
        let p = &c.patch;
        if let Some(s) = p.get("status").and_then(Value::as_str) {
            d.status = Some(s.to_string());
        }
        if let Some(r) = p.get("statusReason") {
            d.status_reason = r.as_str().map(str::to_string);
        }
        if let Some(a) = p.get("authentication") {
            d.authentication = Some(auth_body(Some(a)));
        }
        if let Some(e) = p.get("capabilities.iotEdge").and_then(Value::as_bool) {
            d.capabilities = Some(Capabilities { iot_edge: e });
        }
        if let Some(parent) = p.get("parent") {
            match parent.as_str() {
                Some(pid) => match self.parent_scope(pid).await {
                    Ok(Some(scope)) => {
                        d.parent_scopes = Some(vec![scope.clone()]);
                        if !d.capabilities.as_ref().is_some_and(|c| c.iot_edge) {
                            d.device_scope = Some(scope);
                        }
                    }
                    Ok(None) => {
                        return outcome(
                            c,
                            Status::Failed,
                            format!("parent `{pid}` is not an edge device in the hub"),
                        );
                    }
                    Err(e) => {
                        return outcome(c, Status::Failed, format!("reading parent: {e}"));
                    }
                },
                None => {
                    d.parent_scopes = Some(Vec::new());
                    if !d.capabilities.as_ref().is_some_and(|c| c.iot_edge) {
                        d.device_scope = None;
                    }
                }
            }
        }
        match self.hub.update_device(&d, planned).await {
            Ok(_) => outcome(c, Status::Applied, ""),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "the identity changed since the plan was made",
            ),
            Err(e) => outcome(c, Status::Failed, e.to_string()),
        }
    }

    async fn update_module(&self, c: &Change) -> Outcome {
        let mid = c.module_id.as_deref().unwrap_or_default();
        let mut m = match self.hub.get_module(&c.device_id, mid).await {
            Ok(m) => m,
            Err(e) => return outcome(c, Status::Failed, format!("reading the identity: {e}")),
        };
        let etag = m.etag.clone().unwrap_or_default();
        if let Some(a) = c.patch.get("authentication") {
            m.authentication = Some(auth_body(Some(a)));
        }
        match self.hub.update_module(&m, &etag).await {
            Ok(_) => outcome(c, Status::Applied, ""),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "the identity changed while it was updated",
            ),
            Err(e) => outcome(c, Status::Failed, e.to_string()),
        }
    }

    async fn delete(&self, c: &Change) -> Outcome {
        let result = match &c.module_id {
            None => {
                self.hub
                    .delete_device(&c.device_id, c.if_match.as_deref().unwrap_or(""))
                    .await
            }
            Some(mid) => {
                // The plan holds the module twin's etag; the ledger is re-checked against it before the
                // identity is deleted under its own etag.
                match self.hub.get_twin(&c.device_id, Some(mid)).await {
                    Ok(t) if t.etag.as_deref() != c.if_match.as_deref() => {
                        return outcome(
                            c,
                            Status::Conflict,
                            "the module twin changed since the plan was made",
                        );
                    }
                    Ok(_) => match self.hub.get_module(&c.device_id, mid).await {
                        Ok(m) => {
                            self.hub
                                .delete_module(&c.device_id, mid, m.etag.as_deref().unwrap_or(""))
                                .await
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => outcome(c, Status::Applied, ""),
            Err(e) if e.is_not_found() => outcome(c, Status::Applied, "already gone"),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "changed since the plan was made; not deleted",
            ),
            Err(e) => outcome(c, Status::Failed, e.to_string()),
        }
    }

    async fn one(&self, c: &Change) -> Outcome {
        if self.stopped() {
            return outcome(c, Status::Skipped, "interrupted");
        }
        let o = match c.kind {
            Kind::UpdateDevice => self.update_device(c).await,
            Kind::UpdateModule => self.update_module(c).await,
            Kind::UpdateDeviceTwin | Kind::UpdateModuleTwin => twin::patch(self, c).await,
            Kind::DeleteDevice | Kind::DeleteModule => self.delete(c).await,
            Kind::CreateDevice | Kind::CreateModule => {
                outcome(c, Status::Failed, "creates run in bulk")
            }
        };
        self.done(o)
    }

    async fn phase(&self, name: &'static str, changes: Vec<&Change>) -> Vec<Outcome> {
        if changes.is_empty() {
            return Vec::new();
        }
        self.reporter.event(Event::Phase {
            name,
            items: changes.len(),
        });
        stream::iter(changes.into_iter().map(|c| self.one(c)))
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await
    }
}

/// Executes a plan. Items whose prerequisites failed are skipped; nothing is retried blindly.
pub async fn apply(hub: &Hub, plan: &Plan, options: &Options, reporter: &dyn Reporter) -> Report {
    let ex = Executor {
        hub,
        options,
        reporter,
        parents: Default::default(),
    };
    let of = |k: &[Kind]| -> Vec<&Change> {
        plan.changes
            .iter()
            .filter(|c| k.contains(&c.kind))
            .collect()
    };
    let mut outcomes = Vec::new();
    let devices = create::devices(&ex, &of(&[Kind::CreateDevice])).await;
    let failed_devices: std::collections::HashSet<String> = devices
        .iter()
        .filter(|o| o.is_error())
        .map(|o| o.device_id.clone())
        .collect();
    outcomes.extend(devices);
    outcomes.extend(create::modules(&ex, &of(&[Kind::CreateModule]), &failed_devices).await);
    for (name, kinds) in [
        (
            "identity updates",
            &[Kind::UpdateDevice, Kind::UpdateModule][..],
        ),
        (
            "twin patches",
            &[Kind::UpdateDeviceTwin, Kind::UpdateModuleTwin][..],
        ),
        ("module deletes", &[Kind::DeleteModule][..]),
        ("device deletes", &[Kind::DeleteDevice][..]),
    ] {
        outcomes.extend(ex.phase(name, of(kinds)).await);
    }
    Report {
        interrupted: ex.stopped(),
        outcomes,
    }
}

/// The merge patch that brings an existing twin's owned keys to a create's content (an adopted create).
pub(crate) fn content_patch(seen: &twinops_core::model::ObservedTwin, content: &Value) -> Value {
    let section = |seen_map: &twinops_core::model::JsonMap, want: Option<&Value>| {
        let mut out = twinops_core::model::JsonMap::new();
        if let Some(Value::Object(w)) = want {
            for (k, v) in w {
                if let Some(p) = twinops_core::plan::patch::merge_patch(seen_map.get(k), Some(v)) {
                    out.insert(k.clone(), p);
                }
            }
        }
        out
    };
    let tags = section(&seen.tags, content.get("tags"));
    let desired = section(&seen.desired, content.pointer("/properties/desired"));
    let mut p = json!({});
    if !tags.is_empty() {
        p["tags"] = Value::Object(tags);
    }
    if !desired.is_empty() {
        p["properties"] = json!({"desired": desired});
    }
    p
}
