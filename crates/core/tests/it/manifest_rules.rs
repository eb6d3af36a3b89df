//! One failing manifest per validation rule of SPEC §2, with the exact messages snapshotted.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use twinops_core::manifest::{self, Source};

fn errors_of(files: &[(&str, &[u8])]) -> String {
    let sources: Vec<Source> = files
        .iter()
        .map(|(path, bytes)| Source {
            path: path.to_string(),
            bytes: bytes.to_vec(),
        })
        .collect();
    match manifest::load(&sources, &manifest::NoEnv) {
        Ok(_) => panic!("expected the manifest set to be rejected"),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "errors are never empty");
            errors.to_string()
        }
    }
}

/// `rule!(name, "file" => "yaml", ...)`: a test that snapshots every diagnostic of the set.
macro_rules! rule {
    ($name:ident, $($file:literal => $text:expr),+ $(,)?) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(errors_of(&[$(($file, AsRef::<[u8]>::as_ref(&$text))),+]));
        }
    };
}

rule!(yaml_syntax_error_stops_the_file_at_its_position, "a.yaml" => "devices:\n  d1: {status: enabled\n  d2: {}\n");
rule!(document_that_is_not_a_mapping_is_rejected, "a.yaml" => "- devices\n");
rule!(unknown_top_level_key_is_rejected, "a.yaml" => "devices: {}\ndevice: {}\n");
rule!(unknown_device_key_is_rejected, "a.yaml" => "devices:\n  d1:\n    extends: [t]\n");
rule!(unknown_module_key_is_rejected, "a.yaml" => "devices:\n  d1:\n    modules:\n      m1: {status: enabled}\n");
rule!(wrong_type_is_rejected, "a.yaml" => "devices:\n  d1: {edge: \"yes\", tags: [a], templates: base}\n");
rule!(duplicate_key_names_both_places, "a.yaml" => "devices:\n  d1:\n    tags: {a: 1}\n    tags: {b: 2}\n");
rule!(device_defined_in_two_files_names_both_places,
    "a.yaml" => "devices:\n  d1: {}\n",
    "b.yaml" => "devices:\n  d1: {}\n");
rule!(module_defined_twice_names_both_places, "a.yaml" => "devices:\n  d1:\n    modules:\n      m1: {}\n      m1: {}\n");
rule!(range_expanding_to_a_device_defined_elsewhere_is_rejected,
    "a.yaml" => "devices:\n  therm-005: {}\n",
    "b.yaml" => "devices:\n  \"therm-{001..010}\": {}\n");
rule!(overlapping_ranges_are_rejected, "a.yaml" => "devices:\n  \"t-{1..10}\": {}\n  \"t-{5..20}\": {}\n");
rule!(device_id_with_invalid_characters_is_rejected, "a.yaml" => "devices:\n  \"bad id\": {}\n  \"slash/id\": {}\n");
rule!(device_id_over_128_characters_is_rejected, "a.yaml" => format!("devices:\n  {}: {{}}\n", "d".repeat(129)));
rule!(range_expanding_past_128_characters_is_rejected, "a.yaml" => format!("devices:\n  \"{}{{1..10}}\": {{}}\n", "d".repeat(127)));
rule!(module_id_with_invalid_characters_is_rejected, "a.yaml" => "devices:\n  d1:\n    modules:\n      \"m 1\": {}\n      \"m{1..2}\": {}\n");
rule!(braces_outside_one_range_are_rejected, "a.yaml" => "devices:\n  \"a-{1..2}-{3..4}\": {}\n  \"b-{1..2\": {}\n  \"c}\": {}\n");
rule!(backwards_range_is_rejected, "a.yaml" => "devices:\n  \"t-{10..1}\": {}\n");
rule!(range_of_non_digits_is_rejected, "a.yaml" => "devices:\n  \"t-{a..z}\": {}\n  \"u-{1-5}\": {}\n");
rule!(range_with_mixed_widths_is_rejected, "a.yaml" => "devices:\n  \"t-{001..20}\": {}\n");
rule!(twin_keys_with_dot_dollar_space_or_control_characters_are_rejected,
    "a.yaml" => "devices:\n  d1:\n    tags: {a.b: 1, $x: 2, \"c d\": 3}\n    desired: {nested: {\"e\\tf\": 4}}\n");
rule!(twin_keys_with_a_hash_are_rejected,
    "a.yaml" => "devices:\n  d1:\n    tags: {\"a#b\": 1}\n    desired: {nested: {\"#\": 2}}\n");
// YAML limits implicit keys to 1024 characters, so the long key is written as an explicit `? key`.
rule!(twin_key_over_1_kb_is_rejected, "a.yaml" => format!("devices:\n  d1:\n    desired:\n      ? {}\n      : 1\n", "k".repeat(1025)));
// `top` and eleven `k`: eleven objects inside `desired`, one more than IoT Hub allows.
rule!(twin_depth_over_ten_is_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    desired: {{top: {}1{}}}\n", "{k: ".repeat(11), "}".repeat(11)));
rule!(twin_depth_over_ten_through_arrays_is_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    desired: {{top: {}1{}}}\n", "[{k: ".repeat(11), "}]".repeat(11)));
rule!(null_inside_an_array_is_rejected,
    "a.yaml" => "devices:\n  d1:\n    tags: {a: [1, null, ~]}\n    desired: {b: [{c: null}], d: {e: null}}\n");
rule!(tags_over_8_kb_are_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    tags: {{a: {}, b: {}, c: {}}}\n", "x".repeat(4000), "y".repeat(4000), "z".repeat(4000)));
rule!(desired_over_32_kb_is_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    desired: {{{}}}\n", (0..9).map(|i| format!("k{i}: {}", "v".repeat(4000))).collect::<Vec<_>>().join(", ")));
rule!(string_value_over_4_kb_is_rejected, "a.yaml" => format!("devices:\n  d1:\n    desired: {{s: {}}}\n", "v".repeat(4097)));
rule!(string_value_over_4_kb_after_substitution_is_rejected,
    "a.yaml" => format!("devices:\n  long-device-id:\n    desired: {{s: \"{}${{device}}\"}}\n", "v".repeat(4085)));
rule!(integers_outside_2_pow_52_are_rejected,
    "a.yaml" => "devices:\n  d1:\n    desired: {big: 4503599627370496, small: -4503599627370496, huge: 99999999999999999999999999999999999999999}\n");
rule!(non_finite_numbers_are_rejected, "a.yaml" => "devices:\n  d1:\n    desired: {a: .inf, b: -.inf, c: .nan, d: 1e400}\n");
rule!(unknown_template_is_rejected,
    "a.yaml" => "templates:\n  t: {extends: [nothing]}\ndevices:\n  d1: {templates: [t, missing]}\n");
rule!(extends_cycle_is_named, "a.yaml" => "templates:\n  a: {extends: [b]}\n  b: {extends: [c]}\n  c: {extends: [a]}\n  self: {extends: [self]}\n");
rule!(template_defined_twice_names_both_places,
    "a.yaml" => "templates:\n  t: {}\n",
    "b.yaml" => "templates:\n  t: {}\n");
rule!(more_than_50_modules_are_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    modules:\n{}", (0..51).map(|i| format!("      m{i}: {{}}\n")).collect::<String>()));
rule!(malformed_ignore_and_sensitive_paths_are_rejected,
    "a.yaml" => "devices:\n  d1:\n    ignore: [reported.x, tags, desired..x, \"desired.a b\", \"desired.x#y\", desired.]\n    sensitive: [desired.$x, 7]\n");
rule!(reserved_twinops_tag_is_rejected, "a.yaml" => "devices:\n  d1:\n    tags: {twinops: {owner: me}}\n");
rule!(tags_over_8_kb_with_the_ledger_are_rejected,
    "a.yaml" => format!("owner: o\ndevices:\n  d1:\n    tags: {{t: {}, u: {}}}\n", "x".repeat(4049), "y".repeat(4049)));
rule!(module_tags_over_8_kb_with_the_ledger_are_rejected,
    "a.yaml" => format!("devices:\n  d1:\n    modules:\n      m1:\n        tags: {{t: {}, u: {}}}\n", "x".repeat(4046), "y".repeat(4046)));
rule!(more_than_a_million_identities_are_rejected_before_expanding,
    "a.yaml" => "devices:\n  \"small-{1..10}\": {}\n  \"huge-{000000000001..999999999999}\": {modules: {a: {}}}\n");
rule!(parent_that_is_not_an_edge_device_is_rejected,
    "a.yaml" => "devices:\n  gw: {}\n  child: {parent: gw}\n  orphan: {parent: somewhere-in-the-hub}\n  me: {parent: me}\n");
rule!(status_other_than_enabled_or_disabled_is_rejected, "a.yaml" => "devices:\n  d1: {status: off}\n");
rule!(status_reason_over_128_characters_is_rejected,
    "a.yaml" => format!("devices:\n  d1: {{statusReason: {}}}\n", "r".repeat(129)));
rule!(auth_forms_and_thumbprints_are_checked,
    "a.yaml" => "devices:\n  d1: {auth: x509}\n  d2: {auth: {x509: {primary: abc}}}\n  d3: {auth: {x509: {secondary: 0123456789abcdef0123456789abcdef0123456z}}}\n  d4: {auth: {token: x}}\n");
rule!(owner_set_twice_is_rejected,
    "a.yaml" => "owner: one\n",
    "b.yaml" => "owner: two\n");
rule!(invalid_owner_is_rejected, "a.yaml" => "owner: \"berlin plant/1\"\n");
rule!(unknown_substitution_is_rejected,
    "a.yaml" => "devices:\n  d1:\n    tags: {a: \"${hub}\", b: \"${device\"}\n    desired: {c: \"${module}\"}\n");
rule!(alias_bomb_stops_at_the_alias, "a.yaml" => {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
});
rule!(yaml_nesting_over_64_levels_is_rejected, "a.yaml" => format!("devices: {}{}\n", "[".repeat(70), "]".repeat(70)));
rule!(invalid_utf8_is_rejected_with_its_position, "a.yaml" => b"devices:\n  d\xff1: {}\n".to_vec());
rule!(file_over_16_mib_is_rejected, "a.yaml" => vec![b'#'; manifest::MAX_FILE_BYTES + 1]);
rule!(yaml_merge_keys_are_rejected, "a.yaml" => "templates:\n  t: &base {tags: {a: 1}}\ndevices:\n  d1:\n    <<: *base\n");
rule!(custom_yaml_tags_are_rejected, "a.yaml" => "devices:\n  d1: {tags: {a: !secret x, b: !!int nope}}\n");
rule!(rollout_set_twice_names_both_places,
    "a.yaml" => "rollout: {waves: [100%]}\n",
    "b.yaml" => "rollout:\n  waves: [all]\n");
rule!(unknown_rollout_keys_are_rejected,
    "a.yaml" => "rollout:\n  waves: [100%]\n  wave: [5%]\n  halt: {rejected: 1%, failed: 2%}\n  first: {tags: {ring: canary}, labels: {}}\n");
rule!(rollout_fields_of_the_wrong_type_are_rejected,
    "a.yaml" => "rollout:\n  waves: 5%\n  first: [canary]\n  bake: true\n  timeout: [10m]\n  halt: 5%\n  on_halt: {stop: true}\n");
rule!(rollout_that_is_not_a_mapping_is_rejected, "a.yaml" => "rollout: [5%, 100%]\n");
rule!(substitutions_in_rollout_first_are_rejected,
    "a.yaml" => "rollout:\n  waves: [100%]\n  first: {tags: {name: \"${device}\", mod: \"${module}\", ok: \"$${device}\"}}\n");
rule!(rollout_without_waves_is_rejected, "a.yaml" => "rollout: {bake: 2m}\n");
rule!(empty_waves_are_rejected, "a.yaml" => "rollout: {waves: []}\n");
rule!(wave_shares_outside_0_to_100_percent_are_rejected,
    "a.yaml" => "rollout:\n  waves: [0%, 0.125%, 150%, -5%, 100.5%, 100%]\n");
rule!(waves_that_are_not_shares_counts_or_all_are_rejected,
    "a.yaml" => "rollout:\n  waves: [half, 0.5, 0, -3, true, null, all]\n");
rule!(wave_shares_that_do_not_increase_are_rejected,
    "a.yaml" => "rollout:\n  waves: [5%, 25%, 25%, 10%, 100%]\n");
rule!(wave_counts_that_do_not_increase_are_rejected,
    "a.yaml" => "rollout:\n  waves: [10, 5, all, all]\n");
rule!(waves_mixing_shares_and_counts_are_rejected,
    "a.yaml" => "rollout:\n  waves: [10, 50%, all]\n");
rule!(last_share_below_100_percent_is_rejected, "a.yaml" => "rollout:\n  waves: [5%, 25%]\n");
rule!(last_count_other_than_all_is_rejected, "a.yaml" => "rollout:\n  waves: [10, 100]\n");
rule!(bad_rollout_durations_are_rejected_by_the_duration_grammar,
    "a.yaml" => "rollout:\n  waves: [100%]\n  bake: 2 minutes\n  timeout: 5sec\n");
rule!(negative_bake_and_zero_timeout_are_rejected,
    "a.yaml" => "rollout:\n  waves: [100%]\n  bake: -1\n  timeout: 0s\n");
rule!(halt_shares_outside_0_to_100_percent_are_rejected,
    "a.yaml" => "rollout:\n  waves: [100%]\n  halt: {rejected: 101%, pending: 5}\n");
rule!(on_halt_other_than_stop_or_revert_is_rejected,
    "a.yaml" => "rollout:\n  waves: [100%]\n  on_halt: rollback\n");
rule!(first_without_tags_is_rejected, "a.yaml" => "rollout:\n  waves: [100%]\n  first: {}\n");
rule!(first_with_empty_tags_is_rejected, "a.yaml" => "rollout:\n  waves: [100%]\n  first: {tags: {}}\n");
rule!(first_tags_that_are_not_a_mapping_are_rejected, "a.yaml" => "rollout:\n  waves: [100%]\n  first: {tags: [ring]}\n");
rule!(first_tags_follow_the_twin_rules,
    "a.yaml" => "rollout:\n  waves: [100%]\n  first: {tags: {ring.name: canary, twinops: x}}\n");
rule!(malformed_secret_references_are_rejected_where_they_are_written,
"a.yaml" => concat!(
    "devices:\n",
    "  d1:\n",
    "    tags: {a: \"${env:}\", b: \"${env:1ST}\", c: \"${env:MY-TOKEN}\", d: \"${env:TOKEN\"}\n",
    "    desired:\n",
    "      bearer: \"Bearer ${env:TOKEN}\"\n",
    "      list: [\"${env:TOKEN}\"]\n",
    "      deep: {items: [{k: \"${env:TOKEN}\"}]}\n",
    "rollout:\n  waves: [100%]\n  first: {tags: {ring: \"${env:RING}\"}}\n",
));
rule!(a_missing_variable_is_reported_once_at_the_value_naming_it,
"a.yaml" => concat!(
    "templates:\n",
    "  t: {desired: {token: \"${env:API_TOKEN}\"}}\n",
    "devices:\n",
    "  \"d-{1..50}\":\n",
    "    templates: [t]\n",
    "    modules:\n",
    "      m: {tags: {key: \"${env:MODULE_KEY}\"}}\n",
    "  other:\n",
    "    tags: {\"\": {k: \"${env:SET_BUT_UNDER_AN_EMPTY_KEY}\"}}\n",
));
