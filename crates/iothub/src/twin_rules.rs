//! IoT Hub's rules for twin documents (reference §9): key characters and length, value types and
//! sizes, depth, and the per-section size budget. Pure functions over `serde_json` values, shared by
//! whoever needs to know what a hub accepts (the emulator enforces them; validators can mirror them).

use serde_json::Value;

use super::wire::JsonMap;

/// `tags` may hold at most this many bytes (by [`size`]).
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// `properties.desired` and `properties.reported` may each hold at most this many bytes.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
/// A string value may be at most this long (UTF-8 bytes).
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// A key may be at most this long (UTF-8 bytes).
pub const MAX_KEY_BYTES: usize = 1024;
/// Objects nest at most this deep; the section's own keys are at depth 1.
pub const MAX_DEPTH: usize = 10;
/// Integers must lie within ±2^52.
pub const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;
pub const MIN_SAFE_INTEGER: i64 = -4_503_599_627_370_496;

/// Why a twin section was refused. Messages name the path, never a whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("key `{path}` contains `.`, `$`, a space or a control character")]
    KeyCharacters { path: String },
    #[error("key at `{path}` is empty or longer than {MAX_KEY_BYTES} bytes")]
    KeyLength { path: String },
    #[error("`{path}` nests deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("string value at `{path}` is longer than {MAX_STRING_BYTES} bytes")]
    StringTooLong { path: String },
    #[error("integer at `{path}` is outside ±2^52")]
    IntegerOutOfRange { path: String },
    #[error("`null` at `{path}` is not allowed here (null only deletes, in patches)")]
    NullNotAllowed { path: String },
    #[error("the section is {size} bytes, over its limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Whether `key` is a valid twin property or tag key.
pub fn key_is_valid(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key
            .chars()
            .any(|c| c == '.' || c == '$' || c == ' ' || c.is_control())
}

/// Checks a section (tags, desired or reported) or a patch of one. `nulls_delete` allows `null` as
/// an object member value (a merge patch); `null` inside arrays is never allowed.
pub fn check(section: &JsonMap, nulls_delete: bool) -> Result<(), Violation> {
    check_object(section, "", 1, nulls_delete)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_object(map: &JsonMap, path: &str, depth: usize, nulls: bool) -> Result<(), Violation> {
    if depth > MAX_DEPTH {
        return Err(Violation::TooDeep {
            path: path.to_string(),
        });
    }
    for (k, v) in map {
        let p = join(path, &k.chars().take(64).collect::<String>());
        if k.is_empty() || k.len() > MAX_KEY_BYTES {
            return Err(Violation::KeyLength { path: p });
        }
        if !key_is_valid(k) {
            return Err(Violation::KeyCharacters { path: p });
        }
        if v.is_null() {
            if nulls {
                continue;
            }
            return Err(Violation::NullNotAllowed { path: p });
        }
        check_value(v, &p, depth, nulls)?;
    }
    Ok(())
}

fn check_value(v: &Value, path: &str, depth: usize, nulls: bool) -> Result<(), Violation> {
    match v {
        Value::Object(m) => check_object(m, path, depth + 1, nulls),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if item.is_null() {
                    return Err(Violation::NullNotAllowed { path: p });
                }
                // Objects inside arrays are values, not patches: their nulls are refused too.
                check_value(item, &p, depth, false)?;
            }
            Ok(())
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(Violation::StringTooLong {
            path: path.to_string(),
        }),
        Value::Number(n) => {
            let ok = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (MIN_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i),
                (None, Some(_)) => false,
                (None, None) => true,
            };
            if ok {
                Ok(())
            } else {
                Err(Violation::IntegerOutOfRange {
                    path: path.to_string(),
                })
            }
        }
        _ => Ok(()),
    }
}

/// A section's size by IoT Hub's rule: UTF-8 key lengths plus values, strings counted by
/// characters without C0/C1 controls, numbers 8 bytes, booleans 4, objects and arrays recursively.
/// `$`-prefixed read-only members (`$metadata`, `$version`) are not counted.
pub fn size(section: &JsonMap) -> usize {
    section
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| k.len() + value_size(v))
        .sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s.chars().filter(|c| !c.is_control()).count(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
    }
}

/// Checks a section's size against `limit`.
pub fn check_size(section: &JsonMap, limit: usize) -> Result<(), Violation> {
    let size = size(section);
    if size > limit {
        Err(Violation::TooLarge { size, limit })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn keys_refuse_dots_dollars_spaces_and_controls() {
        assert!(key_is_valid("telemetryInterval"));
        assert!(key_is_valid("ünïcode-ok_1"));
        for bad in ["a.b", "$x", "a b", "a\u{7}b", "a\u{85}b", ""] {
            assert!(!key_is_valid(bad), "{bad:?}");
        }
        assert!(!key_is_valid(&"k".repeat(1025)));
        assert!(key_is_valid(&"k".repeat(1024)));
    }

    #[test]
    fn depth_ten_is_allowed_and_eleven_is_not() {
        let mut v = json!(1);
        for _ in 0..10 {
            v = json!({ "k": v });
        }
        assert!(check(&map(v.clone()), false).is_ok());
        let v = json!({ "k": v });
        assert!(matches!(
            check(&map(v), false),
            Err(Violation::TooDeep { .. })
        ));
    }

    #[test]
    fn nulls_only_delete_in_patches_and_never_sit_in_arrays() {
        assert!(check(&map(json!({"a": null})), true).is_ok());
        assert!(matches!(
            check(&map(json!({"a": null})), false),
            Err(Violation::NullNotAllowed { .. })
        ));
        assert!(matches!(
            check(&map(json!({"a": [1, null]})), true),
            Err(Violation::NullNotAllowed { .. })
        ));
    }

    #[test]
    fn integers_stay_within_2_pow_52() {
        assert!(
            check(
                &map(json!({"a": MAX_SAFE_INTEGER, "b": MIN_SAFE_INTEGER})),
                false
            )
            .is_ok()
        );
        assert!(check(&map(json!({"a": MAX_SAFE_INTEGER + 1})), false).is_err());
        assert!(check(&map(json!({"a": u64::MAX})), false).is_err());
        assert!(check(&map(json!({"a": 1.5e300})), false).is_ok());
    }

    #[test]
    fn long_strings_are_refused() {
        assert!(check(&map(json!({"a": "x".repeat(4096)})), false).is_ok());
        assert!(matches!(
            check(&map(json!({"a": "x".repeat(4097)})), false),
            Err(Violation::StringTooLong { .. })
        ));
    }

    #[test]
    fn size_counts_keys_strings_numbers_and_booleans() {
        let m = map(json!({"ab": "xyz", "n": 1, "b": true, "o": {"k": [1, 2]}, "$version": 4}));
        // ab+xyz = 5, n+8 = 9, b+4 = 5, o + k + 16 = 18
        assert_eq!(size(&m), 5 + 9 + 5 + 18);
        assert!(check_size(&m, 37).is_ok());
        assert!(check_size(&m, 36).is_err());
    }
}
