//! IoT Hub's rules for twin documents, as a live hub applies them (`live-hub.md`): key characters
//! and length, value types and sizes, object depth, and the per-section size budget. Defined here
//! once, as plain functions over `serde_json` values and over the single decisions they are made
//! of ([`key_problem`], [`depth_is_allowed`], [`integer_is_allowed`], [`string_is_allowed`]), so
//! that the emulator (which enforces them) and the manifest validator (which words them for a
//! manifest author) cannot drift apart. No I/O, no wording for people beyond the [`Violation`]s.

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
/// Objects nest at most this deep inside a section. The section itself (`tags`, `desired`,
/// `reported`) is depth 0; the object value of one of its keys is depth 1; an object at depth
/// [`MAX_DEPTH`] may still hold scalars and arrays, but no object. So `tags.l1.….l10.l11 = 1` (ten
/// objects, eleven key levels) is accepted and one more object is refused. Arrays add no depth:
/// an object inside an array is one deeper than the object that holds the array.
pub const MAX_DEPTH: usize = 10;
/// Integers must lie within ±(2^52 − 1); both ends are allowed.
pub const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;
pub const MIN_SAFE_INTEGER: i64 = -MAX_SAFE_INTEGER;

/// Why a twin section was refused. Messages name the path, never a whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("key `{path}` contains `.`, `$`, `#`, a space or a control character")]
    KeyCharacters { path: String },
    #[error("key at `{path}` is longer than {MAX_KEY_BYTES} bytes")]
    KeyLength { path: String },
    #[error("`{path}` nests objects deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("string value at `{path}` is longer than {MAX_STRING_BYTES} bytes")]
    StringTooLong { path: String },
    #[error("integer at `{path}` is outside ±(2^52 - 1)")]
    IntegerOutOfRange { path: String },
    #[error("`null` at `{path}` is not allowed here (null only deletes, in patches)")]
    NullNotAllowed { path: String },
    #[error("the section is {size} bytes, over its limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// What makes a key invalid. Empty keys and non-ASCII keys are valid: the hub accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Longer than [`MAX_KEY_BYTES`] UTF-8 bytes.
    TooLong,
    /// The first character the hub refuses: `.`, `$`, `#`, a space or a control character.
    Character(char),
}

/// Whether a key character is one the hub refuses.
pub fn character_is_refused(c: char) -> bool {
    matches!(c, '.' | '$' | '#' | ' ') || c.is_control()
}

/// What is wrong with `key` as a twin property or tag key, if anything.
pub fn key_problem(key: &str) -> Option<KeyProblem> {
    if key.len() > MAX_KEY_BYTES {
        return Some(KeyProblem::TooLong);
    }
    key.chars()
        .find(|&c| character_is_refused(c))
        .map(KeyProblem::Character)
}

/// Whether `key` is a valid twin property or tag key.
pub fn key_is_valid(key: &str) -> bool {
    key_problem(key).is_none()
}

/// Whether an object may sit at `depth` (the section is depth 0; see [`MAX_DEPTH`]).
pub fn depth_is_allowed(depth: usize) -> bool {
    depth <= MAX_DEPTH
}

/// Whether an integer value is one the hub stores.
pub fn integer_is_allowed(i: i128) -> bool {
    (i128::from(MIN_SAFE_INTEGER)..=i128::from(MAX_SAFE_INTEGER)).contains(&i)
}

/// Whether a string value is short enough (UTF-8 bytes).
pub fn string_is_allowed(s: &str) -> bool {
    s.len() <= MAX_STRING_BYTES
}

/// Checks a section (tags, desired or reported) or a patch of one. `nulls_delete` allows `null` as
/// an object member value (a merge patch); `null` inside arrays is never allowed.
pub fn check(section: &JsonMap, nulls_delete: bool) -> Result<(), Violation> {
    check_object(section, "", 0, nulls_delete)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_object(map: &JsonMap, path: &str, depth: usize, nulls: bool) -> Result<(), Violation> {
    if !depth_is_allowed(depth) {
        return Err(Violation::TooDeep {
            path: path.to_string(),
        });
    }
    for (k, v) in map {
        let p = join(path, &k.chars().take(64).collect::<String>());
        match key_problem(k) {
            Some(KeyProblem::TooLong) => return Err(Violation::KeyLength { path: p }),
            Some(KeyProblem::Character(_)) => return Err(Violation::KeyCharacters { path: p }),
            None => {}
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

/// Checks `v`, the value of a member (or array item) of an object at `depth`.
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
        Value::String(s) if !string_is_allowed(s) => Err(Violation::StringTooLong {
            path: path.to_string(),
        }),
        Value::Number(n) => {
            let ok = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => integer_is_allowed(i128::from(i)),
                (None, Some(u)) => integer_is_allowed(i128::from(u)),
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
    fn keys_refuse_dots_dollars_hashes_spaces_and_controls() {
        assert!(key_is_valid("telemetryInterval"));
        for bad in ["a.b", "$x", "a#b", "#", "a b", "a\u{7}b", "a\u{85}b"] {
            assert!(!key_is_valid(bad), "{bad:?}");
        }
        assert_eq!(key_problem("a#b"), Some(KeyProblem::Character('#')));
        assert!(!key_is_valid(&"k".repeat(1025)));
        assert_eq!(key_problem(&"k".repeat(1025)), Some(KeyProblem::TooLong));
        assert!(key_is_valid(&"k".repeat(1024)));
    }

    #[test]
    fn empty_and_non_ascii_keys_are_accepted() {
        assert!(key_is_valid(""));
        assert!(key_is_valid("ünïcode-ok_1"));
        assert!(key_is_valid("温度"));
        assert!(check(&map(json!({"": {"": 1}, "温度": "ü"})), false).is_ok());
    }

    /// `{"l1": {"l2": … {"l<levels>": 1}}}`: `levels` key levels, `levels - 1` nested objects.
    fn nested(levels: usize) -> JsonMap {
        let mut v = json!(1);
        for i in (2..=levels).rev() {
            v = json!({ format!("l{i}"): v });
        }
        map(json!({ "l1": v }))
    }

    #[test]
    fn ten_objects_inside_the_section_are_allowed_and_eleven_are_not() {
        // Eleven key levels: l1 … l10 hold objects (depths 1 … 10), l11 holds the scalar.
        assert!(check(&nested(11), false).is_ok());
        assert!(matches!(
            check(&nested(12), false),
            Err(Violation::TooDeep { .. })
        ));
        // The tenth object may not hold another object, not even an empty one.
        let mut eleventh = nested(11);
        let mut at = &mut eleventh;
        for i in 1..=10 {
            at = at
                .get_mut(&format!("l{i}"))
                .and_then(Value::as_object_mut)
                .unwrap();
        }
        at.insert("l11".into(), json!({}));
        assert!(check(&eleventh, false).is_err());
    }

    #[test]
    fn arrays_add_no_depth_but_objects_inside_them_do() {
        // Ten objects, each reached through an array.
        let mut v = json!(1);
        for i in (1..=10).rev() {
            v = json!([{ format!("k{i}"): v }]);
        }
        assert!(check(&map(json!({ "a": v.clone() })), false).is_ok());
        assert!(check(&map(json!({ "a": [v] })), false).is_ok());
        let v = json!([{ "k0": v }]);
        assert!(matches!(
            check(&map(json!({ "a": v })), false),
            Err(Violation::TooDeep { .. })
        ));
    }

    #[test]
    fn nulls_only_delete_in_patches_and_never_sit_in_arrays() {
        assert!(check(&map(json!({"a": null})), true).is_ok());
        assert!(check(&map(json!({"a": {"b": null}})), true).is_ok());
        assert!(matches!(
            check(&map(json!({"a": null})), false),
            Err(Violation::NullNotAllowed { .. })
        ));
        for patch in [true, false] {
            assert!(matches!(
                check(&map(json!({"a": [1, null]})), patch),
                Err(Violation::NullNotAllowed { .. })
            ));
            assert!(matches!(
                check(&map(json!({"a": [{"b": null}]})), patch),
                Err(Violation::NullNotAllowed { .. })
            ));
        }
    }

    #[test]
    fn integers_stay_within_2_pow_52_minus_1() {
        assert_eq!(MIN_SAFE_INTEGER, -(1_i64 << 52) + 1);
        assert_eq!(MAX_SAFE_INTEGER, (1_i64 << 52) - 1);
        assert!(
            check(
                &map(json!({"a": MAX_SAFE_INTEGER, "b": MIN_SAFE_INTEGER})),
                false
            )
            .is_ok()
        );
        assert!(check(&map(json!({"a": MAX_SAFE_INTEGER + 1})), false).is_err());
        assert!(check(&map(json!({"a": MIN_SAFE_INTEGER - 1})), false).is_err());
        assert!(check(&map(json!({"a": u64::MAX})), false).is_err());
        assert!(check(&map(json!({"a": 1.5e300})), false).is_ok());
        assert!(!integer_is_allowed(-(1_i128 << 52)));
        assert!(integer_is_allowed(-(1_i128 << 52) + 1));
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
