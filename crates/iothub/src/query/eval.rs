//! Evaluation of parsed conditions and projections against twin JSON documents.
//!
//! It owns the value rules (undefined paths, type mismatches, numeric and string ordering, three-valued
//! logic; see the module docs of [`super`]). It never parses and never fails: every twin gets an answer.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::{Check, CompareOp, Expr, Operand, Projection, TextTest};

/// The three-valued result of `expr`: `None` is undefined.
pub(super) fn evaluate(expr: &Expr, twin: &Value) -> Option<bool> {
    match expr {
        Expr::Compare { left, op, right } => {
            let (left, right) = (value(left, twin)?, value(right, twin)?);
            match op {
                CompareOp::Eq => Some(equal(left, right)),
                CompareOp::Ne => Some(!equal(left, right)),
                CompareOp::Lt => order(left, right).map(Ordering::is_lt),
                CompareOp::Le => order(left, right).map(Ordering::is_le),
                CompareOp::Gt => order(left, right).map(Ordering::is_gt),
                CompareOp::Ge => order(left, right).map(Ordering::is_ge),
            }
        }
        Expr::In {
            operand,
            list,
            negated,
        } => {
            let operand = value(operand, twin)?;
            Some(list.iter().any(|item| equal(operand, item)) != *negated)
        }
        Expr::Check { check, operand } => Some(value(operand, twin).is_some_and(|v| is(*check, v))),
        Expr::Text {
            test,
            operand,
            pattern,
        } => {
            let (Value::String(text), Value::String(pattern)) =
                (value(operand, twin)?, value(pattern, twin)?)
            else {
                return None;
            };
            Some(match test {
                TextTest::StartsWith => text.starts_with(pattern.as_str()),
                TextTest::EndsWith => text.ends_with(pattern.as_str()),
                TextTest::Contains => text.contains(pattern.as_str()),
            })
        }
        Expr::Not(inner) => evaluate(inner, twin).map(|b| !b),
        Expr::And(terms) => combine(terms, twin, false),
        Expr::Or(terms) => combine(terms, twin, true),
    }
}

/// Kleene logic for AND (`decisive == false`) and OR (`decisive == true`): one decisive term settles it,
/// otherwise any undefined term makes the result undefined.
fn combine(terms: &[Expr], twin: &Value, decisive: bool) -> Option<bool> {
    let mut undefined = false;
    for term in terms {
        match evaluate(term, twin) {
            Some(b) if b == decisive => return Some(decisive),
            Some(_) => {}
            None => undefined = true,
        }
    }
    if undefined { None } else { Some(!decisive) }
}

fn is(check: Check, v: &Value) -> bool {
    match check {
        Check::Defined => true,
        Check::String => v.is_string(),
        Check::Number => v.is_number(),
        Check::Bool => v.is_boolean(),
        Check::Object => v.is_object(),
        Check::Array => v.is_array(),
        Check::Null => v.is_null(),
        Check::Primitive => !(v.is_object() || v.is_array()),
    }
}

fn value<'a>(operand: &'a Operand, twin: &'a Value) -> Option<&'a Value> {
    match operand {
        Operand::Literal(v) => Some(v),
        Operand::Path(path) => resolve(twin, path),
    }
}

/// Follows `path` from the twin root; `None` when any key is missing or a step is not an object.
pub(super) fn resolve<'a>(twin: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(twin, |node, key| {
        node.as_object().and_then(|o| lookup(o, key))
    })
}

/// An exact key first, else the first key equal ignoring ASCII case (property names in IoT Hub queries
/// are case-insensitive).
fn lookup<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Equality across JSON values: numbers by value, containers structurally, different types unequal.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| equal(x, y)))
        }
        _ => a == b,
    }
}

/// Ordering for `<`, `<=`, `>`, `>=`: only number–number and string–string pairs are ordered.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Exact for two integers, through `f64` otherwise (twin integers are within ±(2^52 − 1), so this is exact too).
fn compare_numbers(x: &Number, y: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return Some(x.cmp(&y));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

/// One row of a `SELECT a, b.c AS d` query; undefined columns are left out, as IoT Hub does.
pub(super) fn project(columns: &[Projection], twin: &Value) -> Value {
    let row = columns
        .iter()
        .filter_map(|column| {
            resolve(twin, &column.path).map(|v| (column.name().to_owned(), v.clone()))
        })
        .collect::<Map<_, _>>();
    Value::Object(row)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(p: &str) -> Operand {
        Operand::Path(p.split('.').map(str::to_owned).collect())
    }

    fn lit(v: Value) -> Operand {
        Operand::Literal(v)
    }

    fn cmp(left: Operand, op: CompareOp, right: Operand) -> Expr {
        Expr::Compare { left, op, right }
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert_eq!(order(&json!(2), &json!(1.5)), Some(Ordering::Greater));
        assert_eq!(order(&json!(-1), &json!(u64::MAX)), Some(Ordering::Less));
    }

    #[test]
    fn values_of_different_types_are_unequal_and_unordered() {
        assert!(!equal(&json!("1"), &json!(1)));
        assert!(!equal(&json!(null), &json!(false)));
        assert_eq!(order(&json!("1"), &json!(1)), None);
        assert_eq!(order(&json!(true), &json!(false)), None);
    }

    #[test]
    fn objects_compare_structurally_regardless_of_key_order() {
        assert!(equal(
            &json!({"a": 1, "b": [1, 2]}),
            &json!({"b": [1.0, 2], "a": 1})
        ));
        assert!(!equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn and_is_false_when_any_term_is_false_even_if_another_is_undefined() {
        let twin = json!({"a": 1});
        let and = Expr::And(vec![
            cmp(path("missing"), CompareOp::Eq, lit(json!(1))),
            cmp(path("a"), CompareOp::Eq, lit(json!(2))),
        ]);
        assert_eq!(evaluate(&and, &twin), Some(false));
        assert_eq!(evaluate(&Expr::Not(Box::new(and)), &twin), Some(true));
    }

    #[test]
    fn or_is_true_when_any_term_is_true_even_if_another_is_undefined() {
        let twin = json!({"a": 1});
        let or = Expr::Or(vec![
            cmp(path("missing"), CompareOp::Eq, lit(json!(1))),
            cmp(path("a"), CompareOp::Eq, lit(json!(1))),
        ]);
        assert_eq!(evaluate(&or, &twin), Some(true));
    }

    #[test]
    fn and_or_with_undefined_and_no_decisive_term_stays_undefined() {
        let twin = json!({"a": 1});
        let undefined = cmp(path("missing"), CompareOp::Eq, lit(json!(1)));
        let yes = cmp(path("a"), CompareOp::Eq, lit(json!(1)));
        let no = cmp(path("a"), CompareOp::Eq, lit(json!(2)));
        assert_eq!(
            evaluate(&Expr::And(vec![undefined.clone(), yes]), &twin),
            None
        );
        assert_eq!(evaluate(&Expr::Or(vec![undefined, no]), &twin), None);
    }

    #[test]
    fn paths_through_non_objects_are_undefined() {
        let twin = json!({"tags": {"a": "text", "list": [1]}});
        assert_eq!(
            resolve(&twin, &["tags".into(), "a".into(), "b".into()]),
            None
        );
        assert_eq!(
            resolve(&twin, &["tags".into(), "list".into(), "0".into()]),
            None
        );
    }

    #[test]
    fn exact_key_wins_over_case_insensitive_match() {
        let twin = json!({"tags": {"Env": "upper", "env": "lower"}});
        assert_eq!(
            resolve(&twin, &["tags".into(), "env".into()]),
            Some(&json!("lower"))
        );
        assert_eq!(
            resolve(&twin, &["TAGS".into(), "ENV".into()]),
            Some(&json!("upper"))
        );
    }
}
