//! What people read, snapshotted (STYLE rule 10): the real binary's output against a real emulator —
//! plans in text and markdown, the grouped form of a large change, apply's plan then outcomes, a
//! no-op apply, drift, and the errors people meet. Each snapshot holds the exit code, stdout and
//! stderr as printed; filters replace only what differs from run to run (the emulator's port,
//! temporary paths, read times, digests), so a snapshot changes exactly
//! when the output does. Long outputs are files under `snapshots/`, short ones inline.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use serde_json::json;

use crate::cli::{Run, dir, manifests, other_writer, report, twin, twinops, twinops_bare, writes};
use crate::support::Emulator;

/// The filters every snapshot here is taken under; hold the guard for the whole test.
fn filtered() -> insta::internals::SettingsBindDropGuard {
    let mut s = insta::Settings::clone_current();
    // Temporary directories: manifests, saved plans.
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_str().unwrap().trim_end_matches('/');
    s.add_filter(
        &format!(r"{}/\.tmp[A-Za-z0-9]+", regex_escape(tmp)),
        "[TMP]",
    );
    // The emulator listens on port 0: its host name carries the port it was given.
    s.add_filter(r"localhost:\d+", "localhost:[PORT]");
    // "Read the hub with N request(s) (...) in 0.0s": how long the reads took.
    s.add_filter(r" in \d+(\.\d+)?s\b", " in [DURATION]");
    // A saved plan's refusal quotes the first 12 hex digits of two manifest digests.
    s.add_filter(
        r"digest [0-9a-f]{12} vs [0-9a-f]{12}",
        "digest [DIGEST] vs [DIGEST]",
    );
    s.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    s.bind_to_scope()
}

/// `s` with the regex metacharacters escaped, for a literal filter.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A run as people see it: the exit code, then stdout and stderr.
fn shown(r: &Run) -> String {
    format!(
        "exit code: {}\n--- stdout\n{}--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// Applied first: a twin with a long owned value, a device with a module, both owned by team-a.
const BEFORE: &str = r#"owner: team-a
devices:
  keeper:
    tags: {site: berlin}
    desired:
      telemetryInterval: 30
      calibration: {curve: linear, offset: 0.5, table: [0, 10, 20, 30], note: "factory calibration of line 2"}
  leaving:
    modules:
      probe: {}
"#;

/// Another team's device that [`AFTER`] declares too: a conflict.
const OTHER_TEAM: &str = "owner: team-b\ndevices:\n  shared:\n    desired: {mode: eco}\n";

/// The change under review: `newcomer` is created with a sensitive value, `keeper`'s long value
/// changes by one element and a note (a line diff), `leaving` is no longer declared (deleted with
/// `--prune`), `shared` belongs to team-b.
const AFTER: &str = r#"owner: team-a
devices:
  keeper:
    tags: {site: berlin}
    desired:
      telemetryInterval: 45
      calibration: {curve: linear, offset: 0.5, table: [0, 10, 20, 30, 40], note: "recalibrated after the spring service"}
  newcomer:
    desired: {apiToken: not-a-real-token, mode: eco}
    sensitive: [desired.apiToken]
  shared:
    desired: {mode: boost}
"#;

/// An emulator holding [`BEFORE`] and [`OTHER_TEAM`], and manifests in `root/m` that say [`AFTER`].
fn staged(root: &Path) -> (Emulator, String) {
    let em = Emulator::start();
    let m = root.join("m");
    let other = root.join("other");
    manifests(&m, &[("fleet.yaml", BEFORE)]);
    manifests(&other, &[("fleet.yaml", OTHER_TEAM)]);
    for p in [&m, &other] {
        let r = twinops(&em, &["apply", "--yes", p.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    manifests(&m, &[("fleet.yaml", AFTER)]);
    (em, m.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_text_plan_shows_a_create_a_line_diff_a_delete_and_a_conflict_and_hides_sensitive_values()
{
    let _filters = filtered();
    let d = dir();
    let (em, m) = staged(d.path());
    let r = twinops(&em, &["plan", "--prune", &m]);
    assert!(!r.stdout.contains("not-a-real-token"), "{}", r.stdout);
    insta::assert_snapshot!(shown(&r));
}

#[tokio::test]
async fn a_markdown_plan_has_a_summary_table_and_one_collapsed_block_per_identity() {
    let _filters = filtered();
    let d = dir();
    let (em, m) = staged(d.path());
    let r = twinops(&em, &["plan", "--prune", "--format", "markdown", &m]);
    assert!(!r.stdout.contains("not-a-real-token"), "{}", r.stdout);
    insta::assert_snapshot!(shown(&r));
}

#[tokio::test]
async fn apply_prints_the_plan_then_one_line_per_outcome_and_the_skipped_conflict() {
    let _filters = filtered();
    let d = dir();
    let (em, m) = staged(d.path());
    let r = twinops(&em, &["apply", "--yes", "--prune", &m]);
    assert!(!r.stdout.contains("not-a-real-token"), "{}", r.stdout);
    insta::assert_snapshot!(shown(&r));
}

#[tokio::test]
async fn an_apply_with_nothing_to_do_says_so_and_writes_nothing() {
    let _filters = filtered();
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", BEFORE)]);
    let p = d.path().to_str().unwrap();
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let before = writes(&em.stats().await);
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(
        writes(&em.stats().await),
        before,
        "a no-op apply must not write"
    );
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 0
    --- stdout
    No changes. 3 twins match the manifests.
    --- stderr
    Read the hub with 5 request(s) (query 2, twin_read 3) in [DURATION]
    ");
}

#[tokio::test]
async fn identical_changes_to_forty_module_twins_are_shown_once_with_their_count() {
    let _filters = filtered();
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap();
    let fleet = |v: u32| {
        format!(
            "owner: team-a\ndevices:\n  \"t-{{01..40}}\":\n    modules:\n      sensor:\n        desired: {{interval: {v}, unit: celsius}}\n"
        )
    };
    manifests(d.path(), &[("fleet.yaml", &fleet(1))]);
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    manifests(d.path(), &[("fleet.yaml", &fleet(2))]);
    let r = twinops(&em, &["plan", p]);
    insta::assert_snapshot!(shown(&r));
}

/// Drift of each class a person meets: `keeper`'s owned value changed by someone else, `quiet`
/// not acknowledged, `refuser` rejecting its desired value, `gone` no longer declared, `shared`
/// owned by another team; `acked` reported what it was asked and is not listed.
async fn drifted(root: &Path) -> (Emulator, String) {
    let em = Emulator::start();
    let m = root.join("m");
    let other = root.join("other");
    let fleet = |with_gone: bool, with_shared: bool| {
        let mut y = String::from(
            "owner: team-a\ndevices:\n  keeper:\n    desired: {telemetryInterval: 30}\n  quiet:\n    desired: {telemetryInterval: 60}\n  acked:\n    desired: {interval: 10}\n  refuser:\n    desired: {mode: eco}\n",
        );
        if with_gone {
            y.push_str("  gone: {}\n");
        }
        if with_shared {
            y.push_str("  shared:\n    desired: {mode: boost}\n");
        }
        y
    };
    manifests(&m, &[("fleet.yaml", &fleet(true, false))]);
    manifests(&other, &[("fleet.yaml", OTHER_TEAM)]);
    for p in [&m, &other] {
        let r = twinops(&em, &["apply", "--yes", p.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    report(&em, "acked", json!({"interval": 10})).await;
    let version = twin(&em, "refuser").await["properties"]["desired"]["$version"].clone();
    report(
        &em,
        "refuser",
        json!({"mode": {"value": "normal", "ac": 400, "ad": "eco is not supported", "av": version}}),
    )
    .await;
    other_writer(
        &em,
        "keeper",
        json!({"properties": {"desired": {"telemetryInterval": 99}}}),
    )
    .await;
    manifests(&m, &[("fleet.yaml", &fleet(false, true))]);
    (em, m.to_str().unwrap().to_string())
}

#[tokio::test]
async fn drift_in_text_lists_each_difference_by_class_then_the_counts() {
    let _filters = filtered();
    let d = dir();
    let (em, m) = drifted(d.path()).await;
    let r = twinops(&em, &["drift", &m]);
    insta::assert_snapshot!(shown(&r));
}

#[tokio::test]
async fn drift_in_markdown_has_a_counts_table_and_the_items_collapsed() {
    let _filters = filtered();
    let d = dir();
    let (em, m) = drifted(d.path()).await;
    let r = twinops(&em, &["drift", "--format", "markdown", &m]);
    insta::assert_snapshot!(shown(&r));
}

#[tokio::test]
async fn a_manifest_error_is_reported_at_its_file_line_and_column() {
    let _filters = filtered();
    let em = Emulator::start();
    let d = dir();
    manifests(
        d.path(),
        &[("fleet.yaml", "devices:\n  ok: {}\n  \"bad id\": {}\n")],
    );
    let r = twinops(&em, &["plan", d.path().to_str().unwrap()]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: [TMP]/fleet.yaml:3:3: device ID `bad id` contains ` `; IoT Hub allows ASCII letters, digits and `-:.+%_#*?!(),=@;$'`
    1 problem(s) found; nothing was sent to the hub
    ");
}

#[test]
fn without_a_hub_the_error_shows_both_ways_to_give_one() {
    let _filters = filtered();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", BEFORE)]);
    let r = twinops_bare(&["plan", d.path().to_str().unwrap()]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: no hub given; pass --hub (or set TWINOPS_HUB or IOTHUB_CONNECTION_STRING) with either
      a connection string: --hub 'HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>'
      or the embedded local hub: --hub local (state in .twinops/hub) or --hub local:DIR
    ");
}

#[tokio::test]
async fn a_bad_target_is_refused_naming_it() {
    let _filters = filtered();
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", BEFORE)]);
    let p = d.path().to_str().unwrap();
    let r = twinops(&em, &["plan", "--target", "a/b/c", p]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: invalid value 'a/b/c' for '--target <TARGETS>': `a/b/c` is not a target: write `DEVICE` or `DEVICE/MODULE`, with `*` and `?` as wildcards

    For more information, try '--help'.
    ");
    let r = twinops(&em, &["plan", "--target", "nomatch*", p]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: --target `nomatch*` matches no declared or observed identity
    ");
}

#[tokio::test]
async fn a_saved_plan_is_refused_when_its_manifests_or_its_hub_differ() {
    let _filters = filtered();
    let d = dir();
    let (em, m) = staged(d.path());
    let saved = d.path().join("plan.json");
    let saved = saved.to_str().unwrap();
    assert_eq!(twinops(&em, &["plan", "--out", saved, &m]).code, 0);
    let before = em.stats().await;
    // The manifests given with it changed since.
    manifests(
        Path::new(&m),
        &[("fleet.yaml", &AFTER.replace("mode: boost", "mode: turbo"))],
    );
    let r = twinops(&em, &["apply", "--yes", "--plan", saved, &m]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: the manifests changed since `[TMP]/plan.json` was made (digest [DIGEST] vs [DIGEST]); plan again; nothing was written
    ");
    // Another hub.
    let elsewhere = Emulator::start();
    let r = twinops(&elsewhere, &["apply", "--yes", "--plan", saved]);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: `[TMP]/plan.json` was made for hub `localhost:[PORT]`, not `localhost:[PORT]`; nothing was written
    ");
    assert_eq!(
        writes(&em.stats().await),
        writes(&before),
        "nothing written"
    );
    assert_eq!(writes(&elsewhere.stats().await), 0, "nothing written");
}

#[tokio::test]
async fn an_untrusted_certificate_is_one_line_that_leads_with_ca_cert() {
    let _filters = filtered();
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", BEFORE)]);
    let mut cmd = crate::cli::command(&em, &["plan", d.path().to_str().unwrap()]);
    cmd.env_remove("TWINOPS_CA_CERT");
    let r = crate::cli::run(cmd);
    insta::assert_snapshot!(shown(&r), @r"
    exit code: 1
    --- stdout
    --- stderr
    error: pass the CA certificate the hub's certificate is signed with as --ca-cert FILE (or TWINOPS_CA_CERT; the emulator prints it as `ca certificate:`): the TLS handshake failed (the hub's certificate is not signed by a CA this machine trusts)
    ");
}
