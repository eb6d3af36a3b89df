//! Unit tests of rollout waves: assignment, determinism, shares and counts, `first`, the ID, the gate.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::model::{Location, Share};

fn addr(text: &str) -> TwinAddress {
    text.parse().unwrap()
}

fn spec(waves: &[Step]) -> RolloutSpec {
    RolloutSpec {
        waves: waves.to_vec(),
        first: None,
        bake: Duration::ZERO,
        timeout: Duration::from_secs(600),
        halt: Halt::default(),
        on_halt: OnHalt::Stop,
        location: Location {
            file: Arc::from("r.yaml"),
            line: 1,
            column: 1,
        },
    }
}

fn share(text: &str) -> Step {
    Step::Share(Share::parse(text).unwrap())
}

fn owner() -> Owner {
    Owner::new("berlin-plant").unwrap()
}

/// `n` twins `t-000`..; those named in `first` are marked as first; every target is `{"v": 1}`.
struct Twins {
    addresses: Vec<TwinAddress>,
    desired: Vec<JsonMap>,
    first: Vec<bool>,
}

impl Twins {
    fn new(n: usize) -> Twins {
        Twins::named((0..n).map(|i| format!("t-{i:03}")).collect())
    }

    fn named(names: Vec<String>) -> Twins {
        let n = names.len();
        Twins {
            addresses: names.iter().map(|a| addr(a)).collect(),
            desired: vec![json!({"v": 1}).as_object().unwrap().clone(); n],
            first: vec![false; n],
        }
    }

    fn mark_first(mut self, names: &[&str]) -> Twins {
        for (i, a) in self.addresses.iter().enumerate() {
            if names.contains(&a.to_string().as_str()) {
                self.first[i] = true;
            }
        }
        self
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        (0..self.addresses.len())
            .map(|i| Candidate {
                address: &self.addresses[i],
                target: target_digest(&self.desired[i]),
                first: self.first[i],
            })
            .collect()
    }
}

fn sizes(r: &Rollout) -> Vec<usize> {
    r.waves.iter().map(|w| w.twins.len()).collect()
}

fn names(w: &Wave) -> Vec<String> {
    w.twins.iter().map(ToString::to_string).collect()
}

#[test]
fn the_same_twins_in_any_order_get_the_same_waves() {
    let twins = Twins::new(40).mark_first(&["t-007", "t-031"]);
    let s = spec(&[share("10%"), share("50%"), share("100%")]);
    let forward = plan(&s, &owner(), &twins.candidates()).unwrap();
    let mut reversed = twins.candidates();
    reversed.reverse();
    let backward = plan(&s, &owner(), &reversed).unwrap();
    let mut shuffled = twins.candidates();
    shuffled.rotate_left(13);
    let rotated = plan(&s, &owner(), &shuffled).unwrap();
    assert_eq!(forward, backward);
    assert_eq!(forward, rotated);
    assert_eq!(forward, plan(&s, &owner(), &twins.candidates()).unwrap());
}

#[test]
fn twins_outside_first_follow_the_sha256_of_owner_and_address() {
    let twins = Twins::new(20);
    let r = plan(&spec(&[Step::All]), &owner(), &twins.candidates()).unwrap();
    let mut expected: Vec<(String, [u8; 32])> = twins
        .addresses
        .iter()
        .map(|a| {
            let key: [u8; 32] = Sha256::digest(format!("berlin-plant/{a}").as_bytes()).into();
            (a.to_string(), key)
        })
        .collect();
    expected.sort_by_key(|(_, k)| *k);
    let expected: Vec<String> = expected.into_iter().map(|(a, _)| a).collect();
    assert_eq!(names(&r.waves[0]), expected);
    // Another owner orders the same twins differently.
    let other = plan(
        &spec(&[Step::All]),
        &Owner::new("munich-plant").unwrap(),
        &twins.candidates(),
    )
    .unwrap();
    assert_ne!(names(&other.waves[0]), expected);
}

#[test]
fn shares_are_cumulative_and_round_up() {
    let twins = Twins::new(101);
    let r = plan(
        &spec(&[share("5%"), share("25%"), share("100%")]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    // ceil(5.05) = 6, ceil(25.25) = 26, 101.
    assert_eq!(sizes(&r), [6, 20, 75]);
    let steps: Vec<String> = r.waves.iter().map(|w| w.step.to_string()).collect();
    assert_eq!(steps, ["5%", "25%", "100%"]);
    let indexes: Vec<usize> = r.waves.iter().map(|w| w.index).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(r.twin_count(), 101);
}

#[test]
fn a_single_twin_fills_the_first_wave() {
    let twins = Twins::new(1);
    let r = plan(
        &spec(&[share("5%"), share("100%")]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    assert_eq!(sizes(&r), [1]);
    assert_eq!(r.waves[0].step, WaveStep::Upto(share("5%")));
}

#[test]
fn counts_work_like_shares_and_all_takes_the_rest() {
    let twins = Twins::new(150);
    let r = plan(
        &spec(&[Step::Count(10), Step::Count(100), Step::All]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    assert_eq!(sizes(&r), [10, 90, 50]);
    // Counts beyond the twins there are stop at N; the waves after them are empty and skipped.
    let few = Twins::new(7);
    let r = plan(
        &spec(&[Step::Count(10), Step::Count(100), Step::All]),
        &owner(),
        &few.candidates(),
    )
    .unwrap();
    assert_eq!(sizes(&r), [7]);
    assert_eq!(r.waves[0].step, WaveStep::Upto(Step::Count(10)));
}

#[test]
fn empty_waves_are_skipped_and_the_rest_renumbered() {
    // 10 twins: ceil(1% × 10) = 1, ceil(2% × 10) = 1 (empty), ceil(10% × 10) = 1 (empty), 10.
    let twins = Twins::new(10);
    let r = plan(
        &spec(&[share("1%"), share("2%"), share("10%"), share("100%")]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    assert_eq!(sizes(&r), [1, 9]);
    let steps: Vec<String> = r.waves.iter().map(|w| w.step.to_string()).collect();
    assert_eq!(steps, ["1%", "100%"]);
    assert_eq!(r.waves[1].index, 1);
}

#[test]
fn first_twins_form_wave_0_sorted_by_address() {
    let twins = Twins::named(
        ["zeta", "alpha/m2", "alpha", "mid", "alpha/m1", "beta"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .mark_first(&["zeta", "alpha/m2", "alpha", "alpha/m1"]);
    let r = plan(&spec(&[share("100%")]), &owner(), &twins.candidates()).unwrap();
    assert_eq!(r.waves[0].step, WaveStep::First);
    assert_eq!(r.waves[0].index, 0);
    assert_eq!(
        names(&r.waves[0]),
        ["alpha", "alpha/m1", "alpha/m2", "zeta"]
    );
    assert_eq!(sizes(&r), [4, 2]);
}

#[test]
fn first_twins_count_towards_the_first_share() {
    let twins = Twins::new(100).mark_first(&["t-050", "t-051", "t-052"]);
    let r = plan(
        &spec(&[share("5%"), share("25%"), share("100%")]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    // 3 first twins, then up to 5 (2 more), up to 25 (20 more), the rest.
    assert_eq!(sizes(&r), [3, 2, 20, 75]);
    assert!(r.waves[1..].iter().all(|w| w.step != WaveStep::First));
}

#[test]
fn first_twins_beyond_the_first_share_leave_its_wave_empty() {
    let first: Vec<String> = (0..10).map(|i| format!("t-{i:03}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let twins = Twins::new(100).mark_first(&first);
    let r = plan(
        &spec(&[share("5%"), share("25%"), share("100%")]),
        &owner(),
        &twins.candidates(),
    )
    .unwrap();
    assert_eq!(sizes(&r), [10, 15, 75]);
    assert_eq!(r.waves[1].step, WaveStep::Upto(share("25%")));
}

#[test]
fn no_rolled_out_twin_means_no_rollout() {
    assert_eq!(plan(&spec(&[Step::All]), &owner(), &[]), None);
}

#[test]
fn the_id_is_stable_and_follows_the_target_values() {
    let twins = Twins::new(5);
    let a = id(&twins.candidates());
    let mut reversed = twins.candidates();
    reversed.reverse();
    assert_eq!(id(&reversed), a);
    assert_eq!(id(&Twins::new(5).candidates()), a);

    let mut changed = Twins::new(5);
    changed.desired[3] = json!({"v": 2}).as_object().unwrap().clone();
    assert_ne!(id(&changed.candidates()), a);

    let mut fewer = Twins::new(5);
    fewer.addresses.pop();
    fewer.desired.pop();
    fewer.first.pop();
    assert_ne!(id(&fewer.candidates()), a);

    // Which twins are first does not change what is rolled out.
    assert_eq!(id(&Twins::new(5).mark_first(&["t-001"]).candidates()), a);
}

#[test]
fn the_id_ignores_the_order_of_object_keys() {
    let mut one = Twins::new(1);
    one.desired[0] = json!({"a": 1, "b": {"x": 1, "y": [1, {"p": 1, "q": 2}]}})
        .as_object()
        .unwrap()
        .clone();
    let mut other = Twins::new(1);
    other.desired[0] = json!({"b": {"y": [1, {"q": 2, "p": 1}], "x": 1}, "a": 1})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(id(&one.candidates()), id(&other.candidates()));
}

#[test]
fn a_rollout_reads_back_as_it_was_written() {
    let twins = Twins::named(vec!["d1".into(), "d1/m1".into(), "d2".into()]).mark_first(&["d2"]);
    let mut s = spec(&[Step::Count(1), Step::All]);
    s.bake = Duration::from_millis(1500);
    s.halt.rejected = Share::parse("2.5%").unwrap();
    s.on_halt = OnHalt::Revert;
    let r = plan(&s, &owner(), &twins.candidates()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["waves"][0],
        json!({"index": 0, "step": "first", "twins": ["d2"]})
    );
    assert_eq!(v["waves"][1]["step"], json!("all"));
    assert_eq!(v["bake_seconds"], json!(1.5));
    assert_eq!(v["timeout_seconds"], json!(600.0));
    assert_eq!(v["halt"], json!({"rejected": "2.5%", "pending": "0%"}));
    assert_eq!(v["on_halt"], json!("revert"));
    let back: Rollout = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_saved_rollout_with_a_bad_address_or_step_is_refused() {
    let doc = |twins: Value, step: &str| {
        json!({"id": "ab".repeat(32), "waves": [{"index": 0, "step": step, "twins": twins}],
               "bake_seconds": 0, "timeout_seconds": 600, "halt": {"rejected": "0%", "pending": "0%"},
               "on_halt": "stop"})
    };
    assert!(serde_json::from_value::<Rollout>(doc(json!(["d1", "d1/m1"]), "5%")).is_ok());
    assert!(serde_json::from_value::<Rollout>(doc(json!(["bad id"]), "5%")).is_err());
    assert!(serde_json::from_value::<Rollout>(doc(json!(["d1/"]), "5%")).is_err());
    assert!(serde_json::from_value::<Rollout>(doc(json!(["d1"]), "0")).is_err());
    assert!(serde_json::from_value::<Rollout>(doc(json!(["d1"]), "half")).is_err());
}

#[test]
fn only_twin_updates_of_desired_values_are_rolled_out() {
    use crate::plan::{OwnedValues, TwinPatch};
    let update = |desired: Value, tags: Value| {
        Change::UpdateTwin(Box::new(UpdateTwin {
            address: addr("d1"),
            if_match: "e1".into(),
            base: OwnedValues::default(),
            target: OwnedValues::default(),
            patch: TwinPatch {
                tags: tags.as_object().unwrap().clone(),
                desired: desired.as_object().unwrap().clone(),
            },
            diff: Vec::new(),
            ignore: Vec::new(),
            sensitive: Vec::new(),
            refs: Vec::new(),
            key: Default::default(),
            adopted: Vec::new(),
            released: Vec::new(),
            forced: Vec::new(),
        }))
    };
    assert!(rolled_out(&update(json!({"t": 1}), json!({}))).is_some());
    assert!(rolled_out(&update(json!({"t": null}), json!({"site": "b"}))).is_some());
    assert!(rolled_out(&update(json!({}), json!({"site": "b"}))).is_none());
    let delete = Change::DeleteModule(crate::plan::DeleteModule {
        device: "d1".into(),
        module: "m1".into(),
        if_match: "e1".into(),
    });
    assert!(rolled_out(&delete).is_none());
}

#[test]
fn first_matches_when_every_tag_is_equal() {
    let first = json!({"ring": "canary", "site": "berlin"});
    let first = first.as_object().unwrap();
    let tags = |v: Value| v.as_object().unwrap().clone();
    assert!(matches_first(
        first,
        &tags(json!({"ring": "canary", "site": "berlin", "x": 1}))
    ));
    assert!(!matches_first(first, &tags(json!({"ring": "canary"}))));
    assert!(!matches_first(
        first,
        &tags(json!({"ring": "canary", "site": "munich"}))
    ));
}

fn acks(acknowledged: usize, rejected: usize, pending: usize) -> Vec<Ack> {
    let mut v = vec![Ack::Acknowledged; acknowledged];
    v.extend(vec![Ack::Rejected { ad: None }; rejected]);
    v.extend(vec![Ack::Pending; pending]);
    v
}

fn halt(rejected: &str, pending: &str) -> Halt {
    Halt {
        rejected: Share::parse(rejected).unwrap(),
        pending: Share::parse(pending).unwrap(),
    }
}

#[test]
fn a_wave_of_acknowledged_twins_passes_at_once() {
    assert_eq!(
        gate(&acks(10, 0, 0), &halt("0%", "0%"), false),
        Gate::Passed
    );
}

#[test]
fn with_0_percent_thresholds_one_rejection_fails_at_once() {
    let h = halt("0%", "0%");
    assert_eq!(
        gate(&acks(9, 1, 0), &h, false),
        Gate::Failed(Halted::Rejected)
    );
    assert_eq!(
        gate(&acks(0, 1, 9), &h, false),
        Gate::Failed(Halted::Rejected)
    );
}

#[test]
fn rejections_exactly_at_the_threshold_pass_and_one_more_fails() {
    let h = halt("10%", "0%");
    assert_eq!(gate(&acks(9, 1, 0), &h, false), Gate::Passed);
    assert_eq!(
        gate(&acks(8, 2, 0), &h, false),
        Gate::Failed(Halted::Rejected)
    );
    // 1 of 20 is 5%: within 10% even with pending twins, which are still waited for.
    assert_eq!(gate(&acks(10, 1, 9), &h, false), Gate::Waiting);
}

#[test]
fn pending_twins_are_waited_for_until_the_timeout() {
    let h = halt("0%", "50%");
    assert_eq!(gate(&acks(1, 0, 9), &h, false), Gate::Waiting);
    assert_eq!(gate(&acks(9, 0, 1), &h, false), Gate::Waiting);
}

#[test]
fn at_timeout_pending_exactly_at_the_threshold_passes_and_one_more_fails() {
    let h = halt("0%", "10%");
    assert_eq!(gate(&acks(9, 0, 1), &h, true), Gate::Passed);
    assert_eq!(
        gate(&acks(8, 0, 2), &h, true),
        Gate::Failed(Halted::Pending)
    );
    let strict = halt("0%", "0%");
    assert_eq!(
        gate(&acks(99, 0, 1), &strict, true),
        Gate::Failed(Halted::Pending)
    );
    assert_eq!(gate(&acks(100, 0, 0), &strict, true), Gate::Passed);
}

#[test]
fn rejections_outweigh_the_timeout() {
    let h = halt("0%", "100%");
    assert_eq!(
        gate(&acks(0, 1, 9), &h, true),
        Gate::Failed(Halted::Rejected)
    );
    assert_eq!(gate(&acks(0, 0, 10), &h, true), Gate::Passed);
}

#[test]
fn an_empty_wave_passes() {
    let h = halt("0%", "0%");
    assert_eq!(gate(&[], &h, false), Gate::Passed);
    assert_eq!(gate(&[], &h, true), Gate::Passed);
}

#[test]
fn a_tally_counts_each_class() {
    let t = Tally::of(&acks(3, 2, 1));
    assert_eq!(
        t,
        Tally {
            acknowledged: 3,
            rejected: 2,
            pending: 1
        }
    );
    assert_eq!(t.total(), 6);
}

fn owned(tags: Value, desired: Value) -> crate::plan::OwnedValues {
    crate::plan::OwnedValues {
        tags: tags.as_object().unwrap().clone(),
        desired: desired.as_object().unwrap().clone(),
    }
}

fn written_update(base: crate::plan::OwnedValues, target: crate::plan::OwnedValues) -> UpdateTwin {
    UpdateTwin {
        address: addr("d1"),
        if_match: "e1".into(),
        base,
        target,
        patch: crate::plan::TwinPatch::default(),
        diff: Vec::new(),
        ignore: Vec::new(),
        sensitive: Vec::new(),
        refs: Vec::new(),
        key: Default::default(),
        adopted: Vec::new(),
        released: Vec::new(),
        forced: Vec::new(),
    }
}

#[test]
fn a_revert_swaps_base_and_target_and_writes_the_old_values_and_ledger_back() {
    let old_ledger = json!({"owner": "me", "tags": {}, "desired": {"t": true, "gone": true}});
    let mut new_ledger = json!({"owner": "me", "tags": {}, "desired": {"t": true, "new": true}});
    new_ledger["rollout"] = json!({"id": "a".repeat(64), "wave": 0, "desired": {"t": true}});
    let u = written_update(
        owned(
            json!({"twinops": old_ledger}),
            json!({"t": 1, "gone": {"a": 1}, "new": null, "same": 5}),
        ),
        owned(
            json!({"twinops": new_ledger}),
            json!({"t": 2, "gone": null, "new": {"b": 2}, "same": 5}),
        ),
    );
    let back = revert(&u, "e7".into()).unwrap();
    assert_eq!(back.if_match.as_str(), "e7");
    assert_eq!(back.base, u.target);
    assert_eq!(back.target, u.base);
    assert_eq!(
        back.patch.desired,
        *json!({"t": 1, "gone": {"a": 1}, "new": null})
            .as_object()
            .unwrap()
    );
    assert_eq!(
        back.patch.tags["twinops"],
        json!({"desired": {"gone": true, "new": null}, "rollout": null})
    );
}

#[test]
fn a_sensitive_old_value_cannot_be_reverted() {
    let u = written_update(
        owned(json!({}), json!({"token": "(sensitive) sha256:00"})),
        owned(json!({}), json!({"token": "(sensitive) sha256:11"})),
    );
    let why = revert(&u, "e7".into()).unwrap_err();
    assert!(why.contains("desired.token is sensitive"), "{why}");
    let nested = written_update(
        owned(json!({}), json!({"cfg": {"k": "(sensitive) sha256:00"}})),
        owned(json!({}), json!({"cfg": {"k": "(sensitive) sha256:11"}})),
    );
    assert!(revert(&nested, "e7".into()).is_err());
}

#[test]
fn the_id_leaves_out_keys_being_removed_so_a_written_twin_keeps_it() {
    let planned = Twins::new(3);
    let a = id(&planned.candidates());
    let mut removing = Twins::new(3);
    for d in &mut removing.desired {
        d.insert("old".into(), Value::Null);
    }
    assert_eq!(id(&removing.candidates()), a);
}

#[test]
fn a_twin_answers_for_its_gated_keys_only_and_someone_elses_value_is_not_waited_for() {
    use crate::model::ObservedTwin;
    let keys: BTreeSet<String> = ["t".to_string(), "u".to_string()].into();
    let expect = json!({"t": 2, "u": 3}).as_object().unwrap().clone();
    let seen = |desired: Value, reported: Value| ObservedTwin {
        desired: desired.as_object().unwrap().clone(),
        reported: reported.as_object().unwrap().clone(),
        desired_version: 7,
        ..ObservedTwin::default()
    };
    assert_eq!(
        answer(
            &keys,
            &expect,
            &seen(json!({"t": 2, "u": 3}), json!({"t": 2, "u": 3}))
        ),
        Ack::Acknowledged
    );
    assert_eq!(
        answer(
            &keys,
            &expect,
            &seen(json!({"t": 2, "u": 3}), json!({"t": 2}))
        ),
        Ack::Pending
    );
    assert_eq!(
        answer(
            &keys,
            &expect,
            &seen(
                json!({"t": 2, "u": 3}),
                json!({"t": 2, "u": {"value": 1, "ac": 400, "ad": "no", "av": 7}})
            )
        ),
        Ack::Rejected {
            ad: Some("desired.u: no".into())
        }
    );
    // u was set to 9 by someone else: only t is the wave's to wait for.
    assert_eq!(
        answer(
            &keys,
            &expect,
            &seen(json!({"t": 2, "u": 9}), json!({"t": 2}))
        ),
        Ack::Acknowledged
    );
    // Keys outside the gated ones are not looked at.
    assert_eq!(
        answer(
            &["t".to_string()].into(),
            &expect,
            &seen(json!({"t": 2, "u": 3}), json!({"t": 2}))
        ),
        Ack::Acknowledged
    );
}

#[test]
fn the_id_of_given_targets_is_pinned() {
    // Keys out of order at every level, a key and a value JSON must escape, numbers of each kind:
    // the digest is of canonical JSON, and a change of that text would change every rollout's ID.
    let desired = json!({"z": [1, 2.5, {"b": null, "a": "x"}], "k\"é\n": -3, "a": {"y": true, "x": "q\u{1}"}});
    let desired = desired.as_object().unwrap().clone();
    let twins = Twins {
        addresses: vec![addr("d-1"), addr("d-1/m")],
        desired: vec![desired.clone(), desired],
        first: vec![false, true],
    };
    assert_eq!(
        id(&twins.candidates()).as_str(),
        "579b86ffe732061df20ab5b745ccb8d10c5353fa73159d59f92ae901ff9da69f"
    );
}
