//! Managed hub objects (SPEC §16): automatic device management configurations and IoT Edge
//! deployments, as the manifests declare them, and the hub's form of each (its content, ID and
//! labels), computed here so that the plan, the emulator's tests and export agree on them.
//!
//! Content is immutable on IoT Hub (an update's content is silently ignored), so an object's hub ID
//! is `NAME-<first 8 hex of its content digest>`: a content change is a new object (a replacement).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{Digest, JsonMap, Location};

/// Longest declared name: the hub ID adds `-` and 8 hex digits, within IoT Hub's 128.
pub const MAX_OBJECT_NAME_CHARS: usize = 100;
/// IoT Edge's documented limit of modules in one deployment.
pub const MAX_DEPLOYMENT_MODULES: usize = 50;
/// A hub holds at most this many ADM configurations, and separately this many IoT Edge deployments
/// (layered ones included), on a paid tier.
pub const MAX_HUB_OBJECTS: usize = 100;
/// Custom metrics one configuration or deployment may have (IoT Hub's automatic device management).
pub const MAX_OBJECT_METRICS: usize = 5;
/// The label that names an object's owner (SPEC §16).
pub const OWNER_LABEL: &str = "twinops-owner";
/// The label that names an object's declared name.
pub const NAME_LABEL: &str = "twinops-name";

/// The two kinds of managed objects, as plans write them: `configuration`, `deployment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Configuration,
    Deployment,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Configuration => "configuration",
            ObjectKind::Deployment => "deployment",
        }
    }
}

/// What an ADM configuration writes.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigurationContent {
    /// `deviceContent`: desired properties of device twins.
    Device { desired: JsonMap },
    /// `moduleContent`: desired properties of the module twins named `module`.
    Module { module: String, desired: JsonMap },
}

/// An ADM configuration as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationSpec {
    pub name: String,
    /// IoT Hub's target condition, as written.
    pub target: String,
    pub priority: i64,
    /// The user's labels (the owner and name labels are added by [`ConfigurationSpec::labels`]).
    pub labels: BTreeMap<String, String>,
    pub content: ConfigurationContent,
    /// Custom metrics: name to query.
    pub metrics: BTreeMap<String, String>,
    pub location: Location,
}

/// `restartPolicy` of an edge module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    OnUnhealthy,
    Never,
}

impl RestartPolicy {
    pub const ALL: [RestartPolicy; 4] = [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::OnUnhealthy,
        RestartPolicy::Never,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::OnUnhealthy => "on-unhealthy",
            RestartPolicy::Never => "never",
        }
    }
}

/// `status` of an edge module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModuleRunStatus {
    #[default]
    Running,
    Stopped,
}

impl ModuleRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleRunStatus::Running => "running",
            ModuleRunStatus::Stopped => "stopped",
        }
    }
}

/// A custom module of an IoT Edge deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeModule {
    pub image: String,
    /// Docker create options (an object; the hub holds it as a JSON string).
    pub create_options: Option<Value>,
    pub env: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    pub status: ModuleRunStatus,
    /// The module twin's desired properties.
    pub desired: JsonMap,
    pub location: Location,
}

/// The runtime images of a base deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRuntime {
    pub edge_agent: String,
    pub edge_hub: String,
}

/// An IoT Edge deployment as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    pub name: String,
    pub target: String,
    pub priority: i64,
    /// A layered deployment adds to the base deployment of a device.
    pub layered: bool,
    pub labels: BTreeMap<String, String>,
    /// Required for a base deployment; a layered one carries none.
    pub runtime: Option<EdgeRuntime>,
    pub modules: BTreeMap<String, EdgeModule>,
    pub routes: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, String>,
    pub location: Location,
}

/// The schema version of `$edgeAgent` and `$edgeHub` desired properties that deployments write.
pub const EDGE_SCHEMA_VERSION: &str = "1.1";

/// JSON text with object keys sorted at every level and no whitespace, written without cloning the
/// value: what object IDs and rollout IDs digest, so that key order never changes them.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hub ID of an object: `NAME-` and the first 8 hex digits of the SHA-256 of its content as
/// canonical JSON.
pub fn object_id(name: &str, content: &Value) -> String {
    let digest = Digest::from_sha256(Sha256::digest(canonical_json(content).as_bytes()).into());
    format!("{name}-{}", &digest.as_str()[..8])
}

/// `properties.desired.KEY` entries, one per top-level desired key.
fn desired_paths(desired: &JsonMap) -> Map<String, Value> {
    desired
        .iter()
        .map(|(k, v)| (format!("properties.desired.{k}"), v.clone()))
        .collect()
}

/// The labels an object carries on the hub: the user's, its owner's and its name.
fn hub_labels(
    user: &BTreeMap<String, String>,
    owner: &str,
    name: &str,
) -> BTreeMap<String, String> {
    let mut labels = user.clone();
    labels.insert(OWNER_LABEL.into(), owner.into());
    labels.insert(NAME_LABEL.into(), name.into());
    labels
}

impl ConfigurationSpec {
    /// `{"deviceContent": {...}}` or `{"moduleContent": {...}}`.
    pub fn content(&self) -> Value {
        match &self.content {
            ConfigurationContent::Device { desired } => {
                json!({"deviceContent": desired_paths(desired)})
            }
            ConfigurationContent::Module { desired, .. } => {
                json!({"moduleContent": desired_paths(desired)})
            }
        }
    }

    pub fn id(&self) -> String {
        object_id(&self.name, &self.content())
    }

    pub fn labels(&self, owner: &str) -> BTreeMap<String, String> {
        hub_labels(&self.labels, owner, &self.name)
    }

    /// The desired keys it writes, and of which twins (`None`: device twins).
    pub fn writes(&self) -> (Option<&str>, Vec<&String>) {
        match &self.content {
            ConfigurationContent::Device { desired } => (None, desired.keys().collect()),
            ConfigurationContent::Module { module, desired } => {
                (Some(module.as_str()), desired.keys().collect())
            }
        }
    }
}

fn edge_module(m: &EdgeModule) -> Value {
    let create_options = m
        .create_options
        .as_ref()
        .map_or_else(|| "{}".to_string(), canonical_json);
    let mut out = json!({
        "version": "1.0",
        "type": "docker",
        "status": m.status.as_str(),
        "restartPolicy": m.restart_policy.as_str(),
        "settings": {"image": m.image, "createOptions": create_options},
    });
    if !m.env.is_empty() {
        let env: Map<String, Value> = m
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!({"value": v})))
            .collect();
        out["env"] = Value::Object(env);
    }
    out
}

impl DeploymentSpec {
    /// `{"modulesContent": {...}}`: for a base deployment the whole `$edgeAgent` and `$edgeHub`
    /// desired properties; for a layered one dotted paths that add its modules and routes to the
    /// base's (`properties.desired.modules.NAME`, `properties.desired.routes.NAME`), as IoT Edge's
    /// layered deployments are written. Each custom module's own desired properties follow.
    pub fn content(&self) -> Value {
        let mut modules_content = Map::new();
        if self.layered {
            let mut agent = Map::new();
            for (name, m) in &self.modules {
                agent.insert(format!("properties.desired.modules.{name}"), edge_module(m));
            }
            modules_content.insert("$edgeAgent".into(), Value::Object(agent));
            if !self.routes.is_empty() {
                let hub: Map<String, Value> = self
                    .routes
                    .iter()
                    .map(|(k, r)| (format!("properties.desired.routes.{k}"), json!(r)))
                    .collect();
                modules_content.insert("$edgeHub".into(), Value::Object(hub));
            }
        } else {
            let (agent_image, hub_image) = self
                .runtime
                .as_ref()
                .map_or(("", ""), |r| (r.edge_agent.as_str(), r.edge_hub.as_str()));
            let modules: Map<String, Value> = self
                .modules
                .iter()
                .map(|(k, m)| (k.clone(), edge_module(m)))
                .collect();
            modules_content.insert(
                "$edgeAgent".into(),
                json!({"properties.desired": {
                    "schemaVersion": EDGE_SCHEMA_VERSION,
                    "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
                    "systemModules": {
                        "edgeAgent": {"type": "docker", "settings": {"image": agent_image, "createOptions": "{}"}},
                        "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                                    "settings": {"image": hub_image, "createOptions": "{}"}},
                    },
                    "modules": modules,
                }}),
            );
            modules_content.insert(
                "$edgeHub".into(),
                json!({"properties.desired": {
                    "schemaVersion": EDGE_SCHEMA_VERSION,
                    "routes": self.routes,
                    "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
                }}),
            );
        }
        for (name, m) in &self.modules {
            if !m.desired.is_empty() {
                modules_content.insert(name.clone(), json!({"properties.desired": m.desired}));
            }
        }
        json!({"modulesContent": modules_content})
    }

    pub fn id(&self) -> String {
        object_id(&self.name, &self.content())
    }

    pub fn labels(&self, owner: &str) -> BTreeMap<String, String> {
        hub_labels(&self.labels, owner, &self.name)
    }
}

/// What a configuration's system metrics count (absent ones are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectCounts {
    pub targeted: Option<u64>,
    pub applied: Option<u64>,
    pub reported_successful: Option<u64>,
    pub reported_failed: Option<u64>,
}

/// A configuration or deployment as read from the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedObject {
    pub id: String,
    /// A deployment when its content holds `modulesContent`.
    pub kind: ObjectKind,
    pub labels: BTreeMap<String, String>,
    pub target: String,
    pub priority: i64,
    /// Custom metrics: name to query.
    pub metrics: BTreeMap<String, String>,
    pub content: Value,
    /// The etag (unquoted); writes send it quoted.
    pub etag: String,
    pub counts: ObjectCounts,
}

impl ObservedObject {
    /// The name this owner declared it under, when it is this owner's.
    pub fn owned_name(&self, owner: &str) -> Option<&str> {
        owned_name(&self.labels, owner)
    }

    /// The owner its label names, if any.
    pub fn owner(&self) -> Option<&str> {
        self.labels.get(OWNER_LABEL).map(String::as_str)
    }
}

/// The name a hub object was declared with: its `twinops-name` label when its `twinops-owner`
/// label names `owner`.
pub fn owned_name<'a>(labels: &'a BTreeMap<String, String>, owner: &str) -> Option<&'a str> {
    (labels.get(OWNER_LABEL).map(String::as_str) == Some(owner))
        .then(|| labels.get(NAME_LABEL).map(String::as_str))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn loc() -> Location {
        Location {
            file: Arc::from("m.yaml"),
            line: 1,
            column: 1,
        }
    }

    fn config(desired: Value) -> ConfigurationSpec {
        ConfigurationSpec {
            name: "thermostat-telemetry".into(),
            target: "tags.kind = 'thermostat'".into(),
            priority: 10,
            labels: BTreeMap::new(),
            content: ConfigurationContent::Device {
                desired: desired.as_object().cloned().unwrap_or_default(),
            },
            metrics: BTreeMap::new(),
            location: loc(),
        }
    }

    #[test]
    fn the_id_follows_the_content_and_not_the_mutable_fields() {
        let a = config(json!({"telemetryInterval": 30, "mode": {"a": 1, "b": 2}}));
        let id = a.id();
        assert!(id.starts_with("thermostat-telemetry-"), "{id}");
        assert_eq!(id.len(), "thermostat-telemetry-".len() + 8);
        // Key order does not change the content, nor do target, priority or labels.
        let mut b = config(json!({"mode": {"b": 2, "a": 1}, "telemetryInterval": 30}));
        b.priority = 99;
        b.target = "tags.site = 'berlin'".into();
        b.labels.insert("team".into(), "x".into());
        assert_eq!(b.id(), id);
        assert_ne!(config(json!({"telemetryInterval": 31})).id(), id);
        assert_eq!(
            a.content(),
            json!({"deviceContent": {"properties.desired.telemetryInterval": 30,
                "properties.desired.mode": {"a": 1, "b": 2}}})
        );
    }

    #[test]
    fn an_object_kind_is_its_name_in_json() {
        for kind in [ObjectKind::Configuration, ObjectKind::Deployment] {
            let text = serde_json::to_string(&kind).unwrap();
            assert_eq!(text, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ObjectKind>(&text).unwrap(), kind);
        }
        assert!(serde_json::from_str::<ObjectKind>("\"Deployment\"").is_err());
    }

    #[test]
    fn object_ids_are_pinned() {
        // Keys out of order at every level and text JSON must escape: the ID is a digest of
        // canonical JSON, and a change of that text would replace every object on the hub.
        let c = config(json!({"z": [1, 2.5, {"b": null, "a": "x"}], "k\"é\n": -3,
            "a": {"y": true, "x": "q\u{1}"}}));
        assert_eq!(c.id(), "thermostat-telemetry-ee99bd8e");
        assert_eq!(deployment(false).id(), "berlin-base-90944815");
        assert_eq!(deployment(true).id(), "berlin-base-e7c26aaf");
    }

    fn module(image: &str) -> EdgeModule {
        EdgeModule {
            image: image.into(),
            create_options: Some(json!({"HostConfig": {"Privileged": false}})),
            env: [("LOG_LEVEL".to_string(), "info".to_string())].into(),
            restart_policy: RestartPolicy::Always,
            status: ModuleRunStatus::Running,
            desired: json!({"publishingInterval": 1000})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            location: loc(),
        }
    }

    fn deployment(layered: bool) -> DeploymentSpec {
        DeploymentSpec {
            name: "berlin-base".into(),
            target: "tags.site = 'berlin'".into(),
            priority: 10,
            layered,
            labels: BTreeMap::new(),
            runtime: (!layered).then(|| EdgeRuntime {
                edge_agent: "agent:1.5".into(),
                edge_hub: "hub:1.5".into(),
            }),
            modules: [("opcua".to_string(), module("opc:2.9"))].into(),
            routes: [(
                "up".to_string(),
                "FROM /messages/* INTO $upstream".to_string(),
            )]
            .into(),
            metrics: BTreeMap::new(),
            location: loc(),
        }
    }

    #[test]
    fn a_base_deployment_writes_whole_edge_agent_and_hub_properties() {
        let c = deployment(false).content();
        let agent = &c["modulesContent"]["$edgeAgent"]["properties.desired"];
        assert_eq!(agent["schemaVersion"], "1.1");
        assert_eq!(
            agent["systemModules"]["edgeAgent"]["settings"]["image"],
            "agent:1.5"
        );
        let opcua = &agent["modules"]["opcua"];
        assert_eq!(opcua["settings"]["image"], "opc:2.9");
        assert_eq!(
            opcua["settings"]["createOptions"],
            "{\"HostConfig\":{\"Privileged\":false}}"
        );
        assert_eq!(opcua["env"]["LOG_LEVEL"]["value"], "info");
        assert_eq!(
            c["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]["up"],
            "FROM /messages/* INTO $upstream"
        );
        assert_eq!(
            c["modulesContent"]["opcua"]["properties.desired"]["publishingInterval"],
            1000
        );
    }

    #[test]
    fn a_layered_deployment_adds_its_modules_and_routes_by_path() {
        let c = deployment(true).content();
        let agent = c["modulesContent"]["$edgeAgent"].as_object().unwrap();
        assert_eq!(
            agent.keys().collect::<Vec<_>>(),
            ["properties.desired.modules.opcua"]
        );
        assert_eq!(
            c["modulesContent"]["$edgeHub"]["properties.desired.routes.up"],
            "FROM /messages/* INTO $upstream"
        );
        assert_ne!(deployment(true).id(), deployment(false).id());
    }

    #[test]
    fn an_object_is_ours_by_its_owner_label() {
        let d = deployment(false);
        let labels = d.labels("platform");
        assert_eq!(owned_name(&labels, "platform"), Some("berlin-base"));
        assert_eq!(owned_name(&labels, "app"), None);
    }
}
