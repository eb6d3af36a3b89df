//! Soak: 2,000 twins, faults on, a concurrent writer on. The apply reports conflicts for exactly the twins
//! whose owned keys the writer changed; every unowned and reported change the writer made survives; after
//! the writer stops, apply converges and the next apply writes nothing. An independent check reads every
//! twin and compares key by key. `TWINOPS_SOAK_SCALE=N` multiplies the fleet (benches/soak.sh runs it
//! longer).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::{manifests, twinops, writes};
use crate::support::Emulator;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

const MODULES: usize = 4;

/// Per twin, the last unowned value and the last reported value the writer wrote.
type LastWrites = BTreeMap<String, (Option<u64>, Option<u64>)>;

fn scale() -> usize {
    std::env::var("TWINOPS_SOAK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn fleet(devices: usize, v: u32) -> String {
    let mut modules = String::new();
    for m in 1..=MODULES {
        modules.push_str(&format!(
            "      m{m}:\n        desired: {{v: {v}, cfg: {{mode: \"m{m}\", level: {v}}}}}\n"
        ));
    }
    format!(
        "owner: soak\ndevices:\n  \"s-{{0001..{devices:04}}}\":\n    tags: {{fleet: soak}}\n    desired: {{v: {v}}}\n    modules:\n{modules}"
    )
}

fn address(device: usize, module: usize) -> String {
    if module == 0 {
        format!("s-{device:04}")
    } else {
        format!("s-{device:04}/m{module}")
    }
}

/// A write by the other writer, retried through the injected faults until the hub acknowledges it.
/// `reset-after` can commit a write whose answer is lost: the retry then lands the same value again.
async fn write(em: &Emulator, method: reqwest::Method, path: &str, body: Value, if_match: bool) {
    for _ in 0..50 {
        let mut req = em
            .client
            .request(
                method.clone(),
                format!(
                    "{}{}{}api-version=2021-04-12",
                    em.url,
                    path,
                    if path.contains('?') { "&" } else { "?" }
                ),
            )
            .header("authorization", em.owner_token())
            .header("content-type", "application/json")
            .body(body.to_string());
        if if_match {
            req = req.header("if-match", "\"*\"");
        }
        if let Ok(resp) = req.send().await
            && resp.status().is_success()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the writer could not write {path}");
}

fn twin_path(a: &str) -> String {
    match a.split_once('/') {
        Some((d, m)) => format!("/twins/{d}/modules/{m}"),
        None => format!("/twins/{a}"),
    }
}

fn reported_path(a: &str) -> String {
    format!("/_emulator{}/reported", twin_path(a))
}

/// One query page, retried through the injected faults.
async fn page(em: &Emulator, sql: &str, cont: Option<&str>) -> (Vec<Value>, Option<String>) {
    for _ in 0..50 {
        let mut req = em
            .client
            .post(format!("{}/devices/query?api-version=2021-04-12", em.url))
            .header("authorization", em.owner_token())
            .header("content-type", "application/json")
            .header("x-ms-max-item-count", "100")
            .body(json!({"query": sql}).to_string());
        if let Some(c) = cont {
            req = req.header("x-ms-continuation", c);
        }
        if let Ok(resp) = req.send().await
            && resp.status().is_success()
        {
            let next = resp
                .headers()
                .get("x-ms-continuation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Ok(rows) = resp.json::<Vec<Value>>().await {
                return (rows, next);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("could not read the hub");
}

/// Every twin of the hub by address, read independently of twinops.
async fn all_twins(em: &Emulator) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for sql in ["SELECT * FROM devices", "SELECT * FROM devices.modules"] {
        let mut cont: Option<String> = None;
        loop {
            let (rows, next) = page(em, sql, cont.as_deref()).await;
            for t in rows {
                let a = match t["moduleId"].as_str() {
                    Some(m) => format!("{}/{m}", t["deviceId"].as_str().unwrap()),
                    None => t["deviceId"].as_str().unwrap().to_string(),
                };
                out.insert(a, t);
            }
            match next {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_faults_and_a_concurrent_writer_never_overwrites_and_converges() {
    let devices = 400 * scale();
    let twins = devices * (1 + MODULES);
    let em = Arc::new(Emulator::start_with(&[
        "--faults",
        "429ra:0.03,500:0.02,503:0.02,reset:0.01,reset-after:0.01,latency:0-3ms",
    ]));
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    let mp = m.to_str().unwrap().to_string();
    manifests(&m, &[("fleet.yaml", &fleet(devices, 1))]);
    let r = twinops(&em, &["apply", "--yes", "--quiet", &mp]);
    assert_eq!(r.code, 0, "initial apply: {}", r.stderr);

    // Plan a change of every twin, then let a writer loose between plan and apply and during apply.
    manifests(&m, &[("fleet.yaml", &fleet(devices, 2))]);
    let plan = d.path().join("plan.json");
    let r = twinops(
        &em,
        &["plan", "--quiet", "--out", plan.to_str().unwrap(), &mp],
    );
    assert_eq!(r.code, 0, "{r:?}");

    let mut rng = rand::rng();
    let mut all: Vec<(usize, usize)> = (1..=devices)
        .flat_map(|dv| (0..=MODULES).map(move |md| (dv, md)))
        .collect();
    all.shuffle(&mut rng);
    let chosen = twins / 20;
    let owned_changed: Vec<(usize, usize)> = all[..chosen].to_vec();
    let unowned_changed: Vec<(usize, usize)> = all[chosen..2 * chosen].to_vec();
    let reported_changed: Vec<(usize, usize)> = all[2 * chosen..3 * chosen].to_vec();

    // Owned keys changed after the plan was made: these must become conflicts.
    for (dv, md) in &owned_changed {
        let a = address(*dv, *md);
        write(
            &em,
            reqwest::Method::PATCH,
            &twin_path(&a),
            json!({"properties": {"desired": {"v": 999}}}),
            true,
        )
        .await;
    }
    // During the apply: unowned keys and reported properties, again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let last: Arc<tokio::sync::Mutex<LastWrites>> = Default::default();
    let writer = {
        let (em, stop, last) = (em.clone(), stop.clone(), last.clone());
        let (unowned, reported) = (unowned_changed.clone(), reported_changed.clone());
        tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                n += 1;
                let (dv, md) = *unowned.choose(&mut rand::rng()).unwrap();
                let a = address(dv, md);
                write(
                    &em,
                    reqwest::Method::PATCH,
                    &twin_path(&a),
                    json!({"tags": {"team": n}, "properties": {"desired": {"theirs": n}}}),
                    true,
                )
                .await;
                last.lock().await.entry(a).or_default().0 = Some(n);
                let (dv, md) = *reported.choose(&mut rand::rng()).unwrap();
                let a = address(dv, md);
                write(
                    &em,
                    reqwest::Method::PATCH,
                    &reported_path(&a),
                    json!({"battery": n}),
                    false,
                )
                .await;
                last.lock().await.entry(a).or_default().1 = Some(n);
                if stop.load(Ordering::SeqCst) && n as usize >= unowned.len() {
                    return n;
                }
            }
        })
    };
    let em2 = em.clone();
    let plan_path = plan.to_str().unwrap().to_string();
    let r = tokio::task::spawn_blocking(move || {
        twinops(
            &em2,
            &[
                "apply", "--yes", "--quiet", "--format", "json", "--plan", &plan_path,
            ],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let writes_done = writer.await.unwrap();
    assert_eq!(r.code, 1, "conflicts make apply exit 1: {}", r.stderr);
    let report = r.json();
    let outcomes = report["outcomes"].as_array().unwrap();
    let conflicts: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o["status"] == "conflict")
        .map(|o| match o["module_id"].as_str() {
            Some(m) => format!("{}/{m}", o["device_id"].as_str().unwrap()),
            None => o["device_id"].as_str().unwrap().to_string(),
        })
        .collect();
    let expected: BTreeSet<String> = owned_changed
        .iter()
        .map(|(dv, md)| address(*dv, *md))
        .collect();
    assert_eq!(
        conflicts, expected,
        "conflicts are exactly the twins whose owned keys changed"
    );
    let failed: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["status"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");

    // Independent check, key by key.
    let seen = all_twins(&em).await;
    assert_eq!(seen.len(), twins);
    let last = last.lock().await.clone();
    for (a, t) in &seen {
        let desired = &t["properties"]["desired"];
        if expected.contains(a) {
            assert_eq!(
                desired["v"], 999,
                "{a}: the writer's owned value was overwritten"
            );
        } else {
            assert_eq!(desired["v"], 2, "{a}: not applied");
        }
        if let Some((unowned, reported)) = last.get(a) {
            if let Some(n) = unowned {
                assert_eq!(desired["theirs"], *n, "{a}: unowned desired lost");
                assert_eq!(t["tags"]["team"], *n, "{a}: unowned tag lost");
            }
            if let Some(n) = reported {
                assert_eq!(
                    t["properties"]["reported"]["battery"], *n,
                    "{a}: reported lost"
                );
            }
        }
        assert!(
            t["tags"]["twinops"]["owners"]["soak"].is_object(),
            "{a}: {t}"
        );
    }

    // The writer has stopped: apply converges (the manifest wins over the writer's owned values) ...
    let r = twinops(&em, &["apply", "--yes", "--quiet", &mp]);
    assert_eq!(r.code, 0, "{r:?}");
    let seen = all_twins(&em).await;
    for (a, t) in &seen {
        assert_eq!(t["properties"]["desired"]["v"], 2, "{a}");
        if let Some((Some(n), _)) = last.get(a) {
            assert_eq!(
                t["properties"]["desired"]["theirs"], *n,
                "{a}: unowned desired lost on convergence"
            );
        }
    }
    // ... and the next apply makes zero writes.
    let before = em.stats().await;
    let r = twinops(&em, &["apply", "--yes", &mp]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    assert_eq!(writes(&em.stats().await), writes(&before));
    assert!(writes_done > 0);
    let stats = em.stats().await;
    eprintln!(
        "soak: {twins} twins, {} conflicts as expected, {writes_done} writer rounds, faults injected: {}, requests: {}",
        expected.len(),
        stats["faults"],
        stats["total"]
    );
}
