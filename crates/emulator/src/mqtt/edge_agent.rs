//! What a simulated IoT Edge agent reports (`--simulate-devices` on an edge device): the reported
//! properties IoT Edge's `$edgeAgent` writes once it has acted on its desired properties
//! (iotedge's `doc/reported_states_during_deployment.md`): `lastDesiredVersion`,
//! `lastDesiredStatus` (200 when the deployment runs, 417 when there is none, or when the device
//! is made to reject it with `--simulate-reject`), and every desired module and system module
//! with its `runtimeStatus`.
//!
//! Pure: the simulated device (`simulate`) keeps the twin copy and sends the report.

use serde_json::{Value, json};

use twinops_iothub::wire::JsonMap;

/// The `description` of a deployment the simulated agent refuses (`--simulate-reject`).
pub(crate) const REJECTED: &str = "deployment rejected by simulated edge agent";
/// IoT Edge's description of code 417.
const EMPTY: &str = "The device's deployment configuration is not set";
/// The IoT Edge version the simulated agent claims.
const VERSION: &str = "1.5.0";

/// The reported values (key → whole value) for `desired` (with its `$version`). A rejecting
/// agent reports the failure and leaves the modules it runs as they were (no `modules` key).
pub(crate) fn report(desired: &JsonMap, reject: bool) -> JsonMap {
    let version = desired.get("$version").and_then(Value::as_i64).unwrap_or(0);
    let empty = ["modules", "systemModules", "runtime", "schemaVersion"]
        .iter()
        .all(|k| !desired.contains_key(*k));
    let mut out = JsonMap::new();
    out.insert("lastDesiredVersion".into(), json!(version));
    let status = match (empty, reject) {
        (true, _) => json!({"code": 417, "description": EMPTY}),
        (false, true) => json!({"code": 417, "description": REJECTED}),
        (false, false) => json!({"code": 200, "description": ""}),
    };
    out.insert("lastDesiredStatus".into(), status);
    out.insert("schemaVersion".into(), json!("1.1"));
    out.insert(
        "version".into(),
        json!({"version": VERSION, "build": "simulated", "commit": "simulated"}),
    );
    if empty || reject {
        return out;
    }
    out.insert(
        "runtime".into(),
        json!({"type": "docker", "platform": {"os": "linux", "architecture": "x86_64", "version": VERSION}}),
    );
    let system = desired.get("systemModules").and_then(Value::as_object);
    let mut system_modules = JsonMap::new();
    for name in ["edgeAgent", "edgeHub"] {
        let spec = system.and_then(|s| s.get(name));
        system_modules.insert(name.into(), running(spec));
    }
    out.insert("systemModules".into(), Value::Object(system_modules));
    let modules: JsonMap = desired
        .get("modules")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, spec)| (name.clone(), running(Some(spec))))
        .collect();
    out.insert("modules".into(), Value::Object(modules));
    out
}

/// A module as the agent reports it: its desired status as `runtimeStatus` (`running` unless
/// `stopped`), its type, restart policy and image.
fn running(spec: Option<&Value>) -> Value {
    let field = |k: &str| spec.and_then(|s| s.get(k)).cloned();
    let status = field("status")
        .and_then(|s| s.as_str().map(str::to_string))
        .unwrap_or_else(|| "running".into());
    let runtime = if status == "stopped" {
        "stopped"
    } else {
        "running"
    };
    let mut m = JsonMap::new();
    m.insert("runtimeStatus".into(), json!(runtime));
    m.insert("status".into(), json!(status));
    m.insert("exitCode".into(), json!(0));
    m.insert("statusDescription".into(), json!(runtime));
    for k in ["type", "restartPolicy", "version"] {
        if let Some(v) = field(k) {
            m.insert(k.into(), v);
        }
    }
    if let Some(image) = spec.and_then(|s| s.pointer("/settings/image")).cloned() {
        m.insert("settings".into(), json!({ "image": image }));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_deployment_is_reported_running_at_its_version() {
        let desired = map(json!({"$version": 7, "schemaVersion": "1.1",
            "systemModules": {"edgeHub": {"status": "running", "settings": {"image": "hub:1.5"}}},
            "modules": {"opcua": {"status": "running", "type": "docker", "settings": {"image": "opc:2"}},
                        "idle": {"status": "stopped"}}}));
        let r = report(&desired, false);
        assert_eq!(r["lastDesiredVersion"], 7);
        assert_eq!(
            r["lastDesiredStatus"],
            json!({"code": 200, "description": ""})
        );
        assert_eq!(r["modules"]["opcua"]["runtimeStatus"], "running");
        assert_eq!(r["modules"]["opcua"]["settings"]["image"], "opc:2");
        assert_eq!(r["modules"]["idle"]["runtimeStatus"], "stopped");
        assert_eq!(r["systemModules"]["edgeHub"]["runtimeStatus"], "running");
        assert_eq!(r["systemModules"]["edgeAgent"]["runtimeStatus"], "running");
    }

    #[test]
    fn no_deployment_or_a_rejected_one_is_a_417() {
        let r = report(&map(json!({"$version": 1})), false);
        assert_eq!(r["lastDesiredStatus"]["code"], 417);
        let r = report(&map(json!({"$version": 3, "modules": {}})), true);
        assert_eq!(
            r["lastDesiredStatus"],
            json!({"code": 417, "description": REJECTED})
        );
        assert!(
            !r.contains_key("modules"),
            "a failed deployment changes no module"
        );
    }
}
