//! `export`: manifests written from a live hub (to adopt an existing fleet). Devices, modules,
//! identity fields, tags and desired properties as they are; the owner from the ledgers where
//! present; never any key. An export into a directory whose manifests mark values sensitive,
//! ignored or taken from `${env:NAME}` keeps those markers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::connect::Connection;
use crate::hub::read;
use twinops_core::model::{
    AuthenticationType, DEFAULT_OWNER, DeviceStatus, EnvRef, JsonMap, LEDGER_TAG, ObservedAuth,
    ObservedDevice, ObservedTwin, Section, Targets, TwinAddress, TwinSpec,
};
use twinops_core::plan::{ledger, scope_device};

/// What to export.
pub(crate) struct Request<'a> {
    /// A device query of the operator's (`--query`); every device without one.
    pub query: Option<&'a str>,
    pub targets: &'a [String],
    /// The directory written to, whose manifests' markers are kept.
    pub into: Option<&'a Path>,
    pub concurrency: usize,
}

/// What export found that the operator should hear about.
pub(crate) enum Note {
    /// The manifests already in the directory do not load: their markers are not kept.
    MarkersNotKept { dir: PathBuf, problems: usize },
}

/// The manifests of the hub, one document per owner.
pub(crate) struct Exported {
    pub groups: BTreeMap<String, Value>,
    pub notes: Vec<Note>,
}

pub(crate) async fn export(conn: &Connection, req: Request<'_>) -> anyhow::Result<Exported> {
    let plan = read::custom(req.query).map_err(anyhow::Error::msg)?;
    let mut read = read::collect(&conn.hub, &plan, req.concurrency)
        .await
        .context("querying device and module twins")?;
    let targets = Targets::new(req.targets);
    read.devices.retain(|id, _| targets.touches(id));
    for (id, d) in read.devices.iter_mut() {
        if !targets.device(id) {
            d.modules.retain(|mid, _| targets.module(id, mid));
        }
    }
    if let Some(pattern) = targets.unmatched(read.identities()) {
        bail!("--target `{pattern}` matches no identity in the hub");
    }
    let (markers, notes) = existing_markers(req.into);
    let owners: BTreeSet<String> = read
        .devices
        .values()
        .filter_map(|d| owner_of(&d.twin.tags))
        .collect();
    let fallback = match (owners.len(), owners.iter().next()) {
        (1, Some(o)) => o.clone(),
        _ => DEFAULT_OWNER.to_string(),
    };
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (id, d) in &read.devices {
        let owner = owner_of(&d.twin.tags).unwrap_or_else(|| fallback.clone());
        groups
            .entry(owner)
            .or_default()
            .insert(id.to_string(), device(d, &markers));
    }
    Ok(Exported {
        groups: groups
            .into_iter()
            .map(|(owner, devs)| {
                let doc = json!({"owner": owner, "devices": Value::Object(devs)});
                (owner, doc)
            })
            .collect(),
        notes,
    })
}

/// One device as a manifest writes it, with its modules (system modules left out).
fn device(d: &ObservedDevice, markers: &BTreeMap<TwinAddress, Markers>) -> Value {
    let mut dev = Map::new();
    if d.status == DeviceStatus::Disabled {
        dev.insert("status".into(), json!("disabled"));
    }
    if let Some(r) = &d.status_reason {
        dev.insert("statusReason".into(), json!(r));
    }
    if let Some(a) = auth(&d.auth) {
        dev.insert("auth".into(), a);
    }
    if d.edge {
        dev.insert("edge".into(), json!(true));
    }
    if let Some(p) = d.parent_scopes.first().and_then(|s| scope_device(s)) {
        dev.insert("parent".into(), json!(p));
    }
    twin_fields(&mut dev, &d.twin);
    mark(&mut dev, markers.get(&TwinAddress::device(d.id.clone())));
    let mut modules = Map::new();
    for (mid, m) in d.modules.iter().filter(|(mid, _)| !mid.is_system()) {
        let mut mm = Map::new();
        if let Some(a) = auth(&m.auth) {
            mm.insert("auth".into(), a);
        }
        twin_fields(&mut mm, &m.twin);
        let address = TwinAddress::module(d.id.clone(), mid.clone());
        mark(&mut mm, markers.get(&address));
        modules.insert(mid.to_string(), Value::Object(mm));
    }
    if !modules.is_empty() {
        dev.insert("modules".into(), Value::Object(modules));
    }
    Value::Object(dev)
}

fn auth(a: &ObservedAuth) -> Option<Value> {
    match a.kind {
        AuthenticationType::SelfSigned => Some(json!({"x509": {
            "primary": a.primary_thumbprint,
            "secondary": a.secondary_thumbprint,
        }})),
        AuthenticationType::CertificateAuthority => Some(json!("ca")),
        AuthenticationType::Sas | AuthenticationType::None => None,
    }
}

fn owner_of(tags: &JsonMap) -> Option<String> {
    match ledger::read(tags) {
        ledger::Found::Ledger(l) => l.owners.into_keys().next(),
        _ => None,
    }
}

fn twin_fields(out: &mut Map<String, Value>, t: &ObservedTwin) {
    let mut tags = t.tags.clone();
    tags.remove(LEDGER_TAG);
    if !tags.is_empty() {
        out.insert("tags".into(), escaped(Value::Object(tags)));
    }
    if !t.desired.is_empty() {
        out.insert("desired".into(), escaped(Value::Object(t.desired.clone())));
    }
}

/// A hub value as manifests write it: `${` in a string becomes `$${`, so that a value which only
/// looks like `${device}` or `${env:NAME}` loads back as the same text, not as a substitution.
fn escaped(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("${") => Value::String(s.replace("${", "$${")),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, escaped(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(escaped).collect()),
        other => other,
    }
}

/// What the manifests already in a directory declare for one twin beyond its values.
#[derive(Default)]
struct Markers {
    ignore: Vec<String>,
    /// Without the paths of `refs`, which a reference makes sensitive by itself.
    sensitive: Vec<String>,
    /// `${env:NAME}` references: exported as the reference, never as the hub's clear value.
    refs: Vec<EnvRef>,
}

impl Markers {
    fn of(t: &TwinSpec) -> Markers {
        Markers {
            ignore: t.ignore.iter().map(ToString::to_string).collect(),
            sensitive: t
                .sensitive
                .iter()
                .filter(|p| !t.refs.iter().any(|r| r.path == **p))
                .map(ToString::to_string)
                .collect(),
            refs: t.refs.clone(),
        }
    }
}

/// Puts a twin's markers into its exported manifest: references where the hub holds a value
/// (the reference stands for it), `ignore` and `sensitive`.
fn mark(out: &mut Map<String, Value>, markers: Option<&Markers>) {
    let Some(m) = markers else { return };
    for r in &m.refs {
        let section = match r.path.section {
            Section::Tags => "tags",
            Section::Desired => "desired",
        };
        if let Some(Value::Object(values)) = out.get_mut(section)
            && twinops_core::plan::patch::get(values, &r.path.keys).is_some()
        {
            twinops_core::plan::patch::set(values, &r.path.keys, Some(json!(r.written())));
        }
    }
    if !m.ignore.is_empty() {
        out.insert("ignore".into(), json!(m.ignore));
    }
    if !m.sensitive.is_empty() {
        out.insert("sensitive".into(), json!(m.sensitive));
    }
}

/// The `ignore` and `sensitive` paths and `${env:NAME}` references the manifests already in `dir`
/// declare, by twin: an export into a directory that has them keeps them, so re-exporting does
/// not drop what the operator marked, nor write a secret that the manifests take from the
/// environment into a file. Manifests that do not load are left alone (with a note).
fn existing_markers(dir: Option<&Path>) -> (BTreeMap<TwinAddress, Markers>, Vec<Note>) {
    let mut out = BTreeMap::new();
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        return (out, Vec::new());
    };
    let Ok(sources) = twinops_core::manifest::read(&[dir.to_path_buf()]) else {
        return (out, Vec::new());
    };
    if sources.is_empty() {
        return (out, Vec::new());
    }
    // Only the markers are read, so `${env:NAME}` values need not be set: each stands in as a
    // placeholder (its path is sensitive either way), and the values are dropped with the fleet.
    let stand_in = |_: &str| Some("(not read)".to_string());
    let fleet = match twinops_core::manifest::load(&sources, &stand_in) {
        Ok(f) => f,
        Err(e) => {
            let note = Note::MarkersNotKept {
                dir: dir.to_path_buf(),
                problems: e.0.len(),
            };
            return (out, vec![note]);
        }
    };
    for d in &fleet.devices {
        out.insert(TwinAddress::device(d.id.clone()), Markers::of(&d.twin));
        for m in &d.modules {
            let a = TwinAddress::module(d.id.clone(), m.id.clone());
            out.insert(a, Markers::of(&m.twin));
        }
    }
    (out, Vec::new())
}

/// A document as the YAML manifest export writes.
pub(crate) fn to_yaml(doc: &Value) -> anyhow::Result<String> {
    let body = serde_saphyr::to_string(doc).context("writing YAML")?;
    Ok(format!(
        "# exported by twinops from the hub; review before committing\n{body}"
    ))
}

/// Writes each owner's document to `DIR/fleet.yaml` (one owner) or `DIR/OWNER/fleet.yaml`; the
/// files written.
pub(crate) fn write(dir: &Path, groups: &BTreeMap<String, Value>) -> anyhow::Result<Vec<PathBuf>> {
    let single = groups.len() == 1;
    let mut written = Vec::new();
    for (owner, doc) in groups {
        let target = if single {
            dir.to_path_buf()
        } else {
            dir.join(owner)
        };
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating `{}`", target.display()))?;
        let path = target.join("fleet.yaml");
        std::fs::write(&path, to_yaml(doc)?)
            .with_context(|| format!("writing `{}`", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
