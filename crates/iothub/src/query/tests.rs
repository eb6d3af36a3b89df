//! End-to-end tests of the query language: text in, matches and rows out.

use serde_json::{Value, json};

use super::*;

fn twin() -> Value {
    json!({
        "deviceId": "sensor-01",
        "etag": "AAAAAAAAAAE=",
        "version": 4,
        "status": "enabled",
        "statusReason": null,
        "connectionState": "Disconnected",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "capabilities": {"iotEdge": false},
        "tags": {
            "environment": "prod",
            "location": {"region": "US", "plant": "Redmond43", "floor": 3},
            "weight": 2.5,
            "retired": false
        },
        "properties": {
            "desired": {"telemetry": {"interval": 30}, "$version": 3},
            "reported": {"firmware": "1.4.2", "battery": 81, "$version": 7}
        },
        "configurations": {"fw-rollout.v2": {"status": "Applied"}}
    })
}

fn module_twin() -> Value {
    json!({
        "deviceId": "edge-01",
        "moduleId": "tempSensor",
        "status": "enabled",
        "tags": {"role": "sensor"},
        "properties": {"desired": {}, "reported": {}}
    })
}

/// Whether `condition` (the text after WHERE) matches the sample twin.
fn matches(condition: &str) -> bool {
    let query = parse(&format!("SELECT * FROM devices WHERE {condition}"))
        .unwrap_or_else(|e| panic!("`{condition}` should parse: {e}"));
    query.matches(&twin())
}

fn parse_error(sql: &str) -> ParseError {
    match parse(sql) {
        Ok(query) => panic!("`{sql}` should not parse, got {query:?}"),
        Err(e) => e,
    }
}

// --- operators ---

#[test]
fn equality_matches_strings_and_numbers() {
    assert!(matches("tags.environment = 'prod'"));
    assert!(!matches("tags.environment = 'test'"));
    assert!(matches("properties.reported.battery = 81"));
    assert!(matches("tags.retired = false"));
    assert!(matches("statusReason = null"));
}

#[test]
fn not_equal_has_two_spellings() {
    assert!(matches("tags.environment != 'test'"));
    assert!(matches("tags.environment <> 'test'"));
    assert!(!matches("tags.environment != 'prod'"));
    assert!(!matches("tags.environment <> 'prod'"));
}

#[test]
fn ordering_operators_compare_numbers_numerically() {
    assert!(matches("properties.reported.battery > 80"));
    assert!(!matches("properties.reported.battery > 81"));
    assert!(matches("properties.reported.battery >= 81"));
    assert!(matches("properties.reported.battery < 81.5"));
    assert!(!matches("properties.reported.battery < 81"));
    assert!(matches("properties.reported.battery <= 81"));
    assert!(matches("tags.weight = 2.5"));
    assert!(matches("tags.location.floor = 3.0"));
    assert!(matches("tags.weight > -1"));
}

#[test]
fn ordering_operators_compare_strings_lexicographically() {
    assert!(matches("properties.reported.firmware > '1.10.0'"));
    assert!(matches("properties.reported.firmware < '1.5'"));
    assert!(matches("deviceId >= 'sensor-01'"));
    assert!(matches("deviceId <= 'sensor-01'"));
}

#[test]
fn literal_may_stand_on_the_left() {
    assert!(matches("'prod' = tags.environment"));
    assert!(matches("90 > properties.reported.battery"));
}

#[test]
fn paths_can_be_compared_with_each_other() {
    let twin = json!({"properties": {"desired": {"v": 2}, "reported": {"v": 2.0}}});
    let query =
        parse("SELECT * FROM devices WHERE properties.desired.v = properties.reported.v").unwrap();
    assert!(query.matches(&twin));
}

// --- undefined paths and type mismatches ---

#[test]
fn undefined_path_is_not_equal() {
    assert!(!matches("tags.missing = 'prod'"));
}

#[test]
fn undefined_path_does_not_match_not_equal_either() {
    assert!(!matches("tags.missing != 'prod'"));
    assert!(!matches("tags.missing < 1"));
}

#[test]
fn negating_a_comparison_on_an_undefined_path_still_does_not_match() {
    assert!(!matches("NOT (tags.missing = 'prod')"));
    assert!(matches(
        "NOT IS_DEFINED(tags.missing) OR tags.missing != 'prod'"
    ));
}

#[test]
fn comparing_different_types_is_unequal() {
    assert!(!matches("properties.reported.battery = '81'"));
    assert!(matches("properties.reported.battery != '81'"));
    assert!(!matches("tags.retired = 0"));
}

#[test]
fn ordering_different_types_never_matches() {
    assert!(!matches("properties.reported.battery > '1'"));
    assert!(!matches("NOT (properties.reported.battery > '1')"));
    assert!(!matches("tags.retired < true"));
}

// --- logic and precedence ---

#[test]
fn and_binds_tighter_than_or() {
    // true OR (false AND false)
    assert!(matches(
        "tags.environment = 'prod' OR tags.environment = 'test' AND status = 'disabled'"
    ));
    // (false AND true) OR false
    assert!(!matches(
        "tags.environment = 'test' AND status = 'enabled' OR deviceId = 'other'"
    ));
}

#[test]
fn parentheses_override_precedence() {
    assert!(!matches(
        "(tags.environment = 'prod' OR tags.environment = 'test') AND status = 'disabled'"
    ));
}

#[test]
fn not_binds_tighter_than_and() {
    // (NOT false) AND true
    assert!(matches(
        "NOT tags.environment = 'test' AND status = 'enabled'"
    ));
    // (NOT true) AND true
    assert!(!matches(
        "NOT tags.environment = 'prod' AND status = 'enabled'"
    ));
    assert!(matches("NOT NOT tags.environment = 'prod'"));
}

#[test]
fn nested_parentheses_are_accepted() {
    assert!(matches("((((tags.environment = 'prod'))))"));
}

// --- IN / NIN ---

#[test]
fn in_list_matches_any_string() {
    assert!(matches("tags.environment IN ['test', 'prod']"));
    assert!(!matches("tags.environment IN ['test', 'dev']"));
}

#[test]
fn in_list_compares_numbers_by_value_and_skips_other_types() {
    assert!(matches("properties.reported.battery IN ['81', 81.0]"));
    assert!(!matches("properties.reported.battery IN ['81', true]"));
}

#[test]
fn nin_list_matches_when_absent() {
    assert!(matches("tags.environment NIN ['test', 'dev']"));
    assert!(!matches("tags.environment NIN ['prod']"));
    assert!(matches("tags.environment NOT IN ['test']"));
}

#[test]
fn in_and_nin_on_undefined_path_match_nothing() {
    assert!(!matches("tags.missing IN ['prod']"));
    assert!(!matches("tags.missing NIN ['prod']"));
}

#[test]
fn in_accepts_parenthesised_and_empty_lists() {
    assert!(matches("tags.environment IN ('prod')"));
    assert!(!matches("tags.environment IN []"));
    assert!(matches("tags.environment NIN []"));
}

// --- functions ---

#[test]
fn is_defined_tells_present_from_absent() {
    assert!(matches("IS_DEFINED(tags.location.region)"));
    assert!(matches("IS_DEFINED(tags.location)"));
    assert!(!matches("IS_DEFINED(tags.location.country)"));
    assert!(matches("NOT IS_DEFINED(tags.location.country)"));
    assert!(matches("is_defined(statusReason)"));
}

#[test]
fn type_checks_report_the_json_type() {
    assert!(matches("IS_STRING(deviceId)"));
    assert!(matches("IS_NUMBER(tags.weight)"));
    assert!(matches("IS_BOOL(capabilities.iotEdge)"));
    assert!(matches("IS_OBJECT(tags.location)"));
    assert!(matches("IS_NULL(statusReason)"));
    assert!(matches("IS_PRIMITIVE(tags.retired)"));
    assert!(!matches("IS_STRING(tags.weight)"));
    assert!(!matches("IS_STRING(tags.missing)"));
    assert!(matches("NOT IS_ARRAY(tags)"));
}

#[test]
fn string_functions_test_prefix_suffix_and_substring() {
    assert!(matches("STARTSWITH(deviceId, 'sensor-')"));
    assert!(!matches("STARTSWITH(deviceId, 'edge-')"));
    assert!(matches("ENDSWITH(deviceId, '-01')"));
    assert!(matches("CONTAINS(tags.location.plant, 'mond')"));
    assert!(!matches("STARTSWITH(tags.weight, '2')"));
    assert!(!matches("NOT STARTSWITH(tags.missing, 'x')"));
}

// --- paths ---

#[test]
fn nested_tag_paths_resolve() {
    assert!(matches("tags.location.region = 'US'"));
    assert!(matches("tags.location.floor = 3"));
    assert!(matches("properties.desired.telemetry.interval = 30"));
    assert!(matches("properties.reported.$version = 7"));
    assert!(matches("capabilities.iotEdge = false"));
}

#[test]
fn bracketed_keys_reach_configuration_ids_with_special_characters() {
    assert!(matches(
        "configurations.[[fw-rollout.v2]].status = 'Applied'"
    ));
    assert!(!matches("configurations.[[other]].status = 'Applied'"));
}

#[test]
fn keywords_after_a_dot_are_ordinary_keys() {
    let twin = json!({"tags": {"group": "a", "select": {"in": 1}}});
    let query =
        parse("SELECT * FROM devices WHERE tags.group = 'a' AND tags.select.in = 1").unwrap();
    assert!(query.matches(&twin));
}

#[test]
fn property_names_match_case_insensitively() {
    assert!(matches("DeviceID = 'sensor-01'"));
    assert!(matches("Tags.Location.Region = 'US'"));
    assert!(!matches("tags.location.region = 'us'"));
}

#[test]
fn devices_prefix_is_dropped_from_paths() {
    assert!(matches("devices.tags.environment = 'prod'"));
    let query =
        parse("SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'tempSensor'")
            .unwrap();
    assert_eq!(
        query.filter,
        parse("SELECT * FROM devices.modules WHERE moduleId = 'tempSensor'")
            .unwrap()
            .filter
    );
    assert!(query.matches(&module_twin()));
}

// --- collections, select lists, COUNT, TOP ---

#[test]
fn select_star_from_devices_returns_the_twin() {
    let query = parse("SELECT * FROM devices").unwrap();
    assert_eq!(query.collection, Collection::Devices);
    assert_eq!(query.select, Select::All);
    assert_eq!(query.filter, None);
    assert!(query.matches(&twin()));
    assert_eq!(query.project(&twin()), twin());
}

#[test]
fn modules_collection_filters_module_twins() {
    let query = parse(
        "SELECT * FROM devices.modules WHERE moduleId = 'tempSensor' AND tags.role = 'sensor'",
    )
    .unwrap();
    assert_eq!(query.collection, Collection::Modules);
    assert!(query.matches(&module_twin()));
    assert_eq!(query.project(&module_twin()), module_twin());
    assert!(!query.matches(&twin()));
}

#[test]
fn count_carries_its_alias_and_builds_its_row() {
    let query = parse("SELECT COUNT() AS n FROM devices WHERE status = 'enabled'").unwrap();
    assert_eq!(query.select, Select::Count { alias: "n".into() });
    assert!(query.is_count());
    assert!(query.matches(&twin()));
    assert_eq!(query.count_row(3), Some(json!({"n": 3})));
}

#[test]
fn count_without_alias_is_named_dollar_one() {
    let query = parse("select count() from devices.modules").unwrap();
    assert_eq!(query.collection, Collection::Modules);
    assert_eq!(query.count_row(0), Some(json!({"$1": 0})));
}

#[test]
fn non_count_queries_have_no_count_row() {
    let query = parse("SELECT * FROM devices").unwrap();
    assert!(!query.is_count());
    assert_eq!(query.count_row(1), None);
}

#[test]
fn projections_name_columns_by_last_segment_or_alias() {
    let query = parse(
        "SELECT deviceId, tags.location.region, properties.reported.battery AS level FROM devices",
    )
    .unwrap();
    let row = query.project(&twin());
    assert_eq!(
        row,
        json!({"deviceId": "sensor-01", "region": "US", "level": 81})
    );
    let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["deviceId", "region", "level"]);
}

#[test]
fn projections_leave_out_undefined_columns() {
    let query = parse("SELECT deviceId, moduleId, tags.location FROM devices").unwrap();
    assert_eq!(
        query.project(&twin()),
        json!({"deviceId": "sensor-01", "location": {"region": "US", "plant": "Redmond43", "floor": 3}})
    );
}

#[test]
fn projection_of_a_bracketed_configuration_status() {
    let query =
        parse("SELECT deviceId, configurations.[[fw-rollout.v2]].status AS fw FROM devices")
            .unwrap();
    assert_eq!(
        query.project(&twin()),
        json!({"deviceId": "sensor-01", "fw": "Applied"})
    );
}

#[test]
fn projections_strip_the_collection_prefix() {
    let query = parse("SELECT devices.modules.moduleId FROM devices.modules").unwrap();
    let Select::Fields(columns) = &query.select else {
        panic!("expected fields, got {:?}", query.select);
    };
    assert_eq!(columns[0].path, ["moduleId"]);
    assert_eq!(
        query.project(&module_twin()),
        json!({"moduleId": "tempSensor"})
    );
}

#[test]
fn top_limits_are_parsed() {
    let query = parse("SELECT TOP 10 * FROM devices").unwrap();
    assert_eq!(query.top, Some(10));
    assert_eq!(parse("SELECT * FROM devices").unwrap().top, None);
}

#[test]
fn keywords_are_case_insensitive() {
    let query = parse(
        "sElEcT * fRoM DEVICES wHeRe tags.environment In ['prod'] aNd Not tags.retired = TRUE oR is_DEFINED(x)",
    )
    .unwrap();
    assert!(query.matches(&twin()));
    assert_eq!(
        parse("Select Count() As total From Devices.Modules")
            .unwrap()
            .select,
        Select::Count {
            alias: "total".into()
        }
    );
}

#[test]
fn string_literals_take_either_quote_and_both_escapes() {
    let twin = json!({"tags": {"owner": "O'Brien \"Bob\""}});
    for sql in [
        r#"SELECT * FROM devices WHERE tags.owner = 'O''Brien "Bob"'"#,
        r#"SELECT * FROM devices WHERE tags.owner = 'O\'Brien \"Bob\"'"#,
        r#"SELECT * FROM devices WHERE tags.owner = "O'Brien ""Bob""""#,
    ] {
        assert!(parse(sql).unwrap().matches(&twin), "{sql}");
    }
}

#[test]
fn whitespace_and_newlines_are_insignificant() {
    let query = parse("SELECT *\n  FROM devices\n  WHERE\ttags.environment='prod'").unwrap();
    assert!(query.matches(&twin()));
}

// --- target conditions ---

#[test]
fn star_condition_targets_every_twin() {
    let condition = parse_condition(" * ").unwrap();
    assert_eq!(condition, Condition::All);
    assert!(condition.matches(&json!({})));
}

#[test]
fn bare_condition_targets_matching_twins() {
    let condition =
        parse_condition("tags.environment='prod' and capabilities.iotEdge=false").unwrap();
    assert!(condition.matches(&twin()));
    assert!(
        !parse_condition("tags.environment='test'")
            .unwrap()
            .matches(&twin())
    );
}

#[test]
fn condition_errors_name_their_position() {
    let err = parse_condition("tags.environment='prod' tags.x=1").unwrap_err();
    assert_eq!(err.offset(), Some(24));
    assert_eq!(
        err.to_string(),
        "at offset 24: expected AND, OR or end of condition, found `tags`"
    );
    assert!(parse_condition("").is_err());
    assert!(parse_condition("* AND x = 1").is_err());
}

// --- parse errors ---

#[test]
fn garbage_is_rejected_at_its_first_token() {
    let err = parse_error("DROP TABLE devices");
    assert_eq!(err.offset(), Some(0));
    assert_eq!(
        err.to_string(),
        "at offset 0: expected `SELECT`, found `DROP`"
    );
}

#[test]
fn missing_from_is_reported_where_it_was_expected() {
    let err = parse_error("SELECT * devices");
    assert_eq!(
        err.to_string(),
        "at offset 9: expected `FROM`, found `devices`"
    );
}

#[test]
fn missing_operator_is_reported_after_the_operand() {
    let err = parse_error("SELECT * FROM devices WHERE tags.x 'a'");
    assert_eq!(
        err.to_string(),
        "at offset 35: expected a comparison operator, IN or NIN, found string \"a\""
    );
}

#[test]
fn dangling_and_expects_a_condition() {
    let err = parse_error("SELECT * FROM devices WHERE tags.x = 1 AND");
    assert_eq!(
        err.to_string(),
        "at offset 42: expected a condition, found end of query"
    );
}

#[test]
fn unclosed_parenthesis_is_reported_at_the_end() {
    let err = parse_error("SELECT * FROM devices WHERE (tags.x = 1");
    assert_eq!(err.offset(), Some(39));
    assert!(err.to_string().contains("expected `)`"), "{err}");
}

#[test]
fn unknown_collection_is_rejected() {
    let err = parse_error("SELECT * FROM things");
    assert_eq!(
        err.to_string(),
        "at offset 14: expected `devices` or `devices.modules`, found `things`"
    );
    let err = parse_error("SELECT * FROM devices.jobs");
    assert!(
        matches!(err, ParseError::Unsupported { offset: 22, .. }),
        "{err:?}"
    );
}

#[test]
fn group_by_is_rejected_as_unsupported() {
    let err = parse_error("SELECT COUNT() AS n FROM devices GROUP BY tags.x");
    assert_eq!(
        err.to_string(),
        "at offset 33: GROUP BY is not supported by twinops"
    );
    let err = parse_error("SELECT tags.x, COUNT() AS n FROM devices GROUP BY tags.x");
    assert!(
        matches!(err, ParseError::Unsupported { offset: 15, .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_functions_and_wrong_arity_are_rejected() {
    let err = parse_error("SELECT * FROM devices WHERE LOWER(deviceId) = 'a'");
    assert_eq!(err.to_string(), "at offset 28: unknown function `LOWER`");
    let err = parse_error("SELECT * FROM devices WHERE IS_DEFINED(a, b)");
    assert_eq!(
        err.to_string(),
        "at offset 28: `IS_DEFINED` takes 1 argument(s), found 2"
    );
    let err = parse_error("SELECT * FROM devices WHERE STARTSWITH(deviceId)");
    assert!(matches!(
        err,
        ParseError::WrongArgumentCount {
            expected: 2,
            found: 1,
            ..
        }
    ));
}

#[test]
fn lexical_errors_carry_offsets() {
    assert_eq!(
        parse_error("SELECT * FROM devices WHERE x = 'abc").offset(),
        Some(32)
    );
    assert_eq!(
        parse_error("SELECT * FROM devices WHERE configurations.[[abc.status = 1").offset(),
        Some(43)
    );
    assert_eq!(
        parse_error("SELECT * FROM devices WHERE x = 1 ; DROP").to_string(),
        "at offset 34: unexpected character `;`"
    );
}

#[test]
fn duplicate_column_names_are_rejected() {
    let err = parse_error("SELECT tags.a.x, tags.b.x FROM devices");
    assert_eq!(
        err.to_string(),
        "at offset 17: column `x` appears twice; rename one with AS"
    );
    assert!(parse("SELECT tags.a.x, tags.b.x AS bx FROM devices").is_ok());
}

#[test]
fn paths_are_not_allowed_inside_in_lists() {
    let err = parse_error("SELECT * FROM devices WHERE x IN [y]");
    assert!(
        matches!(err, ParseError::Unsupported { offset: 34, .. }),
        "{err:?}"
    );
}

#[test]
fn reserved_words_cannot_start_a_path() {
    let err = parse_error("SELECT FROM devices");
    assert_eq!(err.offset(), Some(7));
    let err = parse_error("SELECT * FROM devices WHERE and = 1");
    assert_eq!(err.offset(), Some(28));
}

#[test]
fn queries_over_eight_kilobytes_are_rejected() {
    let padding = " ".repeat(MAX_QUERY_BYTES);
    let err = parse_error(&format!("SELECT * FROM devices{padding}"));
    assert_eq!(
        err,
        ParseError::TooLong {
            len: MAX_QUERY_BYTES + 21,
            max: MAX_QUERY_BYTES
        }
    );
    let exactly = format!("SELECT * FROM devices{}", " ".repeat(MAX_QUERY_BYTES - 21));
    assert!(parse(&exactly).is_ok());
}

#[test]
fn deep_parentheses_are_rejected_without_overflowing() {
    let deep = format!(
        "SELECT * FROM devices WHERE {}x = 1{}",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    assert!(matches!(
        parse_error(&deep),
        ParseError::TooDeep {
            max: MAX_NESTING,
            ..
        }
    ));
    let nots = format!("SELECT * FROM devices WHERE {}x = 1", "NOT ".repeat(1000));
    assert!(matches!(parse_error(&nots), ParseError::TooDeep { .. }));
    let ok = format!(
        "SELECT * FROM devices WHERE {}tags.environment = 'prod'{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(parse(&ok).unwrap().matches(&twin()));
}

#[test]
fn long_flat_or_chains_parse_and_evaluate() {
    let terms = vec!["tags.x = 1"; 500].join(" OR ");
    let query = parse(&format!(
        "SELECT * FROM devices WHERE {terms} OR deviceId = 'sensor-01'"
    ))
    .unwrap();
    assert!(query.matches(&twin()));
}

// --- robustness ---

/// Marsaglia's xorshift64: deterministic, dependency-free randomness for the fuzz loop.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "select",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "AS",
    "TOP",
    "COUNT",
    "GROUP",
    "BY",
    "IS_DEFINED",
    "STARTSWITH",
    "devices",
    "devices.modules",
    "modules",
    "jobs",
    "tags",
    "x",
    "properties.desired.a",
    "[[a-b]]",
    "[[",
    "]]",
    "[",
    "]",
    "(",
    ")",
    ",",
    ".",
    "*",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "!",
    "'",
    "\"",
    "'str'",
    "\"s\"",
    "'it''s'",
    "'\\u00e9'",
    "'\\u",
    "\\",
    "1",
    "-1",
    "1.5",
    "1e3",
    "1e999",
    "-",
    "99999999999999999999",
    "true",
    "null",
    "é",
    "😀",
    " ",
    "\n",
    "\t",
    "$",
    "_",
    "#",
    ";",
    "@",
];

const SEEDS: &[&str] = &[
    "SELECT * FROM devices WHERE tags.environment = 'prod' AND NOT (properties.reported.battery < 20)",
    "SELECT COUNT() AS n FROM devices.modules WHERE moduleId IN ['a', \"b\"] OR IS_DEFINED(tags.x)",
    "SELECT deviceId, configurations.[[fw-rollout.v2]].status AS s FROM devices WHERE x NIN [1, 2.5e3]",
    "SELECT TOP 5 * FROM devices WHERE STARTSWITH(deviceId, 'it''s') AND status <> 'disabled'",
];

/// Parses `text` as a query and as a condition and, when it parses, evaluates it: none may panic.
/// Returns whether it parsed as a query, so the loop can show it reached the evaluator.
fn exercise(text: &str, sample: &Value) -> bool {
    if let Ok(condition) = parse_condition(text) {
        let _ = condition.matches(sample);
    }
    match parse(text) {
        Ok(query) => {
            let _ = query.matches(sample);
            let _ = query.project(sample);
            let _ = query.count_row(1);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            if let Some(offset) = e.offset() {
                assert!(
                    offset <= text.len(),
                    "offset {offset} past the end of {text:?}"
                );
            }
            false
        }
    }
}

#[test]
fn parser_never_panics_on_random_or_mutated_input() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let sample = twin();
    let mut parsed = 0;
    for _ in 0..4000 {
        let len = rng.below(40);
        let text: String = (0..len)
            .map(|_| {
                let fragment = rng.pick(FRAGMENTS);
                if rng.below(3) == 0 {
                    fragment.to_owned()
                } else {
                    format!("{fragment} ")
                }
            })
            .collect();
        parsed += usize::from(exercise(&text, &sample));
    }
    for _ in 0..4000 {
        let mut chars: Vec<char> = rng.pick(SEEDS).chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(chars.len() + 1);
            match rng.below(4) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => {
                    let end = (at + rng.below(8)).min(chars.len());
                    chars.drain(at..end);
                }
                2 => {
                    let fragment = rng.pick(FRAGMENTS);
                    for (i, c) in fragment.chars().enumerate() {
                        chars.insert(at + i, c);
                    }
                }
                _ => {
                    let byte = (rng.next() % 128) as u8;
                    chars.insert(at, char::from(byte));
                }
            }
        }
        let text: String = chars.into_iter().collect();
        parsed += usize::from(exercise(&text, &sample));
    }
    assert!(parsed > 100, "only {parsed} inputs reached the evaluator");
}

#[test]
fn a_condition_lists_the_paths_it_reads_in_written_order() {
    let Condition::Expr(expr) = parse_condition(
        "tags.site = 'berlin' AND (NOT IS_DEFINED(properties.reported.fw) OR STARTSWITH(deviceId, tags.prefix)) AND moduleId IN ['a']",
    )
    .unwrap() else {
        panic!("not an expression");
    };
    let paths: Vec<String> = expr.paths().iter().map(|p| p.join(".")).collect();
    assert_eq!(
        paths,
        [
            "tags.site",
            "properties.reported.fw",
            "deviceId",
            "tags.prefix",
            "moduleId"
        ]
    );
}

#[test]
fn targets_read_only_device_id_tags_and_reported_properties() {
    let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
    for ok in ["deviceId", "tags", "tags.site", "properties.reported.fw"] {
        assert!(is_target_path(&path(ok), false), "{ok}");
    }
    for refused in [
        "properties.desired.x",
        "properties",
        "status",
        "capabilities.iotEdge",
        "DeviceId",
        "moduleId",
    ] {
        assert!(!is_target_path(&path(refused), false), "{refused}");
    }
    assert!(is_target_path(&path("moduleId"), true));
}

#[test]
fn a_reason_is_the_message_without_its_offset() {
    let err = parse_condition("tags.x = ").unwrap_err();
    assert_eq!(err.offset(), Some(9));
    assert_eq!(
        err.reason(),
        "expected a path or a literal to compare with, found end of query"
    );
    assert_eq!(err.to_string(), format!("at offset 9: {}", err.reason()));
}
