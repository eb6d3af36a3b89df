//! The one 412 rule of SPEC §7, for every conditional twin write (planned patches, the content of
//! adopted creates, a rollout's revert): send under `If-Match`; on 412 re-read the twin and let the
//! caller's rule decide — at the target already (done, no write), only unrelated changes (resend
//! with the new etag, at most `max_resends` times), or someone else's change (a conflict naming the
//! keys, nothing written).

use super::{Executor, Outcome, Status, outcome};
use crate::hub::Error;
use twinops_core::model::{ETag, ObservedTwin, Section, TwinAddress};
use twinops_core::plan::{Change, TwinPatch, UpdateTwin, ledger, owned_view};
use twinops_core::report::{Doing, Reason};

/// What a rule makes of a twin as read.
pub(super) enum Next {
    /// Nothing to write: the item ends so.
    Done(Status, Option<Reason>),
    /// Someone else's change: a conflict naming these keys.
    Conflict(Reason, Vec<String>),
    /// Send this patch under the twin's etag.
    Send(TwinPatch),
}

/// A conditional write of one twin.
pub(super) struct Rule<'r> {
    pub address: &'r TwinAddress,
    /// The first write, planned against an etag; `None` reads the twin first.
    pub first: Option<(&'r TwinPatch, &'r ETag)>,
    /// What a read is, for an error's words.
    pub reading: Doing,
    pub decide: &'r (dyn Fn(&ObservedTwin) -> Next + Sync),
    /// How a write that landed after `resends` re-reads ends.
    pub landed: fn(u32) -> (Status, Option<Reason>),
}

/// Runs `rule`; the outcome, and the twin as it stands after (written or re-read), when known.
pub(super) async fn write(
    ex: &Executor<'_>,
    c: &Change,
    rule: Rule<'_>,
) -> (Outcome, Option<ObservedTwin>) {
    let end = |status, reason: Option<Reason>| {
        let o = outcome(c, status);
        match reason {
            Some(r) => o.because(r),
            None => o,
        }
    };
    let mut send = rule.first.map(|(p, e)| (p.clone(), e.clone()));
    let mut resends = 0u32;
    loop {
        if let Some((patch, etag)) = &send {
            match ex.hub.patch_twin(rule.address, patch, etag).await {
                Ok(after) => {
                    let (status, reason) = (rule.landed)(resends);
                    return (end(status, reason), Some(after));
                }
                Err(Error::PreconditionFailed { .. }) => {}
                Err(e) if e.is_not_found() => {
                    return (end(Status::Missing, Some(Reason::TwinGone)), None);
                }
                Err(e) => return (hub_failed(c, Doing::Writing, &e), None),
            }
        }
        let seen = match ex.hub.twin(rule.address).await {
            Ok(s) => s,
            Err(e) => return (hub_failed(c, rule.reading, &e), None),
        };
        match (rule.decide)(&seen) {
            Next::Done(status, reason) => return (end(status, reason), Some(seen)),
            Next::Conflict(reason, keys) => {
                let mut o = end(Status::Conflict, Some(reason));
                o.keys = keys;
                return (o, None);
            }
            Next::Send(patch) => {
                if send.is_some() {
                    if resends >= ex.options.max_resends {
                        return (end(Status::Conflict, Some(Reason::ChangingTooFast)), None);
                    }
                    resends += 1;
                }
                send = Some((patch, seen.etag));
            }
        }
    }
}

/// Why owned keys changed under the plan: another owner that now manages them (a
/// `--force-conflicts` of theirs, SPEC §15), or someone else.
fn changed_by(owner: &str, seen: &ObservedTwin, keys: &[String]) -> Reason {
    let ledger::Found::Ledger(l) = ledger::read(&seen.tags) else {
        return Reason::OwnedKeysChanged;
    };
    let managed: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let (section, key) = k.split_once('.')?;
            let section = match section {
                "tags" => Section::Tags,
                "desired" => Section::Desired,
                _ => return None,
            };
            let other = l.manager_of_key(section, key, owner)?;
            Some(format!("{k} is managed by `{other}`"))
        })
        .collect();
    if managed.is_empty() {
        Reason::OwnedKeysChanged
    } else {
        Reason::TakenOver(managed.join("; "))
    }
}

fn hub_failed(c: &Change, doing: Doing, e: &Error) -> Outcome {
    super::hub_failed_outcome(outcome(c, Status::Failed), doing, e)
}

/// A planned twin update: owned keys already at the target mean applied with no write; still
/// equal to the plan's `base` mean resend with the new etag; anything else is a conflict.
pub(super) async fn update(
    ex: &Executor<'_>,
    c: &Change,
    u: &UpdateTwin,
) -> (Outcome, Option<ObservedTwin>) {
    let decide = |seen: &ObservedTwin| {
        let now = owned_view(&u.base, &u.ignore, &u.sensitive, u.key, seen);
        if now == u.target {
            Next::Done(Status::Unchanged, Some(Reason::AlreadyAtTarget))
        } else if now != u.base {
            let keys = u.base.changed_keys(&now);
            Next::Conflict(changed_by(ex.owner, seen, &keys), keys)
        } else {
            // The same intent, its ledger part written into the ledger as it is now.
            Next::Send(u.patch_for(seen))
        }
    };
    let rule = Rule {
        address: &u.address,
        first: Some((&u.patch, &u.if_match)),
        reading: Doing::ReReadingAfter412,
        decide: &decide,
        landed: |resends| match resends {
            0 => (Status::Applied, None),
            n => (Status::Applied, Some(Reason::Resent(n))),
        },
    };
    write(ex, c, rule).await
}
