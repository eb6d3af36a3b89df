//! Tokenizer for IoT Hub's query language: turns the query text into tokens that carry their byte offsets.
//!
//! It owns literal syntax (quoted strings and their escapes, numbers, `[[bracketed]]` keys) and nothing
//! about grammar: keywords are plain identifiers here, recognised case-insensitively by the parser.

use serde_json::{Number, Value};

use super::ParseError;

/// One token and where it starts in the query text (a byte offset).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(crate) kind: Kind,
    pub(crate) offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A bare word: a keyword, a function name or a path segment.
    Ident(String),
    /// A `[[...]]` path segment, for keys that are not plain identifiers (configuration IDs with `-`).
    Bracketed(String),
    Str(String),
    Number(Number),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Star,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    End,
}

impl Kind {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Kind::Ident(word) => format!("`{word}`"),
            Kind::Bracketed(key) => format!("`[[{key}]]`"),
            Kind::Str(text) => format!("string {}", Value::String(text.clone())),
            Kind::Number(n) => format!("number `{n}`"),
            Kind::Dot => "`.`".into(),
            Kind::Comma => "`,`".into(),
            Kind::LParen => "`(`".into(),
            Kind::RParen => "`)`".into(),
            Kind::LBracket => "`[`".into(),
            Kind::RBracket => "`]`".into(),
            Kind::Star => "`*`".into(),
            Kind::Eq => "`=`".into(),
            Kind::Ne => "`!=`".into(),
            Kind::Lt => "`<`".into(),
            Kind::Le => "`<=`".into(),
            Kind::Gt => "`>`".into(),
            Kind::Ge => "`>=`".into(),
            Kind::End => "end of query".into(),
        }
    }
}

/// Splits `text` into tokens, ending with [`Kind::End`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let end = token.kind == Kind::End;
        tokens.push(token);
        if end {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(ahead)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let offset = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: Kind::End,
                offset,
            });
        };
        let kind = match c {
            '\'' | '"' => self.string(c)?,
            '[' if self.peek_at(1) == Some('[') => self.bracketed()?,
            '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            c if c.is_ascii_digit() => self.number()?,
            c if is_ident_start(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_ident_continue) {
                    self.bump();
                }
                Kind::Ident(self.text[start..self.pos].to_owned())
            }
            _ => {
                self.bump();
                match c {
                    '.' => Kind::Dot,
                    ',' => Kind::Comma,
                    '(' => Kind::LParen,
                    ')' => Kind::RParen,
                    '[' => Kind::LBracket,
                    ']' => Kind::RBracket,
                    '*' => Kind::Star,
                    '=' => Kind::Eq,
                    '!' if self.eat('=') => Kind::Ne,
                    '<' if self.eat('=') => Kind::Le,
                    '<' if self.eat('>') => Kind::Ne,
                    '<' => Kind::Lt,
                    '>' if self.eat('=') => Kind::Ge,
                    '>' => Kind::Gt,
                    other => {
                        return Err(ParseError::InvalidCharacter {
                            offset,
                            found: other,
                        });
                    }
                }
            }
        };
        Ok(Token { kind, offset })
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// A quoted string. The quote is doubled (`'it''s'`) or backslash-escaped (`'it\'s'`) to include it.
    fn string(&mut self, quote: char) -> Result<Kind, ParseError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(ParseError::UnterminatedString { offset: start });
            };
            match c {
                c if c == quote => {
                    if self.eat(quote) {
                        out.push(quote);
                    } else {
                        return Ok(Kind::Str(out));
                    }
                }
                '\\' => out.push(self.escape()?),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, ParseError> {
        let offset = self.pos - 1;
        let invalid = ParseError::InvalidEscape { offset };
        let Some(c) = self.bump() else {
            return Err(ParseError::UnterminatedString { offset });
        };
        Ok(match c {
            '\'' | '"' | '\\' | '/' => c,
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let digits = self
                    .text
                    .get(self.pos..self.pos + 4)
                    .ok_or(invalid.clone())?;
                if !digits.chars().all(|d| d.is_ascii_hexdigit()) {
                    return Err(invalid);
                }
                let code = u32::from_str_radix(digits, 16).map_err(|_| invalid.clone())?;
                self.pos += 4;
                char::from_u32(code).ok_or(invalid)?
            }
            _ => return Err(invalid),
        })
    }

    /// `[[key]]`: everything up to the first `]]` is the key, verbatim.
    fn bracketed(&mut self) -> Result<Kind, ParseError> {
        let offset = self.pos;
        self.pos += 2;
        let rest = &self.text[self.pos..];
        let Some(len) = rest.find("]]") else {
            return Err(ParseError::UnterminatedBracket { offset });
        };
        let key = rest[..len].to_owned();
        self.pos += len + 2;
        if key.is_empty() {
            return Err(ParseError::EmptyBracket { offset });
        }
        Ok(Kind::Bracketed(key))
    }

    /// An integer (kept exact when it fits `i64`) or a finite float, optionally negative.
    fn number(&mut self) -> Result<Kind, ParseError> {
        let offset = self.pos;
        self.eat('-');
        self.digits();
        let mut float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) {
            float = true;
            self.bump();
            self.digits();
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|d| d.is_ascii_digit()) {
                float = true;
                self.pos += 1 + sign;
                self.digits();
            }
        }
        let text = &self.text[offset..self.pos];
        if self.peek().is_some_and(is_ident_continue) {
            return Err(ParseError::InvalidNumber {
                offset,
                text: text.to_owned(),
            });
        }
        let number = match text.parse::<i64>() {
            Ok(n) if !float => Some(Number::from(n)),
            _ => text.parse::<f64>().ok().and_then(Number::from_f64),
        };
        number.map(Kind::Number).ok_or(ParseError::InvalidNumber {
            offset,
            text: text.to_owned(),
        })
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|d| d.is_ascii_digit()) {
            self.bump();
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn operators_are_split_greedily() {
        assert_eq!(
            kinds("<= >= <> != < > ="),
            vec![
                Kind::Le,
                Kind::Ge,
                Kind::Ne,
                Kind::Ne,
                Kind::Lt,
                Kind::Gt,
                Kind::Eq,
                Kind::End
            ]
        );
    }

    #[test]
    fn doubled_and_backslashed_quotes_are_unescaped() {
        assert_eq!(
            kinds(r#"'it''s' "say ""hi""" 'a\'b\n\u0041'"#),
            vec![
                Kind::Str("it's".into()),
                Kind::Str("say \"hi\"".into()),
                Kind::Str("a'b\nA".into()),
                Kind::End
            ]
        );
    }

    #[test]
    fn integers_stay_exact_and_floats_parse() {
        assert_eq!(
            kinds("42 -7 1.5 2e3 9223372036854775807"),
            vec![
                Kind::Number(42.into()),
                Kind::Number((-7).into()),
                Kind::Number(Number::from_f64(1.5).unwrap()),
                Kind::Number(Number::from_f64(2000.0).unwrap()),
                Kind::Number(i64::MAX.into()),
                Kind::End
            ]
        );
    }

    #[test]
    fn bracketed_keys_keep_special_characters() {
        assert_eq!(
            kinds("configurations.[[my-config.v2]].status"),
            vec![
                Kind::Ident("configurations".into()),
                Kind::Dot,
                Kind::Bracketed("my-config.v2".into()),
                Kind::Dot,
                Kind::Ident("status".into()),
                Kind::End
            ]
        );
    }

    #[test]
    fn token_offsets_are_byte_offsets() {
        let tokens = tokenize("a = 'é' AND").unwrap();
        let offsets: Vec<usize> = tokens.iter().map(|t| t.offset).collect();
        assert_eq!(offsets, vec![0, 2, 4, 9, 12]);
    }

    #[test]
    fn unterminated_string_reports_where_it_started() {
        assert_eq!(
            tokenize("x = 'abc"),
            Err(ParseError::UnterminatedString { offset: 4 })
        );
    }

    #[test]
    fn stray_characters_are_rejected_with_their_offset() {
        assert_eq!(
            tokenize("x = #"),
            Err(ParseError::InvalidCharacter {
                offset: 4,
                found: '#'
            })
        );
    }

    #[test]
    fn number_glued_to_letters_is_rejected() {
        assert!(matches!(
            tokenize("12abc"),
            Err(ParseError::InvalidNumber { offset: 0, .. })
        ));
    }
}
