//! Other writers of declared desired keys (SPEC §15): the automatic configurations and IoT Edge
//! deployments applied to a twin that write a desired key its manifest declares.
//!
//! A twin's `configurations` section names the configurations applied to it (for a module twin,
//! its own section names module configurations and its device's names edge deployments); what a
//! configuration writes is in its content, which the operation reads once per configuration ID
//! per run. The differ keeps, per declared twin with applied configurations, those IDs and
//! whether each declared desired key equals the manifest ([`Configured`]); [`writers`] then names
//! the writers. A plan lists them as warnings; drift reports a writer of a key that differs from
//! the manifest as drift, one of a key that equals it as a warning.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    DeviceId, JsonMap, ModuleId, ObservedConfiguration, ObservedTwin, Section, TwinAddress,
    TwinSpec,
};

/// A declared twin that configurations were applied to, as the differ kept it.
#[derive(Debug, Clone, PartialEq)]
pub struct Configured {
    pub address: TwinAddress,
    /// The configurations applied to the twin itself (device or module content).
    pub applied: Vec<String>,
    /// For a module twin, the edge deployments applied to its device (`modulesContent`).
    pub deployments: Vec<String>,
    /// Each declared desired key, and whether the hub holds the manifest's value.
    pub declared: BTreeMap<String, bool>,
}

/// The IDs of the configurations applied to a twin (its `configurations` section says
/// `"status": "Applied"`; a targeted one lost to a higher priority and writes nothing).
pub fn applied(twin: &ObservedTwin) -> Vec<String> {
    twin.configurations
        .iter()
        .filter(|(_, s)| {
            s.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("applied"))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// What the differ keeps of a declared twin: `None` when no configuration was applied to it (nor,
/// for a module twin, to its device) or it declares no desired key. `desired` is the spec's desired
/// section and `applied` is [`applied`] of `seen`, both as the differ already holds them.
pub(super) fn configured(
    address: TwinAddress,
    spec: &TwinSpec,
    desired: &JsonMap,
    seen: &ObservedTwin,
    applied: &[String],
    deployments: &[String],
    key: super::secret::DigestKey,
) -> Option<Configured> {
    let deployments = if address.module.is_some() {
        deployments
    } else {
        &[]
    };
    if applied.is_empty() && deployments.is_empty() {
        return None;
    }
    let want = super::twin::declared_desired_values(spec, desired, key);
    if want.is_empty() {
        return None;
    }
    let have = super::twin::declared_desired(spec, desired, seen, key);
    let declared = want
        .iter()
        .map(|(k, v)| (k.clone(), have.get(k) == Some(v)))
        .collect();
    Some(Configured {
        address,
        applied: applied.to_vec(),
        deployments: deployments.to_vec(),
        declared,
    })
}

/// The configuration IDs whose content the kept twins need.
pub fn configuration_ids(configured: &[Configured]) -> BTreeSet<String> {
    configured
        .iter()
        .flat_map(|c| c.applied.iter().chain(&c.deployments))
        .cloned()
        .collect()
}

/// A declared desired key that a configuration or edge deployment applied to the twin also writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WriterDoc", into = "WriterDoc")]
pub struct Writer {
    pub address: TwinAddress,
    /// `desired.KEY`.
    pub path: String,
    pub configuration: String,
    pub priority: i64,
    /// Whether the hub holds the manifest's value for the key.
    pub matches: bool,
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is also written by configuration `{}` (priority {})",
            self.path, self.configuration, self.priority
        )?;
        if !self.matches {
            f.write_str(", which differs from the manifest")?;
        }
        Ok(())
    }
}

/// A writer as documents hold it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriterDoc {
    device_id: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module_id: Option<ModuleId>,
    path: String,
    configuration: String,
    priority: i64,
    matches: bool,
    /// The words, for readers of the document.
    #[serde(default)]
    detail: String,
}

impl From<Writer> for WriterDoc {
    fn from(w: Writer) -> WriterDoc {
        WriterDoc {
            detail: w.to_string(),
            device_id: w.address.device,
            module_id: w.address.module,
            path: w.path,
            configuration: w.configuration,
            priority: w.priority,
            matches: w.matches,
        }
    }
}

impl From<WriterDoc> for Writer {
    fn from(d: WriterDoc) -> Writer {
        Writer {
            address: TwinAddress {
                device: d.device_id,
                module: d.module_id,
            },
            path: d.path,
            configuration: d.configuration,
            priority: d.priority,
            matches: d.matches,
        }
    }
}

/// The writers of the kept twins' declared desired keys, from the configurations' contents (by
/// ID; one deleted since the twin was read is absent and names nothing). Ordered by twin, key and
/// configuration.
pub fn writers(
    configured: &[Configured],
    configurations: &BTreeMap<String, ObservedConfiguration>,
) -> Vec<Writer> {
    let mut out = Vec::new();
    for c in configured {
        let module = c.address.module_id();
        let own = c.applied.iter().filter_map(|id| {
            let conf = configurations.get(id)?;
            Some((
                conf,
                if module.is_some() {
                    &conf.module_keys
                } else {
                    &conf.device_keys
                },
            ))
        });
        let edge = c.deployments.iter().filter_map(|id| {
            let conf = configurations.get(id)?;
            Some((conf, conf.modules.get(module?)?))
        });
        for (conf, keys) in own.chain(edge) {
            for k in keys {
                if let Some(matches) = c.declared.get(k) {
                    out.push(Writer {
                        address: c.address.clone(),
                        path: format!("{}.{k}", Section::Desired.as_str()),
                        configuration: conf.id.clone(),
                        priority: conf.priority,
                        matches: *matches,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.address, &a.path, &a.configuration).cmp(&(&b.address, &b.path, &b.configuration))
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(id: &str, priority: i64, device: &[&str], module: &[&str]) -> ObservedConfiguration {
        ObservedConfiguration {
            id: id.into(),
            priority,
            device_keys: device.iter().map(|k| k.to_string()).collect(),
            module_keys: module.iter().map(|k| k.to_string()).collect(),
            modules: BTreeMap::new(),
        }
    }

    fn address(s: &str) -> TwinAddress {
        s.parse().unwrap()
    }

    #[test]
    fn a_configuration_writing_a_declared_key_is_named_with_its_priority() {
        let kept = [Configured {
            address: address("d1"),
            applied: vec!["thermostat-v3".into(), "other".into()],
            deployments: Vec::new(),
            declared: [("interval".to_string(), false), ("mode".to_string(), true)].into(),
        }];
        let confs = [
            (
                "thermostat-v3".to_string(),
                conf("thermostat-v3", 10, &["interval", "x"], &[]),
            ),
            (
                "other".to_string(),
                conf("other", 5, &["unrelated"], &["interval"]),
            ),
        ]
        .into();
        let w = writers(&kept, &confs);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].to_string(),
            "desired.interval is also written by configuration `thermostat-v3` (priority 10), which differs from the manifest"
        );
        let doc = serde_json::to_value(&w[0]).unwrap();
        assert_eq!(doc["device_id"], "d1");
        assert_eq!(doc["priority"], 10);
        assert_eq!(doc["matches"], false);
        assert_eq!(serde_json::from_value::<Writer>(doc).unwrap(), w[0]);
    }

    #[test]
    fn a_module_twin_is_written_by_module_content_and_by_its_devices_deployments() {
        let mut edge = conf("edge-v1", 7, &[], &[]);
        edge.modules
            .insert("m".into(), ["route".to_string()].into());
        let kept = [Configured {
            address: address("d1/m"),
            applied: vec!["mods".into()],
            deployments: vec!["edge-v1".into(), "gone".into()],
            declared: [("route".to_string(), true), ("rate".to_string(), true)].into(),
        }];
        let confs = [
            ("mods".to_string(), conf("mods", 1, &["rate"], &["rate"])),
            ("edge-v1".to_string(), edge),
        ]
        .into();
        let w: Vec<String> = writers(&kept, &confs)
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            w,
            [
                "desired.rate is also written by configuration `mods` (priority 1)",
                "desired.route is also written by configuration `edge-v1` (priority 7)",
            ]
        );
    }

    #[test]
    fn only_applied_configurations_count() {
        let t = ObservedTwin {
            configurations: json!({"a": {"status": "Applied"}, "b": {"status": "Targeted"}})
                .as_object()
                .cloned()
                .unwrap(),
            ..ObservedTwin::default()
        };
        assert_eq!(applied(&t), ["a"]);
    }
}
