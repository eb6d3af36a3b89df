//! What programs read is pinned exactly (the JSON plan and apply outcomes parse into
//! `deny_unknown_fields` structs written here, independently of the crate's own types), and nothing a run
//! prints or writes contains a key, a SAS token or a connection string.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;

use crate::cli::{twinops, twinops_env};
use crate::support::Emulator;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PlanDoc {
    format_version: u32,
    hub: String,
    owner: String,
    manifest_digest: String,
    summary: SummaryDoc,
    changes: Vec<ChangeDoc>,
    conflicts: Vec<ConflictDoc>,
    requests: BTreeMap<String, u64>,
    #[serde(default)]
    estimated_apply_seconds: Option<f64>,
    /// Paced hubs only.
    #[serde(default)]
    estimated_read_seconds: Option<f64>,
    read_seconds: f64,
    #[serde(default)]
    scope: Option<ScopeDoc>,
    #[serde(default)]
    rollout: Option<RolloutDoc>,
    /// The fingerprint of the key of the sensitive values' digests (SPEC §13), when any.
    #[serde(default)]
    digest_key: Option<String>,
    /// Configurations that also write declared keys (SPEC §15), when any.
    #[serde(default)]
    warnings: Vec<Value>,
    /// Managed objects (SPEC §16), when any.
    #[serde(default)]
    objects: Option<Value>,
    #[serde(default)]
    no_longer_declared: Vec<String>,
    /// How the hub was read (SPEC §17).
    read: ReadDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReadDoc {
    via: String,
    #[serde(default)]
    job_id: Option<String>,
    #[serde(default)]
    identities: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ScopeDoc {
    pub(crate) changed_from: String,
    pub(crate) twins: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RolloutDoc {
    id: String,
    waves: Vec<WaveDoc>,
    bake_seconds: f64,
    timeout_seconds: f64,
    halt: HaltDoc,
    on_halt: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct WaveDoc {
    index: usize,
    step: String,
    twins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct HaltDoc {
    rejected: String,
    pending: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SummaryDoc {
    create: usize,
    update: usize,
    delete: usize,
    unchanged: usize,
    conflicts: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ChangeDoc {
    action: String,
    kind: String,
    device_id: String,
    #[serde(default)]
    module_id: Option<String>,
    #[serde(default)]
    if_match: Option<String>,
    #[serde(default)]
    base: Option<Value>,
    #[serde(default)]
    target: Option<Value>,
    patch: Value,
    diff: Vec<DiffDoc>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    sensitive: Vec<String>,
    #[serde(default)]
    secrets: Vec<SecretDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SecretDoc {
    path: String,
    digest: String,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DiffDoc {
    path: String,
    #[serde(default)]
    before: Option<Value>,
    #[serde(default)]
    after: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ConflictDoc {
    device_id: String,
    #[serde(default)]
    module_id: Option<String>,
    reason: String,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReportDoc {
    outcomes: Vec<OutcomeDoc>,
    interrupted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OutcomeDoc {
    kind: String,
    device_id: String,
    #[serde(default)]
    module_id: Option<String>,
    status: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    keys: Vec<String>,
}

fn example_manifests() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

#[tokio::test]
async fn json_plan_and_outcomes_parse_into_strict_structs() {
    let em = Emulator::start();
    let m = example_manifests();
    let r = twinops(&em, &["plan", "--format", "json", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan: PlanDoc =
        serde_json::from_str(&r.stdout).expect("plan JSON matches the documented fields");
    assert_eq!(plan.format_version, 1);
    assert_eq!(plan.owner, "berlin-plant");
    assert_eq!(plan.hub, em.host);
    assert_eq!(plan.summary.create, plan.changes.len());
    assert!(
        plan.changes
            .iter()
            .all(|c| c.action == "create" && c.if_match.is_none())
    );
    assert_eq!(plan.requests.get("query"), Some(&2));
    assert_eq!(plan.read.via, "api", "a small hub is read through the API");
    // The example's one sensitive value (inline under `sensitive`) is concealed in every thermostat's
    // create: `(sensitive)` in the patch, a digest and no reference in `secrets`.
    let concealed: Vec<&ChangeDoc> = plan
        .changes
        .iter()
        .filter(|c| !c.secrets.is_empty())
        .collect();
    assert_eq!(concealed.len(), 20);
    for c in concealed {
        assert!(c.device_id.starts_with("therm-") && c.module_id.is_none());
        let s = &c.secrets[..];
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].path, "desired.apiToken");
        assert_eq!(s[0].digest.len(), "hmac-sha256:".len() + 64);
        assert!(s[0].digest.starts_with("hmac-sha256:") && s[0].reference.is_none());
        assert_eq!(
            c.patch["twin"]["properties"]["desired"]["apiToken"],
            "(sensitive)"
        );
    }
    assert!(plan.digest_key.is_some(), "the plan names its digests' key");
    assert!(plan.read_seconds >= 0.0);
    // An unpaced hub gets no estimate; a plan of the whole fleet has no scope.
    assert_eq!(plan.estimated_read_seconds, None);
    assert!(plan.scope.is_none());

    let r = twinops(
        &em,
        &["apply", "--yes", "--format", "json", m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let report: ReportDoc = serde_json::from_str(&r.stdout).expect("outcome JSON matches");
    assert!(!report.interrupted);
    assert!(
        report.outcomes.iter().all(|o| o.status == "applied"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_rollout_block_puts_the_desired_changes_in_waves_in_every_plan_format() {
    let em = Emulator::start();
    let m = example_manifests();
    let r = twinops(&em, &["apply", "--yes", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    // The thermostat template's interval changes for the twenty thermostat twins; wave 0 is one canary.
    let d = tempfile::tempdir().unwrap();
    let fleet = std::fs::read_to_string(m.join("fleet.yaml")).unwrap();
    let changed = fleet.replace("telemetryInterval: 60", "telemetryInterval: 90");
    assert_ne!(changed, fleet);
    std::fs::write(d.path().join("fleet.yaml"), changed).unwrap();
    std::fs::copy(
        m.join("thermostats.yaml"),
        d.path().join("thermostats.yaml"),
    )
    .unwrap();
    std::fs::write(
        d.path().join("rollout.yaml"),
        "rollout:\n  waves: [10%, 100%]\n  first: {tags: {name: therm-007}}\n  bake: 2m\n",
    )
    .unwrap();
    let dir = d.path().to_str().unwrap();

    let r = twinops(&em, &["plan", "--format", "json", dir]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan: PlanDoc = serde_json::from_str(&r.stdout).expect("plan JSON with a rollout");
    let rollout = plan.rollout.expect("a rollout");
    assert_eq!(rollout.id.len(), 64);
    let sizes: Vec<(usize, &str, usize)> = rollout
        .waves
        .iter()
        .map(|w| (w.index, w.step.as_str(), w.twins.len()))
        .collect();
    assert_eq!(sizes, [(0, "first", 1), (1, "10%", 1), (2, "100%", 18)]);
    assert_eq!(rollout.waves[0].twins, ["therm-007"]);
    assert_eq!(rollout.bake_seconds, 120.0);
    assert_eq!(rollout.timeout_seconds, 600.0);
    assert_eq!(rollout.on_halt, "stop");

    let again = twinops(&em, &["plan", "--format", "json", dir]);
    let again: PlanDoc = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again.rollout.unwrap().id, rollout.id);

    let text = twinops(&em, &["plan", dir]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout
            .contains("  wave 0 (first): 1 twin(s): therm-007\n"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("  wave 2 (up to 100%): 18 twin(s): "));
    let md = twinops(&em, &["plan", "--format", "markdown", dir]);
    assert!(
        md.stdout.contains("| 0 | first | 1 | `therm-007` |"),
        "{}",
        md.stdout
    );

    // No device answers on this emulator: --no-rollout writes every twin without a gate
    // (delivering the waves is tests/it/cli_rollout.rs's).
    let r = twinops(&em, &["apply", "--yes", "--no-rollout", dir]);
    assert_eq!(r.code, 0, "{r:?}");

    // Without the block the plan document has no rollout field at all.
    std::fs::remove_file(d.path().join("rollout.yaml")).unwrap();
    let r = twinops(&em, &["plan", "--format", "json", dir]);
    let plain: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(plain.get("rollout").is_none());
}

#[tokio::test]
async fn no_key_token_or_connection_string_appears_in_any_output() {
    let em = Emulator::start();
    let m = example_manifests();
    let d = tempfile::tempdir().unwrap();
    let plan_file = d.path().join("plan.json");
    let mut everything = String::new();
    let vv = [("RUST_LOG", "twinops=trace")];
    for args in [
        vec!["validate", m.to_str().unwrap()],
        vec!["plan", "-vv", m.to_str().unwrap()],
        vec![
            "plan",
            "-vv",
            "--format",
            "json",
            "--out",
            plan_file.to_str().unwrap(),
            m.to_str().unwrap(),
        ],
        vec!["plan", "-vv", "--format", "markdown", m.to_str().unwrap()],
        vec!["apply", "-vv", "--yes", m.to_str().unwrap()],
        vec![
            "apply",
            "-vv",
            "--yes",
            "--format",
            "json",
            m.to_str().unwrap(),
        ],
        vec!["drift", "-vv", m.to_str().unwrap()],
        vec!["drift", "-vv", "--format", "json", m.to_str().unwrap()],
    ] {
        let r = twinops_env(&em, &args, &vv);
        assert!(r.code == 0 || r.code == 2, "{args:?}: {r:?}");
        everything.push_str(&r.stdout);
        everything.push_str(&r.stderr);
    }
    // The saved plan holds no sensitive value, not even in the patches apply sends.
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    assert!(!saved.contains("not-a-real-token"), "{saved}");
    everything.push_str(&saved);
    // Export writes desired values as the hub holds them (it cannot know which are sensitive), but never keys.
    let r = twinops_env(&em, &["export", "-vv"], &vv);
    assert_eq!(r.code, 0, "{r:?}");
    everything.push_str(&r.stdout.replace("not-a-real-token", ""));
    everything.push_str(&r.stderr);
    // Every secret the hub holds: the owner key and each created identity's keys.
    let mut secrets = vec![em.owner_key.clone(), em.connection_string.clone()];
    for id in ["myFirstDevice", "therm-001", "gateway-1"] {
        let dev = em.get(&format!("/devices/{id}")).await.body;
        for k in ["primaryKey", "secondaryKey"] {
            secrets.push(
                dev["authentication"]["symmetricKey"][k]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    let module = em
        .get("/devices/myFirstDevice/modules/myFirstModule")
        .await
        .body;
    secrets.push(
        module["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    for s in &secrets {
        assert!(!s.is_empty());
        assert!(
            !everything.contains(s.as_str()),
            "a secret leaked into the output"
        );
    }
    for marker in [
        "SharedAccessSignature",
        "SharedAccessKey",
        "sig=",
        "not-a-real-token",
    ] {
        assert!(
            !everything.contains(marker),
            "`{marker}` appeared in the output"
        );
    }
    // The -vv run did log something (the scan is not vacuous).
    assert!(everything.contains("request"), "trace logs were expected");
}

#[tokio::test]
async fn quiet_apply_prints_the_summary_and_only_what_needs_attention() {
    let em = crate::support::Emulator::start();
    let d = crate::cli::dir();
    let p = d.path().to_str().unwrap();
    let mut y = String::from("owner: q\ndevices:\n  \"q-{001..120}\":\n    desired: {v: 1}\n");
    crate::cli::manifests(d.path(), &[("fleet.yaml", &y)]);
    let r = crate::cli::twinops(&em, &["apply", "--yes", "--quiet", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "Plan: 120 to create, 0 to update, 0 to delete, 0 unchanged.",
            "Apply complete: 120 applied, 0 adopted, 0 unchanged, 0 conflicts, 0 failed, 0 skipped."
        ],
        "{}",
        r.stdout
    );
    // A conflict still gets its line.
    y.push_str("  other: {desired: {v: 1}}\n");
    crate::cli::manifests(d.path(), &[("fleet.yaml", &y)]);
    crate::cli::other_writer(
        &em,
        "q-001",
        serde_json::json!({"tags": {"twinops": "not a ledger"}}),
    )
    .await;
    let y2 = y.replace("v: 1", "v: 2");
    crate::cli::manifests(d.path(), &[("fleet.yaml", &y2)]);
    let r = crate::cli::twinops(&em, &["apply", "--yes", "--quiet", p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.lines().count() <= 4, "{}", r.stdout);
    assert!(
        r.stdout.contains("CONFLICT  update device twin q-001"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 conflicts"), "{}", r.stdout);
}
