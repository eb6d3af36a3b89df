//! Manifest documents as written: turns each located YAML document into templates, device declarations
//! and the hub objects it declares (whose blocks `configuration` and `deployment` read).
//!
//! Owns the shape of a document (known keys, field types) and every rule that one node can decide alone:
//! status, statusReason, auth and thumbprints, ignore/sensitive paths, module IDs, and the twin rules of
//! written values. Cross-document rules (templates, duplicates, counts, sizes) belong to later stages.

use super::Sink;
use super::objects::Declared;
use super::range::{self, Pattern};
use super::twin::{self, Scope};
use super::yaml::{Entry, Kind, Node};
use crate::model::{
    AuthSpec, ConfigurationSpec, DeploymentSpec, DeviceStatus, Location, PropertyPath, RolloutSpec,
    Section,
};

/// Longest `statusReason`.
pub(super) const MAX_STATUS_REASON_CHARS: usize = 128;
use crate::model::MAX_OWNER_CHARS;

pub(super) const DOCUMENT_KEYS: &[&str] = &[
    "owner",
    "rollout",
    "templates",
    "devices",
    "configurations",
    "deployments",
];
pub(super) const TEMPLATE_KEYS: &[&str] = &[
    "extends",
    "status",
    "statusReason",
    "auth",
    "edge",
    "parent",
    "tags",
    "desired",
    "ignore",
    "sensitive",
    "modules",
];
pub(super) const DEVICE_KEYS: &[&str] = &[
    "templates",
    "status",
    "statusReason",
    "auth",
    "edge",
    "parent",
    "tags",
    "desired",
    "ignore",
    "sensitive",
    "modules",
];
pub(super) const MODULE_KEYS: &[&str] = &[
    "managedBy",
    "auth",
    "tags",
    "desired",
    "ignore",
    "sensitive",
];

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Located<T> {
    pub value: T,
    pub loc: Location,
}

/// A field of a layer: `None` when absent (inherit), `Some(None)` when `null` (back to the default).
pub(super) type Field<T> = Option<Option<T>>;

/// The twin part of a layer, as written.
#[derive(Debug, Clone, Default)]
pub(super) struct TwinLayer {
    pub tags: Option<Node>,
    pub desired: Option<Node>,
    pub ignore: Vec<PropertyPath>,
    pub sensitive: Vec<PropertyPath>,
}

/// One module in one layer; `None` fields inherit.
#[derive(Debug, Clone)]
pub(super) struct ModuleLayer {
    pub id: String,
    pub loc: Location,
    /// `modules: {m: null}` removes a module an earlier layer added.
    pub removed: bool,
    pub managed_by: Field<String>,
    pub auth: Field<AuthSpec>,
    pub twin: TwinLayer,
}

/// The device fields a template or a device sets.
#[derive(Debug, Clone, Default)]
pub(super) struct Layer {
    pub status: Field<DeviceStatus>,
    pub status_reason: Field<String>,
    pub auth: Field<AuthSpec>,
    pub edge: Field<bool>,
    pub parent: Field<Located<String>>,
    pub twin: TwinLayer,
    /// `Some(None)` for `modules: null`, which drops every module inherited so far.
    pub modules: Field<Vec<ModuleLayer>>,
}

#[derive(Debug, Clone)]
pub(super) struct Template {
    pub name: String,
    pub loc: Location,
    pub extends: Vec<Located<String>>,
    pub layer: Layer,
}

#[derive(Debug, Clone)]
pub(super) struct Device {
    /// The ID as written (maybe a range pattern).
    pub written: String,
    /// `None` when the ID was invalid (already reported).
    pub pattern: Option<Pattern>,
    pub loc: Location,
    pub templates: Vec<Located<String>>,
    pub layer: Layer,
}

/// One manifest document.
#[derive(Debug, Clone, Default)]
pub(super) struct Document {
    pub owner: Option<Located<String>>,
    /// Where `rollout` was written, and the block when it is valid.
    pub rollout: Option<Located<Option<RolloutSpec>>>,
    pub templates: Vec<Template>,
    pub devices: Vec<Device>,
    pub configurations: Vec<Declared<ConfigurationSpec>>,
    pub deployments: Vec<Declared<DeploymentSpec>>,
}

/// Converts one YAML document.
pub(super) fn document(root: &Node, sink: &mut Sink) -> Document {
    let mut doc = Document::default();
    if matches!(root.kind, Kind::Null) {
        return doc;
    }
    let Some(entries) = mapping(root, "a manifest document", DOCUMENT_KEYS, sink) else {
        return doc;
    };
    for e in entries {
        match e.key.as_str() {
            "owner" => doc.owner = owner(&e.value, sink),
            "rollout" => {
                doc.rollout = Some(Located {
                    value: super::rollout::rollout(e, sink),
                    loc: e.key_loc.clone(),
                });
            }
            "templates" => {
                for t in mapping_entries(&e.value, "`templates`", sink) {
                    doc.templates.push(template(t, sink));
                }
            }
            "devices" => {
                for d in mapping_entries(&e.value, "`devices`", sink) {
                    doc.devices.push(device(d, sink));
                }
            }
            "configurations" => {
                for c in mapping_entries(&e.value, "`configurations`", sink) {
                    doc.configurations
                        .push(super::configuration::configuration(c, sink));
                }
            }
            "deployments" => {
                for d in mapping_entries(&e.value, "`deployments`", sink) {
                    doc.deployments.push(super::deployment::deployment(d, sink));
                }
            }
            _ => {}
        }
    }
    doc
}

fn owner(node: &Node, sink: &mut Sink) -> Option<Located<String>> {
    let name = string(node, "`owner`", sink)?;
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let len = name.chars().count();
    if !ok_chars || len == 0 || len > MAX_OWNER_CHARS {
        sink.error(
            &node.loc,
            format!(
                "owner `{}` is invalid; an owner is 1..{MAX_OWNER_CHARS} ASCII letters, digits, `-`, `_` or `.`",
                twin::shorten(name)
            ),
        );
        return None;
    }
    Some(Located {
        value: name.to_string(),
        loc: node.loc.clone(),
    })
}

fn template(e: &Entry, sink: &mut Sink) -> Template {
    let what = format!("template `{}`", twin::shorten(&e.key));
    if e.key.is_empty() {
        sink.error(&e.key_loc, "template names must not be empty".to_string());
    }
    let mut t = Template {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        extends: Vec::new(),
        layer: Layer::default(),
    };
    if matches!(e.value.kind, Kind::Null) {
        return t;
    }
    let Some(fields) = mapping(&e.value, &what, TEMPLATE_KEYS, sink) else {
        return t;
    };
    t.extends = names(fields, "extends", sink);
    t.layer = layer(fields, sink);
    t
}

fn device(e: &Entry, sink: &mut Sink) -> Device {
    let what = format!("device `{}`", twin::shorten(&e.key));
    let pattern = match Pattern::parse(&e.key) {
        Ok(p) => Some(p),
        Err(problem) => {
            sink.error(&e.key_loc, problem);
            None
        }
    };
    let mut d = Device {
        written: e.key.clone(),
        pattern,
        loc: e.key_loc.clone(),
        templates: Vec::new(),
        layer: Layer::default(),
    };
    if matches!(e.value.kind, Kind::Null) {
        return d;
    }
    let Some(fields) = mapping(&e.value, &what, DEVICE_KEYS, sink) else {
        return d;
    };
    d.templates = names(fields, "templates", sink);
    d.layer = layer(fields, sink);
    d
}

/// The template names of `extends` or `templates`.
fn names(fields: &[Entry], key: &str, sink: &mut Sink) -> Vec<Located<String>> {
    let Some(e) = fields.iter().find(|e| e.key == key) else {
        return Vec::new();
    };
    let what = format!("`{key}`");
    let items = match &e.value.kind {
        Kind::Null => return Vec::new(),
        Kind::Seq(items) => items,
        other => {
            sink.error(
                &e.value.loc,
                format!(
                    "{what} must be a sequence of template names, found {}",
                    other.describe()
                ),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .filter_map(|n| {
            string(n, "a template name", sink).map(|s| Located {
                value: s.to_string(),
                loc: n.loc.clone(),
            })
        })
        .collect()
}

fn layer(fields: &[Entry], sink: &mut Sink) -> Layer {
    let mut layer = Layer::default();
    for e in fields {
        let v = &e.value;
        let null = matches!(v.kind, Kind::Null);
        match e.key.as_str() {
            "status" => layer.status = nullable(v, |v| status(v, sink)),
            "statusReason" => layer.status_reason = nullable(v, |v| status_reason(v, sink)),
            "auth" => layer.auth = nullable(v, |v| auth(v, sink)),
            "edge" => {
                layer.edge = nullable(v, |v| match v.kind {
                    Kind::Bool(b) => Some(b),
                    _ => type_error(v, "`edge`", "a boolean (true or false)", sink),
                });
            }
            "parent" => {
                layer.parent = nullable(v, |v| {
                    let id = string(v, "`parent`", sink)?;
                    if let Some(problem) = range::id_problem(id, "device") {
                        sink.error(&v.loc, format!("`parent` is invalid: {problem}"));
                        return None;
                    }
                    Some(Located {
                        value: id.to_string(),
                        loc: v.loc.clone(),
                    })
                });
            }
            "tags" => layer.twin.tags = section(v, Section::Tags, Scope::Device, sink),
            "desired" => layer.twin.desired = section(v, Section::Desired, Scope::Device, sink),
            "ignore" => layer.twin.ignore = paths(v, "`ignore`", sink),
            "sensitive" => layer.twin.sensitive = paths(v, "`sensitive`", sink),
            "modules" if null => layer.modules = Some(None),
            "modules" => {
                let modules = mapping_entries(v, "`modules`", sink)
                    .map(|m| module(m, sink))
                    .collect();
                layer.modules = Some(Some(modules));
            }
            _ => {}
        }
    }
    layer
}

fn module(e: &Entry, sink: &mut Sink) -> ModuleLayer {
    if let Some(problem) = range::id_problem(&e.key, "module") {
        sink.error(&e.key_loc, problem);
    }
    let mut m = ModuleLayer {
        id: e.key.clone(),
        loc: e.key_loc.clone(),
        removed: matches!(e.value.kind, Kind::Null),
        managed_by: None,
        auth: None,
        twin: TwinLayer::default(),
    };
    if m.removed {
        return m;
    }
    let what = format!("module `{}`", twin::shorten(&e.key));
    let Some(fields) = mapping(&e.value, &what, MODULE_KEYS, sink) else {
        return m;
    };
    for f in fields {
        let v = &f.value;
        match f.key.as_str() {
            "managedBy" => {
                m.managed_by = nullable(v, |v| string(v, "`managedBy`", sink).map(str::to_string))
            }
            "auth" => m.auth = nullable(v, |v| auth(v, sink)),
            "tags" => m.twin.tags = section(v, Section::Tags, Scope::Module, sink),
            "desired" => m.twin.desired = section(v, Section::Desired, Scope::Module, sink),
            "ignore" => m.twin.ignore = paths(v, "`ignore`", sink),
            "sensitive" => m.twin.sensitive = paths(v, "`sensitive`", sink),
            _ => {}
        }
    }
    m
}

fn nullable<T>(v: &Node, parse: impl FnOnce(&Node) -> Option<T>) -> Field<T> {
    if matches!(v.kind, Kind::Null) {
        return Some(None);
    }
    // An invalid value (already reported) leaves the field as if absent.
    parse(v).map(Some)
}

fn status(v: &Node, sink: &mut Sink) -> Option<DeviceStatus> {
    let text = string(v, "`status`", sink)?;
    match STATUSES.iter().find(|s| s.as_str() == text) {
        Some(s) => Some(*s),
        None => {
            sink.error(
                &v.loc,
                format!(
                    "status `{}` is invalid; allowed: {}",
                    twin::shorten(text),
                    STATUSES.map(DeviceStatus::as_str).join(", ")
                ),
            );
            None
        }
    }
}

fn status_reason(v: &Node, sink: &mut Sink) -> Option<String> {
    let reason = string(v, "`statusReason`", sink)?;
    let chars = reason.chars().count();
    if chars > MAX_STATUS_REASON_CHARS {
        sink.error(
            &v.loc,
            format!("statusReason is {chars} characters long; IoT Hub allows at most {MAX_STATUS_REASON_CHARS}"),
        );
        return None;
    }
    Some(reason.to_string())
}

/// The values `status` takes.
pub(super) const STATUSES: [DeviceStatus; 2] = [DeviceStatus::Enabled, DeviceStatus::Disabled];
/// The one-word forms of `auth`.
pub(super) const AUTH_WORDS: &[&str] = &["sas", "ca"];
/// The keys of `auth` written as a mapping, and of `auth.x509`.
pub(super) const AUTH_KEYS: &[&str] = &["x509"];
pub(super) const X509_KEYS: &[&str] = &["primary", "secondary"];
pub(super) const AUTH_FORMS: &str =
    "`sas`, `ca` or `{x509: {primary: THUMBPRINT, secondary: THUMBPRINT}}`";

fn auth(v: &Node, sink: &mut Sink) -> Option<AuthSpec> {
    match &v.kind {
        Kind::Str(s) if s == AUTH_WORDS[0] => Some(AuthSpec::Sas),
        Kind::Str(s) if s == AUTH_WORDS[1] => Some(AuthSpec::Ca),
        Kind::Str(s) => {
            sink.error(
                &v.loc,
                format!(
                    "auth `{}` is invalid; allowed: {AUTH_FORMS}",
                    twin::shorten(s)
                ),
            );
            None
        }
        Kind::Map(entries) => {
            let mut x509 = None;
            for e in entries {
                if AUTH_KEYS.contains(&e.key.as_str()) {
                    x509 = Some(&e.value);
                } else {
                    sink.error(
                        &e.key_loc,
                        format!(
                            "unknown key `{}` in `auth`; allowed: {AUTH_FORMS}",
                            twin::shorten(&e.key)
                        ),
                    );
                }
            }
            let Some(x509) = x509 else {
                if entries.is_empty() {
                    sink.error(
                        &v.loc,
                        format!("`auth` must be {AUTH_FORMS}, found an empty mapping"),
                    );
                }
                return None;
            };
            let fields = mapping(x509, "`auth.x509`", X509_KEYS, sink)?;
            let mut primary = None;
            let mut secondary = None;
            for f in fields {
                match f.key.as_str() {
                    "primary" => primary = thumbprint(&f.value, sink),
                    "secondary" if matches!(f.value.kind, Kind::Null) => {}
                    "secondary" => secondary = thumbprint(&f.value, sink),
                    _ => {}
                }
            }
            if !fields.iter().any(|f| f.key == "primary") {
                sink.error(
                    &x509.loc,
                    "`auth.x509` needs a `primary` thumbprint".to_string(),
                );
            }
            Some(AuthSpec::X509 {
                primary: primary?,
                secondary,
            })
        }
        _ => type_error(v, "`auth`", AUTH_FORMS, sink),
    }
}

fn thumbprint(v: &Node, sink: &mut Sink) -> Option<String> {
    let t = string(v, "an x509 thumbprint", sink)?;
    if !matches!(t.len(), 40 | 64) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        sink.error(
            &v.loc,
            format!(
                "x509 thumbprint `{}` is invalid; a thumbprint is 40 hex digits (SHA-1) or 64 hex digits (SHA-256)",
                twin::shorten(t)
            ),
        );
        return None;
    }
    Some(t.to_string())
}

fn section(v: &Node, which: Section, scope: Scope, sink: &mut Sink) -> Option<Node> {
    match v.kind {
        Kind::Null => Some(v.clone()),
        Kind::Map(_) => {
            twin::check_section(which, v, scope, sink);
            Some(v.clone())
        }
        _ => {
            let what = format!("`{}`", which.as_str());
            type_error(v, &what, "a mapping", sink)
        }
    }
}

fn paths(v: &Node, what: &str, sink: &mut Sink) -> Vec<PropertyPath> {
    let items = match &v.kind {
        Kind::Null => return Vec::new(),
        Kind::Seq(items) => items,
        _ => {
            type_error::<()>(
                v,
                what,
                "a sequence of paths such as `desired.calibration`",
                sink,
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .filter_map(|n| {
            let text = string(n, "a path", sink)?;
            match path(text) {
                Ok(p) => Some(p),
                Err(problem) => {
                    sink.error(&n.loc, problem);
                    None
                }
            }
        })
        .collect()
}

/// Parses `tags.K[.K...]` or `desired.K[.K...]` ([`PropertyPath::parse`]), worded for a manifest author.
pub(super) fn path(text: &str) -> Result<PropertyPath, String> {
    PropertyPath::parse(text).map_err(|_| {
        match text
            .split('.')
            .skip(1)
            .filter(|k| !k.is_empty())
            .find_map(twin::key_problem)
        {
            Some(problem) if text.starts_with("tags.") || text.starts_with("desired.") => {
                format!("path `{}` is malformed: {problem}", twin::shorten(text))
            }
            _ => format!(
                "path `{}` is malformed; paths are `tags.KEY[.KEY...]` or `desired.KEY[.KEY...]`",
                twin::shorten(text)
            ),
        }
    })
}

/// A mapping's entries, reporting unknown keys; `None` (reported) when the node is no mapping.
pub(super) fn mapping<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&str],
    sink: &mut Sink,
) -> Option<&'a [Entry]> {
    let Kind::Map(entries) = &node.kind else {
        return type_error(node, what, "a mapping", sink);
    };
    for e in entries
        .iter()
        .filter(|e| !allowed.contains(&e.key.as_str()))
    {
        sink.error(
            &e.key_loc,
            format!(
                "unknown key `{}` in {what}; allowed keys: {}",
                twin::shorten(&e.key),
                allowed.join(", ")
            ),
        );
    }
    Some(entries)
}

/// The entries of a name -> value mapping such as `devices` (`null` counts as empty).
pub(super) fn mapping_entries<'a>(
    node: &'a Node,
    what: &str,
    sink: &mut Sink,
) -> std::slice::Iter<'a, Entry> {
    match &node.kind {
        Kind::Map(entries) => entries.iter(),
        Kind::Null => [].iter(),
        _ => {
            type_error::<()>(node, what, "a mapping", sink);
            [].iter()
        }
    }
}

pub(super) fn string<'a>(node: &'a Node, what: &str, sink: &mut Sink) -> Option<&'a str> {
    match &node.kind {
        Kind::Str(s) => Some(s),
        _ => type_error(node, what, "a string", sink),
    }
}

pub(super) fn type_error<T>(node: &Node, what: &str, expected: &str, sink: &mut Sink) -> Option<T> {
    sink.error(
        &node.loc,
        format!("{what} must be {expected}, found {}", node.kind.describe()),
    );
    None
}
