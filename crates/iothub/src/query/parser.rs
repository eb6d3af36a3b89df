//! Recursive-descent parser from tokens to [`Query`] and [`Condition`] values.
//!
//! It owns the grammar, precedence (`NOT` over `AND` over `OR`), the length and nesting limits, and the
//! errors that name what was expected where. It evaluates nothing.
//!
//! ```text
//! query      = SELECT [TOP int] columns FROM devices[.modules] [WHERE condition]
//! columns    = * | COUNT() [AS name] | path [AS name] {, path [AS name]}
//! condition  = and {OR and};   and = unary {AND unary};   unary = NOT unary | primary
//! primary    = ( condition ) | function ( operand {, operand} )
//!            | operand (compare operand | [NOT] IN list | NIN list)
//! operand    = path | 'string' | "string" | number | true | false | null
//! path       = key {. key};   key = word | [[anything]]
//! list       = [ literal {, literal} ] | ( literal {, literal} )
//! ```

use serde_json::Value;

use super::lexer::{Kind, Token, tokenize};
use super::{
    Check, Collection, CompareOp, Condition, DEFAULT_COUNT_ALIAS, Expr, MAX_NESTING,
    MAX_QUERY_BYTES, Operand, ParseError, Projection, Query, Select, TextTest,
};

/// Words that cannot start a path, so that a missing column or condition is reported where it is.
const RESERVED: &[&str] = &[
    "select", "from", "where", "and", "or", "not", "in", "nin", "as", "top", "group", "by", "order",
];

pub(super) fn query(text: &str) -> Result<Query, ParseError> {
    let mut parser = Parser::new(text)?;
    parser.query()
}

pub(super) fn condition(text: &str) -> Result<Condition, ParseError> {
    let mut parser = Parser::new(text)?;
    if parser.peek().kind == Kind::Star && parser.peek_next().kind == Kind::End {
        return Ok(Condition::All);
    }
    let expr = parser.or()?;
    parser.expect_end("AND, OR or end of condition")?;
    Ok(Condition::Expr(expr))
}

struct Parser {
    tokens: Vec<Token>,
    /// Returned once `pos` runs past the tokens, so lookahead never indexes out of bounds.
    end: Token,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(ParseError::TooLong {
                len: text.len(),
                max: MAX_QUERY_BYTES,
            });
        }
        Ok(Parser {
            tokens: tokenize(text)?,
            end: Token {
                kind: Kind::End,
                offset: text.len(),
            },
            pos: 0,
            depth: 0,
        })
    }

    // --- token access; the token list ends with `End`, and `pos` never moves past it ---

    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.end)
    }

    fn peek_next(&self) -> &Token {
        self.tokens.get(self.pos + 1).unwrap_or(&self.end)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != Kind::End {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, Kind::Ident(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn eat(&mut self, kind: &Kind) -> bool {
        let found = &self.peek().kind == kind;
        if found {
            self.advance();
        }
        found
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let token = self.peek();
        ParseError::Unexpected {
            offset: token.offset,
            expected: expected.to_owned(),
            found: token.kind.describe(),
        }
    }

    fn expect(&mut self, kind: &Kind, expected: &str) -> Result<(), ParseError> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), ParseError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{}`", keyword.to_ascii_uppercase())))
        }
    }

    fn expect_end(&mut self, expected: &str) -> Result<(), ParseError> {
        if self.at_keyword("group") {
            return Err(self.unsupported("GROUP BY"));
        }
        if self.at_keyword("order") {
            return Err(self.unsupported("ORDER BY"));
        }
        self.expect(&Kind::End, expected)
    }

    fn unsupported(&self, feature: &str) -> ParseError {
        ParseError::Unsupported {
            offset: self.peek().offset,
            feature: feature.to_owned(),
        }
    }

    /// Counts one level of nesting, refusing to go past [`MAX_NESTING`].
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::TooDeep {
                offset: self.peek().offset,
                max: MAX_NESTING,
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // --- query ---

    fn query(&mut self) -> Result<Query, ParseError> {
        self.expect_keyword("select")?;
        let top = if self.eat_keyword("top") {
            Some(self.top()?)
        } else {
            None
        };
        let select = self.select()?;
        self.expect_keyword("from")?;
        let collection = self.collection()?;
        let filter = if self.eat_keyword("where") {
            let filter = self.or()?;
            self.expect_end("AND, OR or end of query")?;
            Some(filter)
        } else {
            self.expect_end("WHERE or end of query")?;
            None
        };
        Ok(Query {
            collection,
            select,
            filter,
            top,
        })
    }

    fn top(&mut self) -> Result<u64, ParseError> {
        if let Kind::Number(n) = &self.peek().kind
            && let Some(n) = n.as_u64()
        {
            self.advance();
            return Ok(n);
        }
        Err(self.unexpected("a non-negative integer after TOP"))
    }

    fn at_count(&self) -> bool {
        self.at_keyword("count") && self.peek_next().kind == Kind::LParen
    }

    fn select(&mut self) -> Result<Select, ParseError> {
        if self.eat(&Kind::Star) {
            return Ok(Select::All);
        }
        if self.at_count() {
            self.advance();
            self.advance();
            self.expect(&Kind::RParen, "`)` (COUNT takes no arguments)")?;
            let alias = match self.alias()? {
                Some(alias) => alias,
                None => DEFAULT_COUNT_ALIAS.to_owned(),
            };
            if self.peek().kind == Kind::Comma {
                return Err(self.unsupported("COUNT() with other columns (it needs GROUP BY)"));
            }
            return Ok(Select::Count { alias });
        }
        let mut columns: Vec<Projection> = Vec::new();
        loop {
            let offset = self.peek().offset;
            if self.at_count() {
                return Err(self.unsupported("COUNT() with other columns (it needs GROUP BY)"));
            }
            let path = self.path("`*`, `COUNT()` or a column path")?;
            let column = Projection {
                path,
                alias: self.alias()?,
            };
            if columns.iter().any(|c| c.name() == column.name()) {
                return Err(ParseError::DuplicateColumn {
                    offset,
                    name: column.name().to_owned(),
                });
            }
            columns.push(column);
            if !self.eat(&Kind::Comma) {
                return Ok(Select::Fields(columns));
            }
        }
    }

    fn alias(&mut self) -> Result<Option<String>, ParseError> {
        if !self.eat_keyword("as") {
            return Ok(None);
        }
        match &self.peek().kind {
            Kind::Ident(word) if !is_reserved(word) => {
                let word = word.clone();
                self.advance();
                Ok(Some(word))
            }
            Kind::Bracketed(key) => {
                let key = key.clone();
                self.advance();
                Ok(Some(key))
            }
            _ => Err(self.unexpected("a column name after AS")),
        }
    }

    fn collection(&mut self) -> Result<Collection, ParseError> {
        if !self.eat_keyword("devices") {
            return Err(self.unexpected("`devices` or `devices.modules`"));
        }
        if !self.eat(&Kind::Dot) {
            return Ok(Collection::Devices);
        }
        if self.eat_keyword("modules") {
            Ok(Collection::Modules)
        } else if self.at_keyword("jobs") {
            Err(self.unsupported("`devices.jobs`"))
        } else {
            Err(self.unexpected("`modules` after `devices.`"))
        }
    }

    // --- conditions ---

    pub(super) fn or(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and()?];
        while self.eat_keyword("or") {
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.eat_keyword("and") {
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.at_keyword("not") {
            self.enter()?;
            self.advance();
            let inner = self.unary()?;
            self.leave();
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        if self.peek().kind == Kind::LParen {
            self.enter()?;
            self.advance();
            let inner = self.or()?;
            self.expect(&Kind::RParen, "`)`, AND or OR")?;
            self.leave();
            return Ok(inner);
        }
        if let Kind::Ident(name) = &self.peek().kind
            && self.peek_next().kind == Kind::LParen
            && !is_reserved(name)
        {
            return self.call();
        }
        let left = self.operand("a condition")?;
        let op = match self.peek().kind {
            Kind::Eq => CompareOp::Eq,
            Kind::Ne => CompareOp::Ne,
            Kind::Lt => CompareOp::Lt,
            Kind::Le => CompareOp::Le,
            Kind::Gt => CompareOp::Gt,
            Kind::Ge => CompareOp::Ge,
            _ => return self.membership(left),
        };
        self.advance();
        let right = self.operand("a path or a literal to compare with")?;
        Ok(Expr::Compare { left, op, right })
    }

    /// `IN`, `NOT IN` or `NIN` after an operand.
    fn membership(&mut self, operand: Operand) -> Result<Expr, ParseError> {
        let negated = if self.eat_keyword("in") {
            false
        } else if self.eat_keyword("nin") {
            true
        } else if self.at_keyword("not")
            && matches!(&self.peek_next().kind, Kind::Ident(w) if w.eq_ignore_ascii_case("in"))
        {
            self.advance();
            self.advance();
            true
        } else {
            return Err(self.unexpected("a comparison operator, IN or NIN"));
        };
        Ok(Expr::In {
            operand,
            list: self.list()?,
            negated,
        })
    }

    fn list(&mut self) -> Result<Vec<Value>, ParseError> {
        let close = match self.peek().kind {
            Kind::LBracket => Kind::RBracket,
            Kind::LParen => Kind::RParen,
            _ => return Err(self.unexpected("a list such as ['a', 'b']")),
        };
        self.advance();
        let mut items = Vec::new();
        if self.eat(&close) {
            return Ok(items);
        }
        loop {
            let offset = self.peek().offset;
            match self.operand("a literal in the list")? {
                Operand::Literal(value) => items.push(value),
                Operand::Path(_) => {
                    return Err(ParseError::Unsupported {
                        offset,
                        feature: "a path inside an IN list".to_owned(),
                    });
                }
            }
            if self.eat(&close) {
                return Ok(items);
            }
            self.expect(&Kind::Comma, &format!("`,` or {}", close.describe()))?;
        }
    }

    fn call(&mut self) -> Result<Expr, ParseError> {
        let name_token = self.advance();
        let offset = name_token.offset;
        let Kind::Ident(name) = name_token.kind else {
            return Err(self.unexpected("a function name"));
        };
        let upper = name.to_ascii_uppercase();
        let check = match upper.as_str() {
            "IS_DEFINED" => Some(Check::Defined),
            "IS_STRING" => Some(Check::String),
            "IS_NUMBER" => Some(Check::Number),
            "IS_BOOL" => Some(Check::Bool),
            "IS_OBJECT" => Some(Check::Object),
            "IS_ARRAY" => Some(Check::Array),
            "IS_NULL" => Some(Check::Null),
            "IS_PRIMITIVE" => Some(Check::Primitive),
            _ => None,
        };
        let test = match upper.as_str() {
            "STARTSWITH" => Some(TextTest::StartsWith),
            "ENDSWITH" => Some(TextTest::EndsWith),
            "CONTAINS" => Some(TextTest::Contains),
            _ => None,
        };
        if check.is_none() && test.is_none() {
            return Err(ParseError::UnknownFunction { offset, name });
        }
        let mut args = self.arguments()?;
        let expected = if check.is_some() { 1 } else { 2 };
        if args.len() != expected {
            return Err(ParseError::WrongArgumentCount {
                offset,
                function: upper,
                expected,
                found: args.len(),
            });
        }
        let first = args.remove(0);
        Ok(match (check, test, args.pop()) {
            (Some(check), _, _) => Expr::Check {
                check,
                operand: first,
            },
            (None, Some(test), Some(pattern)) => Expr::Text {
                test,
                operand: first,
                pattern,
            },
            _ => return Err(ParseError::UnknownFunction { offset, name }),
        })
    }

    fn arguments(&mut self) -> Result<Vec<Operand>, ParseError> {
        self.expect(&Kind::LParen, "`(`")?;
        let mut args = Vec::new();
        if self.eat(&Kind::RParen) {
            return Ok(args);
        }
        loop {
            args.push(self.operand("a path or a literal argument")?);
            if self.eat(&Kind::RParen) {
                return Ok(args);
            }
            self.expect(&Kind::Comma, "`,` or `)`")?;
        }
    }

    fn operand(&mut self, expected: &str) -> Result<Operand, ParseError> {
        let literal = match &self.peek().kind {
            Kind::Str(text) => Value::String(text.clone()),
            Kind::Number(n) => Value::Number(n.clone()),
            Kind::Ident(word) if word.eq_ignore_ascii_case("true") => Value::Bool(true),
            Kind::Ident(word) if word.eq_ignore_ascii_case("false") => Value::Bool(false),
            Kind::Ident(word) if word.eq_ignore_ascii_case("null") => Value::Null,
            _ => return self.path(expected).map(Operand::Path),
        };
        self.advance();
        Ok(Operand::Literal(literal))
    }

    /// A dotted path, with a leading `devices.` or `devices.modules.` dropped.
    fn path(&mut self, expected: &str) -> Result<Vec<String>, ParseError> {
        let mut segments = Vec::new();
        let mut bare = Vec::new();
        match &self.peek().kind {
            Kind::Ident(word) if !is_reserved(word) => {
                segments.push(word.clone());
                bare.push(true);
            }
            Kind::Bracketed(key) => {
                segments.push(key.clone());
                bare.push(false);
            }
            _ => return Err(self.unexpected(expected)),
        }
        self.advance();
        while self.eat(&Kind::Dot) {
            match &self.peek().kind {
                Kind::Ident(word) => {
                    segments.push(word.clone());
                    bare.push(true);
                }
                Kind::Bracketed(key) => {
                    segments.push(key.clone());
                    bare.push(false);
                }
                _ => return Err(self.unexpected("a key after `.`")),
            }
            self.advance();
        }
        let is_word = |i: usize, word: &str| {
            bare.get(i) == Some(&true)
                && segments
                    .get(i)
                    .is_some_and(|s| s.eq_ignore_ascii_case(word))
        };
        let prefix = if is_word(0, "devices") && is_word(1, "modules") && segments.len() > 2 {
            2
        } else if is_word(0, "devices") && segments.len() > 1 {
            1
        } else {
            0
        };
        segments.drain(..prefix);
        Ok(segments)
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}
