//! `plan`: read the hub and diff it against the manifests into a complete [`Plan`]: its changes,
//! its conflicts, the identities no manifest declares any more, what reading cost and how long
//! applying it is estimated to take. Deletions planned from query rows are confirmed with a GET
//! first (query rows lag behind the registry).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use anyhow::Context;

use super::connect::Connection;
use crate::hub::{Hub, OpClass, read};
use twinops_core::model::{Fleet, ObservedObject, Targets, TwinAddress};
use twinops_core::plan::scope::ScopeDoc;
use twinops_core::plan::{self, Change, Kind, Options, Plan, Seen};
use twinops_core::report::{Event, Reporter, Warning};

/// What to plan.
pub(crate) struct Request<'a> {
    pub fleet: &'a Fleet,
    pub options: Options,
    pub concurrency: usize,
    /// The change a scoped plan covers (`--changed-from`).
    pub changed: Option<ScopeDoc>,
    /// How to read the hub (`--read`, `--storage`).
    pub read: super::read::ReadChoice,
}

fn round1(s: f64) -> f64 {
    (s * 10.0).round() / 10.0
}

/// Reads the hub and diffs it against the fleet: each twin is diffed as its page or GET arrives
/// and only what the plan needs of it is kept (`plan::Seen`), so the read never holds the fleet's
/// twins. The plan is complete when returned.
pub(crate) async fn plan(
    conn: &Connection,
    req: Request<'_>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Plan> {
    let started = Instant::now();
    let mut req = req;
    // Every digest of a sensitive value is keyed with this run's key, whatever the caller set.
    req.options.digest_key = conn.digest_key;
    let (fleet, options) = (req.fleet, &req.options);
    let targets = &options.targets;
    let reads = read::plan(
        read::wanted(fleet, targets, options.prune),
        read::declared(fleet),
        read::Rates::of(&conn.hub),
        targets.scope().is_some(),
        options.prune,
    );
    if reads.estimated_seconds.is_some() {
        reporter.event(Event::Reading(reads.estimate()));
    }
    // A change-scoped read reads what the change touches only: never a whole-hub export.
    let choice = if targets.scope().is_some() {
        super::read::ReadChoice::api()
    } else {
        req.read.clone()
    };
    let (differ, via) = super::read::read_into(
        conn,
        &choice,
        &reads,
        req.concurrency,
        reporter,
        || plan::Differ::new(fleet, &conn.identity, options),
        |differ, o| {
            match o {
                read::Observation::Device(d) => differ.device(&d),
                read::Observation::Module(id, m) => differ.module(&id, &m),
            }
            Ok(())
        },
    )
    .await
    .context("reading the hub")?;
    // An export holds every identity of the hub: as complete as a whole-hub query.
    let complete = reads.complete || via.via == "export";
    let (mut p, seen) = differ.finish(complete);
    p.read = Some(via);
    check_targets(targets, fleet, &seen)?;
    if !options.prune {
        p.no_longer_declared = no_longer_declared(&conn.hub, fleet, &seen, targets)
            .await
            .context("looking for owned identities no manifest declares")?;
    }
    confirm_deletions(&conn.hub, &mut p)
        .await
        .context("confirming planned deletions")?;
    // Managed objects are no identities: a `--target` run leaves them alone. Their one list also
    // tells which keys the configurations applied to declared twins write.
    let listed = if super::objects::wanted(fleet, options.prune) && targets.is_all() {
        Some(conn.hub.objects().await?)
    } else {
        None
    };
    p.warnings = writers(&conn.hub, &seen, listed.as_deref())
        .await
        .context("reading the configurations applied to declared twins")?;
    if let Some(observed) = &listed {
        p.objects = super::objects::plan(&conn.hub, fleet, observed, options.prune).await?;
        p.recount();
    }
    if conn.sas {
        for device in plan::disabled_with_module_changes(&p, &seen) {
            reporter.event(Event::Warning(Warning::DisabledDevice(device)));
        }
    }
    for w in managed_by_differs(&conn.hub, fleet, &seen)
        .await
        .context("reading the managedBy of declared modules")?
    {
        reporter.event(Event::Warning(w));
    }
    p.requests = conn.hub.counts().snapshot();
    p.estimated_apply_seconds = estimate(&p, &conn.hub);
    p.estimated_read_seconds = reads.estimated_seconds.map(round1);
    p.read_seconds = Some(round1(started.elapsed().as_secs_f64()));
    p.scope = req.changed;
    Ok(p)
}

/// Owned identities that no manifest declares, for the plan's hint and drift. From the read
/// itself when it was complete for the plan's targets; else when two `COUNT()` queries of this
/// owner's ledgers find no more owned identities in the hub than the read saw (the common case,
/// two requests whatever the fleet's size); else from two projection queries of those ledgers (a
/// page per 100 rows).
pub(crate) async fn no_longer_declared(
    hub: &Hub,
    fleet: &Fleet,
    seen: &Seen,
    targets: &Targets,
) -> Result<Vec<TwinAddress>, crate::hub::Error> {
    let owned: Vec<TwinAddress> =
        if seen.complete || hub.count_owned(&fleet.owner).await? == seen.owned_counts() {
            seen.owned().collect()
        } else {
            hub.owned(&fleet.owner).await?
        };
    Ok(plan::undeclared(fleet, owned, targets))
}

/// The configurations and edge deployments applied to declared twins that write their declared
/// desired keys (SPEC §15): from the hub's objects when the run `listed` them already, else each
/// configuration a twin names is read once.
pub(crate) async fn writers(
    hub: &Hub,
    seen: &Seen,
    listed: Option<&[ObservedObject]>,
) -> Result<Vec<plan::writers::Writer>, crate::hub::Error> {
    if seen.configured.is_empty() {
        return Ok(Vec::new());
    }
    let ids = plan::writers::configuration_ids(&seen.configured);
    let configurations = match listed {
        Some(objects) => objects
            .iter()
            .filter(|o| ids.contains(&o.id))
            .map(|o| (o.id.clone(), crate::hub::written_keys(o)))
            .collect(),
        None => hub.configurations_by_id(ids).await?,
    };
    Ok(plan::writers::writers(&seen.configured, &configurations))
}

/// Declared modules that exist with another `managedBy` than the manifests declare: reported,
/// never written (SPEC §15). Module twins do not carry `managedBy`, so each existing module that
/// declares one is read (one GET each; modules that declare none cost nothing).
async fn managed_by_differs(
    hub: &Hub,
    fleet: &Fleet,
    seen: &Seen,
) -> Result<Vec<Warning>, crate::hub::Error> {
    let mut out = Vec::new();
    for d in &fleet.devices {
        let Some(sd) = seen.devices.get(&d.id) else {
            continue;
        };
        for m in &d.modules {
            let Some(declared) = &m.managed_by else {
                continue;
            };
            if !sd.modules.contains_key(&m.id) {
                continue;
            }
            let found = hub.module_managed_by(&d.id, &m.id).await?;
            if found.as_ref() != Some(declared) {
                out.push(Warning::ManagedByDiffers {
                    module: TwinAddress::module(d.id.clone(), m.id.clone()),
                    declared: declared.clone(),
                    hub: found,
                });
            }
        }
    }
    Ok(out)
}

/// A `--target` that selects no declared and no observed identity is an error naming it: a typo
/// must not pass CI as "No changes".
pub(crate) fn check_targets(targets: &Targets, fleet: &Fleet, seen: &Seen) -> anyhow::Result<()> {
    if let Some(pattern) = targets.unmatched(fleet.identities().chain(seen.identities())) {
        anyhow::bail!("--target `{pattern}` matches no declared or observed identity");
    }
    Ok(())
}

/// Query rows lag behind the registry (live-hub.md: a device deleted 25 minutes earlier was still
/// listed), so a deletion planned from them is confirmed with a targeted GET of its twin: a 404
/// means it is gone already, and it is not planned (SPEC §12).
async fn confirm_deletions(hub: &Hub, p: &mut Plan) -> Result<(), crate::hub::Error> {
    let is_delete = |c: &Change| matches!(c, Change::DeleteDevice(_) | Change::DeleteModule(_));
    let mut gone = BTreeSet::new();
    for address in p
        .changes
        .iter()
        .filter(|c| is_delete(c))
        .map(Change::address)
    {
        match hub.twin(&address).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                gone.insert(address);
            }
            Err(e) => return Err(e),
        }
    }
    if !gone.is_empty() {
        p.changes
            .retain(|c| !(is_delete(c) && gone.contains(&c.address())));
        p.recount();
    }
    Ok(())
}

/// Apply time at the chosen pace: per class, requests / rate.
fn estimate(p: &Plan, hub: &Hub) -> Option<f64> {
    let pacer = hub.pacer()?;
    let mut per_class: HashMap<OpClass, f64> = HashMap::new();
    for c in &p.changes {
        let (class, n) = match c.kind() {
            Kind::CreateDevice | Kind::CreateModule => (OpClass::RegistryWrite, 1.0),
            Kind::UpdateDeviceTwin | Kind::UpdateModuleTwin => (OpClass::TwinWrite, 1.0),
            _ => (OpClass::RegistryWrite, 2.0),
        };
        *per_class.entry(class).or_default() += n;
    }
    let secs = per_class
        .iter()
        .filter_map(|(c, n)| pacer.rate(*c).map(|r| n / r))
        .fold(0.0, f64::max);
    Some(round1(secs))
}
