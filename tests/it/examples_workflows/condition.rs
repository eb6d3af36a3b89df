//! The expressions of the examples, evaluated as GitHub Actions (`${{ a.b == 'x' && always() }}`,
//! `secrets[matrix.secret]`, `a || b`) and Azure Pipelines (`and(succeeded(), eq(variables['x'],
//! 'y'))`, `dependencies.Plan.outputs['job.step.var']`) evaluate them, for the subset the examples
//! use. A name the test does not define panics: every expression an example uses is one the test
//! knows the value of.

/// A value: GitHub's and Azure's expressions compare strings and combine booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Str(String),
}

impl Value {
    pub fn truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Str(s) => !s.is_empty(),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

/// What an expression reads: a dotted name (`steps.plan.outputs.exitcode`; indexers are joined
/// with dots, so `variables['plan.exitcode']` reads `variables.plan.exitcode`), and whether the
/// steps so far succeeded.
pub trait Context {
    fn lookup(&self, name: &str) -> String;
    fn succeeded(&self) -> bool;
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Op(&'static str),
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                assert!(i < chars.len(), "unterminated string in `{text}`");
                if chars[i] == '\'' {
                    // '' is a quote inside a string, in both languages.
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(Token::Str(s));
        } else if c.is_alphanumeric() || c == '_' || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-')) {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["==", "!=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two)
                .or_else(|| {
                    ["(", ")", "[", "]", ".", ",", "!"]
                        .into_iter()
                        .find(|o| o.starts_with(c))
                })
                .unwrap_or_else(|| panic!("unexpected `{c}` in `{text}`"));
            i += op.len();
            out.push(Token::Op(op));
        }
    }
    out
}

struct Parser<'a, C: Context> {
    tokens: Vec<Token>,
    at: usize,
    cx: &'a C,
    text: &'a str,
}

impl<C: Context> Parser<'_, C> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, op: &'static str) -> bool {
        if self.peek() == Some(&Token::Op(op)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &'static str) {
        assert!(
            self.eat(op),
            "expected `{op}` at {:?} in `{}`",
            self.peek(),
            self.text
        );
    }

    fn or(&mut self) -> Value {
        let mut v = self.and();
        while self.eat("||") {
            let r = self.and();
            if !v.truthy() {
                v = r;
            }
        }
        v
    }

    fn and(&mut self) -> Value {
        let mut v = self.unary();
        while self.eat("&&") {
            let r = self.unary();
            if v.truthy() {
                v = r;
            }
        }
        v
    }

    fn unary(&mut self) -> Value {
        if self.eat("!") {
            return Value::Bool(!self.unary().truthy());
        }
        let left = self.primary();
        if self.eat("==") {
            return Value::Bool(same(&left, &self.primary()));
        }
        if self.eat("!=") {
            return Value::Bool(!same(&left, &self.primary()));
        }
        left
    }

    fn primary(&mut self) -> Value {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Op("(")) => {
                self.at += 1;
                let v = self.or();
                self.expect(")");
                v
            }
            Some(Token::Str(s)) => {
                self.at += 1;
                Value::Str(s)
            }
            Some(Token::Name(n)) => {
                self.at += 1;
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.or());
                            if self.eat(")") {
                                break;
                            }
                            self.expect(",");
                        }
                    }
                    return self.call(&n, &args);
                }
                if n == "true" || n == "false" {
                    return Value::Bool(n == "true");
                }
                let mut name = n;
                loop {
                    if self.eat(".") {
                        match self.tokens.get(self.at).cloned() {
                            Some(Token::Name(part)) => {
                                self.at += 1;
                                name = format!("{name}.{part}");
                            }
                            other => panic!("a name after `.`, not {other:?}, in `{}`", self.text),
                        }
                    } else if self.eat("[") {
                        let key = self.or().text();
                        self.expect("]");
                        name = format!("{name}.{key}");
                    } else {
                        break;
                    }
                }
                Value::Str(self.cx.lookup(&name))
            }
            other => panic!("unexpected {other:?} in `{}`", self.text),
        }
    }

    fn call(&mut self, f: &str, args: &[Value]) -> Value {
        let arg = |i: usize| {
            args.get(i)
                .unwrap_or_else(|| panic!("{f} takes more arguments in `{}`", self.text))
        };
        Value::Bool(match f.to_ascii_lowercase().as_str() {
            "always" => true,
            "success" | "succeeded" => self.cx.succeeded(),
            "failure" | "failed" => !self.cx.succeeded(),
            "cancelled" | "canceled" => false,
            "eq" => same(arg(0), arg(1)),
            "ne" => !same(arg(0), arg(1)),
            "and" => args.iter().all(Value::truthy),
            "or" => args.iter().any(Value::truthy),
            "not" => !arg(0).truthy(),
            "contains" => arg(0)
                .text()
                .to_lowercase()
                .contains(&arg(1).text().to_lowercase()),
            other => panic!("the test does not evaluate {other}() (in `{}`)", self.text),
        })
    }
}

/// Strings compare without case in both languages.
fn same(a: &Value, b: &Value) -> bool {
    a.text().eq_ignore_ascii_case(&b.text())
}

/// Evaluates one expression.
pub fn evaluate(text: &str, cx: &impl Context) -> Value {
    let mut p = Parser {
        tokens: tokens(text),
        at: 0,
        cx,
        text,
    };
    let v = p.or();
    assert!(p.at == p.tokens.len(), "trailing tokens in `{text}`");
    v
}

/// Whether a step or job runs under its condition: GitHub's `if:` and Azure's `condition:` both
/// mean `success() && …` unless they call a status function themselves.
pub fn runs(condition: Option<&str>, cx: &impl Context) -> bool {
    let Some(text) = condition else {
        return cx.succeeded();
    };
    let text = text.trim();
    let text = text
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
        .unwrap_or(text);
    let status = [
        "always(",
        "success(",
        "succeeded(",
        "failure(",
        "failed(",
        "cancelled(",
    ]
    .iter()
    .any(|f| text.contains(f));
    (status || cx.succeeded()) && evaluate(text, cx).truthy()
}

/// `text` with every `${{ expression }}` replaced by its value (GitHub's expressions, Azure's
/// template expressions).
pub fn substitute(text: &str, cx: &impl Context) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unterminated expression in `{text}`"));
        out.push_str(&evaluate(&rest[start + 3..start + end], cx).text());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(bool);

    impl Context for Vars {
        fn lookup(&self, name: &str) -> String {
            match name {
                "steps.plan.outputs.exitcode" => "2".into(),
                "secrets.IOTHUB_BERLIN" => "berlin-hub".into(),
                "matrix.secret" => "IOTHUB_BERLIN".into(),
                "inputs.repository" => "".into(),
                "github.action_repository" => "acme/twinops".into(),
                "dependencies.Plan.outputs.plan.twinops.changes" => "true".into(),
                "variables.plan.exitcode" => "".into(),
                other => panic!("no {other}"),
            }
        }
        fn succeeded(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn github_and_azure_expressions_evaluate_as_their_runners_do() {
        let ok = Vars(true);
        let failed = Vars(false);
        assert!(runs(Some("steps.plan.outputs.exitcode == '2'"), &ok));
        assert!(!runs(Some("steps.plan.outputs.exitcode == '2'"), &failed));
        assert!(runs(
            Some("always() && steps.plan.outputs.exitcode != ''"),
            &failed
        ));
        assert_eq!(
            substitute("${{ secrets[matrix.secret] }}", &ok),
            "berlin-hub"
        );
        assert_eq!(
            substitute("${{ inputs.repository || github.action_repository }}", &ok),
            "acme/twinops"
        );
        assert!(runs(
            Some("and(succeeded(), eq(dependencies.Plan.outputs['plan.twinops.changes'], 'true'))"),
            &ok
        ));
        assert!(!runs(
            Some("and(always(), ne(variables['plan.exitcode'], ''))"),
            &ok
        ));
        assert!(runs(None, &ok) && !runs(None, &failed));
    }
}
