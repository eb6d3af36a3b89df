//! IoT Hub's query language, defined once for the emulator and the manifest loader: parse `SELECT ... FROM
//! devices[.modules] [WHERE ...]` and configuration target conditions, then evaluate them against twin
//! documents. The emulator answers queries and applies configurations with it; the manifest loader
//! checks target conditions and metric queries with the same grammar, so a manifest that validates
//! is one the emulator parses.
//!
//! Pure: text in, values out. It owns the grammar, the evaluation rules and which twin fields a target
//! condition may read; it does not own the twin store, paging, continuation tokens or the count itself
//! (the server counts the rows that [`Query::matches`]).
//!
//! # Semantics
//!
//! - A path that does not resolve is *undefined*. Any comparison, `IN`/`NIN` or `STARTSWITH`/`ENDSWITH`/
//!   `CONTAINS` that involves an undefined value is itself undefined; `IS_DEFINED` and the `IS_*` type
//!   checks are always true or false.
//! - `=`, `!=` and `<>` between defined values of different types are simply unequal (`=` false, `!=`
//!   true). Numbers compare by value (`1 = 1.0`); objects and arrays compare structurally.
//! - `<`, `<=`, `>`, `>=` order numbers numerically and strings by code point; any other pair (a type
//!   mismatch, booleans, null, objects) is undefined.
//! - `IN`/`NIN` test membership with the `=` rule above; an undefined left side is undefined for both.
//! - `NOT`, `AND`, `OR` use three-valued logic (undefined behaves as "unknown": `NOT` keeps it undefined,
//!   `false AND undefined` is false, `true OR undefined` is true). A twin matches only when the whole
//!   condition is true. So `NOT (tags.x = 1)` and `tags.x != 1` do **not** match a twin without
//!   `tags.x`, as in the DocumentDB dialect IoT Hub's language descends from; write
//!   `NOT IS_DEFINED(tags.x) OR tags.x != 1` to include it.
//! - Property names resolve case-sensitively first, then case-insensitively (IoT Hub treats property
//!   names in queries as case-insensitive, string values as case-sensitive: Azure/azure-iot-sdk-csharp#257).
//! - `devices.` and `devices.modules.` prefixes on paths are dropped (`devices.modules.moduleId` is
//!   `moduleId`).
//! - Keywords are case-insensitive and reserved only where a path would start; after a `.` any word is
//!   a key (`tags.group`). Keys that are not plain words use IoT Hub's `[[...]]` form.

mod eval;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// IoT Hub fails query strings longer than this (about 8 KB; section 6 of the protocol notes).
pub const MAX_QUERY_BYTES: usize = 8192;

/// How deeply parentheses and `NOT`s may nest, so hostile input cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// The name a `COUNT()` column gets without `AS`, following DocumentDB's `$1` naming.
pub const DEFAULT_COUNT_ALIAS: &str = "$1";

/// A parsed `SELECT ... FROM ... [WHERE ...]` query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub collection: Collection,
    pub select: Select,
    /// `None` when there is no `WHERE`: every twin matches.
    pub filter: Option<Expr>,
    /// `SELECT TOP n`: the server returns at most `n` rows in total.
    pub top: Option<u64>,
}

/// What `FROM` iterates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.modules`: module twins.
    Modules,
}

/// What each row looks like.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT *`: the twin itself.
    All,
    /// `SELECT COUNT() [AS alias]`: one row `{alias: count}` for the whole result.
    Count { alias: String },
    /// `SELECT a, b.c AS d`: an object per twin.
    Fields(Vec<Projection>),
}

/// One column of a `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Keys from the twin root, with any `devices.`/`devices.modules.` prefix already dropped.
    pub path: Vec<String>,
    pub alias: Option<String>,
}

impl Projection {
    /// The column's key in the row: the alias, else the last path segment as written.
    pub fn name(&self) -> &str {
        match &self.alias {
            Some(alias) => alias,
            None => self.path.last().map_or("", String::as_str),
        }
    }
}

/// A `WHERE` condition or a configuration target condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare {
        left: Operand,
        op: CompareOp,
        right: Operand,
    },
    /// `x IN [..]`, or `x NIN [..]` when `negated`.
    In {
        operand: Operand,
        list: Vec<Value>,
        negated: bool,
    },
    /// `IS_DEFINED(x)`, `IS_STRING(x)`, ...
    Check {
        check: Check,
        operand: Operand,
    },
    /// `STARTSWITH(x, 'p')`, `ENDSWITH(x, 's')`, `CONTAINS(x, 's')`.
    Text {
        test: TextTest,
        operand: Operand,
        pattern: Operand,
    },
    Not(Box<Expr>),
    /// Two or more conditions that must all hold.
    And(Vec<Expr>),
    /// Two or more conditions of which one must hold.
    Or(Vec<Expr>),
}

/// A value in a condition: a twin path or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Vec<String>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    /// `!=` or `<>`.
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The type-checking functions; each is true or false, never undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Defined,
    String,
    Number,
    Bool,
    Object,
    Array,
    Null,
    /// String, number, boolean or null.
    Primitive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// A configuration `targetCondition`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `*`: every twin.
    All,
    Expr(Expr),
}

/// Why a query was rejected. Offsets are 0-based byte offsets into the query text.
///
/// It displays as `at offset N: REASON`; [`ParseError::reason`] is the reason alone, for callers
/// that say where in their own terms (the manifest loader names the character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooLong {
        len: usize,
        max: usize,
    },
    Unexpected {
        offset: usize,
        expected: String,
        found: String,
    },
    InvalidCharacter {
        offset: usize,
        found: char,
    },
    UnterminatedString {
        offset: usize,
    },
    InvalidEscape {
        offset: usize,
    },
    UnterminatedBracket {
        offset: usize,
    },
    EmptyBracket {
        offset: usize,
    },
    InvalidNumber {
        offset: usize,
        text: String,
    },
    TooDeep {
        offset: usize,
        max: usize,
    },
    UnknownFunction {
        offset: usize,
        name: String,
    },
    WrongArgumentCount {
        offset: usize,
        function: String,
        expected: usize,
        found: usize,
    },
    DuplicateColumn {
        offset: usize,
        name: String,
    },
    Unsupported {
        offset: usize,
        feature: String,
    },
}

impl ParseError {
    /// Where in the query the problem is, as a byte offset (`None` for a query that is too long).
    pub fn offset(&self) -> Option<usize> {
        match self {
            ParseError::TooLong { .. } => None,
            ParseError::Unexpected { offset, .. }
            | ParseError::InvalidCharacter { offset, .. }
            | ParseError::UnterminatedString { offset }
            | ParseError::InvalidEscape { offset }
            | ParseError::UnterminatedBracket { offset }
            | ParseError::EmptyBracket { offset }
            | ParseError::InvalidNumber { offset, .. }
            | ParseError::TooDeep { offset, .. }
            | ParseError::UnknownFunction { offset, .. }
            | ParseError::WrongArgumentCount { offset, .. }
            | ParseError::DuplicateColumn { offset, .. }
            | ParseError::Unsupported { offset, .. } => Some(*offset),
        }
    }

    /// What is wrong, without where.
    pub fn reason(&self) -> String {
        match self {
            ParseError::TooLong { len, max } => {
                format!("query is {len} bytes long, over the limit of {max}")
            }
            ParseError::Unexpected {
                expected, found, ..
            } => format!("expected {expected}, found {found}"),
            ParseError::InvalidCharacter { found, .. } => {
                format!("unexpected character `{found}`")
            }
            ParseError::UnterminatedString { .. } => "string is not terminated".into(),
            ParseError::InvalidEscape { .. } => "invalid escape sequence in string".into(),
            ParseError::UnterminatedBracket { .. } => "`[[` is not closed by `]]`".into(),
            ParseError::EmptyBracket { .. } => "`[[]]` names no key".into(),
            ParseError::InvalidNumber { text, .. } => format!("invalid number `{text}`"),
            ParseError::TooDeep { max, .. } => format!("nesting deeper than {max} levels"),
            ParseError::UnknownFunction { name, .. } => format!("unknown function `{name}`"),
            ParseError::WrongArgumentCount {
                function,
                expected,
                found,
                ..
            } => format!("`{function}` takes {expected} argument(s), found {found}"),
            ParseError::DuplicateColumn { name, .. } => {
                format!("column `{name}` appears twice; rename one with AS")
            }
            ParseError::Unsupported { feature, .. } => {
                format!("{feature} is not supported by twinops")
            }
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset() {
            Some(offset) => write!(f, "at offset {offset}: {}", self.reason()),
            None => f.write_str(&self.reason()),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a full query such as `SELECT * FROM devices WHERE tags.env = 'prod'`.
pub fn parse(sql: &str) -> Result<Query, ParseError> {
    parser::query(sql)
}

/// Parses a configuration `targetCondition`: a bare condition such as `tags.environment='test'`, or `*`.
pub fn parse_condition(cond: &str) -> Result<Condition, ParseError> {
    parser::condition(cond)
}

impl Query {
    /// Whether the `WHERE` condition is true for `twin` (always, without `WHERE`).
    pub fn matches(&self, twin: &Value) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(twin))
    }

    /// The row for `twin`: the twin itself for `SELECT *` (and for `COUNT()`, whose single row is
    /// [`Query::count_row`]), or an object of the selected columns, leaving out undefined ones.
    pub fn project(&self, twin: &Value) -> Value {
        match &self.select {
            Select::All | Select::Count { .. } => twin.clone(),
            Select::Fields(columns) => eval::project(columns, twin),
        }
    }

    /// Whether this is a `SELECT COUNT()` query, answered with the single row from [`Query::count_row`].
    pub fn is_count(&self) -> bool {
        matches!(self.select, Select::Count { .. })
    }

    /// The one row of a `COUNT()` query, `{"alias": count}`; `None` for other queries.
    pub fn count_row(&self, count: u64) -> Option<Value> {
        match &self.select {
            Select::Count { alias } => {
                let mut row = serde_json::Map::new();
                row.insert(alias.clone(), Value::from(count));
                Some(Value::Object(row))
            }
            _ => None,
        }
    }
}

impl Condition {
    /// Whether the condition targets `twin`.
    pub fn matches(&self, twin: &Value) -> bool {
        match self {
            Condition::All => true,
            Condition::Expr(expr) => expr.matches(twin),
        }
    }
}

/// Whether a configuration's target condition may read `path` (live-hub.md): live hubs allow only
/// `deviceId`, `tags` and `properties.reported`; module configurations may also read `moduleId`,
/// which their documented targets use to name their module. Names are matched as written.
pub fn is_target_path(path: &[String], modules: bool) -> bool {
    match path.first().map(String::as_str) {
        Some("deviceId" | "tags") => true,
        Some("moduleId") => modules,
        Some("properties") => path.get(1).is_some_and(|s| s == "reported"),
        _ => false,
    }
}

impl Expr {
    /// Whether the condition is true for `twin` (false and undefined both fail).
    pub fn matches(&self, twin: &Value) -> bool {
        self.evaluate(twin) == Some(true)
    }

    /// The three-valued result: `None` is undefined.
    pub fn evaluate(&self, twin: &Value) -> Option<bool> {
        eval::evaluate(self, twin)
    }

    /// The module a condition holds for only: `moduleId = 'NAME'` (either way round), alone or
    /// as a term of an `AND` (the first such term).
    pub fn pinned_module(&self) -> Option<&str> {
        let is_module =
            |o: &Operand| matches!(o, Operand::Path(p) if p.len() == 1 && p[0] == "moduleId");
        fn name(o: &Operand) -> Option<&str> {
            match o {
                Operand::Literal(Value::String(s)) => Some(s),
                _ => None,
            }
        }
        match self {
            Expr::Compare {
                left,
                op: CompareOp::Eq,
                right,
            } => {
                if is_module(left) {
                    name(right)
                } else if is_module(right) {
                    name(left)
                } else {
                    None
                }
            }
            Expr::And(terms) => terms.iter().find_map(Expr::pinned_module),
            _ => None,
        }
    }

    /// Every twin path the condition reads, in the order written.
    pub fn paths(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a [String]>) {
        let mut operand = |o: &'a Operand| {
            if let Operand::Path(p) = o {
                out.push(p.as_slice());
            }
        };
        match self {
            Expr::Compare { left, right, .. } => {
                operand(left);
                operand(right);
            }
            Expr::In { operand: o, .. } | Expr::Check { operand: o, .. } => operand(o),
            Expr::Text {
                operand: o,
                pattern,
                ..
            } => {
                operand(o);
                operand(pattern);
            }
            Expr::Not(inner) => inner.collect_paths(out),
            Expr::And(terms) | Expr::Or(terms) => {
                for t in terms {
                    t.collect_paths(out);
                }
            }
        }
    }
}
