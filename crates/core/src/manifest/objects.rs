//! What the `configurations` and `deployments` blocks (SPEC §16) share as written: object names,
//! priorities, labels, target conditions and metric queries (parsed with IoT Hub's query grammar,
//! `twinops_iothub::query`, which the emulator answers queries with), the desired properties and the
//! strings of object content, and the set-wide rules: names unique per kind, and no more objects of a
//! kind than a hub holds.
//!
//! Each block is read on its own by [`super::configuration`] and [`super::deployment`]; what spans
//! documents waits for [`collect`]. Nothing here knows the hub's state: counting the objects already
//! on it belongs to the plan.

use std::collections::{BTreeMap, HashMap};

use twinops_iothub::query::{self, CompareOp, Condition, Expr, Operand, ParseError};

use super::Sink;
use super::raw::{mapping_entries, string, type_error};
use super::twin::{self, MAX_DESIRED_BYTES, Names, Scope};
use super::yaml::{Entry, Kind, Node};
use crate::model::{
    JsonMap, Location, MAX_HUB_OBJECTS, MAX_OBJECT_METRICS, MAX_OBJECT_NAME_CHARS, NAME_LABEL,
    OWNER_LABEL, ObjectKind, Section,
};

/// The characters of an object name besides `a-z` and `0-9`: IoT Hub's configuration IDs, which
/// are lowercase.
pub(super) const NAME_SYMBOLS: &str = "-+%_*!'";
/// The characters of label keys and values besides ASCII letters and digits (`$` is reserved).
pub(super) const LABEL_SYMBOLS: &str = "-:.+%_#*?!(),=@;'";
/// Longest label key or value, and longest metric name.
pub(super) const MAX_LABEL_CHARS: usize = 128;
/// IoT Hub's priorities are 32-bit integers; the higher one wins. twinops takes the non-negative ones.
pub(super) const MAX_PRIORITY: i64 = i32::MAX as i64;

/// A declared object: its name where written, and its spec when every rule of its block holds.
#[derive(Debug, Clone)]
pub(super) struct Declared<T> {
    pub name: String,
    pub loc: Location,
    pub spec: Option<T>,
}

/// Checks an object's name, reporting what is wrong with it.
pub(super) fn name(e: &Entry, kind: ObjectKind, sink: &mut Sink) {
    let chars = e.key.chars().count();
    let bad = e.key.chars().find(|c| !is_name_char(*c));
    let problem = match bad {
        _ if chars == 0 => "is empty".to_string(),
        _ if chars > MAX_OBJECT_NAME_CHARS => format!("is {chars} characters long"),
        Some(c) => format!("contains `{}`", c.escape_debug()),
        None => return,
    };
    sink.error(
        &e.key_loc,
        format!(
            "write {} names with 1..{MAX_OBJECT_NAME_CHARS} of a-z, 0-9 and `{NAME_SYMBOLS}`: `{}` {problem} (IoT Hub's IDs are lowercase, and twinops adds `-` and 8 hex digits of the content's digest)",
            kind.as_str(),
            twin::shorten(&e.key)
        ),
    );
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || NAME_SYMBOLS.contains(c)
}

/// `priority`: a whole number from 0 to [`MAX_PRIORITY`].
pub(super) fn priority(v: &Node, sink: &mut Sink) -> i64 {
    match v.kind {
        Kind::Int(i) if (0..=i128::from(MAX_PRIORITY)).contains(&i) => i as i64,
        Kind::Int(i) => {
            sink.error(
                &v.loc,
                format!(
                    "write `priority` as a whole number from 0 to {MAX_PRIORITY}: {i} is outside IoT Hub's range (the higher priority wins)"
                ),
            );
            0
        }
        _ => {
            type_error::<()>(v, "`priority`", "a whole number from 0 up", sink);
            0
        }
    }
}

/// `labels`: name to value, both in IoT Hub's label syntax; twinops' own labels are reserved.
pub(super) fn labels(v: &Node, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for e in mapping_entries(v, "`labels`", sink) {
        if e.key == OWNER_LABEL || e.key == NAME_LABEL {
            sink.error(
                &e.key_loc,
                format!(
                    "choose another label name: `{}` is reserved, twinops sets `{OWNER_LABEL}` and `{NAME_LABEL}` to mark the objects it owns",
                    e.key
                ),
            );
            continue;
        }
        if let Some(problem) = label_problem(&e.key) {
            sink.error(&e.key_loc, format!("label name {problem}"));
        }
        let Some(value) = scalar_text(&e.value, "a label value", sink) else {
            continue;
        };
        if let Some(problem) = label_problem(&value) {
            sink.error(&e.value.loc, format!("label value {problem}"));
        }
        labels.insert(e.key.clone(), value);
    }
    labels
}

fn label_problem(text: &str) -> Option<String> {
    let chars = text.chars().count();
    let bad = text
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !LABEL_SYMBOLS.contains(*c));
    let problem = match bad {
        _ if chars == 0 => "is empty".to_string(),
        _ if chars > MAX_LABEL_CHARS => format!("is {chars} characters long"),
        Some(c) => format!("contains `{}`", c.escape_debug()),
        None => return None,
    };
    Some(format!(
        "`{}` {problem}; IoT Hub takes 1..{MAX_LABEL_CHARS} of ASCII letters, digits and `{LABEL_SYMBOLS}`",
        twin::shorten(text)
    ))
}

/// What a target condition selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Targets<'a> {
    /// Device twins: configurations with device content, and deployments (which target edge devices).
    Devices,
    /// The twins of the named module: a configuration with module content (`None`: its name is
    /// invalid, and reported).
    Module(Option<&'a str>),
}

/// A module target for a message, naming `name` when it is known.
pub(super) fn module_example(name: Option<&str>) -> String {
    format!(
        "FROM devices.modules WHERE moduleId = '{}' AND tags.site = 'berlin'",
        name.unwrap_or("MODULE")
    )
}

/// The bare form `FROM devices.modules WHERE` completes into a query (offsets shift by its length).
const SELECT_ALL: &str = "SELECT * ";

/// `target`: IoT Hub's target condition, parsed with its query grammar. Device targets are a bare
/// condition (`tags.site = 'berlin'`, or `*` for every device); a module target is `FROM
/// devices.modules WHERE ...` and names its module with `moduleId = 'NAME'`. Either reads only
/// the fields IoT Hub allows ([`query::is_target_path`]).
pub(super) fn target(v: &Node, targets: Targets<'_>, sink: &mut Sink) -> Option<String> {
    let text = query_text(v, "`target`", sink)?;
    let lead = text.len() - text.trim_start().len();
    let condition = text.trim();
    if condition.is_empty() {
        let example = match targets {
            Targets::Devices => "tags.site = 'berlin' (or `*` for every device)".to_string(),
            Targets::Module(name) => module_example(name),
        };
        sink.error(
            &v.loc,
            format!("write IoT Hub's target condition in `target`, e.g. {example}: it is empty"),
        );
        return None;
    }
    let from = condition
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("from ") || p.eq_ignore_ascii_case("from\t"));
    let filter = match targets {
        Targets::Devices if from => {
            sink.error(
                &v.loc,
                "write the target as a bare condition such as tags.site = 'berlin': `FROM ...` is the form of module configurations".to_string(),
            );
            return None;
        }
        Targets::Devices => match query::parse_condition(condition) {
            Ok(Condition::All) => return Some(text),
            Ok(Condition::Expr(expr)) => expr,
            Err(e) => {
                let at = e.offset().map(|o| o + lead);
                sink.error(&v.loc, syntax("target condition", &text, at, &e));
                return None;
            }
        },
        Targets::Module(name) => {
            let parsed = from.then(|| query::parse(&format!("{SELECT_ALL}{condition}")));
            match parsed {
                Some(Ok(query::Query {
                    collection: query::Collection::Modules,
                    filter: Some(filter),
                    ..
                })) => filter,
                Some(Err(e)) => {
                    let at = e
                        .offset()
                        .map(|o| (o + lead).saturating_sub(SELECT_ALL.len()));
                    sink.error(&v.loc, syntax("target condition", &text, at, &e));
                    return None;
                }
                _ => {
                    sink.error(
                        &v.loc,
                        format!(
                            "start a module configuration's target with `FROM devices.modules WHERE`, e.g. {}",
                            module_example(name)
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let modules = matches!(targets, Targets::Module(_));
    let mut reported = Vec::new();
    for path in filter.paths() {
        if !query::is_target_path(path, modules) && !reported.contains(&path) {
            reported.push(path);
            let also = if modules { ", moduleId" } else { "" };
            sink.error(
                &v.loc,
                format!(
                    "read only deviceId{also}, tags.* and properties.reported.* in a target condition: IoT Hub refuses `{}` there",
                    twin::shorten(&path.join("."))
                ),
            );
        }
    }
    if let Targets::Module(Some(name)) = targets
        && !pins(&filter, name)
    {
        sink.error(
            &v.loc,
            format!(
                "add `moduleId = '{name}' AND` after WHERE: a module configuration's target must name the module it declares, or it writes every module twin it matches"
            ),
        );
    }
    Some(text)
}

/// Whether `expr` holds only for module `name`: `moduleId = 'NAME'`, alone or as a term of an AND.
fn pins(expr: &Expr, name: &str) -> bool {
    let is_module =
        |o: &Operand| matches!(o, Operand::Path(p) if p.len() == 1 && p[0] == "moduleId");
    let is_name = |o: &Operand| matches!(o, Operand::Literal(v) if v.as_str() == Some(name));
    match expr {
        Expr::Compare {
            left,
            op: CompareOp::Eq,
            right,
        } => (is_module(left) && is_name(right)) || (is_name(left) && is_module(right)),
        Expr::And(terms) => terms.iter().any(|t| pins(t, name)),
        _ => false,
    }
}

/// A query syntax error worded for a manifest author: where (`at`, a byte offset into the value as
/// written), counted in characters, and why.
fn syntax(what: &str, text: &str, at: Option<usize>, e: &ParseError) -> String {
    match at {
        Some(at) => {
            let character = text.get(..at).map_or(0, |t| t.chars().count()) + 1;
            format!(
                "fix the {what} at character {character}: {} (IoT Hub's query syntax)",
                e.reason()
            )
        }
        None => format!("shorten the {what}: {}", e.reason()),
    }
}

/// Desired properties of object content (a configuration's, or a deployment module's twin): a
/// mapping that is not empty, follows the twin rules and fits a twin's desired properties.
pub(super) fn desired(v: &Node, what: &str, sink: &mut Sink) -> Option<JsonMap> {
    let Kind::Map(entries) = &v.kind else {
        return type_error(v, &format!("`{what}`"), "a mapping", sink);
    };
    if entries.is_empty() {
        sink.error(
            &v.loc,
            format!("give `{what}` at least one property: it is empty, so it writes nothing"),
        );
        return None;
    }
    let before = sink.diagnostics.len();
    twin::check_section(Section::Desired, v, Scope::Object, sink);
    let names = Names {
        device: "",
        module: None,
    };
    let desired = twin::to_json(entries, names, sink);
    let bytes = twin::size(&desired);
    if bytes > MAX_DESIRED_BYTES {
        sink.error(
            &v.loc,
            format!(
                "make `{what}` smaller: it is {bytes} bytes, and IoT Hub allows at most {MAX_DESIRED_BYTES} in a twin's desired properties"
            ),
        );
    }
    (sink.diagnostics.len() == before).then_some(desired)
}

/// `metrics`: custom metric name to query (`SELECT deviceId FROM devices WHERE ...`), at most
/// [`MAX_OBJECT_METRICS`].
pub(super) fn metrics(v: &Node, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut metrics = BTreeMap::new();
    let entries: Vec<&Entry> = mapping_entries(v, "`metrics`", sink).collect();
    if entries.len() > MAX_OBJECT_METRICS {
        sink.error(
            &v.loc,
            format!(
                "keep at most {MAX_OBJECT_METRICS} custom metrics: IoT Hub allows no more per configuration or deployment, and these are {}",
                entries.len()
            ),
        );
    }
    for m in entries {
        if let Some(problem) = label_problem(&m.key) {
            sink.error(&m.key_loc, format!("metric name {problem}"));
        }
        let what = format!("metric `{}`", twin::shorten(&m.key));
        let Some(text) = query_text(&m.value, &what, sink) else {
            continue;
        };
        if let Err(e) = query::parse(&text) {
            sink.error(
                &m.value.loc,
                syntax(&format!("query of {what}"), &text, e.offset(), &e),
            );
        }
        metrics.insert(m.key.clone(), text);
    }
    metrics
}

/// A string of object content as IoT Hub gets it ([`twin::object_text`]: no substitution, no
/// secret reference, `$${` written as `${`), within the hub's string limit.
pub(super) fn text(v: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    let s = string(v, what, sink)?;
    content_string(s, v, sink)
}

/// A string `s` written at `v`, as [`text`] takes it.
pub(super) fn content_string(s: &str, v: &Node, sink: &mut Sink) -> Option<String> {
    let before = sink.diagnostics.len();
    twin::check_string_length(s, v, sink);
    unescaped(s, v, sink).filter(|_| sink.diagnostics.len() == before)
}

/// A query (a target condition or a metric) as the hub gets it: as [`text`], but its length is
/// the query grammar's to check (IoT Hub takes queries of up to 8 KB, not a twin string's 4 KB).
fn query_text(v: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    let s = string(v, what, sink)?;
    unescaped(s, v, sink)
}

/// `s` with `$${` written as `${`, or `None` when it holds a substitution or a secret reference
/// (reported).
fn unescaped(s: &str, v: &Node, sink: &mut Sink) -> Option<String> {
    match twin::object_text(s) {
        Ok(text) => Some(text),
        Err(problem) => {
            sink.error(&v.loc, problem);
            None
        }
    }
}

/// A scalar taken as text: a string, or an integer or boolean written bare (`8080`, `true`). Other
/// numbers must be quoted, since YAML reads `1.10` as 1.1.
pub(super) fn scalar_text(v: &Node, what: &str, sink: &mut Sink) -> Option<String> {
    match &v.kind {
        Kind::Str(s) => content_string(s, v, sink),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Float(_) => {
            sink.error(
                &v.loc,
                format!("quote {what}: it is text, and YAML reads a number such as 1.10 as 1.1"),
            );
            None
        }
        _ => type_error(v, what, "a string", sink),
    }
}

/// The valid specs of one kind across the set, sorted by name. A name declared again is reported
/// where it is declared again, naming the first place; more objects than a hub holds are reported
/// at the first one too many.
pub(super) fn collect<'a, T: Clone + 'a>(
    kind: ObjectKind,
    declared: impl Iterator<Item = &'a Declared<T>>,
    sink: &mut Sink,
) -> Vec<T> {
    let mut first: HashMap<&str, &Location> = HashMap::new();
    let mut specs = Vec::new();
    let mut valid = true;
    for d in declared {
        if let Some(at) = first.get(d.name.as_str()) {
            sink.error(
                &d.loc,
                format!(
                    "rename or remove this {}: `{}` is already defined at {at}, and names are unique per kind in a manifest set",
                    kind.as_str(),
                    twin::shorten(&d.name)
                ),
            );
            continue;
        }
        first.insert(&d.name, &d.loc);
        if first.len() == MAX_HUB_OBJECTS + 1 {
            sink.error(
                &d.loc,
                format!(
                    "declare at most {MAX_HUB_OBJECTS} {kind}s: a hub holds no more (layered deployments included; 20 configurations and 10 deployments on the free tier), and this is number {}",
                    first.len(),
                    kind = kind.as_str()
                ),
            );
        }
        match &d.spec {
            Some(spec) => specs.push((d.name.clone(), spec.clone())),
            None => valid = false,
        }
    }
    if !valid {
        return Vec::new();
    }
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    specs.into_iter().map(|(_, spec)| spec).collect()
}
