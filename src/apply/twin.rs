//! Twin patches under `If-Match` and the 412 rule of SPEC §7: re-read; owned keys already at the target
//! means applied with no write; still equal to the plan's `base` means resend with the new etag (at most
//! `max_resends` times); anything else is a conflict naming the keys, and nothing is written.

use serde_json::Value;

use super::{Executor, Outcome, Status, outcome};
use crate::hub::{Error, observe};
use twinops_core::plan::{Change, owned_view};

/// The owned keys whose values differ between two views (`tags.K`, `desired.K`).
fn changed_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["tags", "desired"] {
        let (Some(x), Some(y)) = (
            a.get(section).and_then(Value::as_object),
            b.get(section).and_then(Value::as_object),
        ) else {
            continue;
        };
        for (k, v) in x {
            if y.get(k) != Some(v) {
                out.push(format!("{section}.{k}"));
            }
        }
    }
    out
}

pub(super) async fn patch(ex: &Executor<'_>, c: &Change) -> Outcome {
    let module = c.module_id.as_deref();
    let (Some(base), Some(target)) = (&c.base, &c.target) else {
        return outcome(c, Status::Failed, "the plan's change has no base or target");
    };
    let mut etag = c.if_match.clone().unwrap_or_default();
    let mut resends = 0u32;
    loop {
        match ex
            .hub
            .patch_twin(&c.device_id, module, &c.patch, &etag)
            .await
        {
            Ok(_) => {
                return outcome(
                    c,
                    Status::Applied,
                    if resends > 0 {
                        format!("resent after {resends} unrelated change(s)")
                    } else {
                        String::new()
                    },
                );
            }
            Err(Error::PreconditionFailed { .. }) => {}
            Err(e) if e.is_not_found() => {
                return outcome(c, Status::Failed, "the twin no longer exists");
            }
            Err(e) => return outcome(c, Status::Failed, e.to_string()),
        }
        let seen = match ex.hub.get_twin(&c.device_id, module).await {
            Ok(t) => observe::twin(&t),
            Err(e) => {
                return outcome(c, Status::Failed, format!("re-reading after 412: {e}"));
            }
        };
        let now = owned_view(base, &c.ignore, &c.sensitive, &seen);
        if &now == target {
            return outcome(c, Status::Unchanged, "already at the target");
        }
        if &now != base {
            let mut o = outcome(
                c,
                Status::Conflict,
                "owned keys were changed by someone else since the plan; not overwritten",
            );
            o.keys = changed_keys(base, &now);
            return o;
        }
        if resends >= ex.options.max_resends {
            return outcome(
                c,
                Status::Conflict,
                "changing too fast: the etag moved on every resend",
            );
        }
        resends += 1;
        etag = seen.etag;
    }
}
