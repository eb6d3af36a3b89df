//! The executor: runs a [`Plan`] against a hub in SPEC §7 phase order with bounded concurrency, the 412
//! re-read rule, bulk creates, and one outcome per item, reported as a stream of events.
//!
//! It never overwrites a change it did not plan against: every update and delete carries `If-Match`, and a
//! 412 leads to a re-read and the owned-keys rule, never a blind retry with `*`.

mod create;
mod rollout;
mod twin;
pub mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, stream};

use crate::hub::{Error, Hub, body, observe};
use twinops_core::model::{DeviceId, DeviceStatus, ObservedTwin};
use twinops_core::plan::{
    Change, DeleteDevice, DeleteModule, Kind, Plan, TwinPatch, UpdateDevice, UpdateModule,
    UpdateTwin, patch::merge_patch,
};
use twinops_iothub::wire::Capabilities;

pub use twinops_core::report::{Outcome, Report, Status};

/// An item's outcome for a change.
pub(crate) fn outcome(c: &Change, status: Status, detail: impl Into<String>) -> Outcome {
    let address = c.address();
    Outcome {
        kind: c.kind(),
        device_id: address.device.to_string(),
        module_id: address.module.map(|m| m.to_string()),
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
        name: String,
        items: usize,
    },
    Done(Outcome),
    /// A line on what the run is doing that takes time (a rollout's waves, gates and bake).
    Note(String),
}

/// Receives progress events.
pub trait Reporter: Send + Sync {
    fn event(&self, e: Event);
}

/// Executor settings.
#[derive(Clone)]
pub struct Options {
    pub concurrency: usize,
    /// Set to stop starting new operations (Ctrl-C); in-flight ones finish.
    pub stop: Arc<AtomicBool>,
    /// Resends of a patch whose twin moved only outside the owned keys.
    pub max_resends: u32,
    /// Write a plan's rolled-out twins at once, as if it had no rollout (`--no-rollout`).
    pub no_rollout: bool,
    /// Accept the last written wave as it stands and go on with the next (`--resume`).
    pub resume: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 16,
            stop: Arc::new(AtomicBool::new(false)),
            max_resends: 5,
            no_rollout: false,
            resume: false,
        }
    }
}

/// A change that runs one by one (creates run in bulk, see `create`).
#[derive(Clone, Copy)]
enum Step<'a> {
    UpdateDevice(&'a UpdateDevice),
    UpdateModule(&'a UpdateModule),
    UpdateTwin(&'a UpdateTwin),
    DeleteModule(&'a DeleteModule),
    DeleteDevice(&'a DeleteDevice),
}

impl Step<'_> {
    fn of(c: &Change) -> Option<Step<'_>> {
        Some(match c {
            Change::UpdateDevice(u) => Step::UpdateDevice(u),
            Change::UpdateModule(u) => Step::UpdateModule(u),
            Change::UpdateTwin(t) => Step::UpdateTwin(t),
            Change::DeleteModule(d) => Step::DeleteModule(d),
            Change::DeleteDevice(d) => Step::DeleteDevice(d),
            Change::CreateDevice(_) | Change::CreateModule(_) => return None,
        })
    }
}

struct Executor<'a> {
    hub: &'a Hub,
    options: &'a Options,
    reporter: &'a dyn Reporter,
    parents: tokio::sync::Mutex<std::collections::HashMap<DeviceId, Option<String>>>,
}

impl Executor<'_> {
    fn stopped(&self) -> bool {
        self.options.stop.load(Ordering::SeqCst)
    }

    fn done(&self, o: Outcome) -> Outcome {
        self.reporter.event(Event::Done(o.clone()));
        o
    }

    fn note(&self, line: String) {
        self.reporter.event(Event::Note(line));
    }

    /// The deviceScope of an edge parent, read once per parent.
    async fn parent_scope(&self, parent: &DeviceId) -> Result<Option<String>, Error> {
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
            .insert(parent.clone(), scope.clone());
        Ok(scope)
    }

    /// Words a 401 on a module identity operation. Under SAS a live hub answers 401, not 404, when
    /// the device is missing, and 401 when it is disabled (live-hub.md); a bare "unauthorized"
    /// would read like a bad key, so the device is looked at first.
    async fn unauthorized(&self, device: &DeviceId, e: &Error) -> String {
        match self.hub.get_device(device).await {
            Err(probe) if probe.is_not_found() => format!(
                "device `{device}` does not exist (IoT Hub answers module identity operations on a missing device with 401 under SAS)"
            ),
            Ok(d) if observe::status(d.status.as_deref()) == DeviceStatus::Disabled => format!(
                "device `{device}` is disabled: under SAS IoT Hub refuses module identity operations on a disabled device (401); apply with --auth token, or enable the device first"
            ),
            _ => format!(
                "{}; the policy may lack the permission this needs (RegistryWrite for identities, ServiceConnect for twins)",
                e.chain()
            ),
        }
    }

    /// An outcome for a failed module identity operation, 401s explained.
    async fn module_failed(
        &self,
        c: &Change,
        device: &DeviceId,
        doing: &str,
        e: &Error,
    ) -> Outcome {
        let detail = match e {
            Error::Unauthorized { .. } => self.unauthorized(device, e).await,
            _ => e.chain().to_string(),
        };
        let detail = if doing.is_empty() {
            detail
        } else {
            format!("{doing}: {detail}")
        };
        outcome(c, Status::Failed, detail)
    }

    async fn update_device(&self, c: &Change, u: &UpdateDevice) -> Outcome {
        let mut d = match self.hub.get_device(&u.id).await {
            Ok(d) => d,
            Err(e) => {
                return outcome(
                    c,
                    Status::Failed,
                    format!("reading the identity: {}", e.chain()),
                );
            }
        };
        if d.etag.as_deref() != Some(u.if_match.as_str()) {
            return outcome(
                c,
                Status::Conflict,
                "the identity changed since the plan was made",
            );
        }
        let set = &u.set;
        let was_edge = d.capabilities.as_ref().is_some_and(|c| c.iot_edge);
        let edge = set.edge.unwrap_or(was_edge);
        if let Some(s) = set.status {
            d.status = Some(body::status(s));
        }
        if let Some(r) = &set.status_reason {
            d.status_reason = Some(r.clone());
        }
        if let Some(a) = &set.auth {
            d.authentication = Some(body::authentication(a));
        }
        d.capabilities = Some(Capabilities { iot_edge: edge });
        // The parent scope the device must end with: the planned one, or the one it has.
        let parent_scope = match &set.parent {
            None => d.parent_scopes.as_ref().and_then(|p| p.first().cloned()),
            Some(None) => None,
            Some(Some(pid)) => match self.parent_scope(pid).await {
                Ok(Some(scope)) => Some(scope),
                Ok(None) => {
                    return outcome(
                        c,
                        Status::Failed,
                        format!("parent `{pid}` is not an edge device in the hub"),
                    );
                }
                Err(e) => {
                    return outcome(c, Status::Failed, format!("reading parent: {}", e.chain()));
                }
            },
        };
        // IoT Hub's scope rules (live-hub.md): an edge device keeps its own `deviceScope` (it is
        // immutable) and names its parent in `parentScopes`; a leaf takes its parent's scope as
        // `deviceScope`. Becoming an edge device needs `deviceScope: ""` (the hub mints the edge
        // scope; the parent's scope there is answered with 503). Ceasing to be one detaches the
        // parent in that write, so the parent is attached again in a second write.
        let reattach = was_edge && !edge && parent_scope.is_some();
        match (was_edge, edge) {
            (false, true) => d.device_scope = Some(String::new()),
            (true, false) => d.device_scope = None,
            (true, true) => {}
            (false, false) => d.device_scope = parent_scope.clone(),
        }
        d.parent_scopes = Some(parent_scope.iter().filter(|_| !reattach).cloned().collect());
        let written = match self.hub.update_device(&d, u.if_match.as_str()).await {
            Ok(written) => written,
            Err(Error::PreconditionFailed { .. }) => {
                return outcome(
                    c,
                    Status::Conflict,
                    "the identity changed since the plan was made",
                );
            }
            Err(e) => return outcome(c, Status::Failed, e.chain().to_string()),
        };
        let Some(scope) = parent_scope.filter(|_| reattach) else {
            return outcome(c, Status::Applied, "");
        };
        let Some(etag) = written.etag.clone().filter(|e| !e.is_empty()) else {
            return outcome(
                c,
                Status::Failed,
                "the hub answered the update without an etag",
            );
        };
        let mut d = written;
        d.device_scope = Some(scope.clone());
        d.parent_scopes = Some(vec![scope]);
        match self.hub.update_device(&d, &etag).await {
            Ok(_) => outcome(
                c,
                Status::Applied,
                "in two writes: IoT Hub detaches the parent of a device that stops being an edge device",
            ),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "the identity changed between the two writes; its parent is not attached again",
            ),
            Err(e) => outcome(
                c,
                Status::Failed,
                format!("attaching the parent again: {}", e.chain()),
            ),
        }
    }

    async fn update_module(&self, c: &Change, u: &UpdateModule) -> Outcome {
        let mut m = match self.hub.get_module(&u.device, &u.module).await {
            Ok(m) => m,
            Err(e) => {
                return self
                    .module_failed(c, &u.device, "reading the identity", &e)
                    .await;
            }
        };
        // The identity must still be the one the plan saw: a concurrent change of its
        // authentication is a conflict, never overwritten.
        if m.etag.as_deref() != Some(u.if_match.as_str()) {
            return outcome(
                c,
                Status::Conflict,
                "the identity changed since the plan was made",
            );
        }
        m.authentication = Some(body::authentication(&u.auth));
        match self.hub.update_module(&m, u.if_match.as_str()).await {
            Ok(_) => outcome(c, Status::Applied, ""),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "the identity changed since the plan was made",
            ),
            Err(e) => self.module_failed(c, &u.device, "", &e).await,
        }
    }

    async fn delete_device(&self, c: &Change, d: &DeleteDevice) -> Outcome {
        let result = self.hub.delete_device(&d.id, d.if_match.as_str()).await;
        self.deleted(c, result)
    }

    async fn delete_module(&self, c: &Change, d: &DeleteModule) -> Outcome {
        match self.try_delete_module(c, d).await {
            Err(e @ Error::Unauthorized { .. }) => self.module_failed(c, &d.device, "", &e).await,
            Err(e) => self.deleted(c, Err(e)),
            Ok(o) => o,
        }
    }

    /// Deletes a module; `Err` for a failure of the delete or the reads before it.
    async fn try_delete_module(&self, c: &Change, d: &DeleteModule) -> Result<Outcome, Error> {
        // The plan holds the module twin's etag; the ledger is re-checked against it before the
        // identity is deleted under its own etag.
        let t = self.hub.get_twin(&d.device, Some(&d.module)).await?;
        if t.etag.as_deref() != Some(d.if_match.as_str()) {
            return Ok(outcome(
                c,
                Status::Conflict,
                "the module twin changed since the plan was made",
            ));
        }
        let m = self.hub.get_module(&d.device, &d.module).await?;
        let Some(etag) = m.etag.filter(|e| !e.is_empty()) else {
            return Ok(outcome(
                c,
                Status::Failed,
                "the hub sent the module without an etag",
            ));
        };
        self.hub.delete_module(&d.device, &d.module, &etag).await?;
        Ok(outcome(c, Status::Applied, ""))
    }

    fn deleted(&self, c: &Change, result: Result<(), Error>) -> Outcome {
        match result {
            Ok(()) => outcome(c, Status::Applied, ""),
            Err(e) if e.is_not_found() => outcome(c, Status::Applied, "already gone"),
            Err(Error::PreconditionFailed { .. }) => outcome(
                c,
                Status::Conflict,
                "changed since the plan was made; not deleted",
            ),
            Err(e) => outcome(c, Status::Failed, e.chain().to_string()),
        }
    }

    async fn one(&self, c: &Change, step: Step<'_>) -> Outcome {
        if self.stopped() {
            return outcome(c, Status::Skipped, "interrupted");
        }
        let o = match step {
            Step::UpdateDevice(u) => self.update_device(c, u).await,
            Step::UpdateModule(u) => self.update_module(c, u).await,
            Step::UpdateTwin(t) => twin::patch(self, c, t).await,
            Step::DeleteDevice(d) => self.delete_device(c, d).await,
            Step::DeleteModule(d) => self.delete_module(c, d).await,
        };
        self.done(o)
    }

    async fn phase<'c>(
        &self,
        name: &'static str,
        items: Vec<(&'c Change, Step<'c>)>,
    ) -> Vec<Outcome> {
        if items.is_empty() {
            return Vec::new();
        }
        self.reporter.event(Event::Phase {
            name: name.to_string(),
            items: items.len(),
        });
        stream::iter(items.into_iter().map(|(c, step)| self.one(c, step)))
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
    let of = |k: &[Kind]| -> Vec<(&Change, Step<'_>)> {
        plan.changes
            .iter()
            .filter(|c| k.contains(&c.kind()))
            .filter_map(|c| Some((c, Step::of(c)?)))
            .collect()
    };
    let mut outcomes = Vec::new();
    let device_creates: Vec<_> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateDevice(d) => Some((c, &**d)),
            _ => None,
        })
        .collect();
    // A new device declared disabled is created enabled when the plan also creates modules on it,
    // and disabled once they exist: a live hub refuses module identity operations on a disabled
    // device under SAS (live-hub.md).
    let with_new_modules: std::collections::HashSet<&DeviceId> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateModule(m) => Some(&m.device),
            _ => None,
        })
        .collect();
    let enabled_first: std::collections::HashSet<DeviceId> = device_creates
        .iter()
        .filter(|(_, d)| {
            d.identity.status == DeviceStatus::Disabled && with_new_modules.contains(&d.id)
        })
        .map(|(_, d)| d.id.clone())
        .collect();
    let devices = create::devices(&ex, &device_creates, &enabled_first).await;
    let failed_devices: std::collections::HashSet<String> = devices
        .iter()
        .filter(|o| o.is_error())
        .map(|o| o.device_id.clone())
        .collect();
    outcomes.extend(devices);
    let module_creates: Vec<_> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateModule(m) => Some((c, &**m)),
            _ => None,
        })
        .collect();
    outcomes.extend(create::modules(&ex, &module_creates, &failed_devices).await);
    for (_, d) in device_creates
        .iter()
        .filter(|(_, d)| enabled_first.contains(&d.id) && !failed_devices.contains(d.id.as_str()))
    {
        let result = create::disable(&ex, d).await;
        if let Some(o) = outcomes
            .iter_mut()
            .find(|o| o.kind == Kind::CreateDevice && o.device_id == d.id.as_str())
        {
            match result {
                Ok(()) => {
                    o.detail = "created enabled, disabled once its modules existed".into();
                }
                Err(why) => {
                    o.status = Status::Failed;
                    o.detail = why;
                }
            }
        }
    }
    outcomes.extend(
        ex.phase(
            "identity updates",
            of(&[Kind::UpdateDevice, Kind::UpdateModule]),
        )
        .await,
    );
    // With a rollout, the twin updates it delivers go in waves after the other twin patches, and
    // the deletes only once every wave has passed (SPEC §11).
    let delivering = plan.rollout.as_ref().filter(|_| !options.no_rollout);
    let in_waves = |c: &Change| delivering.is_some() && rollout_of(c).is_some();
    let patches: Vec<_> = of(&[Kind::UpdateDeviceTwin, Kind::UpdateModuleTwin])
        .into_iter()
        .filter(|(c, _)| !in_waves(c))
        .collect();
    outcomes.extend(ex.phase("twin patches", patches).await);
    let mut rollout_report = None;
    let mut waves_passed = true;
    if let Some(r) = delivering {
        let d = rollout::deliver(&ex, plan, r, options.resume).await;
        outcomes.extend(d.outcomes);
        waves_passed = d.passed;
        rollout_report = Some(d.report);
    }
    for (name, kinds) in [
        ("module deletes", &[Kind::DeleteModule][..]),
        ("device deletes", &[Kind::DeleteDevice][..]),
    ] {
        if waves_passed {
            outcomes.extend(ex.phase(name, of(kinds)).await);
        } else if !ex.stopped() {
            outcomes.extend(of(kinds).into_iter().map(|(c, _)| {
                ex.done(outcome(
                    c,
                    Status::Skipped,
                    "not run: deletes run once every rollout wave has passed",
                ))
            }));
        }
    }
    Report {
        interrupted: ex.stopped(),
        outcomes,
        rollout: rollout_report,
    }
}

/// The twin update a plan's rollout delivers, if this change is one.
fn rollout_of(c: &Change) -> Option<&UpdateTwin> {
    twinops_core::plan::rollout::rolled_out(c)
}

/// The merge patch that brings an existing twin's owned keys to a create's content (an adopted create).
pub(crate) fn content_patch(seen: &ObservedTwin, content: &TwinPatch) -> TwinPatch {
    let section = |seen_map: &twinops_core::model::JsonMap, want: &twinops_core::model::JsonMap| {
        let mut out = twinops_core::model::JsonMap::new();
        for (k, v) in want {
            if let Some(p) = merge_patch(seen_map.get(k), Some(v)) {
                out.insert(k.clone(), p);
            }
        }
        out
    };
    TwinPatch {
        tags: section(&seen.tags, &content.tags),
        desired: section(&seen.desired, &content.desired),
    }
}
