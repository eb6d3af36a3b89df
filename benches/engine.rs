//! Engine micro-benchmarks (criterion): manifest expansion of a 10,000-device templated range through
//! [`twinops_core::manifest::load`], and [`twinops_core::plan::diff`] of 100,000 twins against in-memory
//! observations (half unchanged, half with a changed owned value).
//!
//! ```text
//! cargo bench --bench engine
//! ```
//!
//! Without `--bench` (as under `cargo test --all-targets`) the binary exits at once: building 100,000
//! twins in a debug build is no test.

#![allow(clippy::print_stderr)]

use std::hint::black_box;

use criterion::Criterion;
use serde_json::json;
use twinops_core::manifest::{self, Source};
use twinops_core::model::{
    AuthenticationType, DeviceSpec, DeviceStatus, ETag, Fleet, JsonMap, Observed, ObservedAuth,
    ObservedDevice, ObservedModule, ObservedTwin, Targets, TwinSpec,
};
use twinops_core::plan::ledger::{self, Ledger};
use twinops_core::plan::{self, Options};

const DEVICES: usize = 10_000;
const MODULES: usize = 9;

/// One template with `MODULES` modules and one range of `DEVICES` devices.
fn manifests() -> Vec<Source> {
    let mut yaml = String::from(concat!(
        "owner: bench\n",
        "templates:\n",
        "  unit:\n",
        "    tags: {site: bench, name: \"${device}\", plant: {line: 1, building: north}}\n",
        "    desired:\n",
        "      telemetryInterval: 60\n",
        "      schedule: {mode: auto, slots: [6, 22], limits: {high: 28.5, low: 16}}\n",
        "    modules:\n",
    ));
    for m in 0..MODULES {
        yaml.push_str(&format!(
            "      m{m}:\n        tags: {{role: \"${{module}} of ${{device}}\"}}\n        desired: {{telemetryInterval: 122, unit: celsius, filter: {{window: 10, kind: ema}}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "devices:\n  \"dev-{{00000..{:05}}}\":\n    templates: [unit]\n    desired: {{setpoint: 21.5}}\n",
        DEVICES - 1
    ));
    vec![Source {
        path: "fleet.yaml".into(),
        bytes: yaml.into_bytes(),
    }]
}

/// What the hub would hold for `spec` after an apply, with `changed` moving one owned desired value.
fn twin(owner: &str, spec: &TwinSpec, changed: bool) -> ObservedTwin {
    let mut tags = spec.tags.to_map();
    let mut desired = spec.desired.to_map();
    let entry = ledger::Entry::new(Default::default(), &tags, &desired);
    let ledger = Ledger {
        version: ledger::VERSION,
        owners: [(owner.to_string(), entry)].into(),
    }
    .to_value();
    tags.insert("twinops".into(), ledger);
    if changed {
        desired.insert("telemetryInterval".into(), json!(999));
    }
    let reported: JsonMap = json!({"firmware": "1.2.3", "telemetryInterval": 60})
        .as_object()
        .cloned()
        .unwrap_or_default();
    ObservedTwin {
        etag: ETag::new("AAAAAAAAAAI=").expect("an etag"),
        tags,
        desired,
        desired_version: 2,
        desired_meta: Default::default(),
        reported,
        configurations: JsonMap::new(),
    }
}

fn sas() -> ObservedAuth {
    ObservedAuth {
        kind: AuthenticationType::Sas,
        ..ObservedAuth::default()
    }
}

/// Every other device is observed with all its twins changed; the rest match the manifests.
fn observed(fleet: &Fleet) -> Observed {
    let device = |(i, d): (usize, &DeviceSpec)| {
        let changed = i % 2 == 1;
        let modules = d
            .modules
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    ObservedModule {
                        id: m.id.clone(),
                        identity_etag: ETag::new("MQ==").expect("an etag"),
                        auth: sas(),
                        twin: twin(&fleet.owner, &m.twin, changed),
                    },
                )
            })
            .collect();
        (
            d.id.clone(),
            ObservedDevice {
                id: d.id.clone(),
                identity_etag: ETag::new("MA==").expect("an etag"),
                status: DeviceStatus::Enabled,
                status_reason: None,
                auth: sas(),
                edge: false,
                device_scope: None,
                parent_scopes: Vec::new(),
                twin: twin(&fleet.owner, &d.twin, changed),
                modules,
            },
        )
    };
    Observed {
        devices: fleet.devices.iter().enumerate().map(device).collect(),
        complete: true,
    }
}

fn benches(c: &mut Criterion) {
    let sources = manifests();
    let mut g = c.benchmark_group("manifest");
    g.sample_size(10);
    g.bench_function("load 10,000-device templated range (100,000 twins)", |b| {
        b.iter(|| manifest::load(black_box(&sources), &manifest::NoEnv).map(|f| f.devices.len()))
    });
    g.finish();

    let fleet =
        manifest::load(&sources, &manifest::NoEnv).unwrap_or_else(|e| panic!("manifests: {e}"));
    assert_eq!(fleet.devices.len() * (1 + MODULES), 100_000);
    let seen = observed(&fleet);
    let options = Options {
        targets: Targets::new(&[]),
        ..Options::default()
    };
    let p = plan::diff(&fleet, &seen, "bench", &options);
    assert_eq!(p.summary.update, 50_000, "{:?}", p.summary);
    assert_eq!(p.summary.unchanged, 50_000, "{:?}", p.summary);

    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("diff 100,000 twins (half changed)", |b| {
        b.iter(|| plan::diff(black_box(&fleet), black_box(&seen), "bench", &options))
    });
    g.finish();
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("engine: not run (benchmarks run under `cargo bench --bench engine`)");
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
