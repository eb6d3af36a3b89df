//! The JSON Schema (draft 2020-12) of the manifest format, for editors (`twinops schema`).
//!
//! Built from the loader's own key lists, value lists and limits (`raw`, `rollout`, `configuration`,
//! `deployment`, `objects`, `twinops_iothub::ids`, `twin_rules`), so a key the loader learns without the
//! schema fails a test. The schema states the shape
//! (keys, types, enums, ID and key syntax) and never more than the loader: every manifest the loader
//! accepts validates. Rules that need more than one node or more than one file (templates that exist,
//! cycles, duplicates, sizes, counts, depth, wave order, the grammar of target conditions and queries,
//! secret references) stay the loader's alone.

use serde_json::{Map, Value, json};
use twinops_iothub::ids::{ID_SYMBOLS, MAX_ID_LEN};
use twinops_iothub::twin_rules::MAX_KEY_BYTES;

use super::configuration::{CONFIGURATION_KEYS, DEVICE_CONTENT_KEYS, MODULE_CONTENT_KEYS};
use super::deployment::{DEPLOYMENT_KEYS, EDGE_MODULE_KEYS, RUN_STATUSES, RUNTIME_KEYS};
use super::objects::{LABEL_SYMBOLS, MAX_LABEL_CHARS, MAX_PRIORITY, NAME_SYMBOLS};
use super::raw::{
    AUTH_FORMS, AUTH_KEYS, AUTH_WORDS, DEVICE_KEYS, DOCUMENT_KEYS, MAX_STATUS_REASON_CHARS,
    MODULE_KEYS, STATUSES, TEMPLATE_KEYS, X509_KEYS,
};
use super::rollout::{FIRST_KEYS, HALT_KEYS, ON_HALTS, ROLLOUT_KEYS};
use crate::model::{
    DeviceStatus, LEDGER_TAG, MAX_DEPLOYMENT_MODULES, MAX_OBJECT_METRICS, MAX_OBJECT_NAME_CHARS,
    MAX_OWNER_CHARS, ModuleRunStatus, NAME_LABEL, OWNER_LABEL, OnHalt, RestartPolicy,
};

/// The draft the schema is written in.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one manifest document.
pub fn manifest() -> Value {
    json!({
        "$schema": DRAFT,
        "title": "twinops manifest",
        "description": "One YAML document of a twinops manifest set. The schema checks keys, types and syntax; \
            `twinops validate` also checks the rules that span documents and files.",
        "type": ["object", "null"],
        "properties": object(DOCUMENT_KEYS, document_field),
        "additionalProperties": false,
        "$defs": definitions(),
    })
}

/// The schema's `$defs`, in the order they have always been written: identities, twin values, the
/// rollout block, then the hub objects.
fn definitions() -> Map<String, Value> {
    let mut defs = Map::new();
    for part in [
        identity_definitions(),
        twin_definitions(),
        rollout_definitions(),
        object_definitions(),
    ] {
        if let Value::Object(m) = part {
            defs.extend(m);
        }
    }
    defs
}

/// Templates, devices, modules, their IDs and authentication.
fn identity_definitions() -> Value {
    json!({
        "template": block(TEMPLATE_KEYS, "A reusable layer; every device field except `templates`, plus `extends`."),
        "device": block(DEVICE_KEYS, "A device: its templates in order, then its own fields."),
        "module": {
            "description": "A module identity and its twin; `null` removes a module an earlier layer added.",
            "type": ["object", "null"],
            "properties": object(MODULE_KEYS, module_field),
            "additionalProperties": false,
        },
        "deviceId": {
            "description": format!("A device ID (1..{MAX_ID_LEN} of A-Za-z0-9 and `{ID_SYMBOLS}`), or one with one range such as `therm-{{001..250}}`."),
            "anyOf": [
                {"pattern": format!("^{}{{1,{MAX_ID_LEN}}}$", id_class())},
                {"pattern": format!("^{c}*\\{{[0-9]{{1,18}}\\.\\.[0-9]{{1,18}}\\}}{c}*$", c = id_class())},
            ],
        },
        "id": {
            "description": format!("A device or module ID: 1..{MAX_ID_LEN} of A-Za-z0-9 and `{ID_SYMBOLS}`."),
            "type": "string",
            "pattern": format!("^{}{{1,{MAX_ID_LEN}}}$", id_class()),
        },
        "templateNames": {
            "type": ["array", "null"],
            "items": {"type": "string"},
        },
        "auth": {
            "description": format!("{AUTH_FORMS}; `null` goes back to the default (sas)."),
            "anyOf": [
                {"type": "null"},
                {"enum": AUTH_WORDS},
                {
                    "type": "object",
                    "properties": object(AUTH_KEYS, |_| Some(json!({
                        "type": "object",
                        "properties": object(X509_KEYS, |k| Some(if k == "primary" {
                            json!({"$ref": "#/$defs/thumbprint"})
                        } else {
                            json!({"anyOf": [{"type": "null"}, {"$ref": "#/$defs/thumbprint"}]})
                        })),
                        "required": ["primary"],
                        "additionalProperties": false,
                    }))),
                    "required": AUTH_KEYS,
                    "additionalProperties": false,
                },
            ],
        },
        "thumbprint": {
            "description": "An X.509 thumbprint: 40 hex digits (SHA-1) or 64 (SHA-256).",
            "type": "string",
            "pattern": "^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$",
        },
    })
}

/// Twin sections, keys, values and paths.
fn twin_definitions() -> Value {
    json!({
        "tags": section(true),
        "desired": section(false),
        "twinKey": {
            "description": format!("A twin key: no `.`, `$`, `#`, space or control character; at most {MAX_KEY_BYTES} bytes."),
            "type": "string",
            "pattern": format!("^{TWIN_KEY_CHAR}*$"),
            "maxLength": MAX_KEY_BYTES,
        },
        "twinValue": {
            "description": "A twin value; objects nest with valid keys, and `null` (removal) is not allowed inside arrays. A string that is exactly `${env:NAME}` takes the environment variable's value when the manifests are loaded (`$${` writes a literal `${`).",
            "propertyNames": {"$ref": "#/$defs/twinKey"},
            "additionalProperties": {"$ref": "#/$defs/twinValue"},
            "items": {"$ref": "#/$defs/twinItem"},
        },
        "twinItem": {
            "description": "A value inside an array: sent whole, so `null` is not allowed anywhere in it.",
            "not": {"type": "null"},
            "propertyNames": {"$ref": "#/$defs/twinKey"},
            "additionalProperties": {"$ref": "#/$defs/twinItem"},
            "items": {"$ref": "#/$defs/twinItem"},
        },
        "paths": {
            "description": "Dotted paths `tags.KEY[.KEY...]` or `desired.KEY[.KEY...]`.",
            "type": ["array", "null"],
            "items": {
                "type": "string",
                "pattern": format!("^(tags|desired)(\\.{TWIN_KEY_CHAR}+)+$"),
            },
        },
    })
}

/// The rollout block and the value grammars it uses.
fn rollout_definitions() -> Value {
    json!({
        "rollout": {
            "description": "Delivers desired changes in waves; at most one block per manifest set.",
            "type": "object",
            "properties": object(ROLLOUT_KEYS, rollout_field),
            "required": ["waves"],
            "additionalProperties": false,
        },
        "share": {
            "type": "string",
            "pattern": SHARE_PATTERN,
        },
        "duration": {
            "description": "A duration such as 500ms, 30s, 5m or 1h, or a number of seconds.",
            "type": ["string", "number"],
        },
    })
}

/// One character of a twin key: anything but `.`, `$`, `#`, space and control characters (Unicode's
/// `Cc`: C0, DEL and C1, what `char::is_control` refuses). Spelled as `\u` ranges, not `\p{Cc}`:
/// ECMA-262 knows `\p` only in Unicode mode, and Python's `re` (which `jsonschema` compiles
/// patterns with) not at all.
const TWIN_KEY_CHAR: &str = "[^.$# \\u0000-\\u001f\\u007f-\\u009f]";

/// Configurations and deployments (SPEC §16), their content and the fields they share. Strings in
/// them take no substitution and no secret reference, which the loader checks.
fn object_definitions() -> Value {
    json!({
        "objectName": {
            "description": format!("1..{MAX_OBJECT_NAME_CHARS} of a-z, 0-9 and `{NAME_SYMBOLS}`; the hub ID adds `-` and 8 hex digits of the content's digest."),
            "type": "string",
            "pattern": format!("^{}{{1,{MAX_OBJECT_NAME_CHARS}}}$", name_class()),
        },
        "configuration": {
            "description": "An automatic device management configuration: writes `device` or `module` desired properties into the twins its target matches.",
            "type": "object",
            "properties": object(CONFIGURATION_KEYS, configuration_field),
            "required": ["target"],
            // Each branch names the property it requires: ajv's strict mode (strictRequired)
            // compiles `oneOf` before the sibling `properties` and would call it undefined.
            "oneOf": [
                {"properties": {"device": true}, "required": ["device"]},
                {"properties": {"module": true}, "required": ["module"]},
            ],
            "additionalProperties": false,
        },
        "deployment": {
            "description": "An IoT Edge deployment. A base deployment (the default) sets the runtime; a layered one (`layered: true`) adds modules and routes to it and has no `runtime`.",
            "type": "object",
            "properties": object(DEPLOYMENT_KEYS, deployment_field),
            "required": ["target"],
            "if": {"properties": {"layered": {"const": true}}, "required": ["layered"]},
            // A layered deployment has no runtime (a `false` schema refuses the key); a base one
            // needs it (named in the branch for ajv's strictRequired, as above).
            "then": {"properties": {"runtime": false}},
            "else": {"properties": {"runtime": true}, "required": ["runtime"]},
            "additionalProperties": false,
        },
        "edgeModule": {
            "description": "A custom module of an IoT Edge deployment.",
            "type": "object",
            "properties": object(EDGE_MODULE_KEYS, edge_module_field),
            "required": ["image"],
            "additionalProperties": false,
        },
        "edgeModuleName": {
            "description": "A module ID that is also a key of `$edgeAgent`'s desired properties: no `$`, `.` or `#`.",
            "type": "string",
            "pattern": format!("^{}{{1,{MAX_ID_LEN}}}$", edge_module_class()),
        },
        "image": {
            "description": "A container image reference, e.g. mcr.microsoft.com/azureiotedge-agent:1.5.",
            "type": "string",
            "pattern": "^\\S+$",
        },
        "targetCondition": {
            "description": "IoT Hub's target condition: a bare condition over deviceId, tags and properties.reported (`*` for every device); a module configuration's is `FROM devices.modules WHERE moduleId = 'MODULE' AND ...`.",
            "type": "string",
            "minLength": 1,
        },
        "priority": {
            "description": "The higher priority wins where objects overlap (default 0).",
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_PRIORITY,
        },
        "labelText": {
            "type": "string",
            "pattern": format!("^{}{{1,{MAX_LABEL_CHARS}}}$", label_class()),
        },
        "labels": {
            "description": format!("Labels of the object; `{OWNER_LABEL}` and `{NAME_LABEL}` are twinops' own. Integers and booleans are taken as their text."),
            "type": ["object", "null"],
            "propertyNames": {"allOf": [
                {"$ref": "#/$defs/labelText"},
                {"not": {"enum": [OWNER_LABEL, NAME_LABEL]}},
            ]},
            "additionalProperties": {"anyOf": [
                {"$ref": "#/$defs/labelText"},
                {"type": ["integer", "boolean"]},
            ]},
        },
        "metrics": {
            "description": format!("Custom metrics: name to query (`SELECT deviceId FROM devices WHERE ...`), at most {MAX_OBJECT_METRICS}."),
            "type": ["object", "null"],
            "maxProperties": MAX_OBJECT_METRICS,
            "propertyNames": {"$ref": "#/$defs/labelText"},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "objectDesired": {
            "description": "Desired properties written by a configuration or a deployment: twin keys and values, not empty, and no `null` anywhere (content is written whole, not patched).",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"$ref": "#/$defs/twinKey"},
            "additionalProperties": {"$ref": "#/$defs/twinItem"},
        },
    })
}

fn configuration_field(key: &str) -> Option<Value> {
    Some(match key {
        "target" => json!({"$ref": "#/$defs/targetCondition"}),
        "priority" => json!({"$ref": "#/$defs/priority"}),
        "labels" => json!({"$ref": "#/$defs/labels"}),
        "metrics" => json!({"$ref": "#/$defs/metrics"}),
        "device" => json!({
            "description": "Writes desired properties of device twins (deviceContent).",
            "type": "object",
            "properties": object(DEVICE_CONTENT_KEYS, |_| Some(json!({"$ref": "#/$defs/objectDesired"}))),
            "required": DEVICE_CONTENT_KEYS,
            "additionalProperties": false,
        }),
        "module" => json!({
            "description": "Writes desired properties of the twins of module `name` (moduleContent); the target names it with moduleId.",
            "type": "object",
            "properties": object(MODULE_CONTENT_KEYS, |k| Some(if k == "name" {
                json!({"allOf": [{"$ref": "#/$defs/id"}, {"not": {"pattern": "^\\$"}}]})
            } else {
                json!({"$ref": "#/$defs/objectDesired"})
            })),
            "required": MODULE_CONTENT_KEYS,
            "additionalProperties": false,
        }),
        _ => return None,
    })
}

fn deployment_field(key: &str) -> Option<Value> {
    Some(match key {
        "target" => json!({"$ref": "#/$defs/targetCondition"}),
        "priority" => json!({"$ref": "#/$defs/priority"}),
        "labels" => json!({"$ref": "#/$defs/labels"}),
        "metrics" => json!({"$ref": "#/$defs/metrics"}),
        "layered" => json!({
            "description": "true: adds to the base deployment of its devices (default false).",
            "type": "boolean",
        }),
        "runtime" => json!({
            "description": "The images of the IoT Edge runtime; a base deployment needs both.",
            "type": "object",
            "properties": object(RUNTIME_KEYS, |_| Some(json!({"$ref": "#/$defs/image"}))),
            "required": RUNTIME_KEYS,
            "additionalProperties": false,
        }),
        "modules" => json!({
            "description": format!("Custom modules by name, at most {MAX_DEPLOYMENT_MODULES}."),
            "type": ["object", "null"],
            "maxProperties": MAX_DEPLOYMENT_MODULES,
            "propertyNames": {"$ref": "#/$defs/edgeModuleName"},
            "additionalProperties": {"$ref": "#/$defs/edgeModule"},
        }),
        "routes" => json!({
            "description": "edgeHub routes by name, e.g. FROM /messages/* INTO $upstream.",
            "type": ["object", "null"],
            "propertyNames": {"allOf": [{"$ref": "#/$defs/twinKey"}, {"minLength": 1}]},
            "additionalProperties": {"type": "string", "pattern": "^\\s*[Ff][Rr][Oo][Mm]\\s"},
        }),
        _ => return None,
    })
}

fn edge_module_field(key: &str) -> Option<Value> {
    Some(match key {
        "image" => json!({"$ref": "#/$defs/image"}),
        "createOptions" => json!({
            "description": "Docker create options; at most 4096 bytes as compact JSON.",
            "type": "object",
        }),
        "env" => json!({
            "description": "Environment variables; integers and booleans are taken as their text.",
            "type": ["object", "null"],
            "propertyNames": {"allOf": [{"$ref": "#/$defs/twinKey"}, {"minLength": 1}]},
            "additionalProperties": {"type": ["string", "integer", "boolean"]},
        }),
        "restartPolicy" => json!({
            "description": "Default always.",
            "enum": RestartPolicy::ALL.map(RestartPolicy::as_str),
        }),
        "status" => json!({
            "description": "Default running.",
            "enum": RUN_STATUSES.map(ModuleRunStatus::as_str),
        }),
        "desired" => json!({
            "description": "The module twin's desired properties.",
            "$ref": "#/$defs/objectDesired",
        }),
        _ => return None,
    })
}

/// A share as `Share::parse` reads it: up to three whole digits and up to two decimals.
const SHARE_PATTERN: &str = "^[0-9]{1,3}(\\.[0-9]{1,2})?%$";

/// The `properties` of an object: one entry per key the loader allows, in the loader's order; a key
/// without a schema is left out, which the tests catch.
fn object(keys: &[&str], field: impl Fn(&str) -> Option<Value>) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| field(k).map(|v| (k.to_string(), v)))
        .collect()
}

fn block(keys: &[&str], description: &str) -> Value {
    json!({
        "description": description,
        "type": ["object", "null"],
        "properties": object(keys, layer_field),
        "additionalProperties": false,
    })
}

fn document_field(key: &str) -> Option<Value> {
    Some(match key {
        "owner" => json!({
            "description": "Who owns what this manifest set manages; at most once per set (default `default`).",
            "type": "string",
            "pattern": format!("^[A-Za-z0-9._-]{{1,{MAX_OWNER_CHARS}}}$"),
        }),
        "rollout" => json!({"$ref": "#/$defs/rollout"}),
        "templates" => json!({
            "description": "Reusable layers, by name.",
            "type": ["object", "null"],
            "propertyNames": {"minLength": 1},
            "additionalProperties": {"$ref": "#/$defs/template"},
        }),
        "devices" => json!({
            "description": "Devices by ID or range pattern.",
            "type": ["object", "null"],
            "propertyNames": {"$ref": "#/$defs/deviceId"},
            "additionalProperties": {"$ref": "#/$defs/device"},
        }),
        "configurations" => json!({
            "description": "Automatic device management configurations by name; names are unique in the set, at most 100.",
            "type": ["object", "null"],
            "propertyNames": {"$ref": "#/$defs/objectName"},
            "additionalProperties": {"$ref": "#/$defs/configuration"},
        }),
        "deployments" => json!({
            "description": "IoT Edge deployments by name; names are unique in the set, at most 100 (layered ones included).",
            "type": ["object", "null"],
            "propertyNames": {"$ref": "#/$defs/objectName"},
            "additionalProperties": {"$ref": "#/$defs/deployment"},
        }),
        _ => return None,
    })
}

/// A field of a template or a device; every one may be `null` (back to the default).
fn layer_field(key: &str) -> Option<Value> {
    Some(match key {
        "extends" => json!({
            "description": "Templates this template builds on, applied first (no cycles).",
            "$ref": "#/$defs/templateNames",
        }),
        "templates" => json!({
            "description": "Templates applied in order, then the device's own fields.",
            "$ref": "#/$defs/templateNames",
        }),
        "status" => json!({
            "description": "Default enabled.",
            "enum": STATUSES.map(DeviceStatus::as_str).into_iter().map(Value::from).chain([Value::Null]).collect::<Vec<_>>(),
        }),
        "statusReason" => json!({
            "type": ["string", "null"],
            "maxLength": MAX_STATUS_REASON_CHARS,
        }),
        "auth" => json!({"$ref": "#/$defs/auth"}),
        "edge" => json!({
            "description": "capabilities.iotEdge",
            "type": ["boolean", "null"],
        }),
        "parent" => json!({
            "description": "An edge device as parent (deviceScope / parentScopes).",
            "anyOf": [{"type": "null"}, {"$ref": "#/$defs/id"}],
        }),
        "modules" => json!({
            "type": ["object", "null"],
            "propertyNames": {"$ref": "#/$defs/id"},
            "additionalProperties": {"$ref": "#/$defs/module"},
        }),
        other => return twin_field(other),
    })
}

fn module_field(key: &str) -> Option<Value> {
    match key {
        "managedBy" => Some(json!({
            "description": "Module identity field, set when the module is created.",
            "type": ["string", "null"],
        })),
        "auth" => Some(json!({"$ref": "#/$defs/auth"})),
        other => twin_field(other),
    }
}

fn twin_field(key: &str) -> Option<Value> {
    Some(match key {
        "tags" => json!({"$ref": "#/$defs/tags"}),
        "desired" => json!({"$ref": "#/$defs/desired"}),
        "ignore" => json!({
            "description": "Paths twinops never plans, even inside owned keys.",
            "$ref": "#/$defs/paths",
        }),
        "sensitive" => json!({
            "description": "Values shown as (sensitive) in every output and kept out of plan files (digests only); still applied. A `${env:NAME}` value is sensitive without being listed.",
            "$ref": "#/$defs/paths",
        }),
        _ => return None,
    })
}

/// `tags` or `desired`: a free object whose keys follow the twin rules; `${device}` and `${module}`
/// expand in string values, and a string that is exactly `${env:NAME}` takes the variable's value.
fn section(tags: bool) -> Value {
    let keys = if tags {
        json!({"allOf": [{"$ref": "#/$defs/twinKey"}, {"not": {"const": LEDGER_TAG}}]})
    } else {
        json!({"$ref": "#/$defs/twinKey"})
    };
    json!({
        "type": ["object", "null"],
        "propertyNames": keys,
        "additionalProperties": {"$ref": "#/$defs/twinValue"},
    })
}

fn rollout_field(key: &str) -> Option<Value> {
    Some(match key {
        "waves" => json!({
            "description": "Cumulative waves: shares (5%, 25%, 100%) or counts (10, 100, all); the last covers every twin.",
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {"const": "all"},
                    {"$ref": "#/$defs/share"},
                    {"type": "integer", "minimum": 1},
                ],
            },
        }),
        "first" => json!({
            "description": "Twins of devices whose tags equal all of these form wave 0.",
            "type": "object",
            "properties": object(FIRST_KEYS, |_| Some(json!({
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"$ref": "#/$defs/twinKey"},
                "additionalProperties": {"$ref": "#/$defs/twinValue"},
            }))),
            "required": FIRST_KEYS,
            "additionalProperties": false,
        }),
        "bake" => json!({
            "description": "Wait after a wave passes (default 0s).",
            "$ref": "#/$defs/duration",
        }),
        "timeout" => json!({
            "description": "How long a wave may take to pass its gate (default 10m; not 0s).",
            "$ref": "#/$defs/duration",
        }),
        "halt" => json!({
            "description": "Halt when more than this share rejected / is pending at timeout (defaults 0%).",
            "type": "object",
            "properties": object(HALT_KEYS, |_| Some(json!({"$ref": "#/$defs/share"}))),
            "additionalProperties": false,
        }),
        "on_halt" => json!({
            "description": "What a halted rollout does before it stops (default stop).",
            "enum": ON_HALTS.map(OnHalt::as_str),
        }),
        _ => return None,
    })
}

/// The ID characters as a regex class, from IoT Hub's rule.
fn id_class() -> String {
    class("A-Za-z0-9", ID_SYMBOLS.chars())
}

/// The characters of an edge module's name: an ID that is also a twin key (no `$`, `.` or `#`).
fn edge_module_class() -> String {
    class(
        "A-Za-z0-9",
        ID_SYMBOLS.chars().filter(|c| !matches!(c, '$' | '.' | '#')),
    )
}

fn name_class() -> String {
    class("a-z0-9", NAME_SYMBOLS.chars())
}

fn label_class() -> String {
    class("A-Za-z0-9", LABEL_SYMBOLS.chars())
}

/// A regex character class of `ranges` and `symbols`, escaping what a class needs.
fn class(ranges: &str, symbols: impl Iterator<Item = char>) -> String {
    let mut class = format!("[{ranges}");
    for c in symbols {
        if matches!(c, '\\' | ']' | '[' | '^' | '-') {
            class.push('\\');
        }
        class.push(c);
    }
    class.push(']');
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<&str> {
        v["properties"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_key_the_loader_allows_has_a_schema() {
        let s = manifest();
        let defs = &s["$defs"];
        assert_eq!(keys(&s), DOCUMENT_KEYS);
        assert_eq!(keys(&defs["template"]), TEMPLATE_KEYS);
        assert_eq!(keys(&defs["device"]), DEVICE_KEYS);
        assert_eq!(keys(&defs["module"]), MODULE_KEYS);
        assert_eq!(keys(&defs["rollout"]), ROLLOUT_KEYS);
        let rollout = &defs["rollout"]["properties"];
        assert_eq!(keys(&rollout["first"]), FIRST_KEYS);
        assert_eq!(keys(&rollout["halt"]), HALT_KEYS);
        let auth = &defs["auth"]["anyOf"][2];
        assert_eq!(keys(auth), AUTH_KEYS);
        assert_eq!(keys(&auth["properties"]["x509"]), X509_KEYS);
        assert_eq!(keys(&defs["configuration"]), CONFIGURATION_KEYS);
        let configuration = &defs["configuration"]["properties"];
        assert_eq!(keys(&configuration["device"]), DEVICE_CONTENT_KEYS);
        assert_eq!(keys(&configuration["module"]), MODULE_CONTENT_KEYS);
        assert_eq!(keys(&defs["deployment"]), DEPLOYMENT_KEYS);
        assert_eq!(
            keys(&defs["deployment"]["properties"]["runtime"]),
            RUNTIME_KEYS
        );
        assert_eq!(keys(&defs["edgeModule"]), EDGE_MODULE_KEYS);
    }

    #[test]
    fn id_class_escapes_what_a_character_class_needs() {
        assert_eq!(id_class(), "[A-Za-z0-9\\-:.+%_#*?!(),=@;$']");
        assert_eq!(edge_module_class(), "[A-Za-z0-9\\-:+%_*?!(),=@;']");
        assert_eq!(name_class(), "[a-z0-9\\-+%_*!']");
        assert_eq!(label_class(), "[A-Za-z0-9\\-:.+%_#*?!(),=@;']");
    }
}
