//! The one twin reader (SPEC §6, §12): plans, drift, rollout gates, `apply --wait` and export all
//! read twins here. A read planner ([`plan`], [`for_twins`], [`custom`]) decides, per device,
//! between paged queries (`SELECT *` of the whole hub when every identity is needed, as pruning
//! does, `WHERE deviceId IN [...]` lists of the wanted ones, or a query of the operator's) and
//! targeted twin GETs: on a paced hub in proportion to what the pace allows each class, so that
//! both finish together; on an unpaced one the cheapest mix in requests. [`read`] then streams the
//! twins to a sink as each page or GET arrives, so the caller can reduce them at once. Never one
//! GET per twin for a large fleet on an unpaced hub, never `GET /devices?top=`.
//!
//! The planning is pure (IDs, counts and rates in, a [`ReadPlan`] out); the I/O is in [`read`].
//! A read through an export job (SPEC §17) is another way to fill the same sink.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt, stream};

use super::query::{
    ALL_DEVICES, ALL_MODULES, IN_PREFIX_DEVICES, IN_PREFIX_MODULES, PAGE_REQUEST, chunks,
    in_queries, quotable,
};
use super::{Error, Hub, observe};
use twinops_core::model::{
    DeviceId, Digest, Fleet, ModuleId, Observed, ObservedDevice, ObservedModule, Targets,
    TwinAddress,
};
use twinops_core::plan::rollout::delivery::{Cost, GateItem};
use twinops_core::report::ReadEstimate;

/// Above this many selected twins, a paged query is cheaper than targeted GETs.
pub(crate) const TARGETED_MAX_TWINS: usize = 40;

/// Rows a query page holds: IoT Hub's cap, which the estimates count in.
pub(crate) const PAGE_ROWS: usize = 100;

/// One device to read: its twin (for a plan always: whether it exists decides what is created),
/// the module twins named, or every module it has (`all_modules`: a device no manifest declares
/// any more, which pruning deletes with its modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub device: DeviceId,
    /// Whether the device's own twin is read (a gate may wait for module twins alone).
    pub device_twin: bool,
    pub modules: Vec<ModuleId>,
    pub all_modules: bool,
}

impl Wanted {
    fn twins(&self) -> usize {
        usize::from(self.device_twin) + self.modules.len()
    }

    fn queryable(&self) -> bool {
        quotable(&self.device)
    }

    fn needs_module_rows(&self) -> bool {
        self.all_modules || !self.modules.is_empty()
    }
}

/// The twins a plan of `fleet` under `targets` reads: the touched declared devices with their
/// selected modules, and (in a change-scoped plan) the scope's twins no manifest declares any
/// more, with every module of a removed device when pruning.
pub(crate) fn wanted(fleet: &Fleet, targets: &Targets, prune: bool) -> Vec<Wanted> {
    let scope = targets.scope();
    let mut out: Vec<Wanted> = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    for d in &fleet.devices {
        declared.insert(d.id.as_str());
        if !targets.touches(&d.id) {
            continue;
        }
        let mut modules: Vec<ModuleId> = d
            .modules
            .iter()
            // A device pattern selects its modules too; a change's scope names each module.
            .filter(|m| targets.module(&d.id, &m.id))
            .map(|m| m.id.clone())
            .collect();
        if let Some(sd) = scope.and_then(|s| s.device(&d.id)) {
            for m in &sd.modules {
                if !d.modules.iter().any(|dm| dm.id == *m) {
                    modules.push(m.clone());
                }
            }
        }
        out.push(Wanted {
            device: d.id.clone(),
            device_twin: true,
            modules,
            all_modules: false,
        });
    }
    if let Some(scope) = scope {
        for (id, sd) in scope.devices() {
            if !declared.contains(id.as_str()) {
                out.push(Wanted {
                    device: id.clone(),
                    device_twin: true,
                    modules: sd.modules.iter().cloned().collect(),
                    all_modules: prune,
                });
            }
        }
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    out
}

/// The paced rates of the two read classes, per second (`None`: not paced).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    pub query: Option<f64>,
    pub twin_read: Option<f64>,
}

impl Rates {
    pub(crate) fn of(hub: &Hub) -> Rates {
        let rate = |c| hub.pacer().and_then(|p| p.rate(c));
        Rates {
            query: rate(super::OpClass::Query),
            twin_read: rate(super::OpClass::TwinRead),
        }
    }

    fn paced(&self) -> bool {
        self.query.is_some() || self.twin_read.is_some()
    }

    /// Seconds to send these query and GET requests at the pace (`None`: not paced).
    fn estimate(&self, query: usize, get: usize) -> Option<f64> {
        self.paced()
            .then(|| seconds(query, self.query).max(seconds(get, self.twin_read)))
    }
}

/// Seconds to send `n` requests of a class at `rate` (None: unpaced, no wait): the pacer
/// starts a run with one token and then sends at the rate.
fn seconds(n: usize, rate: Option<f64>) -> f64 {
    match rate {
        Some(r) if r > 0.0 => (n as f64 - 1.0).max(0.0) / r,
        _ => 0.0,
    }
}

/// Seconds a whole-hub read of `twins` (devices and modules) takes at the pace: its query pages
/// at the query rate (what `auto` weighs an export job against, SPEC §17).
pub(crate) fn full_read_seconds(twins: usize, rates: Rates) -> f64 {
    rates
        .estimate(twins.div_ceil(PAGE_ROWS).max(1), 0)
        .unwrap_or(0.0)
}

/// How the planned twins are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadPlan {
    /// `SELECT * FROM devices` and `SELECT * FROM devices.modules`: every identity of the hub.
    pub full: bool,
    /// `SELECT * FROM devices WHERE deviceId IN [...]`, run before [`ReadPlan::module_queries`].
    pub device_queries: Vec<String>,
    /// `SELECT * FROM devices.modules WHERE deviceId IN [...]`.
    pub module_queries: Vec<String>,
    /// Read by targeted GETs: the device twin, then its module twins.
    pub gets: Vec<Wanted>,
    /// Whether what is read covers every identity the plan's targets can select (pruning and the
    /// "no longer declared" hint need that).
    pub complete: bool,
    /// Twins planned to be read by queries and by GETs.
    pub query_twins: usize,
    pub get_twins: usize,
    /// Expected requests: query pages (with the 2 `COUNT()` queries of the hint check when the
    /// read is not complete) and GETs.
    pub query_requests: usize,
    pub get_requests: usize,
    /// Expected seconds at the pace (paced hubs only).
    pub estimated_seconds: Option<f64>,
}

impl ReadPlan {
    /// What the read will cost, for the operator to see before it starts.
    pub(crate) fn estimate(&self) -> ReadEstimate {
        ReadEstimate {
            whole_hub: self.full,
            query_twins: self.query_twins,
            query_requests: self.query_requests,
            get_twins: self.get_twins,
            estimated_seconds: self.estimated_seconds,
        }
    }
}

/// Query pages of reading these devices by `IN` lists (device rows, then module rows).
fn query_pages<'a>(devices: impl Iterator<Item = &'a Wanted> + Clone) -> usize {
    let mut pages = 0;
    let mut count = |_: usize, _: usize, rows: usize| pages += rows.div_ceil(PAGE_ROWS).max(1);
    chunks(
        IN_PREFIX_DEVICES.len() + 1,
        devices
            .clone()
            .filter(|w| w.device_twin)
            .map(|w| (&w.device, 1)),
        &mut count,
    );
    chunks(
        IN_PREFIX_MODULES.len() + 1,
        devices
            .filter(|w| w.needs_module_rows())
            .map(|w| (&w.device, w.modules.len())),
        &mut count,
    );
    pages
}

/// The wanted devices, by how they may be read: devices whose IDs cannot stand in an `IN` list
/// go by GET; removed devices whose every module is needed go by query (a GET names one module);
/// the rest (`free`) may go either way: the first `j` of them by query.
struct Split {
    forced_get: Vec<Wanted>,
    forced_query: Vec<Wanted>,
    free: Vec<Wanted>,
    /// Twins of each free device.
    free_twins: Vec<usize>,
    /// Queries the read needs beyond its pages (the hint's two `COUNT()` queries).
    extra_queries: usize,
}

impl Split {
    fn of(wanted: Vec<Wanted>, extra_queries: usize) -> Split {
        let (forced_get, rest): (Vec<Wanted>, Vec<Wanted>) =
            wanted.into_iter().partition(|w| !w.queryable());
        let (forced_query, free): (Vec<Wanted>, Vec<Wanted>) =
            rest.into_iter().partition(|w| w.all_modules);
        let free_twins = free.iter().map(Wanted::twins).collect();
        Split {
            forced_get,
            forced_query,
            free,
            free_twins,
            extra_queries,
        }
    }

    /// (query requests, GET requests) with the first `j` free devices by query.
    fn cost(&self, j: usize) -> (usize, usize) {
        let on_query = self.forced_query.iter().chain(&self.free[..j]);
        let query = query_pages(on_query) + self.extra_queries;
        let forced: usize = self.forced_get.iter().map(Wanted::twins).sum();
        let free: usize = self.free_twins[j..].iter().sum();
        (query, forced + free)
    }

    /// The plan with the first `j` free devices by query and the rest by GET.
    fn into_plan(mut self, j: usize, complete: bool, rates: Rates) -> ReadPlan {
        let (query_requests, get_requests) = self.cost(j);
        let on_get_free = self.free.split_off(j);
        let on_query: Vec<Wanted> = self.forced_query.into_iter().chain(self.free).collect();
        let device_ids: Vec<&DeviceId> = on_query
            .iter()
            .filter(|w| w.device_twin)
            .map(|w| &w.device)
            .collect();
        let module_ids: Vec<&DeviceId> = on_query
            .iter()
            .filter(|w| w.needs_module_rows())
            .map(|w| &w.device)
            .collect();
        ReadPlan {
            full: false,
            device_queries: in_queries(IN_PREFIX_DEVICES, &device_ids),
            module_queries: in_queries(IN_PREFIX_MODULES, &module_ids),
            complete,
            query_twins: on_query.iter().map(Wanted::twins).sum(),
            get_twins: get_requests,
            query_requests,
            get_requests,
            estimated_seconds: rates.estimate(query_requests, get_requests),
            gets: self.forced_get.into_iter().chain(on_get_free).collect(),
        }
    }
}

/// Decides how to read `wanted` (see the module's doc). `declared` is the fleet's twin count
/// (devices, modules), what a whole-hub read is estimated from; `scoped` says the plan covers a
/// change only (never the whole hub); `need_complete` that every identity of the hub is needed.
pub(crate) fn plan(
    wanted: Vec<Wanted>,
    declared: (usize, usize),
    rates: Rates,
    scoped: bool,
    need_complete: bool,
) -> ReadPlan {
    let twins: usize = wanted.iter().map(Wanted::twins).sum();
    let full_pages = declared.0.div_ceil(PAGE_ROWS).max(1) + declared.1.div_ceil(PAGE_ROWS).max(1);
    let full = || ReadPlan {
        full: true,
        device_queries: Vec::new(),
        module_queries: Vec::new(),
        gets: Vec::new(),
        complete: true,
        query_twins: twins,
        get_twins: 0,
        query_requests: full_pages,
        get_requests: 0,
        estimated_seconds: rates.estimate(full_pages, 0),
    };
    if need_complete && !scoped {
        return full();
    }
    // The hint of identities no manifest declares any more needs two `COUNT()` queries after a
    // read that is neither complete nor change-scoped.
    let split = Split::of(wanted, if scoped { 0 } else { 2 });
    let requests = |(q, g): (usize, usize)| q + g;
    let j = if rates.paced() {
        let j = balance(&split, rates);
        let time = |c: (usize, usize)| rates.estimate(c.0, c.1).unwrap_or(0.0);
        let (best, whole) = (split.cost(j), (full_pages, 0));
        // For a whole fleet the full query competes too: fastest first, then fewest requests.
        let use_full = !scoped && (time(whole), requests(whole)) < (time(best), requests(best));
        (!use_full).then_some(j)
    } else if !scoped {
        // The cheapest rule for a whole fleet: a few twins by GET, else the whole hub by query
        // (complete, so the hint needs no further query).
        (twins <= TARGETED_MAX_TWINS && split.forced_query.is_empty()).then_some(0)
    } else if requests(split.cost(split.free.len())) < requests(split.cost(0)) {
        Some(split.free.len())
    } else {
        Some(0)
    };
    match j {
        Some(j) => split.into_plan(j, scoped, rates),
        None => full(),
    }
}

/// On a paced hub, how many free devices go by query so that both classes finish together: query
/// time grows and GET time falls with `j`, so the balance is found by bisection; the ends compete
/// with it, fastest first, then fewest requests.
fn balance(split: &Split, rates: Rates) -> usize {
    let n = split.free.len();
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let (q, g) = split.cost(mid);
        if seconds(q, rates.query) < seconds(g, rates.twin_read) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let key = |c: (usize, usize)| (rates.estimate(c.0, c.1).unwrap_or(0.0), c.0 + c.1);
    let mut best = (0, key(split.cost(0)));
    for j in [lo, lo.saturating_sub(1), n] {
        let k = key(split.cost(j));
        if k < best.1 {
            best = (j, k);
        }
    }
    best.0
}

/// One twin as it arrives: a device (its module twins come after it, as their own observations),
/// or a module of a device that came before.
#[derive(Debug)]
pub(crate) enum Observation {
    Device(ObservedDevice),
    Module(DeviceId, ObservedModule),
}

async fn get_optional(hub: &Hub, address: TwinAddress) -> Result<Option<Observation>, Error> {
    let t = match hub
        .rest
        .get_twin(&address.device, address.module_id())
        .await
    {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(match address.module {
        None => Observation::Device(observe::device(t)?),
        Some(_) => Observation::Module(address.device, observe::module(t)?),
    }))
}

/// The twins a wanted device's GETs read: its own (when wanted), then its modules. A device
/// twin that is gone ends the device's reads: its modules went with it.
async fn get_device(hub: &Hub, w: &Wanted) -> Result<Vec<Observation>, Error> {
    let mut batch = Vec::with_capacity(w.twins());
    if w.device_twin {
        match get_optional(hub, TwinAddress::device(w.device.clone())).await? {
            Some(o) => batch.push(o),
            None => return Ok(batch),
        }
    }
    for m in &w.modules {
        let a = TwinAddress::module(w.device.clone(), m.clone());
        batch.extend(get_optional(hub, a).await?);
    }
    Ok(batch)
}

/// Query pages in flight at once (each query's own pages follow one another).
const QUERY_STREAMS: usize = 4;

/// What a read cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadCost {
    pub gets: usize,
    pub query_pages: usize,
}

/// Runs one query to its last page, sending each page's twins on; the pages it read.
async fn send_pages(
    hub: &Hub,
    sql: &str,
    modules: bool,
    tx: &tokio::sync::mpsc::Sender<Vec<Observation>>,
) -> Result<usize, Error> {
    let pages = hub.rest.pages(sql, PAGE_REQUEST);
    futures::pin_mut!(pages);
    let mut n = 0;
    while let Some(rows) = pages.try_next().await? {
        n += 1;
        let mut batch = Vec::with_capacity(rows.len());
        for r in rows {
            let t = observe::row(r)?;
            batch.push(if modules {
                Observation::Module(observe::device_id(&t.device_id)?, observe::module(t)?)
            } else {
                Observation::Device(observe::device(t)?)
            });
        }
        if tx.send(batch).await.is_err() {
            break; // the consumer stopped, with its own error
        }
    }
    Ok(n)
}

/// Reads what `plan` names, handing every twin to `sink` as its page or GET arrives (queries and
/// GETs run at the same time; a device always comes before its modules).
pub(crate) async fn read(
    hub: &Hub,
    plan: &ReadPlan,
    concurrency: usize,
    mut sink: impl FnMut(Observation) -> Result<(), Error>,
) -> Result<ReadCost, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Observation>>(QUERY_STREAMS * 4);
    let tx_q = tx.clone();
    let queries = async move {
        let (devices, modules): (Vec<&str>, Vec<&str>) = if plan.full {
            (vec![ALL_DEVICES], vec![ALL_MODULES])
        } else {
            (
                plan.device_queries.iter().map(String::as_str).collect(),
                plan.module_queries.iter().map(String::as_str).collect(),
            )
        };
        let mut pages = 0;
        // Every device row is in before the first module row is asked for.
        for (sqls, is_module) in [(devices, false), (modules, true)] {
            let mut s = stream::iter(sqls)
                .map(|sql| send_pages(hub, sql, is_module, &tx_q))
                .buffer_unordered(QUERY_STREAMS);
            while let Some(r) = s.next().await {
                pages += r?;
            }
        }
        Ok::<_, Error>(pages)
    };
    let tx_g = tx;
    let gets = async move {
        let mut s = stream::iter(plan.gets.iter().map(|w| get_device(hub, w)))
            .buffer_unordered(concurrency.max(1));
        while let Some(r) = s.next().await {
            if tx_g.send(r?).await.is_err() {
                break;
            }
        }
        Ok::<_, Error>(())
    };
    let consume = async {
        while let Some(batch) = rx.recv().await {
            for o in batch {
                sink(o)?;
            }
        }
        Ok::<_, Error>(())
    };
    let (query_pages, (), ()) = futures::try_join!(queries, gets, consume)?;
    Ok(ReadCost {
        gets: plan.gets.iter().map(Wanted::twins).sum(),
        query_pages,
    })
}

/// Keeps one observation whole in an [`Observed`] (drift and export read into one, whole twins
/// with their reported properties). A module whose device is not there (not selected, or its row lagged behind in the index)
/// is left out; the next read sees it.
pub(crate) fn keep(observed: &mut Observed, o: Observation) {
    match o {
        Observation::Device(d) => {
            observed.devices.entry(d.id.clone()).or_insert(d);
        }
        Observation::Module(id, m) => {
            if let Some(d) = observed.devices.get_mut(&id) {
                d.modules.entry(m.id.clone()).or_insert(m);
            }
        }
    }
}

/// The fleet's declared devices and modules.
pub(crate) fn declared(fleet: &Fleet) -> (usize, usize) {
    (
        fleet.devices.len(),
        fleet.devices.iter().map(|d| d.modules.len()).sum(),
    )
}

/// The reading of an operator's device query (`export --query`), every device without one: its
/// device twins, then the module twins of those devices (the module rows of other devices are left
/// to the sink to drop). `Err` says why a query selects no device twins.
pub(crate) fn custom(device_query: Option<&str>) -> Result<ReadPlan, String> {
    let sql = device_query.unwrap_or(ALL_DEVICES);
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("from devices") || lower.contains("devices.modules") {
        return Err(format!(
            "--query must select device twins (`{ALL_DEVICES} [WHERE ...]`)"
        ));
    }
    Ok(ReadPlan {
        full: false,
        device_queries: vec![sql.to_string()],
        module_queries: vec![ALL_MODULES.to_string()],
        gets: Vec::new(),
        complete: false,
        query_twins: 0,
        get_twins: 0,
        query_requests: 2,
        get_requests: 0,
        estimated_seconds: None,
    })
}

/// The reading of these twins: one GET each when `by_query` is false, else paged `IN` queries
/// over their devices (IDs that cannot be quoted go by GET).
pub(crate) fn for_twins<'a>(
    twins: impl Iterator<Item = &'a TwinAddress>,
    by_query: bool,
) -> ReadPlan {
    let mut by_device: BTreeMap<&DeviceId, Wanted> = BTreeMap::new();
    for a in twins {
        let w = by_device.entry(&a.device).or_insert_with(|| Wanted {
            device: a.device.clone(),
            device_twin: false,
            modules: Vec::new(),
            all_modules: false,
        });
        match &a.module {
            None => w.device_twin = true,
            Some(m) => w.modules.push(m.clone()),
        }
    }
    let (queried, gets): (Vec<Wanted>, Vec<Wanted>) = by_device
        .into_values()
        .partition(|w| by_query && w.queryable());
    let ids = |f: fn(&Wanted) -> bool| -> Vec<&DeviceId> {
        queried.iter().filter(|w| f(w)).map(|w| &w.device).collect()
    };
    let device_queries = in_queries(IN_PREFIX_DEVICES, &ids(|w| w.device_twin));
    let module_queries = in_queries(IN_PREFIX_MODULES, &ids(|w| !w.modules.is_empty()));
    ReadPlan {
        full: false,
        query_requests: device_queries.len() + module_queries.len(),
        device_queries,
        module_queries,
        complete: false,
        query_twins: queried.iter().map(Wanted::twins).sum(),
        get_twins: gets.iter().map(Wanted::twins).sum(),
        get_requests: gets.iter().map(Wanted::twins).sum(),
        estimated_seconds: None,
        gets,
    }
}

/// Reads the open items of a gate (or of `apply --wait`) once and classifies each: one GET each
/// when `items` (the whole set, decided ones included) is small, else paged `IN` queries of the
/// open ones (about one request per 100 twins). Deciding on the whole set keeps a large wave on
/// queries to its end, when the few twins still pending fit in one page. `rollout` names the keys
/// of items without their own (the twins an earlier run wrote).
pub(crate) async fn poll(
    hub: &Hub,
    items: &mut [GateItem],
    rollout: Option<&Digest>,
    concurrency: usize,
) -> Result<Cost, Error> {
    let by_query = items.len() > TARGETED_MAX_TWINS;
    let open: HashMap<TwinAddress, usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.is_open())
        .map(|(n, i)| (i.address.clone(), n))
        .collect();
    if open.is_empty() {
        return Ok(Cost::default());
    }
    let plan = for_twins(open.keys(), by_query);
    let read = read(hub, &plan, concurrency, |o| {
        let (address, twin) = match &o {
            Observation::Device(d) => (TwinAddress::device(d.id.clone()), &d.twin),
            Observation::Module(d, m) => (TwinAddress::module(d.clone(), m.id.clone()), &m.twin),
        };
        // A module query returns every module of those devices: the asked ones are kept.
        if let Some(&n) = open.get(&address) {
            items[n].observe(rollout, twin);
        }
        Ok(())
    })
    .await?;
    Ok(Cost {
        polls: 1,
        gets: read.gets,
        query_pages: read.query_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::super::query::MAX_IN_QUERY_BYTES;
    use super::*;

    fn fleet(devices: usize, modules: usize) -> Vec<Wanted> {
        (0..devices)
            .map(|i| Wanted {
                device: DeviceId::new(format!("dev-{i:05}")).unwrap(),
                device_twin: true,
                modules: (0..modules)
                    .map(|m| ModuleId::new(format!("m{m}")).unwrap())
                    .collect(),
                all_modules: false,
            })
            .collect()
    }

    /// S1's quotas scaled tenfold: 200 queries a minute, 1,000 twin reads a second.
    const S1X10: Rates = Rates {
        query: Some(200.0 / 60.0),
        twin_read: Some(1000.0),
    };

    #[test]
    fn an_unpaced_whole_fleet_read_keeps_gets_for_a_few_twins_and_the_full_query_otherwise() {
        let few = plan(fleet(8, 4), (8, 32), Rates::default(), false, false);
        assert!(!few.full && few.gets.len() == 8 && few.device_queries.is_empty());
        assert_eq!(few.estimated_seconds, None);
        let many = plan(
            fleet(2000, 5),
            (2000, 10000),
            Rates::default(),
            false,
            false,
        );
        assert!(many.full && many.complete);
        assert_eq!(many.query_requests, 120);
        let prune = plan(fleet(2, 0), (2, 0), Rates::default(), false, true);
        assert!(prune.full, "pruning needs every identity");
    }

    #[test]
    fn an_unpaced_scoped_read_takes_the_cheaper_of_gets_and_in_lists() {
        let wide = plan(fleet(24, 5), (2000, 10000), Rates::default(), true, false);
        assert_eq!((wide.query_requests, wide.get_requests), (3, 0));
        assert!(wide.complete && !wide.full);
        assert_eq!(
            wide.device_queries.len() + wide.module_queries.len(),
            2,
            "{wide:?}"
        );
        let narrow = plan(fleet(1, 0), (2000, 10000), Rates::default(), true, false);
        assert_eq!((narrow.query_requests, narrow.get_requests), (0, 1));
    }

    #[test]
    fn a_paced_read_splits_so_that_queries_and_gets_finish_together() {
        let p = plan(fleet(2000, 5), (2000, 10000), S1X10, false, false);
        let minimum = 12_000.0 / (S1X10.query.unwrap() * PAGE_ROWS as f64 + 1000.0);
        let estimate = p.estimated_seconds.unwrap();
        assert!(estimate <= minimum * 1.02, "{estimate} vs {minimum}");
        assert!(estimate >= minimum - 0.5, "{estimate} vs {minimum}");
        // About a quarter of the twins by query: 333 twins/s against 1,000 by GET.
        assert!((2700..=3300).contains(&p.query_twins), "{p:?}");
        assert_eq!(p.query_twins + p.get_twins, 12_000);
        let q = seconds(p.query_requests, S1X10.query);
        let g = seconds(p.get_requests, S1X10.twin_read);
        assert!((q - g).abs() < 1.0, "{q} vs {g}");
        // On one S1 unit a handful of twins is read by GET: a query page costs three seconds.
        let s1 = Rates {
            query: Some(20.0 / 60.0),
            twin_read: Some(100.0),
        };
        let few = plan(fleet(24, 5), (2000, 10000), s1, true, false);
        assert_eq!(few.query_requests, 0, "{few:?}");
        // With pruning the whole hub is needed, and only queries can list it.
        let prune = plan(fleet(2000, 5), (2000, 10000), S1X10, false, true);
        assert!(prune.full);
        assert_eq!(prune.estimated_seconds, Some(seconds(120, S1X10.query)));
    }

    #[test]
    fn in_lists_quote_ids_stay_under_the_query_limit_and_ids_with_a_quote_go_by_get() {
        let mut w = fleet(3000, 1);
        w.push(Wanted {
            device: DeviceId::new("it's").unwrap(),
            device_twin: true,
            modules: Vec::new(),
            all_modules: false,
        });
        let p = plan(w, (3001, 3000), Rates::default(), true, false);
        assert!(
            p.get_requests == 1 && p.gets[0].device.as_str() == "it's",
            "{:?}",
            p.gets
        );
        assert!(p.device_queries.len() > 1);
        for q in p.device_queries.iter().chain(&p.module_queries) {
            assert!(q.len() <= MAX_IN_QUERY_BYTES, "{}", q.len());
            assert!(q.ends_with("']"), "{q}");
        }
        assert!(
            p.device_queries[0]
                .starts_with("SELECT * FROM devices WHERE deviceId IN ['dev-00000', 'dev-00001'")
        );
        assert!(
            p.module_queries[0]
                .starts_with("SELECT * FROM devices.modules WHERE deviceId IN ['dev-00000'")
        );
        let listed: usize = p
            .device_queries
            .iter()
            .map(|q| q.matches("'dev-").count())
            .sum();
        assert_eq!(listed, 3000);
    }

    #[test]
    fn removed_devices_are_read_with_every_module_when_pruning() {
        let mut w = fleet(1, 0);
        w[0].all_modules = true;
        let p = plan(w, (0, 0), Rates::default(), true, true);
        assert_eq!(p.module_queries.len(), 1, "{p:?}");
        assert!(p.complete);
    }

    #[test]
    fn gate_reads_go_by_the_plans_id_lists_or_one_get_per_twin() {
        let a = |t: &str| t.parse::<TwinAddress>().unwrap();
        let twins = [a("d1"), a("d2"), a("d1/m1"), a("d2/m1"), a("d2/m2")];
        let p = for_twins(twins.iter(), true);
        assert_eq!(
            p.device_queries,
            ["SELECT * FROM devices WHERE deviceId IN ['d1', 'd2']"]
        );
        assert_eq!(
            p.module_queries,
            ["SELECT * FROM devices.modules WHERE deviceId IN ['d1', 'd2']"]
        );
        assert!(p.gets.is_empty());
        let modules_only = for_twins([a("d3/m1")].iter(), true);
        assert!(modules_only.device_queries.is_empty());
        assert_eq!(
            modules_only.module_queries,
            ["SELECT * FROM devices.modules WHERE deviceId IN ['d3']"]
        );
        // By GET: exactly the twins asked for, a module twin without its device's.
        let by_get = for_twins([a("d3/m1"), a("it's")].iter(), false);
        assert_eq!(by_get.get_requests, 2);
        assert!(!by_get.gets[0].device_twin && by_get.gets[0].modules.len() == 1);
        // An ID with a quote goes by GET even when the rest go by query.
        let mixed = for_twins([a("d1"), a("it's")].iter(), true);
        assert_eq!(mixed.gets.len(), 1);
        assert_eq!(mixed.gets[0].device.as_str(), "it's");
    }
}
