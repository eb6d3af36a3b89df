//! Secret references (SPEC §13): a string value in `tags` or `desired` that is exactly `${env:NAME}`
//! is replaced by the environment variable NAME when the manifests are loaded, and its path becomes
//! sensitive without being listed in `sensitive`.
//!
//! Owns the reference grammar and the lookup of variables. The environment comes in through [`Env`],
//! so loading stays a function of its arguments (the CLI passes the process environment, tests a
//! closure). Nothing here puts a value into a message: problems name the variable, never what it holds.
//!
//! The grammar: a reference is the whole string value; NAME is `[A-Za-z_][A-Za-z0-9_]*`. `$${` is a
//! literal `${`, as it is for `${device}` (the scan below skips escapes exactly as
//! [`super::twin::pieces`] does), so `$${env:X}` is the text `${env:X}`. A reference inside a longer
//! string is refused rather than interpolated: a value is either a secret or not, and its digest and
//! redaction cover the whole value.

use std::collections::HashMap;
use std::fmt;

use super::twin::shorten;

/// Where `${env:NAME}` is looked up: the process environment in the CLI, a closure or [`NoEnv`] in
/// tests. `None` means the variable is not set.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// An environment in which no variable is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// What opens a reference.
pub const OPEN: &str = "${env:";

/// What is wrong with a string's secret reference, and where (in characters from the value's start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 0-based character offset of what is wrong: the `$` of the reference, or the first character
    /// of a bad name.
    pub offset: usize,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// `${env:` without a closing `}`.
    Unterminated,
    /// The text between `${env:` and `}` is not a variable name.
    BadName(String),
    /// The reference is a part of a longer string.
    NotWhole,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::Unterminated => write!(
                f,
                "unterminated secret reference `{OPEN}…`; a reference is `{OPEN}NAME}}` (write `$${{` for a literal `${{`)"
            ),
            ProblemKind::BadName(name) if name.is_empty() => write!(
                f,
                "secret reference `{OPEN}}}` names no environment variable; NAME is a letter or `_` followed by letters, digits or `_`"
            ),
            ProblemKind::BadName(name) => write!(
                f,
                "secret reference `{OPEN}{}}}` does not name an environment variable; NAME is a letter or `_` followed by letters, digits or `_`",
                shorten(name)
            ),
            ProblemKind::NotWhole => write!(
                f,
                "secret reference at character {} is part of a longer string; `{OPEN}NAME}}` must be the whole string value (write `$${{` for a literal `${{`)",
                self.offset + 1
            ),
        }
    }
}

/// Whether `name` is a variable name a reference may use.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable a string value refers to (`Some` when the whole value is `${env:NAME}`), `None` for
/// any other string, or what is wrong with an unescaped `${env:` in it.
pub fn reference(s: &str) -> Result<Option<&str>, Problem> {
    let mut from = 0;
    while let Some(found) = s[from..].find('$') {
        let at = from + found;
        let rest = &s[at..];
        if rest.starts_with("$${") {
            // An escape: `$${` is the text `${`, whatever follows.
            from = at + 3;
            continue;
        }
        if !rest.starts_with("${") {
            from = at + 1;
            continue;
        }
        if !rest.starts_with(OPEN) {
            // A template substitution such as `${device}`: `twin::pieces` checks its grammar.
            match rest.find('}') {
                Some(end) => {
                    from = at + end + 1;
                    continue;
                }
                None => return Ok(None),
            }
        }
        let offset = s[..at].chars().count();
        let body = &rest[OPEN.len()..];
        let Some(end) = body.find('}') else {
            return Err(Problem {
                offset,
                kind: ProblemKind::Unterminated,
            });
        };
        let name = &body[..end];
        if !is_name(name) {
            return Err(Problem {
                offset: offset + OPEN.chars().count(),
                kind: ProblemKind::BadName(name.to_string()),
            });
        }
        if at != 0 || OPEN.len() + end + 1 != rest.len() {
            return Err(Problem {
                offset,
                kind: ProblemKind::NotWhole,
            });
        }
        return Ok(Some(name));
    }
    Ok(None)
}

/// Why a referenced variable gives no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Unset,
    /// Set to the empty string, which is how CI systems pass a secret that does not exist (GitHub
    /// Actions' `${{ secrets.NOPE }}`); applying it would blank the value on every twin.
    Empty,
}

impl Missing {
    /// The problem, worded for a manifest author: names the variable, never a value.
    pub fn message(self, name: &str) -> String {
        match self {
            Missing::Unset => format!(
                "environment variable `{name}` is not set; `{OPEN}{name}}}` takes its value from it when the manifests are loaded"
            ),
            Missing::Empty => format!(
                "environment variable `{name}` is empty; `{OPEN}{name}}}` needs a value (CI systems pass a secret that does not exist as an empty string)"
            ),
        }
    }
}

/// Looks variables up, each once: a range of many devices refers to the same variable many times.
pub struct Lookup<'e> {
    env: &'e dyn Env,
    seen: HashMap<String, Result<String, Missing>>,
}

impl<'e> Lookup<'e> {
    pub fn new(env: &'e dyn Env) -> Lookup<'e> {
        Lookup {
            env,
            seen: HashMap::new(),
        }
    }

    /// The variable's value: set and not empty.
    pub fn get(&mut self, name: &str) -> Result<String, Missing> {
        let env = self.env;
        self.seen
            .entry(name.to_string())
            .or_insert_with(|| match env.var(name) {
                None => Err(Missing::Unset),
                Some(v) if v.is_empty() => Err(Missing::Empty),
                Some(v) => Ok(v),
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(s: &str) -> Problem {
        reference(s).expect_err(s)
    }

    #[test]
    fn a_whole_value_reference_names_its_variable() {
        assert_eq!(reference("${env:TOKEN}"), Ok(Some("TOKEN")));
        assert_eq!(reference("${env:_a1_B}"), Ok(Some("_a1_B")));
    }

    #[test]
    fn strings_without_a_reference_are_not_references() {
        for s in [
            "",
            "plain",
            "cost $5",
            "${device}",
            "${device}-${module}",
            "$${device}",
            "env:TOKEN",
            "$env:TOKEN",
            "${ env:TOKEN}",
            "${ENV:TOKEN}",
        ] {
            assert_eq!(reference(s), Ok(None), "{s:?}");
        }
    }

    #[test]
    fn an_escaped_reference_is_literal_text() {
        for s in [
            "$${env:TOKEN}",
            "a $${env:TOKEN} b",
            "$${env:not a name}",
            "$${env:",
            "$$${env:TOKEN}",
        ] {
            assert_eq!(reference(s), Ok(None), "{s:?}");
        }
        // An escape followed by a real reference still finds the reference, which is then not whole.
        assert_eq!(
            problem("$${env:A}${env:B}"),
            Problem {
                offset: 9,
                kind: ProblemKind::NotWhole
            }
        );
    }

    #[test]
    fn bad_names_are_refused_at_the_name() {
        for (s, name) in [
            ("${env:}", ""),
            ("${env:1TOKEN}", "1TOKEN"),
            ("${env:MY-TOKEN}", "MY-TOKEN"),
            ("${env:MY TOKEN}", "MY TOKEN"),
            ("${env:TÖKEN}", "TÖKEN"),
            ("${env:A.B}", "A.B"),
            ("${env:${env:A}}", "${env:A"),
        ] {
            assert_eq!(
                problem(s),
                Problem {
                    offset: 6,
                    kind: ProblemKind::BadName(name.to_string())
                },
                "{s:?}"
            );
        }
        assert_eq!(problem("ä ${env:-}").offset, 8);
    }

    #[test]
    fn an_unterminated_reference_is_refused_at_its_start() {
        assert_eq!(
            problem("${env:TOKEN"),
            Problem {
                offset: 0,
                kind: ProblemKind::Unterminated
            }
        );
        assert_eq!(problem("ab ${env:").offset, 3);
    }

    #[test]
    fn a_reference_inside_a_longer_string_is_refused_at_the_reference() {
        for (s, offset) in [
            ("Bearer ${env:TOKEN}", 7),
            ("${env:TOKEN}/suffix", 0),
            ("${env:A}${env:B}", 0),
            ("${device}-${env:TOKEN}", 10),
            ("äö${env:TOKEN}", 2),
        ] {
            assert_eq!(
                problem(s),
                Problem {
                    offset,
                    kind: ProblemKind::NotWhole
                },
                "{s:?}"
            );
        }
    }

    #[test]
    fn problems_name_the_reference_but_never_a_value() {
        let m = problem("Bearer ${env:TOKEN}").to_string();
        assert!(m.contains("character 8"), "{m}");
        let m = problem("${env:MY-TOKEN}").to_string();
        assert!(m.contains("`${env:MY-TOKEN}`"), "{m}");
        let m = Missing::Unset.message("TOKEN");
        assert!(m.contains("`TOKEN` is not set"), "{m}");
    }

    #[test]
    fn lookups_refuse_unset_and_empty_variables_and_ask_once() {
        let asked = std::cell::Cell::new(0);
        let env = |name: &str| {
            asked.set(asked.get() + 1);
            match name {
                "SET" => Some("v".to_string()),
                "EMPTY" => Some(String::new()),
                _ => None,
            }
        };
        let mut lookup = Lookup::new(&env);
        assert_eq!(lookup.get("SET"), Ok("v".to_string()));
        assert_eq!(lookup.get("SET"), Ok("v".to_string()));
        assert_eq!(lookup.get("EMPTY"), Err(Missing::Empty));
        assert_eq!(lookup.get("NOPE"), Err(Missing::Unset));
        assert_eq!(asked.get(), 3);
        assert_eq!(NoEnv.var("SET"), None);
    }
}
