//! One entry of the `configurations` block as written (SPEC §16): an automatic device management
//! configuration, turned into a [`ConfigurationSpec`] with every problem reported at its
//! `file:line:column`.
//!
//! Owns the block's shape and its own rules: what it writes (exactly one of `device: {desired}` and
//! `module: {name, desired}`, whose values follow the twin rules) and a target that fits it. The
//! rules it shares with deployments live in [`super::objects`]; names unique across the set and the
//! hub's cap wait for [`super::objects::collect`].

use std::collections::BTreeMap;

use super::Sink;
use super::objects::{self, Declared, Targets};
use super::raw::{mapping, string};
use super::twin;
use super::yaml::{Entry, Node};
use crate::model::{ConfigurationContent, ConfigurationSpec, JsonMap, ObjectKind};

pub(super) const CONFIGURATION_KEYS: &[&str] = &[
    "target", "priority", "labels", "device", "module", "metrics",
];
pub(super) const DEVICE_CONTENT_KEYS: &[&str] = &["desired"];
pub(super) const MODULE_CONTENT_KEYS: &[&str] = &["name", "desired"];
const CONTENT_FORMS: &str =
    "`device: {desired: {...}}` or `module: {name: MODULE, desired: {...}}`";

/// Converts `NAME: {...}` of the `configurations` block; the spec is `None` when anything in it is
/// invalid (reported).
pub(super) fn configuration(e: &Entry, sink: &mut Sink) -> Declared<ConfigurationSpec> {
    let before = sink.diagnostics.len();
    let mut declared = Declared {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        spec: None,
    };
    objects::name(e, ObjectKind::Configuration, sink);
    let what = format!("configuration `{}`", twin::shorten(&e.key));
    let Some(fields) = mapping(&e.value, &what, CONFIGURATION_KEYS, sink) else {
        return declared;
    };
    let field = |key: &str| fields.iter().find(|f| f.key == key);
    let content = match (field("device"), field("module")) {
        (Some(d), None) => device(&d.value, sink),
        (None, Some(m)) => module(&m.value, sink),
        (Some(d), Some(m)) => {
            let later = if m.key_loc > d.key_loc { m } else { d };
            sink.error(
                &later.key_loc,
                format!(
                    "keep one of `device` and `module` in {what}: a configuration writes device twins or module twins, not both"
                ),
            );
            None
        }
        (None, None) => {
            sink.error(
                &e.key_loc,
                format!("add what {what} writes: {CONTENT_FORMS}"),
            );
            None
        }
    };
    // A module configuration's target has the module form even when its content is invalid
    // (reported), so that every problem of the target is reported at once.
    let targets = match (&content, field("module"), field("device")) {
        (Some(ConfigurationContent::Module { module, .. }), _, _) => Targets::Module(Some(module)),
        (None, Some(_), None) => Targets::Module(None),
        _ => Targets::Devices,
    };
    let target = match field("target") {
        Some(t) => objects::target(&t.value, targets, sink),
        None => {
            let example = match targets {
                Targets::Devices => "\"tags.site = 'berlin'\"".to_string(),
                Targets::Module(name) => format!("\"{}\"", objects::module_example(name)),
            };
            sink.error(
                &e.key_loc,
                format!("add `target` to {what}: IoT Hub's target condition, e.g. {example}"),
            );
            None
        }
    };
    let priority = field("priority").map_or(0, |f| objects::priority(&f.value, sink));
    let labels = field("labels").map_or_else(BTreeMap::new, |f| objects::labels(&f.value, sink));
    let metrics = field("metrics").map_or_else(BTreeMap::new, |f| objects::metrics(&f.value, sink));
    if sink.diagnostics.len() != before {
        return declared;
    }
    if let (Some(target), Some(content)) = (target, content) {
        declared.spec = Some(ConfigurationSpec {
            name: e.key.clone(),
            target,
            priority,
            labels,
            content,
            metrics,
            location: e.key_loc.clone(),
        });
    }
    declared
}

/// `device: {desired: {...}}`: desired properties of the targeted device twins.
fn device(v: &Node, sink: &mut Sink) -> Option<ConfigurationContent> {
    let fields = mapping(v, "`device`", DEVICE_CONTENT_KEYS, sink)?;
    let desired = desired(v, fields, "device", sink)?;
    Some(ConfigurationContent::Device { desired })
}

/// `module: {name: MODULE, desired: {...}}`: desired properties of the targeted twins of a module.
fn module(v: &Node, sink: &mut Sink) -> Option<ConfigurationContent> {
    let fields = mapping(v, "`module`", MODULE_CONTENT_KEYS, sink)?;
    let name = match fields.iter().find(|f| f.key == "name") {
        None => {
            sink.error(
                &v.loc,
                "add `name` to `module`: the module ID whose twins the configuration writes"
                    .to_string(),
            );
            None
        }
        Some(f) => module_name(&f.value, sink),
    };
    let desired = desired(v, fields, "module", sink);
    Some(ConfigurationContent::Module {
        module: name?,
        desired: desired?,
    })
}

fn module_name(v: &Node, sink: &mut Sink) -> Option<String> {
    let name = string(v, "`module.name`", sink)?;
    if name.starts_with('$') {
        sink.error(
            &v.loc,
            format!(
                "name a custom module in `module.name`: `{}` is a module of the IoT Edge runtime, which deployments configure",
                twin::shorten(name)
            ),
        );
        return None;
    }
    if let Some(problem) = super::range::id_problem(name, "module") {
        sink.error(&v.loc, problem);
        return None;
    }
    Some(name.to_string())
}

/// The `desired` of `device` or `module`: required, not empty, within the twin rules and the size of
/// a twin's desired properties.
fn desired(parent: &Node, fields: &[Entry], what: &str, sink: &mut Sink) -> Option<JsonMap> {
    let Some(f) = fields.iter().find(|f| f.key == "desired") else {
        sink.error(
            &parent.loc,
            format!("add `desired` to `{what}`: the desired properties the configuration writes"),
        );
        return None;
    };
    objects::desired(&f.value, &format!("{what}.desired"), sink)
}
