//! One entry of the `deployments` block as written (SPEC §16): an IoT Edge deployment, turned into a
//! [`DeploymentSpec`] with every problem reported at its `file:line:column`.
//!
//! Owns the block's shape and the rules of IoT Edge: a base deployment sets the runtime (both
//! images) and a layered one does not; modules (at most [`MAX_DEPLOYMENT_MODULES`], named as keys of
//! `$edgeAgent`'s desired properties), their images, create options within IoT Edge's size, env,
//! restart policy, status and twin; routes; and the size of every module twin the deployment writes,
//! measured on the content the hub gets ([`DeploymentSpec::content`]). The rules it shares with
//! configurations live in [`super::objects`].

use std::collections::BTreeMap;

use serde_json::Value;
use twinops_iothub::twin_rules::{self, MAX_STRING_BYTES};

use super::Sink;
use super::objects::{self, Declared, Targets};
use super::raw::{mapping, mapping_entries, string, type_error};
use super::twin::{self, MAX_DESIRED_BYTES};
use super::yaml::{Entry, Kind, Node};
use crate::model::{
    DeploymentSpec, EdgeModule, EdgeRuntime, Location, MAX_DEPLOYMENT_MODULES, ModuleRunStatus,
    ObjectKind, RestartPolicy,
};

pub(super) const DEPLOYMENT_KEYS: &[&str] = &[
    "target", "priority", "layered", "labels", "runtime", "modules", "routes", "metrics",
];
pub(super) const RUNTIME_KEYS: &[&str] = &["edgeAgent", "edgeHub"];
pub(super) const EDGE_MODULE_KEYS: &[&str] = &[
    "image",
    "createOptions",
    "env",
    "restartPolicy",
    "status",
    "desired",
];
/// The values `status` of an edge module takes.
pub(super) const RUN_STATUSES: [ModuleRunStatus; 2] =
    [ModuleRunStatus::Running, ModuleRunStatus::Stopped];
const IMAGE_EXAMPLE: &str = "mcr.microsoft.com/azureiotedge-agent:1.5";
const RUNTIME_FORM: &str = "`runtime: {edgeAgent: IMAGE, edgeHub: IMAGE}`";

/// Converts `NAME: {...}` of the `deployments` block; the spec is `None` when anything in it is
/// invalid (reported).
pub(super) fn deployment(e: &Entry, sink: &mut Sink) -> Declared<DeploymentSpec> {
    let before = sink.diagnostics.len();
    let mut declared = Declared {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        spec: None,
    };
    objects::name(e, ObjectKind::Deployment, sink);
    let what = format!("deployment `{}`", twin::shorten(&e.key));
    let Some(fields) = mapping(&e.value, &what, DEPLOYMENT_KEYS, sink) else {
        return declared;
    };
    let field = |key: &str| fields.iter().find(|f| f.key == key);
    // `None`: `layered` is invalid (reported), so whether `runtime` belongs is unknown.
    let layered = match field("layered").map(|f| &f.value) {
        None => Some(false),
        Some(Node {
            kind: Kind::Bool(b),
            ..
        }) => Some(*b),
        Some(v) => type_error(v, "`layered`", "a boolean (true or false)", sink),
    };
    let runtime = match (layered, field("runtime")) {
        // Its own problems are still reported.
        (None, r) => r.and_then(|r| runtime(&r.value, sink)).and(None),
        (Some(false), Some(r)) => runtime(&r.value, sink),
        (Some(false), None) => {
            sink.error(
                &e.key_loc,
                format!(
                    "add {RUNTIME_FORM} to {what}: a base deployment sets the IoT Edge runtime (or write `layered: true` to add to the base deployment of its devices)"
                ),
            );
            None
        }
        (Some(true), Some(r)) => {
            sink.error(
                &r.key_loc,
                format!(
                    "remove `runtime` from {what}: a layered deployment adds to the base deployment, which sets the runtime"
                ),
            );
            None
        }
        (Some(true), None) => None,
    };
    let layered = layered.unwrap_or_default();
    let target = match field("target") {
        Some(t) => objects::target(&t.value, Targets::Devices, sink),
        None => {
            sink.error(
                &e.key_loc,
                format!(
                    "add `target` to {what}: IoT Hub's target condition, e.g. \"tags.site = 'berlin' AND tags.role = 'gateway'\""
                ),
            );
            None
        }
    };
    let priority = field("priority").map_or(0, |f| objects::priority(&f.value, sink));
    let labels = field("labels").map_or_else(BTreeMap::new, |f| objects::labels(&f.value, sink));
    let metrics = field("metrics").map_or_else(BTreeMap::new, |f| objects::metrics(&f.value, sink));
    let modules = field("modules").map_or_else(BTreeMap::new, |f| modules(&f.value, sink));
    let routes = field("routes").map_or_else(BTreeMap::new, |f| routes(&f.value, sink));
    if sink.diagnostics.len() != before {
        return declared;
    }
    if layered && modules.is_empty() && routes.is_empty() {
        sink.error(
            &e.key_loc,
            format!(
                "add `modules` or `routes` to {what}: a layered deployment adds them to the base deployment, and this one adds nothing"
            ),
        );
        return declared;
    }
    let Some(target) = target else {
        return declared;
    };
    let spec = DeploymentSpec {
        name: e.key.clone(),
        target,
        priority,
        layered,
        labels,
        runtime,
        modules,
        routes,
        metrics,
        location: e.key_loc.clone(),
    };
    if twins_fit(&spec, &what, &e.key_loc, sink) {
        declared.spec = Some(spec);
    }
    declared
}

/// Whether every module twin's desired properties that the deployment writes fit IoT Hub's limit;
/// `$edgeAgent`'s hold every module's settings, so large create options fill it first.
fn twins_fit(spec: &DeploymentSpec, what: &str, loc: &Location, sink: &mut Sink) -> bool {
    let content = spec.content();
    let Some(twins) = content["modulesContent"].as_object() else {
        return true;
    };
    let mut fit = true;
    for (module, written) in twins {
        let desired = written
            .get("properties.desired")
            .unwrap_or(written)
            .as_object();
        let bytes = desired.map_or(0, twin::size);
        if bytes > MAX_DESIRED_BYTES {
            sink.error(
                loc,
                format!(
                    "make {what} smaller: the desired properties it writes to `{module}` are {bytes} bytes, and IoT Hub allows at most {MAX_DESIRED_BYTES} in a module twin's desired properties (every module's settings and create options count in `$edgeAgent`'s)"
                ),
            );
            fit = false;
        }
    }
    fit
}

/// `runtime: {edgeAgent: IMAGE, edgeHub: IMAGE}`.
fn runtime(v: &Node, sink: &mut Sink) -> Option<EdgeRuntime> {
    let fields = mapping(v, "`runtime`", RUNTIME_KEYS, sink)?;
    let image_of = |key: &str, example: &str, sink: &mut Sink| match fields
        .iter()
        .find(|f| f.key == key)
    {
        Some(f) => image(&f.value, &format!("`runtime.{key}`"), sink),
        None => {
            sink.error(
                &v.loc,
                format!("add `{key}` to `runtime`: its image, e.g. {example}; a base deployment sets both runtime modules"),
            );
            None
        }
    };
    let edge_agent = image_of("edgeAgent", IMAGE_EXAMPLE, sink);
    let edge_hub = image_of("edgeHub", "mcr.microsoft.com/azureiotedge-hub:1.5", sink);
    Some(EdgeRuntime {
        edge_agent: edge_agent?,
        edge_hub: edge_hub?,
    })
}

/// An image reference: a string that is not empty and holds no whitespace.
fn image(v: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    let text = objects::text(v, what, sink)?;
    if text.is_empty() {
        sink.error(
            &v.loc,
            format!("write an image reference in {what}, e.g. {IMAGE_EXAMPLE}: it is empty"),
        );
        return None;
    }
    if text.chars().any(char::is_whitespace) {
        sink.error(
            &v.loc,
            format!(
                "remove the whitespace from {what} `{}`: an image reference has none, e.g. {IMAGE_EXAMPLE}",
                twin::shorten(&text)
            ),
        );
        return None;
    }
    Some(text)
}

/// `modules`: custom module name to module, at most [`MAX_DEPLOYMENT_MODULES`].
fn modules(v: &Node, sink: &mut Sink) -> BTreeMap<String, EdgeModule> {
    let entries: Vec<&Entry> = mapping_entries(v, "`modules`", sink).collect();
    if entries.len() > MAX_DEPLOYMENT_MODULES {
        sink.error(
            &v.loc,
            format!(
                "keep at most {MAX_DEPLOYMENT_MODULES} modules in a deployment: IoT Edge supports no more, and these are {}",
                entries.len()
            ),
        );
    }
    let mut modules = BTreeMap::new();
    for m in entries {
        let named = module_name(m, sink);
        if let (true, Some(module)) = (named, edge_module(m, sink)) {
            modules.insert(m.key.clone(), module);
        }
    }
    modules
}

/// Whether a module's name is a custom module ID that can also be a key of `$edgeAgent`'s desired
/// properties (`properties.desired.modules.NAME`).
fn module_name(e: &Entry, sink: &mut Sink) -> bool {
    let problem = if e.key.starts_with('$') {
        Some(format!(
            "name custom modules without `$`: `{}` would be a module of the IoT Edge runtime, which `runtime` sets",
            twin::shorten(&e.key)
        ))
    } else if let Some(problem) = super::range::id_problem(&e.key, "module") {
        Some(problem)
    } else {
        twin::key_problem(&e.key).map(|problem| {
            format!(
                "rename module `{}`: its name is a key of `$edgeAgent`'s desired properties, and {problem}",
                twin::shorten(&e.key)
            )
        })
    };
    match problem {
        Some(problem) => {
            sink.error(&e.key_loc, problem);
            false
        }
        None => true,
    }
}

fn edge_module(e: &Entry, sink: &mut Sink) -> Option<EdgeModule> {
    let name = twin::shorten(&e.key);
    let what = format!("module `{name}`");
    let fields = mapping(&e.value, &what, EDGE_MODULE_KEYS, sink)?;
    let before = sink.diagnostics.len();
    let mut module = EdgeModule {
        image: String::new(),
        create_options: None,
        env: BTreeMap::new(),
        restart_policy: RestartPolicy::default(),
        status: ModuleRunStatus::default(),
        desired: Default::default(),
        location: e.key_loc.clone(),
    };
    for f in fields {
        let v = &f.value;
        match f.key.as_str() {
            "image" => {
                module.image = image(v, &format!("the image of {what}"), sink).unwrap_or_default();
            }
            "createOptions" => module.create_options = create_options(v, sink),
            "env" => module.env = env(v, sink),
            "restartPolicy" => {
                module.restart_policy = choice(
                    v,
                    "restartPolicy",
                    &RestartPolicy::ALL,
                    RestartPolicy::as_str,
                    sink,
                )
                .unwrap_or_default();
            }
            "status" => {
                module.status = choice(v, "status", &RUN_STATUSES, ModuleRunStatus::as_str, sink)
                    .unwrap_or_default();
            }
            "desired" => {
                module.desired = objects::desired(v, &format!("modules.{name}.desired"), sink)
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    if !fields.iter().any(|f| f.key == "image") {
        sink.error(
            &e.value.loc,
            format!(
                "add `image` to {what}: the container image it runs, e.g. mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"
            ),
        );
    }
    (sink.diagnostics.len() == before).then_some(module)
}

/// One of the values of an enum, by its manifest word.
fn choice<T: Copy>(
    v: &Node,
    key: &str,
    all: &[T],
    word: fn(T) -> &'static str,
    sink: &mut Sink,
) -> Option<T> {
    let text = string(v, &format!("`{key}`"), sink)?;
    let found = all.iter().copied().find(|t| word(*t) == text);
    if found.is_none() {
        let allowed: Vec<&str> = all.iter().map(|t| word(*t)).collect();
        sink.error(
            &v.loc,
            format!(
                "write one of {} as `{key}`: `{}` is not one",
                allowed.join(", "),
                twin::shorten(text)
            ),
        );
    }
    found
}

/// `createOptions`: Docker's create options as a mapping. IoT Edge holds them as one JSON string
/// in `$edgeAgent`'s desired properties, split into at most eight 512-byte chunks
/// (`createOptions`, `createOptions01`..`07`): 4096 bytes of compact JSON, which is also IoT
/// Hub's limit of one twin string.
fn create_options(v: &Node, sink: &mut Sink) -> Option<Value> {
    if !matches!(v.kind, Kind::Map(_)) {
        return type_error(
            v,
            "`createOptions`",
            "a mapping of Docker create options, e.g. {HostConfig: {Privileged: false}}",
            sink,
        );
    }
    let before = sink.diagnostics.len();
    let options = options_json(v, sink);
    if sink.diagnostics.len() != before {
        return None;
    }
    let compact = options.to_string();
    if !twin_rules::string_is_allowed(&compact) {
        sink.error(
            &v.loc,
            format!(
                "make `createOptions` smaller: it is {} bytes as compact JSON, and IoT Edge takes at most {MAX_STRING_BYTES} (eight chunks of 512 bytes)",
                compact.len()
            ),
        );
        return None;
    }
    Some(options)
}

/// Create options as JSON: any keys (the hub holds them as a string), strings as object content
/// takes them, and numbers that JSON can hold.
fn options_json(v: &Node, sink: &mut Sink) -> Value {
    match &v.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(n), _) => Value::from(n),
            (_, Ok(n)) => Value::from(n),
            _ => {
                sink.error(
                    &v.loc,
                    "write a smaller integer in `createOptions`: JSON numbers there fit 64 bits"
                        .to_string(),
                );
                Value::Null
            }
        },
        Kind::Float(f) => serde_json::Number::from_f64(*f).map_or_else(
            || {
                sink.error(
                    &v.loc,
                    "write a finite number in `createOptions`: JSON has no infinity or NaN"
                        .to_string(),
                );
                Value::Null
            },
            Value::Number,
        ),
        Kind::Str(s) => objects::content_string(s, v, sink).map_or(Value::Null, Value::String),
        Kind::Seq(items) => Value::Array(items.iter().map(|n| options_json(n, sink)).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), options_json(&e.value, sink)))
                .collect(),
        ),
    }
}

/// `env`: variable name to value. Names are keys of `$edgeAgent`'s desired properties; values are
/// text, integers and booleans written bare taken as their text.
fn env(v: &Node, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for e in mapping_entries(v, "`env`", sink) {
        if !twin_key(e, "environment variable", "$edgeAgent", sink) {
            continue;
        }
        let what = format!("the value of `{}`", twin::shorten(&e.key));
        if let Some(value) = objects::scalar_text(&e.value, &what, sink) {
            env.insert(e.key.clone(), value);
        }
    }
    env
}

/// `routes`: route name to route, each starting with `FROM`.
fn routes(v: &Node, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    for e in mapping_entries(v, "`routes`", sink) {
        if !twin_key(e, "route", "$edgeHub", sink) {
            continue;
        }
        let what = format!("route `{}`", twin::shorten(&e.key));
        let Some(route) = objects::text(&e.value, &what, sink) else {
            continue;
        };
        let body = route.trim_start();
        let from = body
            .get(..4)
            .is_some_and(|w| w.eq_ignore_ascii_case("from"))
            && body[4..].starts_with(char::is_whitespace);
        if !from {
            sink.error(
                &e.value.loc,
                format!("start {what} with `FROM`, e.g. FROM /messages/* INTO $upstream"),
            );
            continue;
        }
        routes.insert(e.key.clone(), route);
    }
    routes
}

/// Whether the name of an env variable or a route can be a key of `twin`'s desired properties.
fn twin_key(e: &Entry, what: &str, twin: &str, sink: &mut Sink) -> bool {
    let problem = if e.key.is_empty() {
        format!(
            "name this {what}: its name is empty, and it is a key of `{twin}`'s desired properties"
        )
    } else if let Some(problem) = twin::key_problem(&e.key) {
        format!(
            "rename {what} `{}`: its name is a key of `{twin}`'s desired properties, and {problem}",
            twin::shorten(&e.key)
        )
    } else {
        return true;
    };
    sink.error(&e.key_loc, problem);
    false
}
