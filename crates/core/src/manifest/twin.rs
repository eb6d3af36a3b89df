//! IoT Hub's twin rules: key syntax, nesting depth, value limits, the size of tags and desired
//! properties (ledger included), `${device}`/`${module}` substitution in string values, and the
//! replacement of `${env:NAME}` values ([`super::secret`] owns that grammar).
//!
//! Checks on written values report at the node that breaks them; size rules work on expanded JSON.
//! Nothing here knows about devices, templates or files.

use serde_json::Value;
use twinops_iothub::twin_rules::{self, KeyProblem};

use super::Sink;
use super::secret::{self, Lookup};
use super::yaml::{Entry, Kind, Node};
use crate::model::{EnvRef, JsonMap, LEDGER_TAG, PropertyPath, Section};

// IoT Hub's twin rules are defined once, in `iothub::twin_rules`, which the emulator enforces too: a
// manifest that validates is one the hub accepts, and one the hub refuses does not validate. This module
// only walks the written YAML (so that errors carry a location) and words each refusal for a manifest
// author; every decision is a `twin_rules` function. Depth is the hub's: the section is depth 0, each
// object below it adds one, arrays add nothing, and objects may sit at depth `MAX_DEPTH` at most.
/// Size limit of a twin's desired properties (IoT Hub's limit for each property section).
pub(super) use twinops_iothub::twin_rules::MAX_PROPERTIES_BYTES as MAX_DESIRED_BYTES;
pub(super) use twinops_iothub::twin_rules::{
    MAX_DEPTH, MAX_KEY_BYTES, MAX_STRING_BYTES, MAX_TAGS_BYTES,
};
/// Twin integers must lie within ±(2^52 − 1), IoT Hub's bounds.
pub(super) const MIN_INT: i128 = twin_rules::MIN_SAFE_INTEGER as i128;
pub(super) const MAX_INT: i128 = twin_rules::MAX_SAFE_INTEGER as i128;

/// What is wrong with a twin key, if anything. Empty and non-ASCII keys are fine: the hub takes them.
pub(super) fn key_problem(key: &str) -> Option<String> {
    match twin_rules::key_problem(key)? {
        KeyProblem::TooLong => Some(format!(
            "twin key `{}` is {} bytes long; IoT Hub allows at most {MAX_KEY_BYTES}",
            shorten(key),
            key.len()
        )),
        KeyProblem::Character(bad) => Some(format!(
            "twin key `{}` contains `{}`; twin keys may not contain `.`, `$`, `#`, spaces or control characters",
            shorten(key),
            bad.escape_debug()
        )),
    }
}

/// A long text cut for a message.
pub(super) fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(40).flat_map(char::escape_debug).collect();
    if text.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Where a value is written: decides which substitutions are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Device,
    Module,
    /// `rollout.first.tags`: values matched against twins, never written, so never a secret.
    Rollout,
    /// The content of a configuration or a deployment (SPEC §16): stored on the hub as written and
    /// shown in plans, the same for every twin it targets, and set whole rather than patched. So no
    /// substitution, no secret reference and no `null`.
    Object,
}

/// Checks a `tags` or `desired` mapping as written: keys, depth, scalars, nulls and substitutions.
pub(super) fn check_section(section: Section, node: &Node, scope: Scope, sink: &mut Sink) {
    let Kind::Map(entries) = &node.kind else {
        return;
    };
    if section == Section::Tags {
        for e in entries.iter().filter(|e| e.key == LEDGER_TAG) {
            sink.error(
                &e.key_loc,
                format!("tag `{LEDGER_TAG}` is reserved for the twinops ownership ledger; choose another tag name"),
            );
        }
    }
    let walk = Walk {
        scope,
        in_array: false,
    };
    walk.members(entries, 0, sink);
}

/// How a written value is reached: in which scope, and whether through an array (whose values are
/// sent whole, so a `null` there is a value the hub refuses, not a removal).
#[derive(Debug, Clone, Copy)]
struct Walk {
    scope: Scope,
    in_array: bool,
}

impl Walk {
    /// The members of an object at `depth` (the section is depth 0).
    fn members(self, entries: &[Entry], depth: usize, sink: &mut Sink) {
        for e in entries {
            if let Some(problem) = key_problem(&e.key) {
                sink.error(&e.key_loc, problem);
            }
            if matches!(e.value.kind, Kind::Null) && self.in_array {
                sink.error(&e.value.loc, null_in_array_message());
            } else if matches!(e.value.kind, Kind::Null) && self.scope == Scope::Object {
                sink.error(&e.value.loc, null_in_object_message());
            }
            self.value(&e.value, depth, sink);
        }
    }

    /// A value held by an object at `depth` (directly or through arrays).
    fn value(self, node: &Node, depth: usize, sink: &mut Sink) {
        match &node.kind {
            Kind::Map(entries) => {
                if !twin_rules::depth_is_allowed(depth + 1) {
                    let at = entries.first().map_or(&node.loc, |e| &e.key_loc);
                    sink.once(at, "depth", depth_message());
                    return;
                }
                self.members(entries, depth + 1, sink);
            }
            Kind::Seq(items) => {
                let inside = Walk {
                    in_array: true,
                    ..self
                };
                for item in items {
                    if matches!(item.kind, Kind::Null) {
                        sink.error(&item.loc, null_in_array_message());
                    }
                    inside.value(item, depth, sink);
                }
            }
            Kind::Int(i) if !twin_rules::integer_is_allowed(*i) => sink.error(
                &node.loc,
                format!("integer is outside the range IoT Hub accepts ({MIN_INT}..={MAX_INT})"),
            ),
            Kind::Float(f) if !f.is_finite() => sink.error(
                &node.loc,
                "number is not finite; twin values may not be infinite or NaN".to_string(),
            ),
            Kind::Str(s) => {
                check_string_length(s, node, sink);
                if self.scope == Scope::Object {
                    if let Err(problem) = object_text(s) {
                        sink.error(&node.loc, problem);
                    }
                    return;
                }
                match secret::reference(s) {
                    Ok(None) => {
                        if let Err(problem) = pieces(s, self.scope) {
                            sink.error(&node.loc, problem);
                        }
                    }
                    Ok(Some(_)) if self.scope == Scope::Rollout => sink.error(
                        &node.loc,
                        "a secret reference cannot sit in `rollout.first`; its tags are matched against twins, not written".to_string(),
                    ),
                    Ok(Some(_)) if self.in_array => sink.error(
                        &node.loc,
                        "a secret reference cannot sit inside an array: a sensitive path names object keys only; put the value under a key of its own".to_string(),
                    ),
                    Ok(Some(_)) => {}
                    Err(problem) => sink.error(&node.loc, problem.to_string()),
                }
            }
            _ => {}
        }
    }
}

fn depth_message() -> String {
    format!(
        "twin objects nest deeper than {MAX_DEPTH} levels; IoT Hub allows at most {MAX_DEPTH} nested objects inside `tags` or `desired` (values may sit in the last one)"
    )
}

fn null_in_object_message() -> String {
    "remove this key: `null` removes a value in a twin patch, but the content of a configuration or deployment is written whole, so IoT Hub refuses it"
        .to_string()
}

/// A string of a configuration or deployment as IoT Hub gets it: `$${` written as `${`, or why it
/// cannot be written. A secret reference is refused: object content is stored on the hub, where
/// any reader of configurations sees it, and printed in plans, so it cannot be kept sensitive.
pub(super) fn object_text(s: &str) -> Result<String, String> {
    match secret::reference(s) {
        Ok(None) => {}
        Ok(Some(_))
        | Err(secret::Problem {
            kind: secret::ProblemKind::NotWhole,
            ..
        }) => {
            return Err("write the value itself: configurations and deployments take no secret reference (`${env:NAME}`), since the hub stores their content where every reader of configurations sees it and plans print it (`$${` writes a literal `${`)".to_string());
        }
        Err(problem) => return Err(problem.to_string()),
    }
    let pieces = pieces(s, Scope::Object)?;
    Ok(pieces
        .into_iter()
        .map(|p| match p {
            Piece::Text(t) => t,
            Piece::Device | Piece::Module => "",
        })
        .collect())
}

fn null_in_array_message() -> String {
    "`null` inside an array is refused by IoT Hub; arrays are sent whole, so a `null` there removes nothing"
        .to_string()
}

/// Reports a string value over the limit, once per written node (before or after substitution).
/// Counted in UTF-8 bytes, as the hub counts them, so a manifest that validates is never refused.
pub(super) fn check_string_length(s: &str, node: &Node, sink: &mut Sink) {
    let bytes = s.len();
    if !twin_rules::string_is_allowed(s) {
        sink.once(
            &node.loc,
            "string-length",
            format!(
                "string value is {bytes} bytes long; IoT Hub allows at most {MAX_STRING_BYTES}"
            ),
        );
    }
}

/// A piece of a string value with substitutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Device,
    Module,
}

/// Splits a string value into text and substitutions. `$${` writes a literal `${`.
pub(super) fn pieces(s: &str, scope: Scope) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if after.starts_with("$${") {
            out.push(Piece::Text(&rest[..i + 1]));
            rest = &rest[i + 2..];
            continue;
        }
        if !after.starts_with("${") {
            out.push(Piece::Text(&rest[..i + 1]));
            rest = &rest[i + 1..];
            continue;
        }
        out.push(Piece::Text(&rest[..i]));
        let Some(end) = after.find('}') else {
            return Err(
                "unterminated `${` in string value; write `$${` for a literal `${`".to_string(),
            );
        };
        match &after[2..end] {
            name if scope == Scope::Object => {
                return Err(format!(
                    "write the value itself: `${{{}}}` has no value in a configuration or deployment, whose content is the same for every twin it targets (`$${{` writes a literal `${{`)",
                    shorten(name)
                ));
            }
            "device" | "module" if scope == Scope::Rollout => {
                return Err(format!(
                    "`{}` has no value in `rollout.first`: its tags are matched against every device's tags; write the value itself",
                    &after[..=end]
                ));
            }
            "device" => out.push(Piece::Device),
            "module" if scope == Scope::Module => out.push(Piece::Module),
            "module" => {
                return Err("`${module}` is only available in values inside `modules`".to_string());
            }
            other => {
                return Err(format!(
                    "unknown substitution `${{{}}}`; allowed are `${{device}}`, inside modules `${{module}}`, and `${{env:NAME}}` as a whole value",
                    shorten(other)
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    out.retain(|p| *p != Piece::Text(""));
    Ok(out)
}

/// The IDs substituted into string values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Names<'a> {
    pub device: &'a str,
    pub module: Option<&'a str>,
}

/// Expands substitutions; values already reported as invalid expand to something harmless.
pub(super) fn substitute(s: &str, names: Names<'_>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let scope = if names.module.is_some() {
        Scope::Module
    } else {
        Scope::Device
    };
    let Ok(pieces) = pieces(s, scope) else {
        return s.to_string();
    };
    let mut out = String::with_capacity(s.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Device => out.push_str(names.device),
            Piece::Module => out.push_str(names.module.unwrap_or_default()),
        }
    }
    out
}

/// Converts a merged mapping into JSON with `${device}`/`${module}` substituted, for values that are
/// not a device's twin sections (`rollout.first.tags`, the content of configurations and
/// deployments), where `check_section` refused references.
pub(super) fn to_json(entries: &[Entry], names: Names<'_>, sink: &mut Sink) -> JsonMap {
    let mut c = Convert {
        section: Section::Tags,
        names,
        lookup: None,
        refs: Vec::new(),
        path: Vec::new(),
        in_array: false,
    };
    c.map(entries, sink)
}

/// Converts a twin section's merged mapping into twin JSON: substitutions expanded, `${env:NAME}`
/// values replaced through `lookup` (their paths returned, a missing variable reported at the value),
/// expanded string lengths checked.
pub(super) fn twin_json(
    section: Section,
    entries: &[Entry],
    names: Names<'_>,
    lookup: &mut Lookup<'_>,
    sink: &mut Sink,
) -> (JsonMap, Vec<EnvRef>) {
    let mut c = Convert {
        section,
        names,
        lookup: Some(lookup),
        refs: Vec::new(),
        path: Vec::new(),
        in_array: false,
    };
    let json = c.map(entries, sink);
    (json, c.refs)
}

/// One section's conversion: where it is (`path`, for the references it finds) and what it expands.
struct Convert<'a, 'e> {
    section: Section,
    names: Names<'a>,
    lookup: Option<&'a mut Lookup<'e>>,
    refs: Vec<EnvRef>,
    /// The object keys from the section to the value being converted.
    path: Vec<String>,
    /// Whether the value sits inside an array, where no path can name it.
    in_array: bool,
}

impl Convert<'_, '_> {
    fn map(&mut self, entries: &[Entry], sink: &mut Sink) -> JsonMap {
        entries
            .iter()
            .map(|e| {
                self.path.push(e.key.clone());
                let v = self.value(&e.value, sink);
                self.path.pop();
                (e.key.clone(), v)
            })
            .collect()
    }

    fn value(&mut self, node: &Node, sink: &mut Sink) -> Value {
        match &node.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => i64::try_from(*i).map_or(Value::Null, Value::from),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => match secret::reference(s) {
                Ok(Some(name)) if !self.in_array => self.secret(name, node, sink),
                // Refused where it was written (`check_section`); the load fails.
                Ok(Some(_)) | Err(_) => Value::Null,
                Ok(None) => {
                    let expanded = substitute(s, self.names);
                    if expanded.len() != s.len() {
                        check_string_length(&expanded, node, sink);
                    }
                    Value::String(expanded)
                }
            },
            Kind::Seq(items) => {
                let outer = std::mem::replace(&mut self.in_array, true);
                let items = items.iter().map(|n| self.value(n, sink)).collect();
                self.in_array = outer;
                Value::Array(items)
            }
            Kind::Map(entries) => Value::Object(self.map(entries, sink)),
        }
    }

    /// The value of `${env:NAME}` at the current path, which becomes a sensitive path. Messages name
    /// the variable and sizes, never the value.
    fn secret(&mut self, name: &str, node: &Node, sink: &mut Sink) -> Value {
        let Some(lookup) = self.lookup.as_deref_mut() else {
            return Value::Null;
        };
        if self.path.iter().any(String::is_empty) {
            sink.once(
                &node.loc,
                "secret-path",
                "a secret reference cannot sit under an empty key: no sensitive path (`tags.KEY...`, `desired.KEY...`) can name it".to_string(),
            );
            return Value::Null;
        }
        let value = match lookup.get(name) {
            Ok(v) => v,
            Err(missing) => {
                sink.once(&node.loc, "secret-missing", missing.message(name));
                return Value::Null;
            }
        };
        if !twin_rules::string_is_allowed(&value) {
            sink.once(
                &node.loc,
                "string-length",
                format!(
                    "environment variable `{name}` holds {} bytes; IoT Hub allows string values of at most {MAX_STRING_BYTES}",
                    value.len()
                ),
            );
        }
        self.refs.push(EnvRef {
            path: PropertyPath {
                section: self.section,
                keys: self.path.clone(),
            },
            name: name.to_string(),
        });
        Value::String(value)
    }
}

/// IoT Hub's size of a twin section, by the same rule the emulator enforces.
pub(super) use twinops_iothub::twin_rules::size;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        }
    }

    #[test]
    fn size_counts_keys_in_bytes_and_strings_in_characters() {
        let m = map(json!({"ä": "ää", "n": 1, "b": true, "o": {"k": [1, "x"]}}));
        assert_eq!(size(&m), 2 + 2 + 1 + 8 + 1 + 4 + 1 + 1 + 8 + 1);
    }

    #[test]
    fn substitution_expands_device_and_module() {
        let names = Names {
            device: "d1",
            module: Some("m1"),
        };
        assert_eq!(substitute("${device}/${module}", names), "d1/m1");
        assert_eq!(substitute("cost $5 $${device}", names), "cost $5 ${device}");
    }

    #[test]
    fn module_substitution_is_rejected_outside_modules() {
        assert!(pieces("${module}", Scope::Device).is_err());
        assert!(pieces("${nope}", Scope::Module).is_err());
        assert!(pieces("${device", Scope::Module).is_err());
    }

    #[test]
    fn key_rules_reject_dots_dollars_hashes_spaces_and_control_characters() {
        for key in ["a.b", "$a", "a#b", "a b", "a\u{1}"] {
            assert!(key_problem(key).is_some(), "{key:?}");
        }
        assert!(key_problem(&"k".repeat(1025)).is_some());
        for key in ["ok-key_1", "", "温度"] {
            assert!(key_problem(key).is_none(), "{key:?}");
        }
    }
}
