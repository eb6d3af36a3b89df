//! Automatic device and module configurations (SPEC §9, reference §11): what a `PUT
//! /configurations/{id}` may carry, the stored record and its wire form, and the rule that decides,
//! for one twin, which configurations apply and what they write.
//!
//! This module is pure: no storage, clock or I/O. [`pass`] runs the rule over every twin through
//! the store's primitives, and the emulator's loop runs a pass on creation, after each change and
//! every `--config-interval`.
//!
//! The rule, per twin (level-triggered, so it is idempotent):
//! - configurations of the twin's kind (`deviceContent` for device twins, `moduleContent` for
//!   module twins) whose target condition matches the twin are **targeted**;
//! - they are taken by precedence, highest `priority` first, a tie going to the most recently
//!   created; one is **applied** when none of its desired paths overlaps a path of an
//!   already-applied one, otherwise it stays **targeted** and writes nothing (a configuration
//!   is applied whole or not at all);
//! - an applied configuration's values are written into desired only where they differ from the
//!   twin's, so an idle hub does not move etags every interval; a value is written exactly (an
//!   object replaces the object at its path);
//! - the twin's `configurations` map is then exactly the targeted ones with their status. A twin
//!   that leaves a target (or whose configuration is deleted) loses the entry but keeps the
//!   desired values: nothing is removed from desired.
//!
//! `modulesContent` (IoT Edge deployments) follows its own rule, in [`deployment`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::Error;
use super::query::{self, Collection, Condition};

pub(crate) mod deployment;
pub(crate) mod pass;
use twinops_iothub::twin_rules;
use twinops_iothub::wire::{self, JsonMap};

/// At most this many configurations per hub (IoT Hub's standard tiers).
pub(crate) const MAX_CONFIGURATIONS: usize = 100;
/// At most this many custom metrics per configuration.
pub(crate) const MAX_METRICS: usize = 5;

pub(crate) const APPLIED: &str = "Applied";
pub(crate) const TARGETED: &str = "Targeted";

/// What a configuration writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `deviceContent`: device twins.
    Device,
    /// `moduleContent`: module twins.
    Module,
    /// `modulesContent`: an IoT Edge deployment ([`deployment`]).
    Edge,
}

/// A stored configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfigurationRecord {
    pub(crate) id: String,
    /// Null unless set, as on live hubs.
    pub(crate) schema_version: Option<String>,
    /// Null unless set, as on live hubs.
    pub(crate) labels: Option<JsonMap>,
    /// As given: `{"deviceContent": {...}}`, `{"moduleContent": {...}}` or `{"modulesContent": {...}}`.
    pub(crate) content: JsonMap,
    pub(crate) content_type: Option<String>,
    pub(crate) target_condition: String,
    pub(crate) priority: i64,
    pub(crate) created_time_utc: String,
    pub(crate) last_updated_time_utc: String,
    pub(crate) etag: String,
    pub(crate) metric_queries: JsonMap,
    pub(crate) metric_results: JsonMap,
    pub(crate) targeted_count: i64,
    pub(crate) applied_count: i64,
    /// Applied twins whose device reports success (`lastDesiredStatus.code` 200) and failure.
    #[serde(default)]
    pub(crate) reported_successful_count: i64,
    #[serde(default)]
    pub(crate) reported_failed_count: i64,
    /// Creation order across the hub: breaks priority ties (most recent wins).
    pub(crate) seq: u64,
}

/// The parts of a PUT body that may change on update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mutable {
    /// Live hubs let an update change it (live-hub.md); like `labels`, an omitted one is null.
    pub(crate) schema_version: Option<String>,
    pub(crate) labels: Option<JsonMap>,
    pub(crate) target_condition: String,
    pub(crate) priority: i64,
    pub(crate) metric_queries: JsonMap,
}

/// Live hubs' configuration IDs: `[a-z0-9-+%_*!']{1,128}` (uppercase is refused).
pub(crate) fn check_id(id: &str) -> Result<(), Error> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-+%_*!'".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::ArgumentInvalid(
            "configuration ID must be 1-128 characters of a-z 0-9 - + % _ * ! '".into(),
        ))
    }
}

/// Checks the parts of a PUT body that may change on update.
pub(crate) fn mutable(body: &wire::Configuration, kind: Kind) -> Result<Mutable, Error> {
    let labels = body.labels.clone();
    if let Some((k, _)) = labels.iter().flatten().find(|(_, v)| !v.is_string()) {
        return Err(Error::ArgumentInvalid(format!(
            "label `{k}` must have a string value"
        )));
    }
    let target_condition = body.target_condition.clone().unwrap_or_default();
    Target::parse(&target_condition, kind)?;
    let metric_queries = match body.metrics.as_ref().and_then(|m| m.get("queries")) {
        None | Some(Value::Null) => JsonMap::new(),
        Some(Value::Object(q)) => q.clone(),
        Some(_) => {
            return Err(Error::ArgumentInvalid(
                "metrics.queries must map metric names to queries".into(),
            ));
        }
    };
    if metric_queries.len() > MAX_METRICS {
        return Err(Error::ArgumentInvalid(format!(
            "a configuration has at most {MAX_METRICS} custom metrics"
        )));
    }
    for (name, q) in &metric_queries {
        let text = q.as_str().ok_or_else(|| {
            Error::ArgumentInvalid(format!("metric `{name}` must be a query string"))
        })?;
        metric_query(text).map_err(|e| {
            Error::ArgumentInvalid(format!("metric `{name}` is not a valid query: {e}"))
        })?;
    }
    Ok(Mutable {
        schema_version: body.schema_version.clone(),
        labels,
        target_condition,
        priority: body.priority.unwrap_or(0),
        metric_queries,
    })
}

/// A custom metric's query. Live hubs also take one without `FROM` (the Azure CLI's live tests
/// create a deployment with the metric `select *`): it counts device twins.
pub(crate) fn metric_query(text: &str) -> Result<query::Query, query::ParseError> {
    query::parse(text).or_else(|e| {
        let lower = text.to_ascii_lowercase();
        if lower.split_whitespace().any(|w| w == "from") {
            return Err(e);
        }
        query::parse(&format!("{} FROM devices", text.trim_end())).map_err(|_| e)
    })
}

/// Checks a new configuration's content and returns its kind.
pub(crate) fn content_kind(content: &JsonMap) -> Result<Kind, Error> {
    let kind = kind_of(content)?;
    match kind {
        Kind::Device => entries(content, "deviceContent").map(|_| kind),
        Kind::Module => entries(content, "moduleContent").map(|_| kind),
        Kind::Edge => deployment::modules(content).map(|_| kind),
    }
}

/// The kind of content, by the one of its three keys that is filled; the rest of the content is
/// not looked at ([`content_kind`] checks it).
fn kind_of(content: &JsonMap) -> Result<Kind, Error> {
    let filled = |key: &str| match content.get(key) {
        Some(Value::Object(m)) => !m.is_empty(),
        None | Some(Value::Null) => false,
        Some(_) => true,
    };
    let mut found = None;
    for (key, kind) in [
        ("deviceContent", Kind::Device),
        ("moduleContent", Kind::Module),
        ("modulesContent", Kind::Edge),
    ] {
        if !filled(key) {
            continue;
        }
        if found.is_some() {
            return Err(Error::ArgumentInvalid(
                "content holds more than one of deviceContent, moduleContent and modulesContent"
                    .into(),
            ));
        }
        found = Some(kind);
    }
    found.ok_or_else(|| {
        Error::ArgumentInvalid(
            "content needs one of deviceContent, moduleContent or modulesContent".into(),
        )
    })
}

/// The desired paths and values of `deviceContent`/`moduleContent`: keys are
/// `properties.desired.a.b` (one entry) or `properties.desired` with an object (one entry per
/// member, so the configuration never claims the whole of desired).
fn entries(content: &JsonMap, key: &str) -> Result<Vec<(Vec<String>, Value)>, Error> {
    let Some(Value::Object(section)) = content.get(key) else {
        return Err(Error::ArgumentInvalid(format!("{key} must be an object")));
    };
    let mut out: Vec<(Vec<String>, Value)> = Vec::new();
    for (path, value) in section {
        let not_desired = || {
            Error::InvalidConfigurationContent(format!(
                "{key} key `{path}` must be properties.desired or start with properties.desired."
            ))
        };
        let rest = path
            .strip_prefix("properties.desired")
            .ok_or_else(not_desired)?;
        if !(rest.is_empty() || rest.starts_with('.')) {
            return Err(not_desired());
        }
        if rest.is_empty() {
            let Value::Object(members) = value else {
                return Err(Error::ArgumentInvalid(format!(
                    "{key}: properties.desired must be an object"
                )));
            };
            out.extend(members.iter().map(|(k, v)| (vec![k.clone()], v.clone())));
            continue;
        }
        let segments: Vec<String> = rest
            .strip_prefix('.')
            .map(|r| r.split('.').map(str::to_string).collect())
            .unwrap_or_default();
        // An empty segment is a malformed path (`a..b`), not an empty key: the dotted grammar
        // cannot spell one.
        if segments.is_empty()
            || segments
                .iter()
                .any(|s| s.is_empty() || !twin_rules::key_is_valid(s))
        {
            return Err(Error::ArgumentInvalid(format!(
                "{key} key `{path}` is not a path of valid twin keys"
            )));
        }
        out.push((segments, value.clone()));
    }
    for (i, (p, _)) in out.iter().enumerate() {
        if out[i + 1..].iter().any(|(q, _)| overlaps(p, q)) {
            return Err(Error::ArgumentInvalid(format!(
                "{key} writes `{}` twice",
                p.join(".")
            )));
        }
    }
    let mut whole = JsonMap::new();
    for (p, v) in &out {
        set_path(&mut whole, p, v.clone());
    }
    twin_rules::check(&whole, false).map_err(|e| Error::ArgumentInvalid(format!("{key}: {e}")))?;
    Ok(out)
}

/// Whether one path is a prefix of the other (they write the same part of desired).
pub(super) fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

pub(super) fn set_path(root: &mut JsonMap, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for p in parents {
        let child = node
            .entry(p.clone())
            .or_insert_with(|| Value::Object(JsonMap::new()));
        if !child.is_object() {
            *child = Value::Object(JsonMap::new());
        }
        let Value::Object(m) = child else {
            return;
        };
        node = m;
    }
    node.insert(last.clone(), value);
}

pub(super) fn get_path<'a>(root: &'a JsonMap, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(root.get(first)?, |v, k| v.as_object()?.get(k))
}

/// The merge patch that turns `current` into exactly `target` (members `target` lacks are
/// deleted when both are objects).
pub(super) fn exact_patch(current: Option<&Value>, target: &Value) -> Value {
    match (current, target) {
        (Some(Value::Object(cur)), Value::Object(tgt)) => Value::Object(exact_map_patch(cur, tgt)),
        _ => target.clone(),
    }
}

/// [`exact_patch`] between two objects (empty when they are equal).
pub(super) fn exact_map_patch(cur: &JsonMap, tgt: &JsonMap) -> JsonMap {
    let mut patch = JsonMap::new();
    for (k, tv) in tgt {
        if cur.get(k) != Some(tv) {
            patch.insert(k.clone(), exact_patch(cur.get(k), tv));
        }
    }
    for k in cur.keys().filter(|k| !tgt.contains_key(*k)) {
        patch.insert(k.clone(), Value::Null);
    }
    patch
}

/// Which twins a configuration targets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) modules: bool,
    /// `None`: an empty condition targets nothing.
    pub(crate) condition: Option<Condition>,
}

impl Target {
    /// A bare condition (`tags.env='prod'`, `*`) or the query form `FROM devices[.modules] WHERE
    /// ...`; the collection must fit the kind (module configurations target module twins).
    pub(crate) fn parse(text: &str, kind: Kind) -> Result<Target, Error> {
        let modules = kind == Kind::Module;
        let t = text.trim();
        if t.is_empty() {
            return Ok(Target {
                modules,
                condition: None,
            });
        }
        let invalid =
            |e: query::ParseError| Error::ArgumentInvalid(format!("targetCondition: {e}"));
        let starts_with_from = t.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("from "));
        if !starts_with_from {
            let condition = query::parse_condition(t).map_err(invalid)?;
            if let Condition::Expr(e) = &condition {
                check_target_fields(e, modules)?;
            }
            return Ok(Target {
                modules,
                condition: Some(condition),
            });
        }
        let q = query::parse(&format!("SELECT * {t}")).map_err(invalid)?;
        if let Some(f) = &q.filter {
            check_target_fields(f, modules)?;
        }
        let from_modules = q.collection == Collection::Modules;
        if from_modules != modules {
            return Err(Error::ArgumentInvalid(format!(
                "targetCondition: {} configurations target {}",
                if modules { "module" } else { "device" },
                if modules {
                    "FROM devices.modules"
                } else {
                    "devices (not FROM devices.modules)"
                }
            )));
        }
        Ok(Target {
            modules,
            condition: Some(q.filter.map_or(Condition::All, Condition::Expr)),
        })
    }

    pub(crate) fn matches(&self, twin: &Value) -> bool {
        self.condition.as_ref().is_some_and(|c| c.matches(twin))
    }
}

/// Live hubs let target conditions use only `deviceId`, `tags` and `properties.reported`
/// (live-hub.md); module configurations may also use `moduleId` ([`query::is_target_path`], the
/// rule the manifest loader checks too).
fn check_target_fields(e: &query::Expr, modules: bool) -> Result<(), Error> {
    match e
        .paths()
        .into_iter()
        .find(|p| !query::is_target_path(p, modules))
    {
        None => Ok(()),
        Some(p) => Err(Error::ArgumentInvalid(format!(
            "targetCondition may use only deviceId, tags and properties.reported, not `{}`",
            p.join(".")
        ))),
    }
}

impl ConfigurationRecord {
    /// Its kind, by the content key it fills: the content was checked when it was stored, and
    /// this is asked several times per configuration per pass.
    pub(crate) fn kind(&self) -> Kind {
        kind_of(&self.content).unwrap_or(Kind::Edge)
    }

    /// The record as `GET /configurations/{id}` answers it.
    pub(crate) fn to_wire(&self) -> wire::Configuration {
        wire::Configuration {
            id: self.id.clone(),
            schema_version: self.schema_version.clone(),
            labels: self.labels.clone(),
            content: Some(self.content.clone()),
            content_type: self.content_type.clone(),
            target_condition: Some(self.target_condition.clone()),
            created_time_utc: Some(self.created_time_utc.clone()),
            last_updated_time_utc: Some(self.last_updated_time_utc.clone()),
            priority: Some(self.priority),
            system_metrics: Some(json!({
                "queries": self.system_queries(),
                "results": {
                    "targetedCount": self.targeted_count,
                    "appliedCount": self.applied_count,
                    "reportedSuccessfulCount": self.reported_successful_count,
                    "reportedFailedCount": self.reported_failed_count,
                },
            })),
            metrics: Some(json!({
                "queries": self.metric_queries,
                "results": self.metric_results,
            })),
            etag: Some(self.etag.clone()),
        }
    }

    /// The system metrics' queries, as IoT Hub writes them. An edge deployment counts its
    /// `$edgeAgent` module twins (the live form, recorded in the Azure CLI's fixtures): applied
    /// where it is `Applied`, reported once the edge agent has answered the current desired
    /// `$version` (`lastDesiredVersion`) with `lastDesiredStatus.code` 200 or another code. The
    /// results count the same twins (`pass`).
    pub(crate) fn system_queries(&self) -> Value {
        let id = &self.id;
        let condition = strip_from(&self.target_condition);
        if self.kind() == Kind::Edge {
            let agent = format!(
                "select deviceId from devices.modules where moduleId = '$edgeAgent' and configurations.[[{id}]].status = 'Applied'"
            );
            let reported = format!(
                "{agent} and properties.desired.$version = properties.reported.lastDesiredVersion and properties.reported.lastDesiredStatus.code"
            );
            let targeted = match condition.as_str() {
                "" => String::new(),
                "*" => "select deviceId from devices where capabilities.iotEdge = true".into(),
                c => format!(
                    "select deviceId from devices where capabilities.iotEdge = true and ({c})"
                ),
            };
            return json!({
                "targetedCount": targeted,
                "appliedCount": agent,
                "reportedSuccessfulCount": format!("{reported} = 200"),
                "reportedFailedCount": format!("{reported} != 200"),
            });
        }
        let (from, select) = match self.kind() {
            Kind::Module => ("devices.modules", "deviceId, moduleId"),
            _ => ("devices", "deviceId"),
        };
        let targeted = match condition.as_str() {
            "" => String::new(),
            "*" => format!("select {select} from {from}"),
            c => format!("select {select} from {from} where {c}"),
        };
        let applied =
            format!("select {select} from {from} where configurations.[[{id}]].status = 'Applied'");
        json!({
            "targetedCount": targeted,
            "appliedCount": applied,
            "reportedSuccessfulCount": format!("{applied} and properties.reported.lastDesiredStatus.code = 200"),
            "reportedFailedCount": format!("{applied} and properties.reported.lastDesiredStatus.code != 200"),
        })
    }
}

/// The condition of a `FROM ... WHERE cond` target, or the target itself.
fn strip_from(target: &str) -> String {
    let lower = target.to_ascii_lowercase();
    match lower.find(" where ") {
        Some(i) if lower.trim_start().starts_with("from ") => target[i + 7..].trim().to_string(),
        _ if lower.trim_start().starts_with("from ") => "*".to_string(),
        _ => target.trim().to_string(),
    }
}

/// A configuration ready to be evaluated against twins.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) id: String,
    pub(crate) target: Target,
    entries: Vec<(Vec<String>, Value)>,
    priority: i64,
    seq: u64,
}

impl Compiled {
    /// A device or module configuration; an IoT Edge deployment is a [`deployment::Deployment`].
    pub(crate) fn new(rec: &ConfigurationRecord) -> Result<Compiled, Error> {
        let kind = rec.kind();
        let key = match kind {
            Kind::Device => "deviceContent",
            Kind::Module => "moduleContent",
            Kind::Edge => {
                return Err(Error::InvalidConfigurationContent(format!(
                    "{} is an IoT Edge deployment, not a device or module configuration",
                    rec.id
                )));
            }
        };
        Ok(Compiled {
            id: rec.id.clone(),
            target: Target::parse(&rec.target_condition, kind)?,
            entries: entries(&rec.content, key)?,
            priority: rec.priority,
            seq: rec.seq,
        })
    }
}

/// Sorts by precedence: highest priority first, then the most recently created.
pub(crate) fn by_precedence(configs: &mut [Compiled]) {
    configs.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.seq.cmp(&a.seq)));
}

/// What the rule decides for one twin.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Outcome {
    /// The twin's new `configurations` map.
    pub(crate) statuses: JsonMap,
    /// A merge patch of desired; empty when nothing differs.
    pub(crate) patch: JsonMap,
    /// Configurations (IDs) that target the twin.
    pub(crate) targeted: Vec<String>,
}

impl Outcome {
    /// Whether applying the outcome changes a twin that has `current` statuses.
    pub(crate) fn changes(&self, current: &JsonMap) -> bool {
        !self.patch.is_empty() || &self.statuses != current
    }

    /// The statuses when the patch could not be written: nothing counts as applied.
    pub(crate) fn unapplied(mut self) -> Outcome {
        for v in self.statuses.values_mut() {
            *v = json!({"status": TARGETED});
        }
        self.patch = JsonMap::new();
        self
    }
}

/// The rule for one twin: `twin` is its document (for target conditions), `desired` its desired
/// values, `modules` whether it is a module twin; `configs` sorted by [`by_precedence`].
pub(crate) fn reconcile(
    twin: &Value,
    desired: &JsonMap,
    modules: bool,
    configs: &[Compiled],
) -> Outcome {
    let mut out = Outcome::default();
    let mut claimed: Vec<&[String]> = Vec::new();
    for c in configs {
        if c.target.modules != modules || !c.target.matches(twin) {
            continue;
        }
        out.targeted.push(c.id.clone());
        let conflict = c
            .entries
            .iter()
            .any(|(p, _)| claimed.iter().any(|q| overlaps(p, q)));
        let status = if conflict {
            TARGETED
        } else {
            for (path, value) in &c.entries {
                claimed.push(path);
                let current = get_path(desired, path);
                if current != Some(value) {
                    set_path(&mut out.patch, path, exact_patch(current, value));
                }
            }
            APPLIED
        };
        out.statuses
            .insert(c.id.clone(), json!({ "status": status }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn record(
        id: &str,
        content: Value,
        cond: &str,
        priority: i64,
        seq: u64,
    ) -> ConfigurationRecord {
        ConfigurationRecord {
            id: id.into(),
            schema_version: Some("1.0".into()),
            labels: None,
            content: map(content),
            content_type: None,
            target_condition: cond.into(),
            priority,
            created_time_utc: String::new(),
            last_updated_time_utc: String::new(),
            etag: "MQ==".into(),
            metric_queries: JsonMap::new(),
            metric_results: JsonMap::new(),
            targeted_count: 0,
            applied_count: 0,
            reported_successful_count: 0,
            reported_failed_count: 0,
            seq,
        }
    }

    fn compiled(records: &[ConfigurationRecord]) -> Vec<Compiled> {
        let mut c: Vec<Compiled> = records.iter().map(|r| Compiled::new(r).unwrap()).collect();
        by_precedence(&mut c);
        c
    }

    #[test]
    fn content_needs_exactly_one_kind_of_dotted_desired_paths() {
        let k = |v: Value| content_kind(&map(v));
        assert_eq!(
            k(json!({"deviceContent": {"properties.desired.a.b": 1}})),
            Ok(Kind::Device)
        );
        assert_eq!(
            k(json!({"moduleContent": {"properties.desired": {"a": 1}}, "deviceContent": {}})),
            Ok(Kind::Module)
        );
        assert_eq!(
            k(json!({"modulesContent": {"$edgeAgent": {}}})),
            Ok(Kind::Edge)
        );
        assert!(k(json!({})).is_err());
        assert!(k(json!({"deviceContent": {"tags.a": 1}})).is_err());
        assert!(k(json!({"deviceContent": {"properties.desired.": 1}})).is_err());
        assert!(k(json!({"deviceContent": {"properties.desired.a": null}})).is_err());
        assert!(
            k(json!({"deviceContent": {"properties.desired.a": 1, "properties.desired.a.b": 2}}))
                .is_err()
        );
        assert!(
            k(json!({"deviceContent": {"properties.desired.a": 1}, "moduleContent": {"properties.desired.a": 1}}))
                .is_err()
        );
    }

    #[test]
    fn a_record_is_of_the_kind_its_content_fills_and_only_configurations_compile() {
        for (content, kind) in [
            (
                json!({"deviceContent": {"properties.desired.a": 1}}),
                Kind::Device,
            ),
            (
                json!({"moduleContent": {"properties.desired.a": 1}, "deviceContent": {}}),
                Kind::Module,
            ),
            (
                json!({"modulesContent": {"$edgeAgent": {"properties.desired": {}}}}),
                Kind::Edge,
            ),
        ] {
            let r = record("c", content.clone(), "*", 0, 1);
            assert_eq!(r.kind(), kind, "{content}");
            assert_eq!(content_kind(&r.content), Ok(kind), "{content}");
            assert_eq!(Compiled::new(&r).is_ok(), kind != Kind::Edge, "{content}");
        }
    }

    #[test]
    fn module_targets_take_the_query_form() {
        let t = Target::parse("FROM devices.modules WHERE moduleId = 'm'", Kind::Module).unwrap();
        assert!(t.modules);
        assert!(t.matches(&json!({"deviceId": "d", "moduleId": "m"})));
        assert!(!t.matches(&json!({"deviceId": "d", "moduleId": "x"})));
        assert!(
            Target::parse("from devices.modules", Kind::Module)
                .unwrap()
                .matches(&json!({}))
        );
        assert!(Target::parse("FROM devices.modules WHERE moduleId = 'm'", Kind::Device).is_err());
        assert!(Target::parse("tags.x = ", Kind::Device).is_err());
        assert!(!Target::parse("", Kind::Device).unwrap().matches(&json!({})));
        assert_eq!(
            strip_from("FROM devices.modules WHERE moduleId='m'"),
            "moduleId='m'"
        );
        assert_eq!(strip_from("tags.a=1"), "tags.a=1");
    }

    #[test]
    fn targeted_twins_get_missing_values_and_an_applied_status() {
        let c = compiled(&[record(
            "c1",
            json!({"deviceContent": {"properties.desired.cfg.rate": 5, "properties.desired": {"mode": {"x": 1}}}}),
            "tags.env = 'prod'",
            0,
            1,
        )]);
        let twin = json!({"deviceId": "d", "tags": {"env": "prod"}});
        let desired = map(json!({"cfg": {"rate": 1, "other": 2}, "mode": {"x": 1, "y": 2}}));
        let out = reconcile(&twin, &desired, false, &c);
        assert_eq!(
            Value::Object(out.patch.clone()),
            json!({"cfg": {"rate": 5}, "mode": {"y": null}})
        );
        assert_eq!(
            Value::Object(out.statuses.clone()),
            json!({"c1": {"status": "Applied"}})
        );
        let settled = map(json!({"cfg": {"rate": 5, "other": 2}, "mode": {"x": 1}}));
        let again = reconcile(&twin, &settled, false, &c);
        assert!(again.patch.is_empty(), "no write once the values agree");
        assert!(!again.changes(&out.statuses));
        let other = reconcile(&json!({"tags": {"env": "dev"}}), &desired, false, &c);
        assert_eq!(other, Outcome::default());
        assert!(reconcile(&twin, &desired, true, &c).statuses.is_empty());
    }

    #[test]
    fn higher_priority_wins_a_shared_path_and_ties_go_to_the_newest() {
        let low = record(
            "low",
            json!({"deviceContent": {"properties.desired.a": 1}}),
            "*",
            1,
            1,
        );
        let high = record(
            "high",
            json!({"deviceContent": {"properties.desired.a": 2}}),
            "*",
            5,
            2,
        );
        let free = record(
            "free",
            json!({"deviceContent": {"properties.desired.b": 3}}),
            "*",
            0,
            3,
        );
        let out = reconcile(
            &json!({}),
            &JsonMap::new(),
            false,
            &compiled(&[low.clone(), high, free]),
        );
        assert_eq!(Value::Object(out.patch), json!({"a": 2, "b": 3}));
        assert_eq!(
            Value::Object(out.statuses),
            json!({"high": {"status": "Applied"}, "low": {"status": "Targeted"}, "free": {"status": "Applied"}})
        );
        let newer = record(
            "newer",
            json!({"deviceContent": {"properties.desired.a.x": 9}}),
            "*",
            1,
            4,
        );
        let out = reconcile(&json!({}), &JsonMap::new(), false, &compiled(&[low, newer]));
        assert_eq!(Value::Object(out.patch), json!({"a": {"x": 9}}));
        assert_eq!(out.statuses["low"]["status"], "Targeted");
    }

    #[test]
    fn system_metric_queries_are_queries_the_hub_runs() {
        let edge = record(
            "dep",
            json!({"modulesContent": {"$edgeAgent": {"properties.desired": {}}}}),
            "tags.site = 'b'",
            0,
            1,
        );
        let adm = record(
            "adm",
            json!({"deviceContent": {"properties.desired.a": 1}}),
            "*",
            0,
            2,
        );
        for r in [&edge, &adm] {
            for (name, q) in r.system_queries().as_object().unwrap() {
                let q = q.as_str().unwrap();
                if q.is_empty() {
                    continue;
                }
                query::parse(q).unwrap_or_else(|e| panic!("{name}: {q}: {e}"));
            }
        }
        let q = edge.system_queries();
        assert_eq!(
            q["appliedCount"],
            "select deviceId from devices.modules where moduleId = '$edgeAgent' and configurations.[[dep]].status = 'Applied'"
        );
        let ok = query::parse(q["reportedSuccessfulCount"].as_str().unwrap()).unwrap();
        let twin = json!({"moduleId": "$edgeAgent", "configurations": {"dep": {"status": "Applied"}},
            "properties": {"desired": {"$version": 4}, "reported": {"lastDesiredVersion": 4,
            "lastDesiredStatus": {"code": 200}}}});
        assert!(ok.matches(&twin));
    }
}
