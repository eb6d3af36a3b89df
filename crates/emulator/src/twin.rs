//! Twin state and IoT Hub's write rules for it: JSON merge patch (RFC 7396 by `json_patch`:
//! nested merge, `null` deletes, arrays replaced whole), wholesale replace, `$metadata` with `$lastUpdated` at every object node
//! (plus `$lastUpdatedVersion` in desired), `$version` per section, the twin `version` and `etag`
//! that move on every write, and the limits of `iothub::twin_rules`.
//!
//! Pure: the caller passes the time. Storage and identities live elsewhere.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::Error;
use twinops_iothub::twin_rules::{self, MAX_PROPERTIES_BYTES, MAX_TAGS_BYTES, Violation};
use twinops_iothub::wire::JsonMap;

/// The tags, desired and reported properties of one twin, with their bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TwinState {
    pub(crate) tags: JsonMap,
    pub(crate) desired: JsonMap,
    pub(crate) desired_meta: JsonMap,
    pub(crate) desired_version: i64,
    pub(crate) reported: JsonMap,
    pub(crate) reported_meta: JsonMap,
    pub(crate) reported_version: i64,
    /// The twin's root `version`.
    pub(crate) version: i64,
    /// The counter behind the twin `etag` (base64 of its 8 big-endian bytes).
    pub(crate) etag_counter: u64,
    /// `configurations`: configuration ID -> `{"status": "Targeted" | "Applied"}`, kept by the
    /// configuration loop. Changing it alone is no twin write (etag and versions stay).
    #[serde(default)]
    pub(crate) configurations: JsonMap,
    /// The desired paths IoT Edge deployments last wrote here (an empty path: all of desired),
    /// so that what a removed deployment wrote can be taken away exactly. Not in the document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deployment_paths: Vec<Vec<String>>,
    /// The desired patch the connected device is sent for the write just made, never stored: the
    /// store takes it after the write to notify the device (`Store::write`). Merged into what the
    /// device had, it gives the new desired properties (see [`removals`]).
    #[serde(skip)]
    pub(crate) desired_written: Option<JsonMap>,
}

/// A service-side twin write, already stripped of read-only parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ServiceWrite {
    pub(crate) tags: Option<JsonMap>,
    pub(crate) desired: Desired,
}

/// What a service write does to desired properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Desired {
    /// The body has no `properties.desired` (or `properties` is `null`).
    #[default]
    Untouched,
    /// `"properties": {"desired": null}`: a live hub empties desired (Microsoft's Node e2e
    /// tests "can null out all desired properties" pass against it), while a `"tags": null`
    /// leaves tags as they are.
    Cleared,
    /// A merge patch (for a `PUT`, the whole new desired).
    Set(JsonMap),
}

impl Desired {
    /// A patch's desired part: `None` leaves desired alone.
    pub(crate) fn patch(patch: Option<JsonMap>) -> Desired {
        patch.map_or(Desired::Untouched, Desired::Set)
    }
}

impl TwinState {
    /// A fresh twin as IoT Hub creates it with its identity: `version` 2, etag counter 1, both
    /// `$version`s 1, empty sections with `$lastUpdated` only.
    pub(crate) fn new(now: &str) -> TwinState {
        let mut meta = JsonMap::new();
        meta.insert("$lastUpdated".into(), Value::String(now.to_string()));
        TwinState {
            tags: JsonMap::new(),
            desired: JsonMap::new(),
            desired_meta: meta.clone(),
            desired_version: 1,
            reported: JsonMap::new(),
            reported_meta: meta,
            reported_version: 1,
            version: 2,
            etag_counter: 1,
            configurations: JsonMap::new(),
            deployment_paths: Vec::new(),
            desired_written: None,
        }
    }

    /// The twin `etag`, e.g. `AAAAAAAAAAE=` for 1.
    pub(crate) fn etag(&self) -> String {
        B64.encode(self.etag_counter.to_be_bytes())
    }

    /// Every accepted write moves `version` and the etag, whether or not a value changed
    /// (IoT Hub does not diff).
    fn bump(&mut self) {
        self.version += 1;
        self.etag_counter += 1;
    }

    /// Merge-patches tags and desired. Every service write bumps desired `$version`, tags-only
    /// writes included (IoT Hub is reported to do so and to notify the device).
    ///
    /// A cleared desired is empty afterwards, its `$metadata` one fresh stamp, and the device is
    /// sent every key it had as `null`, so that its merged view ends empty as well.
    pub(crate) fn patch(&mut self, write: ServiceWrite, now: &str) -> Result<(), Error> {
        let mut next = self.clone();
        next.desired_version += 1;
        let v = next.desired_version;
        if let Some(tags) = &write.tags {
            twin_rules::check(tags, true).map_err(|e| violation("tags", e))?;
            merge(&mut next.tags, tags, None, now, None);
            twin_rules::check_size(&next.tags, MAX_TAGS_BYTES).map_err(|e| violation("tags", e))?;
        }
        match write.desired {
            Desired::Untouched => next.desired_written = None,
            Desired::Cleared => {
                next.desired_written = Some(removals(&next.desired, &JsonMap::new()));
                next.desired = JsonMap::new();
                next.desired_meta = fresh_meta(&next.desired, now, Some(v));
            }
            Desired::Set(desired) => {
                twin_rules::check(&desired, true)
                    .map_err(|e| violation("properties.desired", e))?;
                merge(
                    &mut next.desired,
                    &desired,
                    Some(&mut next.desired_meta),
                    now,
                    Some(v),
                );
                check_section(&next.desired, "properties.desired")?;
                next.desired_written = Some(desired);
            }
        }
        next.bump();
        *self = next;
        Ok(())
    }

    /// Replaces tags and desired wholesale: a part the body lacks is emptied (live-hub.md's
    /// reading of what a live hub does with a twin `PUT` whose body has no `tags`).
    ///
    /// The device is sent the new desired with every key that went away as `null` (IoT Hub's
    /// answer in Azure/azure-iot-sdk-csharp#954: "if customer sends PUT { "a" : 1, "c" : 100 },
    /// device will get { "a": 1, "b": null, "c" : 100 }"), so that merging it gives the new
    /// desired, not the old one with the new values on top.
    pub(crate) fn replace(&mut self, write: ServiceWrite, now: &str) -> Result<(), Error> {
        let mut next = self.clone();
        next.desired_version += 1;
        let tags = write.tags.unwrap_or_default();
        let desired = match write.desired {
            Desired::Set(d) => d,
            Desired::Untouched | Desired::Cleared => JsonMap::new(),
        };
        next.desired_written = Some(removals(&self.desired, &desired));
        let v = next.desired_version;
        twin_rules::check(&tags, false).map_err(|e| violation("tags", e))?;
        twin_rules::check_size(&tags, MAX_TAGS_BYTES).map_err(|e| violation("tags", e))?;
        next.tags = tags;
        twin_rules::check(&desired, false).map_err(|e| violation("properties.desired", e))?;
        check_section(&desired, "properties.desired")?;
        next.desired_meta = fresh_meta(&desired, now, Some(v));
        next.desired = desired;
        next.bump();
        *self = next;
        Ok(())
    }

    /// Merge-patches reported properties as the device would; moves reported `$version`.
    pub(crate) fn patch_reported(&mut self, patch: &JsonMap, now: &str) -> Result<(), Error> {
        let patch = strip_read_only(patch.clone());
        twin_rules::check(&patch, true).map_err(|e| violation("properties.reported", e))?;
        let mut next = self.clone();
        next.desired_written = None;
        next.reported_version += 1;
        merge(
            &mut next.reported,
            &patch,
            Some(&mut next.reported_meta),
            now,
            None,
        );
        check_section(&next.reported, "properties.reported")?;
        next.bump();
        *self = next;
        Ok(())
    }

    /// `properties` as IoT Hub renders it: values plus `$metadata` and `$version` per section.
    pub(crate) fn properties_json(&self) -> Value {
        json!({
            "desired": section_json(&self.desired, &self.desired_meta, self.desired_version),
            "reported": section_json(&self.reported, &self.reported_meta, self.reported_version),
        })
    }
}

/// `after` as a merge patch that turns `before` into it: `after` with a `null` for every key of
/// `before` it lacks, at every depth where both hold an object (IoT Hub diffs by the existence of
/// keys, not by values).
pub(crate) fn removals(before: &JsonMap, after: &JsonMap) -> JsonMap {
    let mut patch = after.clone();
    for (k, old) in before {
        match (old, patch.get_mut(k)) {
            (_, None) => {
                patch.insert(k.clone(), Value::Null);
            }
            (Value::Object(old), Some(Value::Object(new))) => *new = removals(old, new),
            _ => {}
        }
    }
    patch
}

fn violation(section: &str, v: Violation) -> Error {
    Error::ArgumentInvalid(format!("{section}: {v}"))
}

fn check_section(section: &JsonMap, name: &str) -> Result<(), Error> {
    twin_rules::check_size(section, MAX_PROPERTIES_BYTES).map_err(|e| violation(name, e))
}

fn section_json(values: &JsonMap, meta: &JsonMap, version: i64) -> Value {
    let mut out = values.clone();
    out.insert("$metadata".into(), Value::Object(meta.clone()));
    out.insert("$version".into(), json!(version));
    Value::Object(out)
}

/// Drops `$metadata` and `$version` at a section's root: bodies often carry a previously fetched
/// twin, and IoT Hub ignores those read-only parts. Other `$` keys stay, to be refused as keys.
pub(crate) fn strip_read_only(mut section: JsonMap) -> JsonMap {
    section.retain(|k, _| k != "$metadata" && k != "$version");
    section
}

/// A metadata node for a value just written: `$lastUpdated` (and `$lastUpdatedVersion` in
/// desired) on the node, and a child node per member of an object.
fn fresh_meta(value: &JsonMap, now: &str, version: Option<i64>) -> JsonMap {
    let mut node = stamp(now, version);
    for (k, v) in value {
        node.insert(k.clone(), Value::Object(fresh_meta_value(v, now, version)));
    }
    node
}

fn fresh_meta_value(v: &Value, now: &str, version: Option<i64>) -> JsonMap {
    match v {
        Value::Object(m) => fresh_meta(m, now, version),
        _ => stamp(now, version),
    }
}

fn stamp(now: &str, version: Option<i64>) -> JsonMap {
    let mut node = JsonMap::new();
    node.insert("$lastUpdated".into(), Value::String(now.to_string()));
    if let Some(v) = version {
        node.insert("$lastUpdatedVersion".into(), json!(v));
    }
    node
}

fn touch(meta: &mut JsonMap, now: &str, version: Option<i64>) {
    meta.insert("$lastUpdated".into(), Value::String(now.to_string()));
    if let Some(v) = version {
        meta.insert("$lastUpdatedVersion".into(), json!(v));
    }
}

/// RFC 7396 merge of `patch` into `target` (`json_patch::merge`: nested merge, `null` deletes,
/// arrays and other values replaced whole), with `meta` (when given) kept in step by
/// [`stamp_patch`]. What may be patched (`$` keys, limits) is checked before, by the caller.
fn merge(
    target: &mut JsonMap,
    patch: &JsonMap,
    meta: Option<&mut JsonMap>,
    now: &str,
    version: Option<i64>,
) {
    if let Some(m) = meta {
        stamp_patch(m, target, patch, now, version);
    }
    let mut doc = Value::Object(std::mem::take(target));
    json_patch::merge(&mut doc, &Value::Object(patch.clone()));
    if let Value::Object(merged) = doc {
        *target = merged;
    }
}

/// IoT Hub's `$metadata` rule for a merge patch, which RFC 7396 has no notion of, so it stays
/// hand-written: every node the patch reaches gets a new `$lastUpdated` (and
/// `$lastUpdatedVersion`); removed keys lose their node, and their parent's stamp shows the
/// removal; a value replaced by an object gets a fresh node. `before` is the section before the
/// patch, which tells replacing from merging.
fn stamp_patch(
    meta: &mut JsonMap,
    before: &JsonMap,
    patch: &JsonMap,
    now: &str,
    version: Option<i64>,
) {
    touch(meta, now, version);
    for (k, pv) in patch {
        match pv {
            Value::Null => {
                meta.remove(k);
            }
            Value::Object(pm) => {
                let before_child = before.get(k).and_then(Value::as_object);
                if before_child.is_none() || !matches!(meta.get(k), Some(Value::Object(_))) {
                    meta.insert(k.clone(), Value::Object(JsonMap::new()));
                }
                if let Some(Value::Object(child_meta)) = meta.get_mut(k) {
                    let empty = JsonMap::new();
                    stamp_patch(child_meta, before_child.unwrap_or(&empty), pm, now, version);
                }
            }
            _ => {
                meta.insert(k.clone(), Value::Object(stamp(now, version)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00.0000000Z";
    const T1: &str = "2026-01-01T00:00:01.0000000Z";

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn desired(v: Value) -> ServiceWrite {
        ServiceWrite {
            tags: None,
            desired: Desired::Set(map(v)),
        }
    }

    #[test]
    fn fresh_twin_has_version_two_and_etag_one() {
        let t = TwinState::new(T0);
        assert_eq!(t.etag(), "AAAAAAAAAAE=");
        assert_eq!(t.version, 2);
        assert_eq!(
            t.properties_json(),
            json!({"desired": {"$metadata": {"$lastUpdated": T0}, "$version": 1},
                   "reported": {"$metadata": {"$lastUpdated": T0}, "$version": 1}})
        );
    }

    #[test]
    fn merge_patch_nests_deletes_and_replaces_arrays() {
        let mut t = TwinState::new(T0);
        t.patch(
            desired(json!({"a": {"b": 1, "c": 2}, "arr": [1, 2], "gone": 1})),
            T0,
        )
        .unwrap();
        t.patch(
            desired(json!({"a": {"c": null, "d": 3}, "arr": [3], "gone": null})),
            T1,
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.desired.clone()),
            json!({"a": {"b": 1, "d": 3}, "arr": [3]})
        );
        assert_eq!(t.desired_version, 3);
        let meta = &t.desired_meta;
        assert_eq!(meta["$lastUpdated"], T1);
        assert_eq!(meta["$lastUpdatedVersion"], 3);
        assert_eq!(meta["a"]["b"]["$lastUpdatedVersion"], 2);
        assert_eq!(meta["a"]["d"]["$lastUpdatedVersion"], 3);
        assert_eq!(meta["a"]["$lastUpdated"], T1);
        assert!(meta["a"].get("c").is_none());
        assert!(meta.get("gone").is_none());
    }

    #[test]
    fn values_replaced_by_objects_and_back_get_fresh_metadata_nodes() {
        let mut t = TwinState::new(T0);
        t.patch(desired(json!({"a": 1, "o": {"x": 1, "y": 2}})), T0)
            .unwrap();
        t.patch(desired(json!({"a": {"b": 2, "gone": null}, "o": 5})), T1)
            .unwrap();
        assert_eq!(
            Value::Object(t.desired.clone()),
            json!({"a": {"b": 2}, "o": 5})
        );
        let meta = Value::Object(t.desired_meta.clone());
        assert_eq!(
            meta["a"],
            json!({"$lastUpdated": T1, "$lastUpdatedVersion": 3,
                   "b": {"$lastUpdated": T1, "$lastUpdatedVersion": 3}})
        );
        assert_eq!(
            meta["o"],
            json!({"$lastUpdated": T1, "$lastUpdatedVersion": 3})
        );
    }

    #[test]
    fn every_write_moves_etag_and_version() {
        let mut t = TwinState::new(T0);
        let e0 = t.etag();
        t.patch(ServiceWrite::default(), T1).unwrap();
        assert_ne!(t.etag(), e0);
        assert_eq!(t.etag(), "AAAAAAAAAAI=");
        assert_eq!((t.version, t.desired_version), (3, 2));
        t.patch_reported(&map(json!({"temp": 21})), T1).unwrap();
        assert_eq!(t.etag(), "AAAAAAAAAAM=");
        assert_eq!(
            (t.version, t.desired_version, t.reported_version),
            (4, 2, 2)
        );
        assert!(t.reported_meta["temp"].get("$lastUpdatedVersion").is_none());
    }

    #[test]
    fn tags_only_write_bumps_desired_version() {
        let mut t = TwinState::new(T0);
        t.patch(
            ServiceWrite {
                tags: Some(map(json!({"site": "berlin"}))),
                desired: Desired::Untouched,
            },
            T1,
        )
        .unwrap();
        assert_eq!(t.desired_version, 2);
        assert_eq!(t.tags["site"], "berlin");
    }

    #[test]
    fn replace_swaps_sections_and_refuses_nulls() {
        let mut t = TwinState::new(T0);
        t.patch(desired(json!({"a": 1, "b": 2})), T0).unwrap();
        t.replace(desired(json!({"c": {"d": 1}})), T1).unwrap();
        assert_eq!(Value::Object(t.desired.clone()), json!({"c": {"d": 1}}));
        assert!(t.desired_meta.get("a").is_none());
        assert_eq!(t.desired_meta["c"]["d"]["$lastUpdated"], T1);
        let before = t.clone();
        assert!(matches!(
            t.replace(desired(json!({"x": null})), T1),
            Err(Error::ArgumentInvalid(_))
        ));
        assert_eq!(t, before, "a refused write changes nothing");
    }

    #[test]
    fn a_cleared_desired_is_empty_and_the_device_is_sent_every_key_as_null() {
        let mut t = TwinState::new(T0);
        t.patch(desired(json!({"foo": 1, "bar": {"baz": 2}})), T0)
            .unwrap();
        t.patch(
            ServiceWrite {
                tags: Some(map(json!({"site": "b"}))),
                desired: Desired::Untouched,
            },
            T0,
        )
        .unwrap();
        t.desired_written = None;
        t.patch(
            ServiceWrite {
                tags: None,
                desired: Desired::Cleared,
            },
            T1,
        )
        .unwrap();
        assert!(t.desired.is_empty());
        assert_eq!(t.desired_version, 4);
        assert_eq!(
            Value::Object(t.desired_meta.clone()),
            json!({"$lastUpdated": T1, "$lastUpdatedVersion": 4})
        );
        assert_eq!(
            t.desired_written.clone().map(Value::Object),
            Some(json!({"foo": null, "bar": null}))
        );
        assert_eq!(t.tags["site"], "b", "tags stay");
        assert_eq!((t.version, t.etag()), (5, "AAAAAAAAAAQ=".to_string()));
    }

    #[test]
    fn a_replace_sends_the_device_the_keys_it_removed_as_null() {
        let mut t = TwinState::new(T0);
        t.patch(
            desired(json!({"a": 1, "b": 2, "o": {"x": 1, "y": 2}, "s": {"z": 1}})),
            T0,
        )
        .unwrap();
        t.replace(
            desired(json!({"a": 1, "c": 100, "o": {"x": 1}, "s": 5})),
            T1,
        )
        .unwrap();
        assert_eq!(
            t.desired_written.clone().map(Value::Object),
            Some(json!({"a": 1, "c": 100, "o": {"x": 1, "y": null}, "s": 5, "b": null}))
        );
    }

    #[test]
    fn limits_are_enforced_on_the_result() {
        let mut t = TwinState::new(T0);
        let big = "x".repeat(4000);
        let mut patch = JsonMap::new();
        for i in 0..8 {
            patch.insert(format!("k{i}"), Value::String(big.clone()));
        }
        t.patch(
            ServiceWrite {
                desired: Desired::Set(patch.clone()),
                tags: None,
            },
            T0,
        )
        .unwrap();
        let mut more = JsonMap::new();
        more.insert("k9".into(), Value::String(big.clone()));
        assert!(
            t.patch(
                ServiceWrite {
                    desired: Desired::Set(more),
                    tags: None
                },
                T1
            )
            .is_err()
        );
        assert!(
            t.patch(
                ServiceWrite {
                    tags: Some(map(json!({"a": big, "b": big, "c": "x".repeat(300)}))),
                    desired: Desired::Untouched
                },
                T1
            )
            .is_err()
        );
        assert!(t.patch(desired(json!({"bad.key": 1})), T1).is_err());
        assert!(
            t.patch(desired(json!({"n": 4503599627370496_i64})), T1)
                .is_err()
        );
    }
}
