//! What a plan checks about managed objects beyond their own fields (SPEC §16), as pure functions
//! over contents and target conditions; the operation asks the hub the questions these build
//! (`COUNT()` and first-device queries) and hands the answers back.
//!
//! - [`written_paths`]: what an object writes, as paths (`properties.desired.x` of device content,
//!   `$edgeAgent.modules.opcua` of a deployment, `opcua.publishingInterval` of a module twin), so
//!   that two objects can be compared path by path.
//! - [`equal_priority_pairs`]: pairs of objects of equal priority that write a path with
//!   different values (which wins depends on creation order).
//! - [`removed_modules`]: the modules a layered deployment's deletion or target change takes away
//!   unless another deployment provides them.
//! - [`Condition`] and [`sql`]: a target condition split into its collection and its `WHERE`
//!   part, and the queries built from them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::ObjectKind;

/// What a target condition selects from: the query language's own `FROM` collection.
pub use twinops_iothub::query::Collection;

/// A target condition as its collection and its condition (`FROM devices.modules WHERE c` is a
/// module target; anything else is a device target's condition itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub collection: Collection,
    pub text: String,
}

impl Condition {
    pub fn of(target: &str) -> Condition {
        let t = target.trim();
        let lower = t.to_ascii_lowercase();
        let prefix = "from devices.modules where";
        if lower.starts_with(prefix) {
            return Condition {
                collection: Collection::Modules,
                text: t[prefix.len()..].trim().to_string(),
            };
        }
        Condition {
            collection: Collection::Devices,
            text: t.to_string(),
        }
    }
}

/// A query over `collection` of the rows all of `all` select and none of `none` selects:
/// `SELECT COUNT() AS n ...` when `count`, else `SELECT deviceId ...`.
pub fn sql(collection: Collection, all: &[&str], none: &[&str], count: bool) -> String {
    let mut parts: Vec<String> = all.iter().map(|c| format!("({c})")).collect();
    if !none.is_empty() {
        let any = none
            .iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        parts.push(format!("NOT ({any})"));
    }
    let select = if count {
        "SELECT COUNT() AS n"
    } else {
        "SELECT deviceId"
    };
    let from = match collection {
        Collection::Devices => "devices",
        Collection::Modules => "devices.modules",
    };
    format!("{select} FROM {from} WHERE {}", parts.join(" AND "))
}

/// The paths an object's content writes, with their values: device and module content by
/// `properties.desired` key; a deployment's `$edgeAgent` and `$edgeHub` one level deeper (each
/// module, system module and route is a path of its own, so that a layer adds to a base), and each
/// custom module twin's desired keys under its module's name.
pub fn written_paths(content: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Some(c) = content.as_object() else {
        return out;
    };
    for (section, v) in c {
        let Some(m) = v.as_object() else { continue };
        match section.as_str() {
            "deviceContent" | "moduleContent" => desired_paths("", m, &mut out),
            "modulesContent" => {
                for (module, props) in m {
                    if let Some(p) = props.as_object() {
                        desired_paths(&format!("{module}."), p, &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The system modules' sections one level deeper than other keys.
const DEEP: [&str; 3] = ["modules", "systemModules", "routes"];

fn desired_paths(
    prefix: &str,
    props: &serde_json::Map<String, Value>,
    out: &mut BTreeMap<String, Value>,
) {
    let system = prefix.starts_with('$');
    for (k, v) in props {
        let rest = match k.strip_prefix("properties.desired") {
            Some("") => {
                // The whole desired section: one path per key (per module, route… for the system
                // modules).
                if let Some(obj) = v.as_object() {
                    for (k1, v1) in obj {
                        match v1.as_object() {
                            Some(inner) if system && DEEP.contains(&k1.as_str()) => {
                                for (k2, v2) in inner {
                                    out.insert(format!("{prefix}{k1}.{k2}"), v2.clone());
                                }
                            }
                            _ => {
                                out.insert(format!("{prefix}{k1}"), v1.clone());
                            }
                        }
                    }
                }
                continue;
            }
            Some(rest) => rest.trim_start_matches('.'),
            None => continue,
        };
        out.insert(format!("{prefix}{rest}"), v.clone());
    }
}

/// One object as the checks see it: its name, kind, priority, target and content.
#[derive(Debug, Clone)]
pub struct Placed<'a> {
    pub kind: ObjectKind,
    pub name: &'a str,
    pub priority: i64,
    pub layered: bool,
    pub target: &'a str,
    pub content: &'a Value,
}

/// Whether one path is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    a == b
        || a.strip_prefix(b).is_some_and(|r| r.starts_with('.'))
        || b.strip_prefix(a).is_some_and(|r| r.starts_with('.'))
}

/// Pairs `(i, j, paths)` of objects of one kind and equal priority that write overlapping paths
/// with different values: which one a device gets depends on which was created last.
pub fn equal_priority_pairs(objects: &[Placed<'_>]) -> Vec<(usize, usize, Vec<String>)> {
    let written: Vec<BTreeMap<String, Value>> =
        objects.iter().map(|o| written_paths(o.content)).collect();
    let mut out = Vec::new();
    for i in 0..objects.len() {
        for j in i + 1..objects.len() {
            let (a, b) = (&objects[i], &objects[j]);
            if a.kind != b.kind
                || a.priority != b.priority
                || a.layered != b.layered
                || Condition::of(a.target).collection != Condition::of(b.target).collection
            {
                continue;
            }
            let mut paths = Vec::new();
            for (pa, va) in &written[i] {
                for (pb, vb) in &written[j] {
                    if overlaps(pa, pb) && (pa != pb || va != vb) {
                        paths.push(pa.min(pb).clone());
                    }
                }
            }
            paths.sort();
            paths.dedup();
            if !paths.is_empty() {
                out.push((i, j, paths));
            }
        }
    }
    out
}

/// The modules a layered deployment writes into `$edgeAgent` (`$edgeAgent.modules.NAME`).
pub fn deployed_modules(content: &Value) -> Vec<String> {
    written_paths(content)
        .keys()
        .filter_map(|p| p.strip_prefix("$edgeAgent.modules."))
        .map(str::to_string)
        .collect()
}

/// For each module `removed` takes away, the targets of the other deployments that still provide
/// it (whose devices keep it): `(module, providers)`.
pub fn removed_modules<'a>(
    removed: &Placed<'a>,
    others: &[Placed<'a>],
) -> Vec<(String, Vec<&'a str>)> {
    deployed_modules(removed.content)
        .into_iter()
        .map(|m| {
            let providers = others
                .iter()
                .filter(|o| deployed_modules(o.content).contains(&m))
                .map(|o| o.target)
                .collect();
            (m, providers)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_target_is_split_into_its_collection_and_condition() {
        assert_eq!(
            Condition::of("FROM devices.modules WHERE moduleId = 'm'"),
            Condition {
                collection: Collection::Modules,
                text: "moduleId = 'm'".into()
            }
        );
        assert_eq!(Condition::of("tags.a = 1").collection, Collection::Devices);
        assert_eq!(
            sql(
                Collection::Devices,
                &["tags.a = 1", "tags.b = 2"],
                &["tags.c = 3", "tags.d = 4"],
                true
            ),
            "SELECT COUNT() AS n FROM devices WHERE (tags.a = 1) AND (tags.b = 2) AND NOT ((tags.c = 3) OR (tags.d = 4))"
        );
        assert_eq!(
            sql(Collection::Modules, &["moduleId = 'm'"], &[], false),
            "SELECT deviceId FROM devices.modules WHERE (moduleId = 'm')"
        );
    }

    #[test]
    fn a_base_deployment_writes_each_module_and_route_as_a_path_of_its_own() {
        let base = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
                "modules": {"opcua": {"image": "a"}, "filter": {"image": "b"}}}},
            "$edgeHub": {"properties.desired": {"routes": {"up": "FROM /m INTO $upstream"}}},
            "opcua": {"properties.desired": {"rate": 1}}}});
        let paths: Vec<String> = written_paths(&base).into_keys().collect();
        assert_eq!(
            paths,
            [
                "$edgeAgent.modules.filter",
                "$edgeAgent.modules.opcua",
                "$edgeAgent.schemaVersion",
                "$edgeHub.routes.up",
                "opcua.rate"
            ]
        );
        let layer = json!({"modulesContent": {
            "$edgeAgent": {"properties.desired.modules.extra": {"image": "c"}}}});
        assert_eq!(deployed_modules(&layer), ["extra"]);
    }

    fn placed<'a>(name: &'a str, priority: i64, content: &'a Value) -> Placed<'a> {
        Placed {
            kind: ObjectKind::Configuration,
            name,
            priority,
            layered: false,
            target: "tags.a = 1",
            content,
        }
    }

    #[test]
    fn equal_priorities_that_write_different_values_are_paired() {
        let a = json!({"deviceContent": {"properties.desired.interval": 30}});
        let b = json!({"deviceContent": {"properties.desired.interval": 60}});
        let same = json!({"deviceContent": {"properties.desired.interval": 30}});
        let under = json!({"deviceContent": {"properties.desired.interval.x": 1}});
        let objects = [
            placed("a", 10, &a),
            placed("b", 10, &b),
            placed("same", 10, &same),
            placed("higher", 20, &b),
            placed("under", 10, &under),
        ];
        let pairs: Vec<(&str, &str)> = equal_priority_pairs(&objects)
            .into_iter()
            .map(|(i, j, _)| (objects[i].name, objects[j].name))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "b"),
                ("a", "under"),
                ("b", "same"),
                ("b", "under"),
                ("same", "under")
            ]
        );
    }

    #[test]
    fn a_removed_layers_modules_name_the_deployments_that_still_provide_them() {
        let layer = json!({"modulesContent": {"$edgeAgent": {
            "properties.desired.modules.extra": {}, "properties.desired.modules.shared": {}}}});
        let other = json!({"modulesContent": {"$edgeAgent": {
            "properties.desired.modules.shared": {}}}});
        let removed = Placed {
            kind: ObjectKind::Deployment,
            name: "layer",
            priority: 5,
            layered: true,
            target: "tags.l = 1",
            content: &layer,
        };
        let others = [Placed {
            name: "other",
            target: "tags.o = 1",
            content: &other,
            ..removed.clone()
        }];
        assert_eq!(
            removed_modules(&removed, &others),
            [
                ("extra".to_string(), vec![]),
                ("shared".to_string(), vec!["tags.o = 1"])
            ]
        );
    }
}
