//! `twinops export`: writes manifests from a live hub (to adopt an existing fleet). Devices, modules, tags
//! and desired properties as they are; the owner from the ledgers where present; never any key.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{ExitStatus, connect};
use crate::cli::{ExportArgs, Format};
use crate::hub::read;
use crate::output;
use twinops_core::model::{AuthenticationType, DEFAULT_OWNER, LEDGER_TAG, ObservedAuth, Targets};
use twinops_core::plan::{ledger, scope_device};

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

fn owner_of(tags: &twinops_core::model::JsonMap) -> Option<String> {
    match ledger::read(tags) {
        ledger::Found::Ledger(l) => Some(l.owner),
        _ => None,
    }
}

fn twin_fields(out: &mut serde_json::Map<String, Value>, t: &twinops_core::model::ObservedTwin) {
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

pub async fn run(args: &ExportArgs) -> anyhow::Result<ExitStatus> {
    let conn = connect::connect(&args.hub, None).await?;
    let result = collect(&conn, args).await;
    conn.close().await;
    let groups = result?;
    match &args.out {
        None => {
            if groups.len() > 1 {
                bail!(
                    "the hub holds twins of {} owners ({}); pass --out DIR to write one manifest set per owner",
                    groups.len(),
                    groups.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for doc in groups.values() {
                match args.output.format {
                    Format::Json => {
                        let mut buf = Vec::new();
                        twinops_core::render::json(&mut buf, doc)?;
                        output::data(&String::from_utf8_lossy(&buf));
                    }
                    Format::Text | Format::Markdown => output::data(&to_yaml(doc)?),
                }
            }
        }
        Some(dir) => {
            let single = groups.len() == 1;
            for (owner, doc) in &groups {
                let target = if single { dir.clone() } else { dir.join(owner) };
                write(&target, doc)?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn to_yaml(doc: &Value) -> anyhow::Result<String> {
    let body = serde_saphyr::to_string(doc).context("writing YAML")?;
    Ok(format!(
        "# exported by twinops from the hub; review before committing\n{body}"
    ))
}

fn write(dir: &Path, doc: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, to_yaml(doc)?)
        .with_context(|| format!("writing `{}`", path.display()))?;
    output::talk(&format!("wrote {}", path.display()));
    Ok(())
}

/// What the manifests already in a directory declare for one twin beyond its values.
#[derive(Default)]
struct Markers {
    ignore: Vec<String>,
    /// Without the paths of `refs`, which a reference makes sensitive by itself.
    sensitive: Vec<String>,
    /// `${env:NAME}` references: exported as the reference, never as the hub's clear value.
    refs: Vec<twinops_core::model::EnvRef>,
}

/// The `ignore` and `sensitive` paths and `${env:NAME}` references the manifests already in `dir`
/// declare, by `device` and `device/module`: an export into a directory that has them keeps them,
/// so re-exporting does not drop what the operator marked, nor write a secret that the manifests
/// take from the environment into a file. Manifests that do not load are left alone (with a
/// warning).
fn existing_markers(dir: Option<&Path>) -> BTreeMap<String, Markers> {
    let mut out = BTreeMap::new();
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        return out;
    };
    let Ok(sources) = twinops_core::manifest::read(&[dir.to_path_buf()]) else {
        return out;
    };
    if sources.is_empty() {
        return out;
    }
    // Only the markers are read, so `${env:NAME}` values need not be set: each stands in as a
    // placeholder (its path is sensitive either way), and the values are dropped with the fleet.
    let stand_in = |_: &str| Some("(not read)".to_string());
    let fleet = match twinops_core::manifest::load(&sources, &stand_in) {
        Ok(f) => f,
        Err(e) => {
            output::talk(&format!(
                "warning: the manifests in `{}` do not load ({} problem(s)); their ignore/sensitive markers are not kept",
                dir.display(),
                e.0.len()
            ));
            return out;
        }
    };
    let markers = |t: &twinops_core::model::TwinSpec| Markers {
        ignore: t.ignore.iter().map(ToString::to_string).collect(),
        sensitive: t
            .sensitive
            .iter()
            .filter(|p| !t.refs.iter().any(|r| r.path == **p))
            .map(ToString::to_string)
            .collect(),
        refs: t.refs.clone(),
    };
    for d in &fleet.devices {
        out.insert(d.id.to_string(), markers(&d.twin));
        for m in &d.modules {
            out.insert(
                twinops_core::model::address(&d.id, Some(&m.id)),
                markers(&m.twin),
            );
        }
    }
    out
}

async fn collect(
    conn: &connect::Connection,
    args: &ExportArgs,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let sql = args
        .query
        .clone()
        .unwrap_or_else(|| "SELECT * FROM devices".to_string());
    if !sql.to_ascii_lowercase().contains("from devices")
        || sql.to_ascii_lowercase().contains("devices.modules")
    {
        bail!("--query must select device twins (`SELECT * FROM devices [WHERE ...]`)");
    }
    let mut read = read::query(&conn.hub, &sql, false)
        .await
        .context("querying device and module twins")?;
    let targets = Targets::new(&args.targets);
    read.devices.retain(|id, _| targets.touches(id));
    for (id, d) in read.devices.iter_mut() {
        if !targets.device(id) {
            d.modules.retain(|mid, _| targets.module(id, mid));
        }
    }
    if let Some(pattern) = targets.unmatched(read.identities()) {
        bail!("--target `{pattern}` matches no identity in the hub");
    }
    let devices = read.devices;
    let owners: std::collections::BTreeSet<String> = devices
        .values()
        .filter_map(|d| owner_of(&d.twin.tags))
        .collect();
    let fallback = if owners.len() == 1 {
        owners.iter().next().cloned().unwrap_or_default()
    } else {
        DEFAULT_OWNER.to_string()
    };
    let markers = existing_markers(args.out.as_deref());
    let mark = |out: &mut serde_json::Map<String, Value>, key: &str| {
        let Some(m) = markers.get(key) else { return };
        for r in &m.refs {
            let section = match r.path.section {
                twinops_core::model::Section::Tags => "tags",
                twinops_core::model::Section::Desired => "desired",
            };
            // Only where the hub holds a value: the reference stands for it.
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
    };
    let mut groups: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (id, d) in &devices {
        let owner = owner_of(&d.twin.tags).unwrap_or_else(|| fallback.clone());
        let mut dev = serde_json::Map::new();
        if d.status == twinops_core::model::DeviceStatus::Disabled {
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
        mark(&mut dev, id.as_str());
        let mut modules = serde_json::Map::new();
        for (mid, m) in &d.modules {
            if mid.is_system() {
                continue;
            }
            let mut mm = serde_json::Map::new();
            if let Some(a) = auth(&m.auth) {
                mm.insert("auth".into(), a);
            }
            twin_fields(&mut mm, &m.twin);
            mark(&mut mm, &twinops_core::model::address(id, Some(mid)));
            modules.insert(mid.to_string(), Value::Object(mm));
        }
        if !modules.is_empty() {
            dev.insert("modules".into(), Value::Object(modules));
        }
        groups
            .entry(owner)
            .or_default()
            .insert(id.to_string(), Value::Object(dev));
    }
    Ok(groups
        .into_iter()
        .map(|(owner, devs)| {
            let doc = json!({"owner": owner, "devices": Value::Object(devs)});
            (owner, doc)
        })
        .collect())
}
