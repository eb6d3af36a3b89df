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

/// Seconds to send `n` requests of a class at `rate` (None: unpaced, no wait): the pacer
/// starts a run with one token and then sends at the rate.
fn seconds(n: usize, rate: Option<f64>) -> f64 {
    match rate {
        Some(r) if r > 0.0 => (n as f64 - 1.0).max(0.0) / r,
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

pub(crate) const IN_PREFIX_DEVICES: &str = "SELECT * FROM devices WHERE deviceId IN [";
pub(crate) const IN_PREFIX_MODULES: &str = "SELECT * FROM devices.modules WHERE deviceId IN [";

/// How `IN` lists cut a run of devices into queries of at most [`MAX_IN_QUERY_BYTES`]: calls
/// `each(first, end, rows)` per query over `items[first..end]`, each item `(id, rows it returns)`.
fn chunks<'a>(
    prefix: &str,
    items: impl Iterator<Item = (&'a DeviceId, usize)>,
    mut each: impl FnMut(usize, usize, usize),
) {
    // `prefix` + `'id'` joined by `, ` + `]`.
    let (mut first, mut len, mut rows, mut n) = (0, prefix.len() + 1, 0, 0);
    for (i, (id, r)) in items.enumerate() {
        if n > 0 && len + 2 + id.len() + 2 > MAX_IN_QUERY_BYTES {
            each(first, i, rows);
            (first, len, rows, n) = (i, prefix.len() + 1, 0, 0);
        }
        len += id.len() + 2 + if n > 0 { 2 } else { 0 };
        rows += r;
        n += 1;
    }
    if n > 0 {
        each(first, first + n, rows);
    }
}

/// Query pages of reading these devices by `IN` lists (device rows, then module rows).
fn query_pages<'a>(devices: impl Iterator<Item = &'a Wanted> + Clone) -> usize {
    let mut pages = 0;
    let mut count = |_: usize, _: usize, rows: usize| pages += rows.div_ceil(PAGE_ROWS).max(1);
    chunks(
        IN_PREFIX_DEVICES,
        devices.clone().map(|w| (&w.device, 1)),
        &mut count,
    );
    chunks(
        IN_PREFIX_MODULES,
        devices
            .filter(|w| w.needs_module_rows())
            .map(|w| (&w.device, w.modules.len())),
        &mut count,
    );
    pages
}

/// The `IN`-list queries of these devices.
pub(crate) fn in_queries(prefix: &str, ids: &[&DeviceId]) -> Vec<String> {
    let mut out = Vec::new();
    chunks(prefix, ids.iter().map(|id| (*id, 0)), |first, end, _| {
        let list: Vec<String> = ids[first..end].iter().map(|id| format!("'{id}'")).collect();
        out.push(format!("{prefix}{}]", list.join(", ")));
    });
    out
}

/// Decides how to read `wanted` (see the module's doc). `declared` is the fleet's twin count
/// (devices, modules), what a whole-hub read is estimated from; `scoped` says the plan covers a
/// change only (never the whole hub); `need_complete` that every identity of the hub is needed.
pub fn plan(
    wanted: Vec<Wanted>,
    declared: (usize, usize),
    rates: Rates,
    scoped: bool,
    need_complete: bool,
) -> ReadPlan {
    let twins: usize = wanted.iter().map(Wanted::twins).sum();
    let full_pages = declared.0.div_ceil(PAGE_ROWS).max(1) + declared.1.div_ceil(PAGE_ROWS).max(1);
    let estimate = |query: usize, get: usize| {
        rates
            .paced()
            .then(|| seconds(query, rates.query).max(seconds(get, rates.twin_read)))
    };
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
        estimated_seconds: estimate(full_pages, 0),
    };
    if need_complete && !scoped {
        return full();
    }
    // The hint of identities no manifest declares any more needs two `COUNT()` queries after a
    // read that is neither complete nor change-scoped.
    let hint_queries = if scoped { 0 } else { 2 };
    // Devices whose IDs cannot stand in an `IN` list go by GET; removed devices whose every module
    // is needed go by query (a GET names one module); the rest (`free`) may go either way: the
    // first `j` of them by query.
    let (forced_get, rest): (Vec<Wanted>, Vec<Wanted>) =
        wanted.into_iter().partition(|w| !w.queryable());
    let (forced_query, free): (Vec<Wanted>, Vec<Wanted>) =
        rest.into_iter().partition(|w| w.all_modules);
    let forced_get_twins: usize = forced_get.iter().map(Wanted::twins).sum();
    let free_twins: Vec<usize> = free.iter().map(Wanted::twins).collect();
    let free_total: usize = free_twins.iter().sum();
    // (query requests, GET requests) with the first `j` free devices by query.
    let cost = |j: usize| {
        let on_query = forced_query.iter().chain(&free[..j]);
        let query = query_pages(on_query) + hint_queries;
        let get = forced_get_twins + free_total - free_twins[..j].iter().sum::<usize>();
        (query, get)
    };
    let requests = |(q, g): (usize, usize)| q + g;
    let time = |(q, g): (usize, usize)| estimate(q, g).unwrap_or(0.0);
    let (j, use_full) = if !rates.paced() {
        if !scoped {
            // Today's cheapest rule for a whole fleet: a few twins by GET, else the whole hub by
            // query (complete, so the hint needs no further query).
            if twins <= TARGETED_MAX_TWINS && forced_query.is_empty() {
                (0, false)
            } else {
                return full();
            }
        } else if requests(cost(free.len())) < requests(cost(0)) {
            (free.len(), false)
        } else {
            (0, false)
        }
    } else {
        // The split where both classes finish together: query time grows and GET time falls
        // with `j`, so the balance is found by bisection; the ends and (for a whole fleet) the
        // full query compete with it, fastest first, then fewest requests.
        let (mut lo, mut hi) = (0, free.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (q, g) = cost(mid);
            if seconds(q, rates.query) < seconds(g, rates.twin_read) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut best = (0, cost(0));
        for j in [lo, lo.saturating_sub(1), free.len()] {
            let c = cost(j);
            if (time(c), requests(c)) < (time(best.1), requests(best.1)) {
                best = (j, c);
            }
        }
        let full_cost = (full_pages, 0);
        let use_full =
            !scoped && (time(full_cost), requests(full_cost)) < (time(best.1), requests(best.1));
        (best.0, use_full)
    };
    if use_full {
        return full();
    }
    let (query_requests, get_requests) = cost(j);
    let mut free = free;
    let on_get_free = free.split_off(j);
    let on_query: Vec<Wanted> = forced_query.into_iter().chain(free).collect();
    let device_ids: Vec<&DeviceId> = on_query.iter().map(|w| &w.device).collect();
    let module_ids: Vec<&DeviceId> = on_query
        .iter()
        .filter(|w| w.needs_module_rows())
        .map(|w| &w.device)
        .collect();
    let gets: Vec<Wanted> = forced_get.into_iter().chain(on_get_free).collect();
    ReadPlan {
        full: false,
        device_queries: in_queries(IN_PREFIX_DEVICES, &device_ids),
        module_queries: in_queries(IN_PREFIX_MODULES, &module_ids),
        complete: scoped,
        query_twins: on_query.iter().map(Wanted::twins).sum(),
        get_twins: get_requests,
        query_requests,
        get_requests,
        estimated_seconds: estimate(query_requests, get_requests),
        gets,
    }
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
        let mut s = stream::iter(plan.gets.iter().map(|w| async move {
            let (d, modules) = (&w.device, &w.modules);
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
        wanted(fleet, targets, need_complete),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(devices: usize, modules: usize) -> Vec<Wanted> {
        (0..devices)
            .map(|i| Wanted {
                device: DeviceId::new(format!("dev-{i:05}")).unwrap(),
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
}
