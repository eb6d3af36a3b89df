//! The command line as people meet it: every argument checked before anything is sent, flags a
//! command would ignore refused by name, `--format json` wherever a result is printed, and a
//! `--target` that selects nothing an error. The real binary against a real emulator.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::cli::{dir, manifests, twinops, twinops_env, writes};
use crate::support::Emulator;

const FLEET: &str = r#"
owner: team-a
devices:
  "gateway-{1..2}":
    edge: true
  "dev-{1..3}":
    desired: {telemetryInterval: 30}
    modules:
      sensor:
        desired: {unit: celsius}
"#;

#[tokio::test]
async fn wait_takes_its_duration_with_a_space_too() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    // Nobody acknowledges in the emulator without simulated devices: the wait times out after
    // the given second, which shows `1s` was read as the duration and the path as the path.
    let r = twinops(&em, &["apply", "--yes", "--wait", "1s", &p]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("timed out after 1s"), "{}", r.stderr);
}

#[tokio::test]
async fn flags_a_command_does_not_use_are_refused_by_name_before_anything_is_sent() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let plan = d.path().join("plan.json");
    let r = twinops(
        &em,
        &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let before = writes(&em.stats().await);
    for extra in [&["--target", "dev-1"][..], &["--prune"], &["--adopt"]] {
        let mut args = vec!["apply", "--yes", "--plan", plan.to_str().unwrap()];
        args.extend(extra);
        let r = twinops(&em, &args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("cannot be used with"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(extra[0]),
            "{args:?} names the flag: {}",
            r.stderr
        );
    }
    let r = twinops(&em, &["validate", "--hub", "local", m.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--hub"), "{}", r.stderr);
    let r = twinops(&em, &["connection-string", "--target", "x", "dev-1"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--target"), "{}", r.stderr);
    let r = twinops(&em, &["plan", "--target", "a/b/c", m.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("`a/b/c` is not a target"), "{}", r.stderr);
    assert_eq!(writes(&em.stats().await), before, "nothing was written");
}

/// `--concurrency 0` would start no request at all: a usage error naming the flag, on every
/// command that takes it, before anything is sent.
#[tokio::test]
async fn concurrency_zero_is_a_usage_error_naming_the_flag() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap();
    for args in [
        &["plan", "--concurrency", "0", p][..],
        &["apply", "--yes", "--concurrency", "0", p],
        &["drift", "--concurrency=0", p],
    ] {
        let r = twinops(&em, args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("--concurrency") && r.stderr.contains("at least 1"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = twinops(&em, &["plan", "--concurrency", "1", p]);
    assert_eq!(r.code, 0, "one in flight is fine: {r:?}");
    assert_eq!(writes(&em.stats().await), 0, "nothing was written");
}

#[tokio::test]
async fn a_target_that_matches_nothing_is_an_error_naming_it() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    let r = twinops(
        &em,
        &["plan", "--target", "nomatch*", "--detailed-exitcode", &p],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("--target `nomatch*` matches no"),
        "{}",
        r.stderr
    );
    let r = twinops(&em, &["drift", "--target", "dev-1/nomodule", &p]);
    assert_eq!(r.code, 1, "{r:?}");
    let r = twinops(&em, &["plan", "--target", "dev-1/sensor", &p]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn export_honours_target_and_format_json() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    let r = twinops(
        &em,
        &["export", "--format", "json", "--target", "gateway-*"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let doc = r.json();
    let devices: Vec<&String> = doc["devices"].as_object().unwrap().keys().collect();
    assert_eq!(devices, ["gateway-1", "gateway-2"], "{doc}");
    let r = twinops(&em, &["export", "--target", "dev-2/sensor"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("dev-2") && !r.stdout.contains("dev-1"),
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["export", "--target", "nomatch"]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[tokio::test]
async fn validate_and_connection_string_print_json_when_asked() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    let r = twinops(&em, &["validate", "--format", "json", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["devices"], 5);
    assert_eq!(v["modules"], 3);
    manifests(d.path(), &[("bad.yaml", "devices:\n  \"bad id\": {}\n")]);
    let r = twinops(&em, &["validate", "--format", "json", &p]);
    assert_eq!(r.code, 1, "{r:?}");
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 2, "{v}");
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    let r = twinops(
        &em,
        &["connection-string", "--format", "json", "dev-1/sensor"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["identity"], "dev-1/sensor");
    assert!(
        v["connection_string"]
            .as_str()
            .unwrap()
            .contains("DeviceId=dev-1;ModuleId=sensor"),
        "{v}"
    );
}

#[tokio::test]
async fn errors_lead_with_the_fix() {
    let em = Emulator::start();
    let d = dir();
    manifests(d.path(), &[("fleet.yaml", FLEET)]);
    let p = d.path().to_str().unwrap().to_string();
    // An untrusted certificate: one line that names --ca-cert first.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"));
    cmd.args(["plan", &p])
        .env("TWINOPS_HUB", &em.connection_string)
        .env_remove("TWINOPS_CA_CERT")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    let r = crate::cli::run(cmd);
    assert_eq!(r.code, 1, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    assert!(
        lines[0].starts_with("error: pass the CA certificate"),
        "{}",
        r.stderr
    );
    assert!(lines[0].contains("--ca-cert"), "{}", r.stderr);
    // A --ca-cert that holds no certificate is refused before any request.
    let r = crate::cli::twinops_env(&em, &["plan", &p], &[("TWINOPS_CA_CERT", "/etc/hostname")]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("holds no PEM certificate"),
        "{}",
        r.stderr
    );
    // A hub that does not answer: retry progress on stderr, attempt by attempt.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let hub = em
        .connection_string
        .replace(&em.host, &format!("localhost:{port}"));
    let r = crate::cli::twinops_env(&em, &["plan", &p], &[("TWINOPS_HUB", hub.as_str())]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("retrying in") && r.stderr.contains("(attempt 2 of"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("SharedAccessKey"), "{}", r.stderr);
}

/// `--hub local:DIR` keeps the embedded hub's keys as the standalone emulator does: the
/// directories it creates 0700, every file 0600 (SPEC §9).
#[cfg(unix)]
#[test]
fn the_embedded_hub_state_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let state = d.path().join(".twinops").join("hub");
    let hub = format!("local:{}", state.display());
    let r = crate::cli::twinops_bare(&["plan", "--hub", &hub, m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.path().join(".twinops")), 0o700);
    let mut pending = vec![state];
    let mut files = 0;
    while let Some(at) = pending.pop() {
        assert_eq!(mode(&at), 0o700, "{}", at.display());
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 4, "the database, connection strings and TLS files");
}

/// Whether `text` shows a Rust `Debug` rendering of a rustls error (`Variant { field: [6, 8, …] }`)
/// rather than words.
fn shows_rust_debug(text: &str) -> bool {
    [
        "{",
        "}",
        "[6,",
        "Context",
        "UnsupportedSignature",
        "UnknownIssuer",
        "InvalidCertificate",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// rustls reports an unsupported signature algorithm for a public key when a trusted certificate
/// has the issuer's name but another kind of key: here a CA named `localhost` with an Ed25519
/// key, against the emulator's ECDSA-signed `CN=localhost` certificate. (Debian's stock trust
/// store does the same with no --ca-cert at all: its `ssl-cert-snakeoil` is an RSA
/// `CN=localhost`.) The error is one line, in words, that leads with --ca-cert.
#[test]
fn a_trusted_ca_of_the_issuers_name_with_another_kind_of_key_is_one_line_in_words() {
    let em = Emulator::start();
    let d = dir();
    manifests(&d.path().join("m"), &[("fleet.yaml", FLEET)]);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = d.path().join("ed25519-localhost.pem");
    std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let r = crate::cli::twinops_env(
        &em,
        &["plan", d.path().join("m").to_str().unwrap()],
        &[("TWINOPS_CA_CERT", ca.to_str().unwrap())],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    assert!(
        lines[0].starts_with("error: pass the CA certificate")
            && lines[0].contains("--ca-cert")
            && lines[0].contains("not signed by a CA this machine trusts"),
        "{}",
        r.stderr
    );
    assert!(!shows_rust_debug(&r.stderr), "{}", r.stderr);
}

#[cfg(unix)]
#[tokio::test]
async fn a_saved_plan_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(&m, &[("fleet.yaml", FLEET)]);
    let plan = d.path().join("plan.json");
    std::fs::write(&plan, "old").unwrap();
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = twinops(
        &em,
        &["plan", "--out", plan.to_str().unwrap(), m.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let mode = std::fs::metadata(&plan).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn completions_and_the_man_page_come_from_the_parser() {
    let bin = env!("CARGO_BIN_EXE_twinops");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = std::process::Command::new(bin)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("twinops") && text.contains("detailed-exitcode"),
            "{shell}"
        );
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("twinops.bash");
            std::fs::write(&script, &text).unwrap();
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&script)
                .output()
                .unwrap();
            assert!(check.status.success(), "bash -n: {check:?}");
        }
    }
    let out = std::process::Command::new(bin).arg("man").output().unwrap();
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.contains(".TH twinops 1"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(
        man.contains("completions"),
        "the man page lists the subcommands"
    );
}

/// The bracketed spans of `text` that are rustdoc's intra-doc links (`[`normalize`]`,
/// `[crate::cli]`, `[text](target)`), as clap would print a doc comment verbatim; usage
/// placeholders (`[PATHS]`, `[OPTIONS]`), clap's `[default: 16]`-style notes and roff's
/// `[\fB\-h\fR|...]` are not.
fn intra_doc_links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find([']', '[', '\n']) else {
            break;
        };
        if after.as_bytes()[close] == b']' {
            let inner = &after[..close];
            let backticked = inner.len() > 1 && inner.starts_with('`') && inner.ends_with('`');
            let path = inner.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && inner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            let markdown = after[close + 1..].starts_with('(');
            if backticked || path || inner.contains("::") || markdown {
                found.push(format!("[{inner}]"));
            }
        }
        rest = &after[close..];
    }
    found
}

#[test]
fn intra_doc_links_are_told_from_usage_and_clap_notes() {
    assert_eq!(
        intra_doc_links("works like `--wait=2m` (see [`normalize`])."),
        ["[`normalize`]"]
    );
    assert_eq!(
        intra_doc_links("see [crate::cli] and [run]"),
        ["[crate::cli]", "[run]"]
    );
    assert_eq!(intra_doc_links("the [guide](https://x)"), ["[guide]"]);
    assert!(
        intra_doc_links(
            "Usage: twinops apply [OPTIONS] [PATHS]...\n --wait[=<WAIT>] [default: 16] [env: TWINOPS_HUB=] [possible values: sas, token]\n[\\fB\\-h\\fR|\\fB\\-\\-help\\fR]"
        )
        .is_empty()
    );
}

/// Doc comments are the help text: what rustdoc would render as a link must not reach `--help`,
/// `-h` or the man page as brackets and backticks.
#[test]
fn no_help_text_nor_the_man_page_holds_a_rustdoc_link() {
    let bin = env!("CARGO_BIN_EXE_twinops");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = run(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's row; its wrapped description goes on further indented.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(
        commands.len() >= 10 && commands.iter().any(|c| c == "apply"),
        "{commands:?}"
    );
    let mut pages = vec![
        ("twinops --help".to_string(), top),
        ("twinops -h".into(), run(&["-h"])),
    ];
    for c in &commands {
        pages.push((format!("twinops {c} --help"), run(&[c, "--help"])));
        pages.push((format!("twinops {c} -h"), run(&[c, "-h"])));
    }
    pages.push(("twinops man".into(), run(&["man"])));
    for (what, text) in &pages {
        let links = intra_doc_links(text);
        assert!(
            links.is_empty(),
            "{what} shows rustdoc links {links:?}:\n{text}"
        );
    }
}

/// One man page for the whole tool: every command with every flag its `--help` shows, the exit
/// codes the README promises, the environment twinops reads, and no reference to a page that
/// is not installed (there is no `twinops-plan(1)`).
#[test]
fn the_man_page_documents_every_command_its_exit_codes_and_environment() {
    let bin = env!("CARGO_BIN_EXE_twinops");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // roff escapes `-` as `\-` and switches fonts with `\fB`, `\fI`, `\fR`: read the words.
    let man = run(&["man"])
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "");
    let section = |name: &str| -> String {
        let start = man
            .find(&format!(".SH \"{name}\""))
            .or_else(|| man.find(&format!(".SH {name}\n")))
            .unwrap_or_else(|| panic!("no {name} section:\n{man}"));
        let body = &man[start + 4..];
        body[..body.find("\n.SH ").unwrap_or(body.len())].to_string()
    };
    let exit = section("EXIT STATUS");
    for code in ["0", "1", "2", "130"] {
        assert!(
            exit.lines()
                .any(|l| l.trim() == code || l.starts_with(&format!("{code} "))),
            "exit code {code} in:\n{exit}"
        );
    }
    let env = section("ENVIRONMENT");
    for var in [
        "TWINOPS_HUB",
        "TWINOPS_CA_CERT",
        "TWINOPS_ACCESS_TOKEN",
        "IOTHUB_CONNECTION_STRING",
        "RUST_LOG",
        "NO_COLOR",
    ] {
        assert!(env.contains(var), "{var} in:\n{env}");
    }
    assert!(!man.contains("SEE ALSO"), "no page to see:\n{man}");
    assert!(
        !man.contains("twinops-validate(1)") && !man.contains("(1)\n"),
        "no reference to a page that does not exist:\n{man}"
    );
    let top = run(&["--help"]);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for c in &commands {
        let heading = format!(".SS \"twinops {c}\"");
        assert!(man.contains(&heading), "no {heading}:\n{man}");
        let start = man.find(&heading).unwrap();
        let rest = &man[start + heading.len()..];
        let part = &rest[..rest
            .find("\n.SS ")
            .or_else(|| rest.find("\n.SH "))
            .unwrap_or(rest.len())];
        let help = run(&[c, "--help"]);
        for flag in help
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            assert!(part.contains(flag), "`twinops {c}`'s {flag} in:\n{part}");
        }
    }
}

#[tokio::test]
async fn plans_say_what_a_create_sets_and_what_a_delete_takes_with_it() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: team-a\ndevices:\n  gw-1:\n    edge: true\n  leaf-1:\n    parent: gw-1\n    status: disabled\n    modules:\n      sensor:\n        managedBy: ops\n        desired: {unit: celsius}\n",
        )],
    );
    let r = twinops(&em, &["plan", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    for line in [
        "+ create device gw-1",
        "+ capabilities.iotEdge = true",
        "+ status = \"disabled\"",
        "+ parent = \"gw-1\"",
        "+ authentication = {\"type\":\"sas\"}",
        "+ managedBy = \"ops\"",
        "+ desired.unit = \"celsius\"",
    ] {
        assert!(r.stdout.contains(line), "{line} in:\n{}", r.stdout);
    }
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    // leaf-1 leaves the manifests: its module goes with it, and the count says so.
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: team-a\ndevices:\n  gw-1:\n    edge: true\n",
        )],
    );
    let r = twinops(&em, &["plan", "--prune", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("- delete device leaf-1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("with its 1 module(s): sensor"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("2 to delete"), "{}", r.stdout);
    let r = twinops(
        &em,
        &["apply", "--yes", "--prune", "--max-deletes", "1", &p],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains('2'),
        "the refusal counts as the plan does: {}",
        r.stderr
    );
}

#[tokio::test]
async fn identities_no_longer_declared_are_hinted_by_plan_and_reported_by_drift() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: team-a\ndevices:\n  keep:\n    modules:\n      old: {}\n  gone: {}\n",
        )],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    manifests(
        d.path(),
        &[("fleet.yaml", "owner: team-a\ndevices:\n  keep: {}\n")],
    );
    let r = twinops(&em, &["plan", "--detailed-exitcode", &p]);
    assert_eq!(r.code, 0, "no change is planned without --prune: {r:?}");
    assert!(
        r.stdout.contains(
            "2 owned identities are no longer declared (gone, keep/old); --prune deletes them"
        ),
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["plan", "--format", "json", &p]);
    assert_eq!(
        r.json()["no_longer_declared"],
        serde_json::json!(["gone", "keep/old"])
    );
    let r = twinops(&em, &["drift", "--format", "json", &p]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.json()["counts"]["no_longer_declared"], 2, "{}", r.stdout);
    let r = twinops(&em, &["plan", "--prune", &p]);
    assert!(!r.stdout.contains("no longer declared"), "{}", r.stdout);
    assert!(r.stdout.contains("- delete device gone"), "{}", r.stdout);
}

#[tokio::test]
async fn identical_changes_are_one_block_unless_expanded() {
    let em = Emulator::start();
    let d = dir();
    let p = d.path().to_str().unwrap().to_string();
    let fleet = |v: u32| {
        format!(
            "owner: team-a\ndevices:\n  \"t-{{01..12}}\":\n    modules:\n      sensor:\n        desired: {{interval: {v}}}\n"
        )
    };
    manifests(d.path(), &[("fleet.yaml", &fleet(1))]);
    assert_eq!(twinops(&em, &["apply", "--yes", &p]).code, 0);
    manifests(d.path(), &[("fleet.yaml", &fleet(2))]);
    let r = twinops(&em, &["plan", &p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("~ update 12 module twins */sensor"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("(t-01/sensor, t-02/sensor, t-03/sensor, … and 9 more)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("desired.interval: 1 -> 2").count(),
        1,
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["plan", "--expand", &p]);
    assert_eq!(
        r.stdout.matches("desired.interval: 1 -> 2").count(),
        12,
        "{}",
        r.stdout
    );
    let r = twinops(&em, &["plan", "--format", "json", &p]);
    assert_eq!(
        r.json()["changes"].as_array().unwrap().len(),
        12,
        "JSON lists every change"
    );
}

#[tokio::test]
async fn export_into_a_directory_keeps_its_ignore_and_sensitive_markers() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(
        &m,
        &[(
            "fleet.yaml",
            "owner: team-a\ndevices:\n  d1:\n    desired: {token: abc, cal: {gain: 1}}\n    sensitive: [desired.token]\n    ignore: [desired.cal.gain]\n    modules:\n      s:\n        desired: {k: 1}\n        ignore: [desired.k]\n",
        )],
    );
    assert_eq!(
        twinops(&em, &["apply", "--yes", m.to_str().unwrap()]).code,
        0
    );
    let r = twinops(&em, &["export", "--force", "--out", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(m.join("fleet.yaml")).unwrap();
    assert!(text.contains("desired.token"), "sensitive kept:\n{text}");
    assert!(text.contains("desired.cal.gain"), "ignore kept:\n{text}");
    assert!(text.contains("desired.k"), "module markers kept:\n{text}");
    let r = twinops(&em, &["plan", "--detailed-exitcode", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "the export round-trips: {r:?}");
}

#[tokio::test]
async fn export_writes_a_secret_reference_back_as_the_reference_and_escapes_look_alikes() {
    let em = Emulator::start();
    let d = dir();
    let m = d.path().join("m");
    manifests(
        &m,
        &[(
            "fleet.yaml",
            "owner: team-a\ndevices:\n  d1:\n    desired: {token: \"${env:EXPORT_TOKEN}\", text: \"$${device} stays\"}\n",
        )],
    );
    let env = [("EXPORT_TOKEN", "s3cr3t-value")];
    let r = twinops_env(&em, &["apply", "--yes", m.to_str().unwrap()], &env);
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops(&em, &["export", "--force", "--out", m.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(m.join("fleet.yaml")).unwrap();
    assert!(
        !text.contains("s3cr3t-value"),
        "no clear secret in the file:\n{text}"
    );
    assert!(
        text.contains("${env:EXPORT_TOKEN}"),
        "the reference:\n{text}"
    );
    assert!(
        text.contains("$${device} stays"),
        "a look-alike stays text:\n{text}"
    );
    assert!(
        !text.contains("sensitive"),
        "a reference needs no marker:\n{text}"
    );
    let r = twinops_env(
        &em,
        &["plan", "--detailed-exitcode", m.to_str().unwrap()],
        &env,
    );
    assert_eq!(r.code, 0, "the export round-trips: {r:?}");
}

#[test]
fn the_committed_manifest_schema_is_what_twinops_schema_prints() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twinops"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/manifest.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == printed,
        "schema/manifest.schema.json is not what `twinops schema` prints; regenerate it with \
         `cargo run -- schema > schema/manifest.schema.json`"
    );
}

/// The README's first command, `cargo run --release -- apply --hub local …`, runs the tool at the
/// workspace root although the emulator package has a binary of its own: the root package names
/// `twinops` as what `cargo run` runs. (Without it cargo stops with "could not determine which
/// binary to run", which it did from the emulator's split into its own package until this test.)
#[test]
fn cargo_run_at_the_root_runs_the_tool_the_readme_names() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("cargo run --release -- apply --hub local"),
        "the README's main command"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let binaries: Vec<&str> = packages
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(binaries.len() > 1, "{binaries:?}");
    let root_package = packages
        .iter()
        .find(|p| p["name"] == "twinops")
        .expect("the root package");
    assert_eq!(
        root_package["default_run"], "twinops",
        "`cargo run` must know which of {binaries:?} to run"
    );
}
