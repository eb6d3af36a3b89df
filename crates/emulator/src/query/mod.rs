//! IoT Hub's query language, as the emulator needs it: parse `SELECT ... FROM devices[.modules] [WHERE ...]`
//! and configuration target conditions, then evaluate them against twin documents.
//!
//! Pure: text in, values out. It owns the grammar and the evaluation rules; it does not own the twin store,
//! paging, continuation tokens or the count itself (the server counts the rows that [`Query::matches`]).
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
pub(crate) const MAX_QUERY_BYTES: usize = 8192;

/// How deeply parentheses and `NOT`s may nest, so hostile input cannot exhaust the stack.
pub(crate) const MAX_NESTING: usize = 64;

/// The name a `COUNT()` column gets without `AS`, following DocumentDB's `$1` naming.
pub(crate) const DEFAULT_COUNT_ALIAS: &str = "$1";

/// A parsed `SELECT ... FROM ... [WHERE ...]` query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub(crate) collection: Collection,
    pub(crate) select: Select,
    /// `None` when there is no `WHERE`: every twin matches.
    pub(crate) filter: Option<Expr>,
    /// `SELECT TOP n`: the server returns at most `n` rows in total.
    pub(crate) top: Option<u64>,
}

/// What `FROM` iterates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.modules`: module twins.
    Modules,
}

/// What each row looks like.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Select {
    /// `SELECT *`: the twin itself.
    All,
    /// `SELECT COUNT() [AS alias]`: one row `{alias: count}` for the whole result.
    Count { alias: String },
    /// `SELECT a, b.c AS d`: an object per twin.
    Fields(Vec<Projection>),
}

/// One column of a `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Projection {
    /// Keys from the twin root, with any `devices.`/`devices.modules.` prefix already dropped.
    pub(crate) path: Vec<String>,
    pub(crate) alias: Option<String>,
}

impl Projection {
    /// The column's key in the row: the alias, else the last path segment as written.
    pub(crate) fn name(&self) -> &str {
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("query is {len} bytes long, over the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("at offset {offset}: expected {expected}, found {found}")]
    Unexpected {
        offset: usize,
        expected: String,
        found: String,
    },
    #[error("at offset {offset}: unexpected character `{found}`")]
    InvalidCharacter { offset: usize, found: char },
    #[error("at offset {offset}: string is not terminated")]
    UnterminatedString { offset: usize },
    #[error("at offset {offset}: invalid escape sequence in string")]
    InvalidEscape { offset: usize },
    #[error("at offset {offset}: `[[` is not closed by `]]`")]
    UnterminatedBracket { offset: usize },
    #[error("at offset {offset}: `[[]]` names no key")]
    EmptyBracket { offset: usize },
    #[error("at offset {offset}: invalid number `{text}`")]
    InvalidNumber { offset: usize, text: String },
    #[error("at offset {offset}: nesting deeper than {max} levels")]
    TooDeep { offset: usize, max: usize },
    #[error("at offset {offset}: unknown function `{name}`")]
    UnknownFunction { offset: usize, name: String },
    #[error("at offset {offset}: `{function}` takes {expected} argument(s), found {found}")]
    WrongArgumentCount {
        offset: usize,
        function: String,
        expected: usize,
        found: usize,
    },
    #[error("at offset {offset}: column `{name}` appears twice; rename one with AS")]
    DuplicateColumn { offset: usize, name: String },
    #[error("at offset {offset}: {feature} is not supported by the emulator")]
    Unsupported { offset: usize, feature: String },
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
}

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

impl Expr {
    /// Whether the condition is true for `twin` (false and undefined both fail).
    pub(crate) fn matches(&self, twin: &Value) -> bool {
        self.evaluate(twin) == Some(true)
    }

    /// The three-valued result: `None` is undefined.
    pub(crate) fn evaluate(&self, twin: &Value) -> Option<bool> {
        eval::evaluate(self, twin)
    }
}
