//! Identity creates, in bulk calls of at most [`BULK_ROWS`]: edge parents and parentless devices
//! first, then devices that name a parent (whose scope their rows need), then modules. An identity
//! that already exists (409) is adopted: its twin is brought to the content under the 412 rule.
//!
//! A device declared disabled whose modules the plan also creates is created enabled and disabled
//! once they exist: a live hub refuses module identity operations on a disabled device under SAS
//! (live-hub.md).

use std::collections::{HashMap, HashSet};

use super::twin::{self, Next, Rule};
use super::{Executor, Outcome, Status, outcome};
use crate::hub::{BULK_ROWS, Created, NewIdentity};
use twinops_core::model::{DeviceId, DeviceStatus, ObservedTwin};
use twinops_core::plan::{Change, CreateDevice, Kind, adopt_existing};
use twinops_core::report::{Doing, Event, Phase, Reason};

/// The creates of one apply: which devices go enabled first, and which failed.
pub(super) struct Creates<'p> {
    /// Devices declared disabled whose modules this plan creates.
    enabled_first: HashMap<&'p DeviceId, &'p CreateDevice>,
    failed: HashSet<DeviceId>,
}

impl<'p> Creates<'p> {
    pub(super) fn of(plan: &'p twinops_core::plan::Plan) -> Creates<'p> {
        let with_new_modules: HashSet<&DeviceId> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateModule(m) => Some(&m.device),
                _ => None,
            })
            .collect();
        let enabled_first = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateDevice(d)
                    if d.identity.status == DeviceStatus::Disabled
                        && with_new_modules.contains(&d.id) =>
                {
                    Some((&d.id, &**d))
                }
                _ => None,
            })
            .collect();
        Creates {
            enabled_first,
            failed: HashSet::new(),
        }
    }

    /// Creates devices: those without a parent first, then those that name one.
    pub(super) async fn devices(&mut self, ex: &Executor<'_>, changes: &[&Change]) -> Vec<Outcome> {
        if changes.is_empty() {
            return Vec::new();
        }
        ex.event(Event::Phase {
            phase: Phase::DeviceCreates,
            items: changes.len(),
        });
        let names_parent =
            |c: &&&Change| matches!(c, Change::CreateDevice(d) if d.identity.parent.is_some());
        let (with_parent, plain): (Vec<&&Change>, Vec<&&Change>) =
            changes.iter().partition(names_parent);
        let mut out = Vec::new();
        for group in [plain, with_parent] {
            let group: Vec<&Change> = group.into_iter().copied().collect();
            for chunk in group.chunks(BULK_ROWS) {
                out.extend(self.batch(ex, chunk).await);
            }
        }
        self.failed = out
            .iter()
            .filter(|o| o.is_error())
            .filter_map(|o| o.address.twin().map(|t| t.device.clone()))
            .collect();
        out
    }

    /// Creates modules, skipping those whose device could not be created; then disables the
    /// devices created enabled for them (their create's outcome in `devices` says how that went).
    pub(super) async fn modules(
        &mut self,
        ex: &Executor<'_>,
        changes: &[&Change],
        devices: &mut [Outcome],
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        if !changes.is_empty() {
            ex.event(Event::Phase {
                phase: Phase::ModuleCreates,
                items: changes.len(),
            });
            let (skip, go): (Vec<&Change>, Vec<&Change>) = changes
                .iter()
                .partition(|c| self.failed.contains(c.device_id()));
            for c in skip {
                out.push(ex.done(outcome(c, Status::Skipped).because(Reason::DeviceNotCreated)));
            }
            for chunk in go.chunks(BULK_ROWS) {
                out.extend(self.batch(ex, chunk).await);
            }
        }
        for o in devices.iter_mut() {
            let Some(id) = o.address.twin().map(|t| &t.device) else {
                continue;
            };
            if o.kind != Kind::CreateDevice || self.failed.contains(id) {
                continue;
            }
            let Some(d) = self.enabled_first.get(id) else {
                continue;
            };
            match ex.hub.disable_created(d).await {
                Ok(()) => o.reason = Some(Reason::CreatedEnabledThenDisabled),
                Err(e) => {
                    o.status = Status::Failed;
                    o.reason = Some(Reason::Hub {
                        doing: e.doing,
                        error: e.error.chain().to_string(),
                        refusal: None,
                    });
                }
            }
        }
        out
    }

    /// One bulk call for these creates, then an outcome per create.
    async fn batch(&self, ex: &Executor<'_>, changes: &[&Change]) -> Vec<Outcome> {
        if ex.stopped() {
            return changes
                .iter()
                .map(|c| ex.done(outcome(c, Status::Skipped).because(Reason::Interrupted)))
                .collect();
        }
        let identities: Vec<NewIdentity<'_>> = changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateDevice(d) => Some(NewIdentity::Device {
                    create: d,
                    enabled_first: self.enabled_first.contains_key(&d.id),
                }),
                Change::CreateModule(m) => Some(NewIdentity::Module(m)),
                _ => None,
            })
            .collect();
        let mut out = Vec::with_capacity(changes.len());
        match ex.hub.create(&identities).await {
            Ok(results) => {
                for (c, r) in changes.iter().zip(results) {
                    let o = match r {
                        Created::Created => outcome(c, Status::Applied),
                        Created::Exists => adopt(ex, c).await,
                        Created::Refused(why) => outcome(c, Status::Failed).because(why),
                    };
                    out.push(ex.done(o));
                }
            }
            Err(e) => {
                for c in changes {
                    let o = ex.failed_with(c, Doing::Writing, &e).await;
                    out.push(ex.done(o));
                }
            }
        }
        out
    }
}

/// An identity that already existed: its twin is brought to the create's content (its declared keys
/// and this owner's ledger entry) under the 412 rule, unless other owners manage what it declares.
async fn adopt(ex: &Executor<'_>, c: &Change) -> Outcome {
    let Some(content) = c.content() else {
        return outcome(c, Status::Adopted);
    };
    let address = c.address();
    let decide = |seen: &ObservedTwin| match adopt_existing(content, seen) {
        Err(managed) => {
            let owners: Vec<String> = managed.iter().map(|m| m.owner.clone()).collect();
            let mut owners = owners;
            owners.dedup();
            let keys = managed.into_iter().map(|m| m.path).collect();
            Next::Conflict(Reason::ExistsOwnedBy(owners.join(", ")), keys)
        }
        Ok(patch) if patch.is_empty() => {
            Next::Done(Status::Adopted, Some(Reason::ExistedWithContent))
        }
        Ok(patch) => Next::Send(patch),
    };
    let rule = Rule {
        address: &address,
        first: None,
        reading: Doing::ReadingExistingTwin,
        decide: &decide,
        landed: |_| (Status::Adopted, Some(Reason::ExistedContentApplied)),
    };
    twin::write(ex, c, rule).await.0
}
