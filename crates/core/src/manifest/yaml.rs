//! The located YAML tree: turns one file's text into documents of [`Node`]s that remember where they were
//! written, using granit-parser's event stream.
//!
//! Owns everything YAML-specific: scalar resolution (YAML 1.2 core schema), core tags, duplicate keys,
//! anchors and aliases (expanded here, within a node budget), and the nesting limit. It knows nothing of
//! manifests; later stages see only [`Node`]s. A syntax error or an exhausted budget stops the file.

use std::collections::HashMap;
use std::sync::Arc;

use granit_parser::{ErrorKind, Event, Marker, Parser, ScalarStyle, Span, Tag};

use super::Diagnostic;
use crate::model::Location;

/// Deepest YAML nesting accepted (mappings and sequences), far above what a manifest needs.
pub(super) const MAX_NESTING: usize = 64;
/// Nodes one manifest set may hold, written out or produced by aliases.
pub(super) const MAX_NODES: usize = 1_000_000;
/// Nodes that aliases may copy in one manifest set; what stops "billion laughs" documents early.
pub(super) const MAX_ALIAS_NODES: usize = 1_000_000;

/// A YAML value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub loc: Location,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    /// Saturated at the `i128` bounds, which the twin rules reject anyway.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping; keys are always strings.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub key: String,
    pub key_loc: Location,
    pub value: Node,
}

impl Node {
    /// The value as JSON; integers beyond `i64`/`u64` become floats and non-finite numbers `null`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| float(*i as f64)),
            Kind::Float(f) => float(*f),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

fn float(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

impl Kind {
    /// The kind as a message names it ("found a sequence").
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// What is left of the set-wide node budgets.
#[derive(Debug, Clone)]
pub(super) struct Budget {
    pub nodes: usize,
    pub alias_nodes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: MAX_NODES,
            alias_nodes: MAX_ALIAS_NODES,
        }
    }
}

/// One file's documents, the problems found, and whether parsing stopped early.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub documents: Vec<Node>,
    pub diagnostics: Vec<Diagnostic>,
    /// True when a syntax error or a limit stopped the file; `documents` then holds only what came before.
    pub stopped: bool,
}

/// An anchored node kept for its aliases, with its size and height measured once.
struct Anchored {
    node: Node,
    size: usize,
    height: usize,
}

enum Frame {
    Seq {
        loc: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        loc: Location,
        anchor: usize,
        entries: Vec<Entry>,
        /// `Some(None)` after a key whose value must be dropped (an unusable key, already reported).
        key: Option<Option<(String, Location)>>,
        seen: HashMap<String, Location>,
    },
}

struct Builder<'a> {
    file: &'a Arc<str>,
    text: &'a str,
    budget: &'a mut Budget,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    root: Option<Node>,
    out: Parsed,
}

/// Parses every document of one file (already valid UTF-8, BOM removed).
pub(super) fn parse(file: &Arc<str>, text: &str, budget: &mut Budget) -> Parsed {
    let options = granit_parser::options! {
        emit_comments: false,
        flow_nesting_limit: MAX_NESTING + 8,
        block_nesting_limit: MAX_NESTING + 8,
    };
    let mut builder = Builder {
        file,
        text,
        budget,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        out: Parsed::default(),
    };
    for event in Parser::new_from_str_with_options(text, options) {
        let step = match event {
            Ok((event, span)) => builder.event(event, span),
            Err(e) => Err(Diagnostic {
                location: builder.at(e.marker()),
                message: match e.kind() {
                    // The scanner looks ahead, so its own nesting limit can fire before ours.
                    ErrorKind::RecursionLimitExceeded => nesting_message(),
                    _ => format!("yaml syntax error: {}", e.info()),
                },
            }),
        };
        if let Err(d) = step {
            builder.out.diagnostics.push(d);
            builder.out.stopped = true;
            break;
        }
    }
    builder.out
}

impl Builder<'_> {
    fn at(&self, m: &Marker) -> Location {
        Location {
            file: self.file.clone(),
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }

    fn report(&mut self, location: Location, message: String) {
        self.out.diagnostics.push(Diagnostic { location, message });
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        let loc = self.at(&span.start);
        match event {
            Event::DocumentStart(..) => {
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                let root = self.root.take().unwrap_or(Node {
                    loc,
                    kind: Kind::Null,
                });
                self.out.documents.push(root);
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.spend(&loc)?;
                if self.expects_key() {
                    let key = self.scalar_key(value.into_owned(), style, &loc);
                    self.set_key(key, loc);
                } else {
                    let kind = self.resolve(value.into_owned(), style, tag.as_deref(), &loc);
                    self.complete(Node { loc, kind }, anchor);
                }
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.open(&loc, tag.as_deref(), "seq")?;
                self.stack.push(Frame::Seq {
                    loc,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                self.open(&loc, tag.as_deref(), "map")?;
                self.stack.push(Frame::Map {
                    loc,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { loc, anchor, items }) => self.complete(
                    Node {
                        loc,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                Some(Frame::Map {
                    loc,
                    anchor,
                    entries,
                    ..
                }) => self.complete(
                    Node {
                        loc,
                        kind: Kind::Map(entries),
                    },
                    anchor,
                ),
                None => {}
            },
            Event::Alias(id) => self.alias(id, &span, loc)?,
            _ => {}
        }
        Ok(())
    }

    fn spend(&mut self, loc: &Location) -> Result<(), Diagnostic> {
        if self.budget.nodes == 0 {
            return Err(Diagnostic {
                location: loc.clone(),
                message: format!(
                    "the manifest set has more than {MAX_NODES} yaml nodes; use templates and ranges instead of writing every device out"
                ),
            });
        }
        self.budget.nodes -= 1;
        Ok(())
    }

    fn open(&mut self, loc: &Location, tag: Option<&Tag>, want: &str) -> Result<(), Diagnostic> {
        self.spend(loc)?;
        if self.stack.len() >= MAX_NESTING {
            return Err(Diagnostic {
                location: loc.clone(),
                message: nesting_message(),
            });
        }
        if let Some(tag) = tag
            && tag.core_suffix() != Some(want)
        {
            self.report(loc.clone(), unsupported_tag(tag));
        }
        if self.expects_key() {
            self.report(
                loc.clone(),
                "mapping keys must be strings, found a collection".to_string(),
            );
            self.set_key(None, loc.clone());
        }
        Ok(())
    }

    fn alias(&mut self, id: usize, span: &Span, loc: Location) -> Result<(), Diagnostic> {
        let name = span.slice(self.text).unwrap_or("*").to_string();
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(Diagnostic {
                location: loc,
                message: format!("alias `{name}` refers to no anchor defined before it"),
            });
        };
        if anchored.size > self.budget.alias_nodes {
            return Err(Diagnostic {
                location: loc,
                message: format!(
                    "alias `{name}` expands past the limit of {MAX_ALIAS_NODES} nodes copied by aliases in a manifest set"
                ),
            });
        }
        if self.stack.len() + anchored.height > MAX_NESTING {
            return Err(Diagnostic {
                location: loc,
                message: format!(
                    "alias `{name}` makes yaml nesting deeper than {MAX_NESTING} levels"
                ),
            });
        }
        self.budget.alias_nodes -= anchored.size;
        let node = anchored.node.clone();
        if self.expects_key() {
            let key = match &node.kind {
                Kind::Str(s) => Some((s.clone(), loc.clone())),
                Kind::Bool(b) => Some((b.to_string(), loc.clone())),
                Kind::Int(i) => Some((i.to_string(), loc.clone())),
                other => {
                    let found = other.describe();
                    self.report(
                        loc.clone(),
                        format!("mapping keys must be strings, found {found}"),
                    );
                    None
                }
            };
            self.set_key(key, loc);
        } else {
            self.complete(node, 0);
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn scalar_key(
        &mut self,
        text: String,
        style: ScalarStyle,
        loc: &Location,
    ) -> Option<(String, Location)> {
        if style == ScalarStyle::Plain && text == "<<" {
            self.report(
                loc.clone(),
                "yaml merge keys (`<<`) are not supported; use templates to share fields"
                    .to_string(),
            );
            return None;
        }
        Some((text, loc.clone()))
    }

    fn set_key(&mut self, key: Option<(String, Location)>, loc: Location) {
        let mut duplicate = None;
        if let Some(Frame::Map {
            key: slot, seen, ..
        }) = self.stack.last_mut()
        {
            let key = match key {
                Some((k, kloc)) => match seen.get(&k) {
                    Some(first) => {
                        duplicate = Some(format!(
                            "duplicate key `{k}`; it is already defined at {first}"
                        ));
                        None
                    }
                    None => {
                        seen.insert(k.clone(), kloc.clone());
                        Some((k, kloc))
                    }
                },
                None => None,
            };
            *slot = Some(key);
        }
        if let Some(message) = duplicate {
            self.report(loc, message);
        }
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            let (size, height) = measure(&node);
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    height,
                },
            );
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => {
                if let Some(Some((key, key_loc))) = key.take() {
                    entries.push(Entry {
                        key,
                        key_loc,
                        value: node,
                    });
                }
            }
        }
    }

    fn resolve(
        &mut self,
        text: String,
        style: ScalarStyle,
        tag: Option<&Tag>,
        loc: &Location,
    ) -> Kind {
        let Some(tag) = tag else {
            return if style == ScalarStyle::Plain {
                resolve_plain(text)
            } else {
                Kind::Str(text)
            };
        };
        let resolved = resolve_plain(text.clone());
        let ok = match (tag.core_suffix(), &resolved) {
            (Some("str"), _) => return Kind::Str(text),
            (Some("null"), Kind::Null)
            | (Some("bool"), Kind::Bool(_))
            | (Some("int"), Kind::Int(_))
            | (Some("float"), Kind::Float(_)) => true,
            (Some("float"), Kind::Int(i)) => return Kind::Float(*i as f64),
            (Some(suffix @ ("null" | "bool" | "int" | "float")), _) => {
                self.report(
                    loc.clone(),
                    format!("`{text}` is not a valid `!!{suffix}` value"),
                );
                false
            }
            _ => {
                self.report(loc.clone(), unsupported_tag(tag));
                false
            }
        };
        if ok { resolved } else { Kind::Null }
    }
}

fn nesting_message() -> String {
    format!("yaml nesting is deeper than {MAX_NESTING} levels")
}

fn unsupported_tag(tag: &Tag) -> String {
    format!(
        "unsupported yaml tag `{}{}`; only the core schema tags !!str, !!int, !!float, !!bool, !!null, !!map and !!seq are allowed",
        tag.original_handle(),
        tag.suffix()
    )
}

/// Node count and height (0 for a scalar) of a tree whose height is bounded by [`MAX_NESTING`].
fn measure(node: &Node) -> (usize, usize) {
    match &node.kind {
        Kind::Seq(items) => items.iter().fold((1, 1), |(size, height), n| {
            let (s, h) = measure(n);
            (size + s, height.max(h + 1))
        }),
        Kind::Map(entries) => entries.iter().fold((1, 1), |(size, height), e| {
            let (s, h) = measure(&e.value);
            (size + s, height.max(h + 1))
        }),
        _ => (1, 0),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: String) -> Kind {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(kind) = resolve_int(&text) {
        return kind;
    }
    if is_float(&text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Kind::Float(f);
    }
    Kind::Str(text)
}

fn resolve_int(text: &str) -> Option<Kind> {
    let (radix, digits, negative) = if let Some(d) = text.strip_prefix("0x") {
        (16, d, false)
    } else if let Some(d) = text.strip_prefix("0o") {
        (8, d, false)
    } else if let Some(d) = text.strip_prefix('-') {
        (10, d, true)
    } else {
        (10, text.strip_prefix('+').unwrap_or(text), false)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).unwrap_or(i128::MAX);
    Some(Kind::Int(if negative { -magnitude } else { magnitude }))
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Parsed {
        parse(&Arc::from("t.yaml"), text, &mut Budget::default())
    }

    fn root(text: &str) -> Node {
        let parsed = parse_str(text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        parsed.documents.into_iter().next().expect("one document")
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let Kind::Seq(items) = root("[1, -2, 0x1f, 1.5, .inf, true, ~, yes, '1', 1e3]").kind else {
            panic!("not a sequence");
        };
        let kinds: Vec<Kind> = items.into_iter().map(|n| n.kind).collect();
        assert_eq!(kinds[0], Kind::Int(1));
        assert_eq!(kinds[1], Kind::Int(-2));
        assert_eq!(kinds[2], Kind::Int(31));
        assert_eq!(kinds[3], Kind::Float(1.5));
        assert_eq!(kinds[4], Kind::Float(f64::INFINITY));
        assert_eq!(kinds[5], Kind::Bool(true));
        assert_eq!(kinds[6], Kind::Null);
        assert_eq!(kinds[7], Kind::Str("yes".into()));
        assert_eq!(kinds[8], Kind::Str("1".into()));
        assert_eq!(kinds[9], Kind::Float(1000.0));
    }

    #[test]
    fn keys_and_values_carry_their_positions() {
        let Kind::Map(entries) = root("a:\n  b: x\n").kind else {
            panic!("not a mapping");
        };
        assert_eq!((entries[0].key_loc.line, entries[0].key_loc.column), (1, 1));
        let Kind::Map(inner) = &entries[0].value.kind else {
            panic!("not a mapping");
        };
        assert_eq!((inner[0].key_loc.line, inner[0].key_loc.column), (2, 3));
        assert_eq!((inner[0].value.loc.line, inner[0].value.loc.column), (2, 6));
    }

    #[test]
    fn duplicate_keys_name_both_places() {
        let parsed = parse_str("a: 1\nb: 2\na: 3\n");
        assert_eq!(parsed.diagnostics.len(), 1);
        assert_eq!(
            parsed.diagnostics[0].to_string(),
            "t.yaml:3:1: duplicate key `a`; it is already defined at t.yaml:1:1"
        );
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let Kind::Map(entries) = root("a: &x {k: 1}\nb: *x\n").kind else {
            panic!("not a mapping");
        };
        assert_eq!(entries[0].value.kind, entries[1].value.kind);
    }

    #[test]
    fn billion_laughs_stop_at_the_alias() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let parsed = parse_str(&text);
        assert!(parsed.stopped);
        assert!(
            parsed.diagnostics[0]
                .message
                .contains("expands past the limit")
        );
    }

    #[test]
    fn syntax_errors_stop_the_file() {
        let parsed = parse_str("a: [1, 2\nb: 3\n");
        assert!(parsed.stopped);
        assert!(
            parsed.diagnostics[0]
                .message
                .starts_with("yaml syntax error")
        );
    }
}
