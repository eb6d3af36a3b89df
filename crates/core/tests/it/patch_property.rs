//! A property of the planner, checked over many generated twins: applying each planned merge patch
//! to the observed twin (with json-patch's RFC 7396 merge, an implementation independent of the
//! planner, doing what the hub does) brings the twin's owned values to exactly the plan's target,
//! and leaves every key twinops does not own untouched.

use serde_json::{Value, json};
use twinops_core::model::{
    AuthenticationType, DeviceId, DeviceSpec, DeviceStatus, Digest, ETag, Fleet, JsonMap, Location,
    Observed, ObservedAuth, ObservedDevice, ObservedTwin, Owner, Targets, TwinSpec,
};
use twinops_core::plan::ledger::{self, Entry, Ledger};
use twinops_core::plan::{self, Change, Options, owned_view};

/// A small deterministic generator (SplitMix64), so every failure is reproducible by its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 4 } else { 6 }) {
            0 => json!(self.below(100)),
            1 => json!(format!("s{}", self.below(5))),
            2 => json!(self.below(2) == 0),
            3 => json!([self.below(3), self.below(3)]),
            _ => Value::Object(self.map(depth - 1, 3)),
        }
    }

    fn map(&mut self, depth: u32, width: u64) -> JsonMap {
        let mut m = JsonMap::new();
        for _ in 0..self.below(width + 1) {
            let k = format!("k{}", self.below(6));
            let v = self.value(depth);
            m.insert(k, v);
        }
        m
    }
}

fn twin_case(g: &mut Gen, owner: &Owner) -> (TwinSpec, ObservedTwin) {
    let spec = TwinSpec {
        tags: g.map(2, 3).into(),
        desired: g.map(2, 3).into(),
        ..TwinSpec::default()
    };
    let mut tags = g.map(2, 4);
    let mut desired = g.map(2, 4);
    // Sometimes the twin already holds a ledger of ours, owning some other keys.
    if g.below(2) == 0 {
        let owned_tags = g.map(0, 2);
        let owned_desired = g.map(0, 2);
        for (k, v) in &owned_desired {
            desired.insert(k.clone(), v.clone());
        }
        for (k, v) in &owned_tags {
            tags.insert(k.clone(), v.clone());
        }
        tags.insert(
            "twinops".into(),
            Ledger {
                version: ledger::VERSION,
                owners: [(
                    owner.to_string(),
                    Entry::new(Default::default(), &owned_tags, &owned_desired),
                )]
                .into(),
            }
            .to_value(),
        );
    }
    let seen = ObservedTwin {
        etag: ETag::new(format!("e{}", g.below(1000))).unwrap(),
        tags,
        desired,
        desired_version: 3,
        desired_meta: Default::default(),
        reported: JsonMap::new(),
        configurations: JsonMap::new(),
    };
    (spec, seen)
}

#[test]
fn applying_each_planned_patch_to_the_observed_twin_yields_the_target() {
    let owner = Owner::new("prop").unwrap();
    let mut checked = 0;
    for seed in 0..2_000u64 {
        let mut g = Gen(seed);
        let (spec, seen) = twin_case(&mut g, &owner);
        let id = DeviceId::new(format!("d{seed}")).unwrap();
        let fleet = Fleet {
            owner: owner.clone(),
            devices: vec![DeviceSpec {
                id: id.clone(),
                status: None,
                status_reason: None,
                auth: None,
                edge: None,
                parent: None,
                twin: spec,
                modules: Vec::new(),
                location: Location {
                    file: "gen.yaml".into(),
                    line: 1,
                    column: 1,
                },
            }],
            digest: Digest::new("0".repeat(64)).unwrap(),
            rollout: None,
            configurations: Vec::new(),
            deployments: Vec::new(),
        };
        let observed = Observed {
            devices: [(
                id.clone(),
                ObservedDevice {
                    id: id.clone(),
                    identity_etag: ETag::new("ie").unwrap(),
                    status: DeviceStatus::Enabled,
                    status_reason: None,
                    auth: ObservedAuth {
                        kind: AuthenticationType::Sas,
                        ..ObservedAuth::default()
                    },
                    edge: false,
                    device_scope: None,
                    parent_scopes: Vec::new(),
                    twin: seen.clone(),
                    modules: Default::default(),
                },
            )]
            .into_iter()
            .collect(),
            complete: true,
        };
        let p = plan::diff(
            &fleet,
            &observed,
            "hub",
            &Options {
                targets: Targets::default(),
                ..Options::default()
            },
        );
        for c in &p.changes {
            let Change::UpdateTwin(u) = c else { continue };
            let mut tags = Value::Object(seen.tags.clone());
            let mut desired = Value::Object(seen.desired.clone());
            json_patch::merge(&mut tags, &Value::Object(u.patch.tags.clone()));
            json_patch::merge(&mut desired, &Value::Object(u.patch.desired.clone()));
            let after = ObservedTwin {
                tags: tags.as_object().cloned().unwrap(),
                desired: desired.as_object().cloned().unwrap(),
                ..seen.clone()
            };
            let now = owned_view(&u.base, &u.ignore, &u.sensitive, u.key, &after);
            assert_eq!(
                now, u.target,
                "seed {seed}: the patch does not reach the target"
            );
            // Keys outside the plan's view (not owned now, never owned before) are untouched.
            for (k, v) in &seen.desired {
                if !u.base.desired.contains_key(k) {
                    assert_eq!(
                        after.desired.get(k),
                        Some(v),
                        "seed {seed}: desired.{k} moved"
                    );
                }
            }
            for (k, v) in &seen.tags {
                if !u.base.tags.contains_key(k) {
                    assert_eq!(after.tags.get(k), Some(v), "seed {seed}: tags.{k} moved");
                }
            }
            checked += 1;
        }
    }
    // Most generated twins differ from their spec; the property must have been exercised.
    assert!(checked > 1_000, "only {checked} patches were checked");
}
