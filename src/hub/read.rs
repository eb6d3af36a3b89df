//! Reading live state for a plan, at fleet scale (SPEC §6, §12). A read planner ([`plan`]) decides,
//! per device, between paged queries (`SELECT *` of the whole hub when every identity is needed, as
//! pruning does, or `WHERE deviceId IN [...]` lists of the declared ones) and targeted twin GETs:
//! on a paced hub in proportion to what the pace allows each class, so that both finish together;
//! on an unpaced one the cheapest mix in requests. [`read`] then streams the twins to a sink as
//! each page or GET arrives, so the caller can reduce them at once. Never one GET per twin for a
//! large fleet on an unpaced hub, never `GET /devices?top=`.
//!
//! The planning is pure (IDs, counts and rates in, a [`ReadPlan`] out); the I/O is in [`read`].

use futures::{StreamExt, stream};

use super::{Error, Hub, observe};
use twinops_core::model::{
    DeviceId, Fleet, ModuleId, Observed, ObservedDevice, ObservedModule, Targets,
};

/// Above this many selected twins, a paged query is cheaper than targeted GETs.
pub const TARGETED_MAX_TWINS: usize = 40;

/// The page size asked for; the hub caps it (IoT Hub and the emulator at 100 by default).
pub const QUERY_PAGE_REQUEST: usize = 1000;

/// Rows a query page holds: IoT Hub's cap, which the estimates count in.
pub const PAGE_ROWS: usize = 100;

/// The longest `IN`-list query sent: IoT Hub refuses query texts over about 8 KB.
pub const MAX_IN_QUERY_BYTES: usize = 7_500;

/// One device to read: its twin always (whether it exists decides what is created), the module
/// twins named, or every module it has (`all_modules`: a device no manifest declares any more,
/// which pruning deletes with its modules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub device: DeviceId,
    pub modules: Vec<ModuleId>,
    pub all_modules: bool,
}

impl Wanted {
    fn twins(&self) -> usize {
        1 + self.modules.len()
    }

    /// `IN` lists quote IDs in `'`; an ID holding one is read by GET instead of escaped in a way a
    /// live hub was never observed to accept.
    fn queryable(&self) -> bool {
        !self.device.contains('\'')
    }

    fn needs_module_rows(&self) -> bool {
        self.all_modules || !self.modules.is_empty()
    }
}

/// The twins a plan of `fleet` under `targets` reads: the touched declared devices with their
/// selected modules, and (in a change-scoped plan) the scope's twins no manifest declares any
/// more, with every module of a removed device when pruning.
pub fn wanted(fleet: &Fleet, targets: &Targets, prune: bool) -> Vec<Wanted> {
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
            .filter(|m| targets.device(&d.id) || targets.module(&d.id, &m.id))
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
            modules,
            all_modules: false,
        });
    }
    if let Some(scope) = scope {
        for (id, sd) in scope.devices() {
            if !declared.contains(id.as_str()) {
                out.push(Wanted {
                    device: id.clone(),
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
pub struct Rates {
    pub query: Option<f64>,
    pub twin_read: Option<f64>,
}

impl Rates {
    pub fn of(hub: &Hub) -> Rates {
        let rate = |c| hub.pacer().and_then(|p| p.rate(c));
        Rates {
            query: rate(super::OpClass::Query),
            twin_read: rate(super::OpClass::TwinRead),
        }
    }

    fn paced(&self) -> bool {
        self.query.is_some() || self.twin_read.is_some()
    }
}

/// Seconds to send `n` requests of a class at `rate` (None: unpaced, no wait): the pacer's bucket
/// holds one second of the rate (at least one token) and refills at the rate.
fn seconds(n: usize, rate: Option<f64>) -> f64 {
    match rate {
        Some(r) if r > 0.0 => (n as f64 - r.max(1.0)).max(0.0) / r,
        _ => 0.0,
    }
}

/// How the planned twins are read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPlan {
    /// `SELECT * FROM devices` and `SELECT * FROM devices.modules`: every identity of the hub.
    pub full: bool,
    /// `SELECT * FROM devices WHERE deviceId IN [...]`, run before [`ReadPlan::module_queries`].
    pub device_queries: Vec<String>,
    /// `SELECT * FROM devices.modules WHERE deviceId IN [...]`.
    pub module_queries: Vec<String>,
    /// Read by targeted GETs: the device twin, then these module twins.
    pub gets: Vec<(DeviceId, Vec<ModuleId>)>,
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
    /// One line for stderr: what is read how, and the estimate.
    pub fn describe(&self) -> String {
        let how = if self.full {
            format!(
                "the whole hub by query (about {} pages)",
                self.query_requests
            )
        } else {
            format!(
                "{} twin(s): {} by query ({} request(s)), {} by GET",
                self.query_twins + self.get_twins,
                self.query_twins,
                self.query_requests,
                self.get_twins
            )
        };
        match self.estimated_seconds {
            Some(s) => format!("Reading {how}; estimated {s:.1}s at the chosen pace"),
            None => format!("Reading {how}"),
        }
    }
}

/// Splits `ids` into `IN`-list queries of at most [`MAX_IN_QUERY_BYTES`]; returns each query with
/// how many rows it is expected to return.
fn in_queries<'a>(
    collection: &str,
    items: impl Iterator<Item = (&'a DeviceId, usize)>,
) -> Vec<(String, usize)> {
    let prefix = format!("SELECT * FROM {collection} WHERE deviceId IN [");
    let mut out = Vec::new();
    let mut sql = prefix.clone();
    let mut rows = 0;
    let mut ids = 0;
    for (id, n) in items {
        let quoted = format!("'{id}'");
        if ids > 0 && sql.len() + 2 + quoted.len() + 1 > MAX_IN_QUERY_BYTES {
            sql.push(']');
            out.push((std::mem::replace(&mut sql, prefix.clone()), rows));
            rows = 0;
            ids = 0;
        }
        if ids > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&quoted);
        rows += n;
        ids += 1;
    }
    if ids > 0 {
        sql.push(']');
        out.push((sql, rows));
    }
    out
}

fn pages(queries: &[(String, usize)]) -> usize {
    queries
        .iter()
        .map(|(_, rows)| rows.div_ceil(PAGE_ROWS).max(1))
        .sum()
}

/// The queries and expected pages of reading these devices by `IN` lists.
fn by_query(devices: &[&Wanted]) -> (Vec<String>, Vec<String>, usize) {
    let d = in_queries("devices", devices.iter().map(|w| (&w.device, 1)));
    let m = in_queries(
        "devices.modules",
        devices
            .iter()
            .filter(|w| w.needs_module_rows())
            .map(|w| (&w.device, w.modules.len())),
    );
    let n = pages(&d) + pages(&m);
    (
        d.into_iter().map(|(q, _)| q).collect(),
        m.into_iter().map(|(q, _)| q).collect(),
        n,
    )
}

/// Decides how to read `wanted` (see the module's doc). `declared` is the fleet's twin count
/// (devices, modules), what a whole-hub read is estimated from; `scoped` says the plan covers a
/// change only (never the whole hub); `need_complete` that every identity of the hub is needed.
pub fn plan(
    wanted: &[Wanted],
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
        estimated_seconds: rates.paced().then(|| seconds(full_pages, rates.query)),
    };
    if need_complete && !scoped {
        return full();
    }
    // The hint of identities no manifest declares any more needs two `COUNT()` queries after a
    // read that is neither complete nor change-scoped.
    let hint_queries = if scoped { 0 } else { 2 };
    let split = |on_query: &[&Wanted], on_get: &[&Wanted]| {
        let (device_queries, module_queries, query_pages) = by_query(on_query);
        let query_requests = query_pages + hint_queries;
        let get_requests: usize = on_get.iter().map(|w| w.twins()).sum();
        ReadPlan {
            full: false,
            device_queries,
            module_queries,
            gets: on_get
                .iter()
                .map(|w| (w.device.clone(), w.modules.clone()))
                .collect(),
            complete: scoped,
            query_twins: on_query.iter().map(|w| w.twins()).sum(),
            get_twins: get_requests,
            query_requests,
            get_requests,
            estimated_seconds: rates.paced().then(|| {
                seconds(query_requests, rates.query).max(seconds(get_requests, rates.twin_read))
            }),
        }
    };
    // Devices whose IDs cannot stand in an `IN` list go by GET; removed devices whose every module
    // is needed go by query (a GET names one module); the rest is free to go either way.
    let forced_get: Vec<&Wanted> = wanted.iter().filter(|w| !w.queryable()).collect();
    let forced_query: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| w.queryable() && w.all_modules)
        .collect();
    let free: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| w.queryable() && !w.all_modules)
        .collect();
    let at = |j: usize| {
        let on_query: Vec<&Wanted> = forced_query.iter().chain(&free[..j]).copied().collect();
        let on_get: Vec<&Wanted> = forced_get.iter().chain(&free[j..]).copied().collect();
        split(&on_query, &on_get)
    };
    if !rates.paced() {
        if !scoped {
            // Today's cheapest rule for a whole fleet: a few twins by GET, else the whole hub by
            // query (complete, so the hint needs no further query).
            return if twins <= TARGETED_MAX_TWINS && forced_query.is_empty() {
                at(0)
            } else {
                full()
            };
        }
        let (all_get, all_query) = (at(0), at(free.len()));
        let cost = |p: &ReadPlan| p.query_requests + p.get_requests;
        return if cost(&all_query) < cost(&all_get) {
            all_query
        } else {
            all_get
        };
    }
    // Paced: the split where both classes finish together. Query time grows and GET time falls
    // with the number of free devices sent to queries, so the balance is found by bisection.
    let time = |p: &ReadPlan| p.estimated_seconds.unwrap_or(0.0);
    let (mut lo, mut hi) = (0, free.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let p = at(mid);
        if seconds(p.query_requests, rates.query) < seconds(p.get_requests, rates.twin_read) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut candidates = vec![at(lo), at(lo.saturating_sub(1)), at(0), at(free.len())];
    if !scoped {
        candidates.push(full());
    }
    candidates
        .into_iter()
        .min_by(|a, b| {
            time(a)
                .total_cmp(&time(b))
                .then((a.query_requests + a.get_requests).cmp(&(b.query_requests + b.get_requests)))
        })
        .unwrap_or_else(full)
}

/// One twin as it arrives: a device (its module twins come after it, as their own observations),
/// or a module of a device that came before.
#[derive(Debug)]
pub enum Observation {
    Device(ObservedDevice),
    Module(DeviceId, ObservedModule),
}

async fn get_optional(
    hub: &Hub,
    device: &str,
    module: Option<&str>,
) -> Result<Option<twinops_iothub::wire::Twin>, Error> {
    match hub.get_twin(device, module).await {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Query pages in flight at once (each query's own pages follow one another).
const QUERY_STREAMS: usize = 4;

/// Runs one query to its last page, sending each page's twins on.
async fn send_pages(
    hub: &Hub,
    sql: &str,
    modules: bool,
    tx: &tokio::sync::mpsc::Sender<Vec<Observation>>,
) -> Result<(), Error> {
    let mut cont: Option<String> = None;
    loop {
        let page = hub
            .query_page(sql, QUERY_PAGE_REQUEST, cont.as_deref())
            .await?;
        let mut batch = Vec::with_capacity(page.items.len());
        for r in page.items {
            let t = observe::row(r)?;
            batch.push(if modules {
                Observation::Module(observe::device_id(&t.device_id)?, observe::module(&t)?)
            } else {
                Observation::Device(observe::device(&t)?)
            });
        }
        if tx.send(batch).await.is_err() {
            return Ok(()); // the consumer stopped, with its own error
        }
        match page.continuation {
            Some(c) => cont = Some(c),
            None => return Ok(()),
        }
    }
}

/// Reads what `plan` names, handing every twin to `sink` as its page or GET arrives (queries and
/// GETs run at the same time; a device always comes before its modules).
pub async fn read(
    hub: &Hub,
    plan: &ReadPlan,
    concurrency: usize,
    mut sink: impl FnMut(Observation) -> Result<(), Error>,
) -> Result<(), Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Observation>>(QUERY_STREAMS * 4);
    let tx_q = tx.clone();
    let queries = async move {
        let (devices, modules): (Vec<&str>, Vec<&str>) = if plan.full {
            (
                vec!["SELECT * FROM devices"],
                vec!["SELECT * FROM devices.modules"],
            )
        } else {
            (
                plan.device_queries.iter().map(String::as_str).collect(),
                plan.module_queries.iter().map(String::as_str).collect(),
            )
        };
        // Every device row is in before the first module row is asked for.
        for (sqls, is_module) in [(devices, false), (modules, true)] {
            let mut s = stream::iter(sqls)
                .map(|sql| send_pages(hub, sql, is_module, &tx_q))
                .buffer_unordered(QUERY_STREAMS);
            while let Some(r) = s.next().await {
                r?;
            }
        }
        Ok::<_, Error>(())
    };
    let tx_g = tx;
    let gets = async move {
        let mut s = stream::iter(plan.gets.iter().map(|(d, modules)| async move {
            let Some(t) = get_optional(hub, d, None).await? else {
                return Ok::<_, Error>(Vec::new());
            };
            let mut batch = vec![Observation::Device(observe::device(&t)?)];
            for m in modules {
                if let Some(mt) = get_optional(hub, d, Some(m)).await? {
                    batch.push(Observation::Module(d.clone(), observe::module(&mt)?));
                }
            }
            Ok(batch)
        }))
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
    futures::try_join!(queries, gets, consume)?;
    Ok(())
}

/// Reads what the hub holds for the fleet's scope into an [`Observed`] (drift, which needs the
/// twins' reported properties, reads this way).
pub async fn observe(
    hub: &Hub,
    fleet: &Fleet,
    targets: &Targets,
    need_complete: bool,
    concurrency: usize,
) -> Result<Observed, Error> {
    let plan = plan(
        &wanted(fleet, targets, need_complete),
        declared(fleet),
        Rates::of(hub),
        targets.scope().is_some(),
        need_complete,
    );
    let mut observed = Observed {
        complete: plan.complete,
        ..Observed::default()
    };
    read(hub, &plan, concurrency, |o| {
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
        Ok(())
    })
    .await?;
    Ok(observed)
}

/// The fleet's declared devices and modules.
pub fn declared(fleet: &Fleet) -> (usize, usize) {
    (
        fleet.devices.len(),
        fleet.devices.iter().map(|d| d.modules.len()).sum(),
    )
}

/// Every device and module twin of the hub, through two paged queries.
pub async fn query_all(hub: &Hub) -> Result<Observed, Error> {
    query(hub, "SELECT * FROM devices", true).await
}

/// The device twins a device query selects, with their module twins, through two paged queries.
/// `complete` says whether the query selects every device (what pruning needs).
pub async fn query(hub: &Hub, device_query: &str, complete: bool) -> Result<Observed, Error> {
    let mut observed = Observed {
        complete,
        ..Observed::default()
    };
    hub.query_all(device_query, QUERY_PAGE_REQUEST, |rows| {
        for r in rows {
            let d = observe::device(&observe::row(r)?)?;
            observed.devices.insert(d.id.clone(), d);
        }
        Ok(())
    })
    .await?;
    hub.query_all(
        "SELECT * FROM devices.modules",
        QUERY_PAGE_REQUEST,
        |rows| {
            for r in rows {
                let t = observe::row(r)?;
                // A module row whose device row lagged behind in the index is skipped; the next plan sees it.
                if let Some(d) = observed.devices.get_mut(t.device_id.as_str()) {
                    let m = observe::module(&t)?;
                    d.modules.insert(m.id.clone(), m);
                }
            }
            Ok(())
        },
    )
    .await?;
    Ok(observed)
}
