//! GitOps in CI: saved plans bound to a hub, pruning, export round trips, drift, targets and Entra ID
//! bearer tokens, with the real binary against real emulators.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::cli::{
    dir, manifests, other_writer, outcome, report, twin, twinops, twinops_env, writes,
};
use crate::support::Emulator;
use serde_json::json;

const FLEET: &str = r#"
owner: team-a
devices:
  "dev-{1..3}":
    tags: {site: berlin}
    desired: {telemetryInterval: 30}
    modules:
      sensor:
        desired: {unit: celsius}
"#;

#[tokio::test]
async fn plan_made_for_one_hub_is_refused_on_another_with_no_write() {
    let a = Emulator::start();
    let b = Emulator::start();
    let d = dir();
    manifests(&d.path().join("m"), &[("fleet.yaml", FLEET)]);
    let m = d.path().join("m");
    let plan = d.path().join("plan.json");
    let r = twinops(
        &a,
        &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops(&b, &["apply", "--yes", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("was made for hub"), "{}", r.stderr);
    assert_eq!(writes(&b.stats().await), 0);
    // The same plan applies on its own hub, and a plan of another format version is refused.
    let r = twinops(&a, &["apply", "--yes", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 2");
    std::fs::write(&plan, text).unwrap();
    let r = twinops(&a, &["apply", "--yes", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("format_version 2"), "{}", r.stderr);
}

/// A file that is not a plan is named for what it is (not JSON at `file:line:column`, not a plan
/// document, a plan that does not parse), never as a plan of some other format version, and
/// nothing is sent.
#[tokio::test]
async fn a_file_that_is_not_a_plan_is_reported_as_what_it_is_before_any_request() {
    let em = Emulator::start();
    let d = dir();
    let plan = d.path().join("plan.json");
    let path = plan.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        // Truncated JSON: serde's message at the line and column where it stopped.
        (
            "{\n  \"format_version\": 1,\n  \"hub\": ",
            &[&format!("{path}:3:"), "not JSON", "EOF while parsing"],
        ),
        ("owner: team-a\n", &[&format!("{path}:1:1"), "not JSON"]),
        ("[1, 2]", &[path, "not a plan document", "an array"]),
        (
            "{\"hub\": \"x\"}",
            &[path, "not a plan document", "no `format_version`"],
        ),
        (
            "{\"format_version\": \"1\"}",
            &[
                path,
                "not a plan document",
                "`format_version` is not a number",
            ],
        ),
        // The right version, the wrong shape: where serde stopped, and what it found.
        (
            "{\"format_version\": 1, \"hub\": 7}",
            &[&format!("{path}:1:"), "invalid type: integer `7`"],
        ),
    ];
    for (text, wanted) in cases {
        std::fs::write(&plan, text).unwrap();
        let r = twinops(&em, &["apply", "--yes", "--plan", path]);
        assert_eq!(r.code, 1, "{text}: {r:?}");
        for w in *wanted {
            assert!(r.stderr.contains(w), "{text}: no `{w}` in {}", r.stderr);
        }
        assert!(
            !r.stderr.contains("(none)") && !r.stderr.contains("format_version 1;"),
            "{text}: reported as a version mismatch: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    }
    // A real other version keeps its message.
    std::fs::write(&plan, "{\"format_version\": 2}").unwrap();
    let r = twinops(&em, &["apply", "--yes", "--plan", path]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("is a plan of format_version 2; this twinops reads format_version 1"),
        "{}",
        r.stderr
    );
    assert_eq!(em.stats().await["total"], 0, "nothing was sent");
}

#[tokio::test]
async fn saved_plan_is_refused_when_the_manifests_changed_or_name_another_owner() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let plan = d.path().join("plan.json");
    assert_eq!(
        twinops(
            &em,
            &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()]
        )
        .code,
        0
    );
    manifests(&m, &[("fleet.yaml", &FLEET.replace("30", "31"))]);
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--plan",
            plan.to_str().unwrap(),
            m.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("manifests changed"), "{}", r.stderr);
    manifests(&m, &[("fleet.yaml", &FLEET.replace("team-a", "team-b"))]);
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--plan",
            plan.to_str().unwrap(),
            m.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("owner"), "{}", r.stderr);
    assert_eq!(writes(&em.stats().await), 0);
}

#[tokio::test]
async fn prune_deletes_exactly_the_owned_undeclared_identities_and_respects_max_deletes() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    // Someone else's device and module stay whatever happens.
    em.create_device("foreign").await;
    em.create_module("dev-1", "theirs").await;
    // Drop dev-3 and the sensor of dev-2 from the manifests.
    let smaller = r#"
owner: team-a
devices:
  "dev-{1..2}":
    tags: {site: berlin}
    desired: {telemetryInterval: 30}
  dev-1:
    modules:
      sensor:
        desired: {unit: celsius}
"#;
    let smaller = smaller.replace("\"dev-{1..2}\":", "dev-2:").replace(
        "  dev-1:\n    modules:",
        "  dev-1:\n    tags: {site: berlin}\n    desired: {telemetryInterval: 30}\n    modules:",
    );
    manifests(&m, &[("fleet.yaml", &smaller)]);
    let r = twinops(
        &em,
        &["plan", "--prune", "--format", "json", m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let kinds: Vec<String> = r.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c["kind"].as_str().unwrap(),
                c["device_id"].as_str().unwrap(),
                c["module_id"]
                    .as_str()
                    .map(|m| format!("/{m}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["delete_module dev-2/sensor", "delete_device dev-3"]
    );
    // dev-3 has a module: three identities go, over a limit of 2.
    let before = em.stats().await;
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--prune",
            "--max-deletes",
            "2",
            m.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("more than --max-deletes 2"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&em.stats().await), writes(&before));
    let r = twinops(&em, &["apply", "--yes", "--prune", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(em.get("/devices/dev-3").await.status, 404);
    assert_eq!(em.get("/devices/dev-2/modules/sensor").await.status, 404);
    assert_eq!(em.get("/devices/dev-1/modules/sensor").await.status, 200);
    assert_eq!(em.get("/devices/dev-1/modules/theirs").await.status, 200);
    assert_eq!(em.get("/devices/foreign").await.status, 200);
    // Without --prune nothing is ever deleted.
    manifests(&m, &[("fleet.yaml", "owner: team-a\ndevices: {}\n")]);
    let r = twinops(&em, &["apply", "--yes", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(em.get("/devices/dev-1").await.status, 200);
}

#[tokio::test]
async fn export_validate_plan_round_trip_keeps_nested_values_arrays_and_unicode() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    let fleet = r#"
owner: team-a
devices:
  gateway:
    edge: true
    tags: {site: "Zürich", floors: [1, 2, 3], nested: {a: {b: {c: "ünïcødé ✓"}}}}
    desired: {schedule: [{at: "08:00", on: true}, {at: "20:00", on: false}], ratio: 0.25, "yes": "no", zero: "007"}
    modules:
      bridge:
        desired: {upstream: {protocol: amqp, retries: 3}}
  leaf:
    parent: gateway
    status: disabled
    statusReason: "maintenance ☂"
    desired: {empty: {}, list: []}
"#;
    manifests(&m, &[("fleet.yaml", fleet)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    // A device nobody manages yet, created by hand.
    em.create_device("handmade").await;
    other_writer(
        &em,
        "handmade",
        json!({"tags": {"x": "y"}, "properties": {"desired": {"k": [1, {"z": "w"}]}}}),
    )
    .await;
    let out = d.path().join("exported");
    let r = twinops(&em, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(out.join("fleet.yaml")).unwrap();
    assert!(
        !text.contains("primaryKey") && !text.contains("SharedAccessKey"),
        "{text}"
    );
    let r = twinops(&em, &["validate", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}\n{text}");
    let r = twinops(&em, &["plan", "--format", "json", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan = r.json();
    // Only the hand-made device's ledger is written: it is adopted whole, with its identity fields
    // as they are (SPEC §15); what team-a manages is exported as its ledger says (a no-op).
    let changes = plan["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for c in changes {
        assert_eq!(c["device_id"], "handmade", "{c}");
        assert_eq!(c["kind"], "update_device_twin", "{c}");
        assert_eq!(
            c["patch"].as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["tags"],
            "{c}"
        );
        assert_eq!(
            c["patch"]["tags"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["twinops"],
            "{c}"
        );
    }
    assert!(plan["conflicts"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn drift_classes_and_exit_codes() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    // Right after apply nothing is reported back: in sync, but not yet acknowledged.
    let r = twinops(&em, &["drift", "--format", "json", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["in_sync"], true);
    assert_eq!(j["counts"]["not_acknowledged"], 6);
    // Devices acknowledge: plainly or in the Plug and Play form.
    report(&em, "dev-1", json!({"telemetryInterval": 30})).await;
    let version = twin(&em, "dev-2").await["properties"]["desired"]["$version"]
        .as_i64()
        .unwrap();
    report(
        &em,
        "dev-2",
        json!({"telemetryInterval": {"value": 30, "ac": 200, "av": version}}),
    )
    .await;
    let r = twinops(&em, &["drift", "--format", "json", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["counts"]["not_acknowledged"], 4);
    // Someone changes an owned key in the hub: drift, exit 2.
    other_writer(
        &em,
        "dev-3",
        json!({"properties": {"desired": {"telemetryInterval": 5}}}),
    )
    .await;
    em.delete("/devices/dev-1/modules/sensor", Some("\"*\""))
        .await;
    let r = twinops(&em, &["drift", m.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("changed in hub") && r.stdout.contains("dev-3"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("module missing from the hub"),
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["drift", "--format", "markdown", m.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("| changed in hub |"), "{}", r.stdout);
}

#[tokio::test]
async fn target_touches_only_what_it_names() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let r = twinops(
        &em,
        &["apply", "--yes", "--target", "dev-2", m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(em.get("/devices/dev-1").await.status, 404);
    assert_eq!(em.get("/devices/dev-2/modules/sensor").await.status, 200);
    let r = twinops(&em, &["apply", "--yes", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    manifests(
        &m,
        &[(
            "fleet.yaml",
            &FLEET.replace("30", "40").replace("celsius", "kelvin"),
        )],
    );
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--target",
            "dev-*/sensor",
            m.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    for i in 1..=3 {
        let dev = twin(&em, &format!("dev-{i}")).await;
        assert_eq!(dev["properties"]["desired"]["telemetryInterval"], 30);
        let sensor = twin(&em, &format!("dev-{i}/sensor")).await;
        assert_eq!(sensor["properties"]["desired"]["unit"], "kelvin");
    }
    let r = twinops(&em, &["drift", "--target", "dev-1", m.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stdout.contains("dev-2"), "{}", r.stdout);
}

#[tokio::test]
async fn bearer_token_run_plans_and_applies() {
    let em = Emulator::start_with(&["--bearer-token", "ci-token-123"]);
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let hub = format!("HostName={}", em.host);
    let env = [
        ("TWINOPS_HUB", hub.as_str()),
        ("TWINOPS_ACCESS_TOKEN", "ci-token-123"),
    ];
    let r = twinops_env(
        &em,
        &["apply", "--yes", "--auth", "token", m.to_str().unwrap()],
        &env,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops_env(
        &em,
        &[
            "plan",
            "--auth",
            "token",
            "--detailed-exitcode",
            m.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{r:?}");
    let bad = [
        ("TWINOPS_HUB", hub.as_str()),
        ("TWINOPS_ACCESS_TOKEN", "wrong"),
    ];
    let r = twinops_env(&em, &["plan", "--auth", "token", m.to_str().unwrap()], &bad);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("wrong"),
        "the token must not be echoed: {}",
        r.stderr
    );
}

const THUMB_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const THUMB_B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

#[tokio::test]
async fn a_module_auth_change_made_after_the_plan_is_a_conflict_not_overwritten() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    let fleet = |auth: &str| {
        format!(
            "owner: team-a\ndevices:\n  dev-1:\n    modules:\n      sensor:\n        auth: {auth}\n"
        )
    };
    manifests(&m, &[("fleet.yaml", &fleet("sas"))]);
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    // The plan changes the module to X.509 thumbprint A ...
    manifests(
        &m,
        &[(
            "fleet.yaml",
            &fleet(&format!("{{x509: {{primary: {THUMB_A}}}}}")),
        )],
    );
    let plan = d.path().join("plan.json");
    let r = twinops(
        &em,
        &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let change = saved["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "update_module")
        .expect("a module identity update");
    assert!(
        change["if_match"].as_str().is_some_and(|e| !e.is_empty()),
        "{change}"
    );
    // ... and someone else sets thumbprint B before it is applied.
    let module = em.get("/devices/dev-1/modules/sensor").await;
    let etag = module.body["etag"].as_str().unwrap().to_string();
    let r = em
        .put(
            "/devices/dev-1/modules/sensor",
            json!({"deviceId": "dev-1", "moduleId": "sensor", "authentication": {
                "type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": THUMB_B}}}),
            Some(&etag),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--format",
            "json",
            "--plan",
            plan.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let out = r.json();
    let o = outcome(&out, "kind", "update_module");
    assert_eq!(o["status"], "conflict", "{o}");
    let now = em.get("/devices/dev-1/modules/sensor").await;
    assert_eq!(
        now.body["authentication"]["x509Thumbprint"]["primaryThumbprint"], THUMB_B,
        "the other writer's change must survive"
    );
}
