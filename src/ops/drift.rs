//! `drift`: a read-only report of how the hub differs from the manifests (SPEC §8), read with the
//! one twin reader and classified by the core.

use anyhow::Context;

use super::connect::Connection;
use crate::hub::read;
use twinops_core::model::{Fleet, Targets};
use twinops_core::plan::{self, Options, drift};

pub(crate) async fn drift(
    conn: &Connection,
    fleet: &Fleet,
    targets: Targets,
    stale_after: Option<std::time::Duration>,
    concurrency: usize,
    choice: &super::read::ReadChoice,
    reporter: &dyn twinops_core::report::Reporter,
) -> anyhow::Result<drift::Report> {
    let reads = read::plan(
        read::wanted(fleet, &targets, false),
        read::declared(fleet),
        read::Rates::of(&conn.hub),
        targets.scope().is_some(),
        false,
    );
    let (mut observed, via) = super::read::read_into(
        conn,
        choice,
        &reads,
        concurrency,
        reporter,
        || twinops_core::model::Observed {
            complete: reads.complete,
            ..Default::default()
        },
        |o, x| {
            read::keep(o, x);
            Ok(())
        },
    )
    .await
    .context("reading the hub")?;
    observed.complete |= via.via == "export";
    let options = Options {
        targets: targets.clone(),
        ..Options::default()
    };
    let (mut p, seen) = plan::diff_seen(fleet, &observed, &conn.identity, &options);
    super::plan::check_targets(&targets, fleet, &seen)?;
    p.no_longer_declared = super::plan::no_longer_declared(&conn.hub, fleet, &seen, &targets)
        .await
        .context("looking for owned identities no manifest declares")?;
    // The hub's timestamps are compared with this machine's clock.
    let stale = stale_after.map(|after| drift::Staleness {
        after,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    });
    // Managed objects (SPEC §16): one list of the hub's, whatever the manifests declare, so that
    // objects of this owner that no manifest declares any more are reported too.
    let hub_objects = if targets.is_all() {
        Some(
            conn.hub
                .objects()
                .await
                .context("reading the hub's configurations and deployments")?,
        )
    } else {
        None
    };
    p.warnings = super::plan::writers(&conn.hub, &seen, hub_objects.as_deref())
        .await
        .context("reading the configurations applied to declared twins")?;
    let hub_objects = hub_objects.unwrap_or_default();
    p.objects = twinops_core::plan::objects::diff(fleet, &hub_objects, false);
    Ok(drift::report(
        &p,
        fleet,
        &observed,
        &targets,
        stale,
        &hub_objects,
    ))
}
