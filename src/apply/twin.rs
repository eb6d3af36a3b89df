//! Twin patches under `If-Match` and the 412 rule of SPEC §7: re-read; owned keys already at the target
//! means applied with no write; still equal to the plan's `base` means resend with the new etag (at most
//! `max_resends` times); anything else is a conflict naming the keys, and nothing is written.

use super::{Executor, Outcome, Status, outcome};
use crate::hub::{Error, observe};
use twinops_core::model::ETag;
use twinops_core::plan::{Change, UpdateTwin, owned_view};

pub(super) async fn patch(ex: &Executor<'_>, c: &Change, u: &UpdateTwin) -> Outcome {
    patch_etag(ex, c, u).await.0
}

/// The twin as a write left it.
pub(super) struct After {
    pub etag: ETag,
    /// Desired `$version` after the write.
    pub desired_version: i64,
}

/// [`patch`], with the twin's etag and desired `$version` after the write when the hub answered them.
pub(super) async fn patch_etag(
    ex: &Executor<'_>,
    c: &Change,
    u: &UpdateTwin,
) -> (Outcome, Option<After>) {
    let device = &u.address.device;
    let module = u.address.module_id();
    let body = u.patch.to_value();
    let mut etag = u.if_match.clone();
    let mut resends = 0u32;
    loop {
        match ex
            .hub
            .patch_twin(device, module, &body, etag.as_str())
            .await
        {
            Ok(t) => {
                let after = observe::twin(&t).ok().map(|t| After {
                    etag: t.etag,
                    desired_version: t.desired_version,
                });
                let o = outcome(
                    c,
                    Status::Applied,
                    if resends > 0 {
                        format!("resent after {resends} unrelated change(s)")
                    } else {
                        String::new()
                    },
                );
                return (o, after);
            }
            Err(Error::PreconditionFailed { .. }) => {}
            Err(e) if e.is_not_found() => {
                return (
                    outcome(
                        c,
                        Status::Missing,
                        "the twin no longer exists; the next run creates it",
                    ),
                    None,
                );
            }
            Err(e) => return (outcome(c, Status::Failed, e.chain().to_string()), None),
        }
        let seen = ex.hub.observed_twin(device, module).await;
        let seen = match seen {
            Ok(s) => s,
            Err(e) => {
                return (
                    outcome(
                        c,
                        Status::Failed,
                        format!("re-reading after 412: {}", e.chain()),
                    ),
                    None,
                );
            }
        };
        let now = owned_view(&u.base, &u.ignore, &u.sensitive, &seen);
        if now == u.target {
            return (
                outcome(c, Status::Unchanged, "already at the target"),
                Some(After {
                    etag: seen.etag,
                    desired_version: seen.desired_version,
                }),
            );
        }
        if now != u.base {
            let mut o = outcome(
                c,
                Status::Conflict,
                "owned keys were changed by someone else since the plan; not overwritten",
            );
            o.keys = u.base.changed_keys(&now);
            return (o, None);
        }
        if resends >= ex.options.max_resends {
            return (
                outcome(
                    c,
                    Status::Conflict,
                    "changing too fast: the etag moved on every resend",
                ),
                None,
            );
        }
        resends += 1;
        etag = seen.etag;
    }
}
