//! `export --configurations` (SPEC §16): the hub's configurations and IoT Edge deployments written
//! back as the `configurations:` and `deployments:` blocks of each owner's manifests, so that a plan
//! of the export is a no-op: each object's name is its `twinops-name` label and its content is
//! read back into the form the manifests write, which gives the same content digest, hence the
//! same hub ID.
//!
//! Objects no owner's label claims are left out (and counted): declaring one would create a new
//! object beside it, not adopt it; label it `twinops-owner: OWNER` and `twinops-name: NAME` first.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use twinops_core::model::{NAME_LABEL, OWNER_LABEL, ObjectKind, ObservedObject};

/// The blocks of one owner's manifests.
#[derive(Default)]
pub(crate) struct Blocks {
    pub configurations: Map<String, Value>,
    pub deployments: Map<String, Value>,
}

/// The hub's objects by owner, and how many no owner's label claims.
pub(crate) fn by_owner(objects: &[ObservedObject]) -> (BTreeMap<String, Blocks>, usize) {
    let mut out: BTreeMap<String, Blocks> = BTreeMap::new();
    let mut unlabelled = 0;
    for o in objects {
        let (Some(owner), Some(name)) = (o.labels.get(OWNER_LABEL), o.labels.get(NAME_LABEL))
        else {
            unlabelled += 1;
            continue;
        };
        let blocks = out.entry(owner.clone()).or_default();
        match o.kind {
            ObjectKind::Configuration => {
                blocks.configurations.insert(name.clone(), configuration(o));
            }
            ObjectKind::Deployment => {
                blocks.deployments.insert(name.clone(), deployment(o));
            }
        }
    }
    (out, unlabelled)
}

/// The fields every object has: target, priority, the user's labels, metrics.
fn common(o: &ObservedObject) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("target".into(), json!(o.target));
    m.insert("priority".into(), json!(o.priority));
    let labels: Map<String, Value> = o
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != OWNER_LABEL && k.as_str() != NAME_LABEL)
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !o.metrics.is_empty() {
        m.insert("metrics".into(), json!(o.metrics));
    }
    m
}

/// `properties.desired.K` entries back as `{K: v}`.
fn desired(content: Option<&Value>) -> Map<String, Value> {
    content
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.strip_prefix("properties.desired.")?.to_string(),
                        v.clone(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The module a module target names (`FROM devices.modules WHERE moduleId = 'NAME' AND …`, which
/// the manifests require), read with IoT Hub's query grammar.
fn target_module(target: &str) -> Option<String> {
    let query = twinops_iothub::query::parse(&format!("SELECT * {target}")).ok()?;
    Some(query.filter?.pinned_module()?.to_string())
}

fn configuration(o: &ObservedObject) -> Value {
    let mut m = common(o);
    if let Some(c) = o.content.get("deviceContent") {
        m.insert("device".into(), json!({"desired": desired(Some(c))}));
    } else if let Some(c) = o.content.get("moduleContent") {
        m.insert(
            "module".into(),
            json!({"name": target_module(&o.target).unwrap_or_default(), "desired": desired(Some(c))}),
        );
    }
    Value::Object(m)
}

/// One `$edgeAgent` module entry back as a manifest module.
fn edge_module(def: &Value, twin: Option<&Value>) -> Value {
    let mut m = Map::new();
    let settings = def.get("settings");
    if let Some(image) = settings.and_then(|s| s.get("image")) {
        m.insert("image".into(), image.clone());
    }
    if let Some(opts) = settings
        .and_then(|s| s.get("createOptions"))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        m.insert("createOptions".into(), opts);
    }
    if let Some(env) = def.get("env").and_then(Value::as_object) {
        let env: Map<String, Value> = env
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.get("value")?.clone())))
            .collect();
        m.insert("env".into(), Value::Object(env));
    }
    for k in ["restartPolicy", "status"] {
        if let Some(v) = def.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    if let Some(d) = twin
        .and_then(|t| t.get("properties.desired"))
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()))
    {
        m.insert("desired".into(), d.clone());
    }
    Value::Object(m)
}

fn deployment(o: &ObservedObject) -> Value {
    let mut m = common(o);
    let mc = o
        .content
        .get("modulesContent")
        .cloned()
        .unwrap_or(Value::Null);
    let agent = mc.get("$edgeAgent").and_then(Value::as_object);
    let hub = mc.get("$edgeHub").and_then(Value::as_object);
    let twin = |name: &str| mc.get(name);
    let mut modules = Map::new();
    let mut routes = Map::new();
    match agent.and_then(|a| a.get("properties.desired")) {
        // A base deployment: the whole desired section.
        Some(desired) => {
            let image = |k: &str| {
                desired
                    .pointer(&format!("/systemModules/{k}/settings/image"))
                    .cloned()
            };
            m.insert(
                "runtime".into(),
                json!({"edgeAgent": image("edgeAgent"), "edgeHub": image("edgeHub")}),
            );
            if let Some(mods) = desired.get("modules").and_then(Value::as_object) {
                for (name, def) in mods {
                    modules.insert(name.clone(), edge_module(def, twin(name)));
                }
            }
            if let Some(r) = hub
                .and_then(|h| h.get("properties.desired"))
                .and_then(|d| d.get("routes"))
                .and_then(Value::as_object)
            {
                routes = r.clone();
            }
        }
        // A layered one: modules and routes by path.
        None => {
            m.insert("layered".into(), json!(true));
            for (k, def) in agent.into_iter().flatten() {
                if let Some(name) = k.strip_prefix("properties.desired.modules.") {
                    modules.insert(name.to_string(), edge_module(def, twin(name)));
                }
            }
            for (k, r) in hub.into_iter().flatten() {
                if let Some(name) = k.strip_prefix("properties.desired.routes.") {
                    routes.insert(name.to_string(), r.clone());
                }
            }
        }
    }
    if !modules.is_empty() {
        m.insert("modules".into(), Value::Object(modules));
    }
    if !routes.is_empty() {
        m.insert("routes".into(), Value::Object(routes));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_target_names_its_module() {
        assert_eq!(
            target_module("FROM devices.modules WHERE moduleId = 'sensor' AND tags.a = 1"),
            Some("sensor".into())
        );
        assert_eq!(target_module("tags.a = 1"), None);
        // The term that names the module, not a tag that reads like it.
        assert_eq!(
            target_module("FROM devices.modules WHERE tags.moduleId = 'x' AND moduleId = 'sensor'"),
            Some("sensor".into())
        );
        assert_eq!(
            target_module("FROM devices.modules WHERE 'sensor' = moduleId"),
            Some("sensor".into())
        );
    }
}
