//! Minimal JSON merge patches (RFC 7386) between what a twin holds and what the manifests want, and the
//! dotted-path helpers for `ignore` and `sensitive`.

use serde_json::Value;

use crate::model::JsonMap;

/// The merge patch that turns `from` into `to`, or `None` when they are equal. Objects recurse (keys
/// missing from `to` become `null`); anything else is replaced whole, arrays included.
pub fn merge_patch(from: Option<&Value>, to: Option<&Value>) -> Option<Value> {
    match (from, to) {
        (None, None) => None,
        (Some(_), None) => Some(Value::Null),
        (None, Some(t)) => Some(t.clone()),
        (Some(Value::Object(f)), Some(Value::Object(t))) => {
            let mut out = JsonMap::new();
            for (k, fv) in f {
                if !t.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                } else if let Some(p) = merge_patch(Some(fv), t.get(k)) {
                    out.insert(k.clone(), p);
                }
            }
            for (k, tv) in t {
                if !f.contains_key(k) {
                    out.insert(k.clone(), tv.clone());
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Some(f), Some(t)) => (f != t).then(|| t.clone()),
    }
}

/// The value at `keys` below `map`.
pub fn get<'a>(map: &'a JsonMap, keys: &[String]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    let mut v = map.get(first)?;
    for k in rest {
        v = v.as_object()?.get(k)?;
    }
    Some(v)
}

/// Sets (or, with `None`, removes) the value at `keys` below `map`, creating objects on the way.
pub fn set(map: &mut JsonMap, keys: &[String], value: Option<Value>) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut cur = map;
    for k in parents {
        let entry = cur
            .entry(k.clone())
            .or_insert_with(|| Value::Object(JsonMap::new()));
        if !entry.is_object() {
            if value.is_none() {
                return;
            }
            *entry = Value::Object(JsonMap::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        cur = next;
    }
    match value {
        Some(v) => {
            cur.insert(last.clone(), v);
        }
        None => {
            cur.remove(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_need_no_patch() {
        assert_eq!(
            merge_patch(Some(&json!({"a": [1]})), Some(&json!({"a": [1]}))),
            None
        );
    }

    #[test]
    fn nested_removals_become_null() {
        let p = merge_patch(
            Some(&json!({"a": {"b": 1, "c": 2}, "d": 1})),
            Some(&json!({"a": {"b": 1}, "d": 2})),
        );
        assert_eq!(p, Some(json!({"a": {"c": null}, "d": 2})));
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let p = merge_patch(Some(&json!([1, 2])), Some(&json!([1])));
        assert_eq!(p, Some(json!([1])));
    }

    #[test]
    fn applying_the_patch_reaches_the_target() {
        let from = json!({"a": {"b": 1, "c": {"x": 1}}, "k": [1]});
        let to = json!({"a": {"c": {"y": 2}}, "k": "s", "n": {"m": 1}});
        let p = merge_patch(Some(&from), Some(&to)).unwrap();
        // json-patch's RFC 7396 merge is an independent implementation of what the hub does.
        let mut v = from.clone();
        json_patch::merge(&mut v, &p);
        assert_eq!(v, to);
    }

    #[test]
    fn set_and_get_walk_dotted_paths() {
        let mut m = JsonMap::new();
        let path = vec!["a".to_string(), "b".to_string()];
        set(&mut m, &path, Some(json!(3)));
        assert_eq!(get(&m, &path), Some(&json!(3)));
        set(&mut m, &path, None);
        assert_eq!(get(&m, &path), None);
        assert_eq!(Value::Object(m), json!({"a": {}}));
    }
}
