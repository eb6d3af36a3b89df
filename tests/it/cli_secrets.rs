//! Secrets in manifests and plan files (SPEC §13), with the real binary against a real emulator:
//! `${env:NAME}` values reach the twin and nothing else, a missing variable stops the run before
//! anything is sent, and saved plans hold references and digests only, which `apply --plan` checks
//! again before its first request.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::cli::{Run, dir, manifests, twin, twinops_env, writes};
use crate::support::Emulator;
use serde_json::{Value, json};

const TOKEN: &str = "tok-7f3a9c41d2e8";
const OTHER_TOKEN: &str = "tok-other-55b0e1";

/// A device twin and a module twin with a referenced value each, beside plain values.
const FLEET: &str = "\
owner: team-s
devices:
  sensor-1:
    tags: {site: berlin}
    desired:
      telemetryInterval: 30
      auth: {token: \"${env:TWINOPS_IT_TOKEN}\", user: svc}
    modules:
      uplink:
        desired: {key: \"${env:TWINOPS_IT_TOKEN}\"}
";

/// Runs twinops with `TWINOPS_IT_TOKEN` set to `token` (or unset).
fn run(em: &Emulator, args: &[&str], token: Option<&str>) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(args)
        .env("TWINOPS_HUB", &em.connection_string)
        .env("TWINOPS_CA_CERT", &em.ca_path)
        .env_remove("IOTHUB_CONNECTION_STRING")
        .env_remove("RUST_LOG")
        .env_remove("TWINOPS_IT_TOKEN")
        .env("NO_COLOR", "1");
    if let Some(t) = token {
        cmd.env("TWINOPS_IT_TOKEN", t);
    }
    crate::cli::run(cmd)
}

fn all_output(runs: &[&Run]) -> String {
    runs.iter()
        .map(|r| format!("{}{}", r.stdout, r.stderr))
        .collect()
}

#[tokio::test]
async fn an_env_reference_reaches_the_twin_and_no_output() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let m = m.to_str().unwrap();
    let plan_file = d.path().join("plan.json");
    let out = plan_file.to_str().unwrap();
    let runs = [
        run(&em, &["validate", m], Some(TOKEN)),
        run(&em, &["plan", "-vv", m], Some(TOKEN)),
        run(
            &em,
            &["plan", "--format", "json", "--out", out, m],
            Some(TOKEN),
        ),
        run(&em, &["plan", "--format", "markdown", m], Some(TOKEN)),
        run(&em, &["apply", "-vv", "--yes", m], Some(TOKEN)),
        run(&em, &["plan", "--format", "json", m], Some(TOKEN)),
        run(&em, &["drift", "--format", "json", m], Some(TOKEN)),
    ];
    for r in &runs {
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert_eq!(
        twin(&em, "sensor-1").await["properties"]["desired"]["auth"]["token"],
        TOKEN
    );
    assert_eq!(
        twin(&em, "sensor-1/uplink").await["properties"]["desired"]["key"],
        TOKEN
    );
    let everything = all_output(&runs.iter().collect::<Vec<_>>());
    assert!(everything.contains("request"), "the -vv logs were written");
    assert!(
        !everything.contains(TOKEN),
        "the value leaked into the output"
    );
    let saved = std::fs::read(&plan_file).unwrap();
    assert!(
        !String::from_utf8_lossy(&saved).contains(TOKEN),
        "the value leaked into the plan file"
    );
    // The referenced values are shown as (sensitive) in the plan, the others as they are.
    assert!(runs[1].stdout.contains("(sensitive)"), "{}", runs[1].stdout);
    assert!(runs[1].stdout.contains("svc"), "{}", runs[1].stdout);
    // The second plan is empty: what the hub holds equals the variable's value.
    assert_eq!(runs[5].json()["changes"], json!([]));
}

#[tokio::test]
async fn a_missing_variable_is_an_error_at_its_place_and_nothing_is_sent() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let file = m.join("fleet.yaml");
    for args in [
        vec!["validate", m.to_str().unwrap()],
        vec!["plan", m.to_str().unwrap()],
        vec!["apply", "--yes", m.to_str().unwrap()],
    ] {
        for token in [None, Some("")] {
            let r = run(&em, &args, token);
            assert_eq!(r.code, 1, "{args:?}: {r:?}");
            for (line, column) in [(7, 21), (10, 24)] {
                let at = format!(
                    "{}:{line}:{column}: environment variable `TWINOPS_IT_TOKEN` is",
                    file.display()
                );
                assert!(
                    r.stderr.contains(&at),
                    "{args:?}: no `{at}` in {}",
                    r.stderr
                );
            }
        }
    }
    assert_eq!(em.stats().await["total"], 0, "nothing may be sent");
}

#[tokio::test]
async fn an_escaped_reference_is_written_as_literal_text_beside_a_real_one() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(
        &m,
        &[(
            "fleet.yaml",
            concat!(
                "devices:\n  d1:\n    desired:\n",
                "      literal: \"$${env:TWINOPS_IT_TOKEN}\"\n",
                "      both: \"$${device} ${device}\"\n",
                "      real: \"${env:TWINOPS_IT_TOKEN}\"\n",
            ),
        )],
    );
    let m = m.to_str().unwrap();
    // The literal text is no secret: the plan shows it, and only the reference is concealed.
    let r = run(&em, &["plan", "--format", "json", m], Some(TOKEN));
    assert_eq!(r.code, 0, "{r:?}");
    let plan = r.json();
    assert_eq!(
        plan["changes"][0]["patch"]["twin"]["properties"]["desired"],
        json!({"literal": "${env:TWINOPS_IT_TOKEN}", "both": "${device} d1", "real": "(sensitive)"})
    );
    assert_eq!(plan["changes"][0]["sensitive"], json!(["desired.real"]));
    let r = run(&em, &["apply", "--yes", m], Some(TOKEN));
    assert_eq!(r.code, 0, "{r:?}");
    let desired = twin(&em, "d1").await["properties"]["desired"].clone();
    assert_eq!(desired["literal"], "${env:TWINOPS_IT_TOKEN}");
    assert_eq!(desired["both"], "${device} d1");
    assert_eq!(desired["real"], TOKEN);
}

/// The `secrets` of the change of `kind` for `address` in a plan document.
fn secrets(plan: &Value, kind: &str, device: &str) -> Vec<Value> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind && c["device_id"] == device && c.get("module_id").is_none())
        .unwrap_or_else(|| panic!("no {kind} of {device} in {plan}"))["secrets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_saved_plan_holds_the_reference_and_applies_only_with_the_same_value() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let m = m.to_str().unwrap();
    assert_eq!(run(&em, &["apply", "--yes", m], Some(TOKEN)).code, 0);

    // The secret is rotated: the plan is an update of the token, saved as its reference.
    let plan_file = d.path().join("plan.json");
    let p = plan_file.to_str().unwrap();
    let r = run(&em, &["plan", "--out", p, m], Some(OTHER_TOKEN));
    assert_eq!(r.code, 0, "{r:?}");
    #[cfg(unix)]
    assert_eq!(mode(&plan_file), 0o600);
    let bytes = std::fs::read(&plan_file).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains(OTHER_TOKEN) && !text.contains(TOKEN),
        "{text}"
    );
    let saved: Value = serde_json::from_str(&text).unwrap();
    let s = secrets(&saved, "update_device_twin", "sensor-1");
    assert_eq!(s.len(), 1, "{saved}");
    assert_eq!(s[0]["path"], "desired.auth.token");
    assert_eq!(s[0]["ref"], "${env:TWINOPS_IT_TOKEN}");
    assert!(s[0]["digest"].as_str().unwrap().starts_with("hmac-sha256:"));
    let change = saved["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "update_device_twin")
        .unwrap()
        .clone();
    assert_eq!(
        change["patch"]["properties"]["desired"],
        json!({"auth": {"token": "(sensitive)"}})
    );

    // Another value, or none, is refused before anything is sent.
    let before = em.stats().await;
    for (token, says) in [
        (
            Some(TOKEN),
            "the value of environment variable `TWINOPS_IT_TOKEN` differs",
        ),
        (Some("tok-third"), "its digest differs from the plan's"),
        (None, "environment variable `TWINOPS_IT_TOKEN` is not set"),
    ] {
        let r = run(&em, &["apply", "--yes", "--plan", p], token);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(says), "{}", r.stderr);
        assert!(
            r.stderr.contains("`sensor-1` desired.auth.token"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
        assert!(!r.stderr.contains(OTHER_TOKEN) && !r.stderr.contains(TOKEN));
    }
    let after = em.stats().await;
    assert_eq!(after["total"], before["total"], "nothing was sent");
    assert_eq!(writes(&after), writes(&before));
    assert_eq!(
        twin(&em, "sensor-1").await["properties"]["desired"]["auth"]["token"],
        TOKEN
    );

    // The value it was planned with applies (no manifests needed for references).
    let r = run(&em, &["apply", "--yes", "--plan", p], Some(OTHER_TOKEN));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!all_output(&[&r]).contains(OTHER_TOKEN));
    assert_eq!(
        twin(&em, "sensor-1").await["properties"]["desired"]["auth"]["token"],
        OTHER_TOKEN
    );
    assert_eq!(
        twin(&em, "sensor-1/uplink").await["properties"]["desired"]["key"],
        OTHER_TOKEN
    );
}

#[tokio::test]
async fn inline_sensitive_values_are_only_digests_in_a_plan_and_apply_takes_them_from_the_manifests()
 {
    const INLINE: &str = "inline-9d4be0c7";
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    let fleet = format!(
        "devices:\n  d1:\n    desired: {{apiToken: {INLINE}, creds: {{user: svc, pass: {INLINE}-p}}}}\n    sensitive: [desired.apiToken, desired.creds]\n"
    );
    manifests(&m, &[("fleet.yaml", &fleet)]);
    let m = m.to_str().unwrap();
    let plan_file = d.path().join("plan.json");
    let p = plan_file.to_str().unwrap();
    let r = run(&em, &["plan", "--out", p, m], None);
    assert_eq!(r.code, 0, "{r:?}");
    #[cfg(unix)]
    assert_eq!(mode(&plan_file), 0o600);
    let text = std::fs::read_to_string(&plan_file).unwrap();
    assert!(!text.contains(INLINE), "{text}");
    let saved: Value = serde_json::from_str(&text).unwrap();
    let s = secrets(&saved, "create_device", "d1");
    let paths: Vec<&str> = s.iter().map(|x| x["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "desired.apiToken",
            "desired.creds.pass",
            "desired.creds.user"
        ]
    );
    for x in &s {
        assert_eq!(x.as_object().unwrap().len(), 2, "only path and digest: {x}");
    }

    // Without the manifests there is nowhere to take the values from.
    let before = em.stats().await["total"].clone();
    let r = twinops_env(&em, &["apply", "--yes", "--plan", p], &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("3 sensitive value(s) written inline in the manifests"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("give the manifests the plan was made from"),
        "{}",
        r.stderr
    );
    assert_eq!(em.stats().await["total"], before, "nothing may be sent");

    let r = run(&em, &["apply", "--yes", "--plan", p, m], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!all_output(&[&r]).contains(INLINE));
    let desired = twin(&em, "d1").await["properties"]["desired"].clone();
    assert_eq!(desired["apiToken"], INLINE);
    assert_eq!(
        desired["creds"],
        json!({"user": "svc", "pass": format!("{INLINE}-p")})
    );
}

/// Hex SHA-256 of `bytes`, as `sha256sum` prints it.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_short_inline_secret_cannot_be_guessed_from_the_plan_and_a_changed_one_is_refused() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    // The same short secret inline (sensitive) and from the environment.
    let fleet = "owner: team-s\ndevices:\n  lock-1:\n    desired: {pin: \"1234\", code: 1234, env: \"${env:TWINOPS_IT_TOKEN}\"}\n    sensitive: [desired.pin, desired.code]\n";
    manifests(&m, &[("fleet.yaml", fleet)]);
    let (m, plan_file) = (m.to_str().unwrap(), d.path().join("plan.json"));
    let out = plan_file.to_str().unwrap();
    let r = run(&em, &["plan", "--out", out, m], Some("1234"));
    assert_eq!(r.code, 0, "{r:?}");
    let shown = run(&em, &["plan", "--format", "json", m], Some("1234"));
    let text = std::fs::read_to_string(&plan_file).unwrap();
    // Every JSON and plain form of 1234, with and without a newline (`printf` or `echo`).
    for form in ["\"1234\"", "1234", "'1234'"] {
        for bytes in [form.to_string(), format!("{form}\n")] {
            let h = sha256_hex(bytes.as_bytes());
            assert!(!text.contains(&h), "sha256 of {bytes:?} is in the plan");
            assert!(
                !shown.stdout.contains(&h),
                "sha256 of {bytes:?} is in the output"
            );
        }
    }
    assert!(text.contains("hmac-sha256:"), "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert!(json["digest_key"].is_string(), "{json}");
    // The referenced value changed since the plan: apply --plan refuses, nothing is written.
    let before = writes(&em.stats().await);
    let r = run(&em, &["apply", "--yes", "--plan", out, m], Some("9999"));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("differs from the one planned"),
        "{}",
        r.stderr
    );
    assert_eq!(writes(&em.stats().await), before);
    // The same values apply.
    let r = run(&em, &["apply", "--yes", "--plan", out, m], Some("1234"));
    assert_eq!(r.code, 0, "{r:?}");
    let desired = twin(&em, "lock-1").await["properties"]["desired"].clone();
    assert_eq!(
        (desired["pin"].clone(), desired["env"].clone()),
        (json!("1234"), json!("1234"))
    );
}

#[tokio::test]
async fn a_plan_made_under_another_plan_key_is_refused_and_token_auth_needs_one_to_save() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let (m, plan_file) = (m.to_str().unwrap(), d.path().join("plan.json"));
    let out = plan_file.to_str().unwrap();
    let with_key = |key: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"));
        cmd.args(args)
            .env("TWINOPS_HUB", &em.connection_string)
            .env("TWINOPS_CA_CERT", &em.ca_path)
            .env("TWINOPS_IT_TOKEN", TOKEN)
            .env("TWINOPS_PLAN_KEY", key)
            .env("NO_COLOR", "1");
        crate::cli::run(cmd)
    };
    let r = with_key("ci-secret-one", &["plan", "--out", out, m]);
    assert_eq!(r.code, 0, "{r:?}");
    let before = writes(&em.stats().await);
    let r = with_key("ci-secret-two", &["apply", "--yes", "--plan", out, m]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("another key"), "{}", r.stderr);
    assert_eq!(writes(&em.stats().await), before, "nothing written");
    let r = with_key("ci-secret-one", &["apply", "--yes", "--plan", out, m]);
    assert_eq!(r.code, 0, "{r:?}");

    // Token auth without a plan key: refused before anything is sent.
    let before = em.stats().await["total"].clone();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(["plan", "--auth", "token", "--out", out, m])
        .env("TWINOPS_HUB", &em.connection_string)
        .env("TWINOPS_CA_CERT", &em.ca_path)
        .env("TWINOPS_ACCESS_TOKEN", "not-used")
        .env("TWINOPS_IT_TOKEN", TOKEN)
        .env_remove("TWINOPS_PLAN_KEY")
        .env("NO_COLOR", "1");
    let r = crate::cli::run(cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("TWINOPS_PLAN_KEY"), "{}", r.stderr);
    assert_eq!(em.stats().await["total"], before, "nothing sent");
}
