//! Installing twinops in CI (SPEC §18): `scripts/install-twinops.sh` against a release built here by
//! the release workflow's own script (`scripts/release-assets.sh`: archive, SHA256SUMS), served over
//! `file://`; the release script's other duties (the tag is Cargo's version, the version written
//! into `action.yml`, which major tag moves); and what `action.yml` and `release.yml` must say for
//! the two to meet (the targets built are the targets downloaded).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::{Checkout, host_target, pinned_version, release, repo_root, script, text, yaml};

fn install_script() -> std::path::PathBuf {
    repo_root().join("scripts/install-twinops.sh")
}

fn release_script() -> std::path::PathBuf {
    repo_root().join("scripts/release-assets.sh")
}

/// Runs the install script with exactly `env` (and PATH, HOME).
fn install(mode: &str, home: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(install_script())
        .arg(mode)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn releases_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A copy of the local release (the archive linked, not copied) whose `edit` changes it.
fn altered_release(into: &Path, edit: impl FnOnce(&Path, &str)) {
    let version = pinned_version();
    let from = release().join(&version);
    let to = into.join(&version);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::hard_link(e.path(), to.join(e.file_name())).unwrap();
    }
    let asset = format!("twinops-{version}-{}.tar.gz", host_target());
    edit(&to, &asset);
}

#[test]
fn the_install_script_installs_a_release_checked_against_its_checksums_once_per_version() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let version = pinned_version();
    let github_path = work.path().join("github_path");
    let releases = releases_url(release());
    let env = [
        ("TWINOPS_VERSION", version.as_str()),
        ("TWINOPS_RELEASES", releases.as_str()),
        ("GITHUB_PATH", github_path.to_str().unwrap()),
    ];
    let out = install("install", &home, &env);
    assert!(out.status.success(), "{out:?}");
    let bin = home.join(".twinops").join(&version).join("bin");
    assert_eq!(stdout(&out).trim(), bin.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&github_path).unwrap().trim(),
        bin.to_str().unwrap(),
        "on PATH for the next steps"
    );
    let v = Command::new(bin.join("twinops"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&v).starts_with("twinops "), "{v:?}");

    // Once per version: a second run downloads nothing (its downloads are gone) and keeps it.
    let gone = releases_url(&work.path().join("nowhere"));
    let out = install(
        "install",
        &home,
        &[
            ("TWINOPS_VERSION", version.trim_start_matches('v')),
            ("TWINOPS_RELEASES", &gone),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("already installed"), "{out:?}");

    // On Azure Pipelines it prepends to PATH with a logging command.
    let out = install(
        "install",
        &home,
        &[("TWINOPS_VERSION", &version), ("TF_BUILD", "True")],
    );
    assert!(
        stdout(&out).contains(&format!("##vso[task.prependpath]{}", bin.display())),
        "{out:?}"
    );
}

#[test]
fn a_download_that_does_not_match_the_release_checksums_is_refused_and_nothing_is_installed() {
    let work = tempfile::tempdir().unwrap();
    let version = pinned_version();
    // The archive changed after the checksums were published.
    let tampered = work.path().join("tampered");
    altered_release(&tampered, |dir, asset| {
        let mut bytes = std::fs::read(dir.join(asset)).unwrap();
        bytes.extend_from_slice(b"tampered");
        std::fs::remove_file(dir.join(asset)).unwrap();
        std::fs::write(dir.join(asset), bytes).unwrap();
    });
    // The checksums list no archive for this machine.
    let unlisted = work.path().join("unlisted");
    altered_release(&unlisted, |dir, asset| {
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let kept: String = sums
            .lines()
            .filter(|l| !l.ends_with(asset))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::remove_file(dir.join("SHA256SUMS")).unwrap();
        std::fs::write(dir.join("SHA256SUMS"), kept).unwrap();
    });
    for (releases, says) in [(&tampered, "checksum mismatch"), (&unlisted, "lists no")] {
        let home = work.path().join("home");
        let github_path = work.path().join("github_path");
        let url = releases_url(releases);
        let out = install(
            "install",
            &home,
            &[
                ("TWINOPS_VERSION", &version),
                ("TWINOPS_RELEASES", &url),
                ("GITHUB_PATH", github_path.to_str().unwrap()),
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(stderr(&out).contains(says), "{out:?}");
        assert!(stderr(&out).contains("nothing installed"), "{out:?}");
        assert!(!home.join(".twinops").join(&version).exists());
        assert!(!github_path.exists(), "nothing put on PATH");
        let left: Vec<_> = std::fs::read_dir(home.join(".twinops"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn the_install_script_refuses_what_is_not_a_release_and_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path();
    let releases = releases_url(release());
    // action.yml in the repository, before the release workflow writes a release into it.
    let out = install(
        "install",
        home,
        &[
            ("TWINOPS_VERSION", "unreleased"),
            ("TWINOPS_RELEASES", &releases),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("placeholder") && e.contains("build-from-source: true"),
        "{e}"
    );
    // A branch is never installed as if it were a release.
    let out = install(
        "resolve",
        home,
        &[("TWINOPS_VERSION", "main"), ("TWINOPS_RELEASES", &releases)],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("`main` is not a twinops release") && e.contains("ref: main"),
        "{e}"
    );
    // No repository anywhere (the action's own is empty and it was not checked out under
    // _actions/): a clear error, not a download from nowhere.
    let out = install(
        "install",
        home,
        &[
            ("TWINOPS_VERSION", "v1.2.3"),
            ("TWINOPS_RELEASE_REPO", "unreleased"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot tell which repository"),
        "{out:?}"
    );
}

fn resolved(out: &Output) -> std::collections::BTreeMap<String, String> {
    assert!(out.status.success(), "{out:?}");
    stdout(out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_repository_comes_from_the_action_path_when_github_leaves_it_empty() {
    let work = tempfile::tempdir().unwrap();
    let action_path = work.path().join("runner/_work/_actions/acme/twinops/v1");
    let output = work.path().join("github_output");
    let r = resolved(&install(
        "resolve",
        work.path(),
        &[
            ("TWINOPS_VERSION", "v1.2.3"),
            ("TWINOPS_REPO", ""),
            ("GITHUB_ACTION_PATH", action_path.to_str().unwrap()),
            ("TWINOPS_RELEASE_REPO", "someone/else"),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ],
    ));
    assert_eq!(r["repository"], "acme/twinops");
    assert_eq!(
        r["releases"],
        "https://github.com/acme/twinops/releases/download"
    );
    assert_eq!(
        r["cache-key"],
        format!("twinops-{}-v1.2.3", host_target()),
        "cached by the exact version"
    );
    assert_eq!(
        r["dir"],
        work.path().join(".twinops/v1.2.3").to_str().unwrap()
    );
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(written.contains("cache-key=twinops-"), "{written}");
    // Elsewhere (the action run from a local path), the repository the release workflow wrote.
    let r = resolved(&install(
        "resolve",
        work.path(),
        &[
            ("TWINOPS_VERSION", "v1.2.3"),
            ("TWINOPS_RELEASE_REPO", "acme/fork"),
        ],
    ));
    assert_eq!(r["repository"], "acme/fork");
}

#[test]
fn a_build_from_source_is_cached_by_the_commit_its_ref_names_now() {
    let work = tempfile::tempdir().unwrap();
    let src = Checkout::init(&work.path().join("twinops"));
    src.write("README.md", "one\n");
    let first = src.commit("one");
    let url = format!("file://{}", src.dir.display());
    let resolve = |env: &[(&str, &str)]| {
        install(
            "resolve",
            work.path(),
            &[
                &[
                    ("TWINOPS_BUILD_FROM_SOURCE", "true"),
                    ("TWINOPS_GIT_URL", url.as_str()),
                    ("TWINOPS_VERSION", "unreleased"),
                ],
                env,
            ]
            .concat(),
        )
    };
    let r = resolved(&resolve(&[("TWINOPS_REF", "main")]));
    assert_eq!(r["version"], format!("src-{first}"));
    assert_eq!(r["commit"], first);
    assert!(r["cache-key"].ends_with(&format!("-src-{first}")));
    // main moves on: the next run builds (and caches) the new commit, never the old build.
    src.write("README.md", "two\n");
    let second = src.commit("two");
    let r = resolved(&resolve(&[("TWINOPS_REF", "main")]));
    assert_eq!(r["commit"], second);
    assert!(r["cache-key"].ends_with(&format!("-src-{second}")));
    // A commit is taken as it is; no ref and no release to build is a clear error.
    let r = resolved(&resolve(&[("TWINOPS_REF", &first)]));
    assert_eq!(r["commit"], first);
    let out = resolve(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a ref"), "{out:?}");
}

#[test]
fn the_release_script_checks_the_tag_writes_the_release_into_the_action_and_moves_the_newest_major()
{
    // The tag must be the version in Cargo.toml (what `twinops --version` prints).
    let cargo: Value = serde_json::from_slice(
        &Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(repo_root())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let version = cargo["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "twinops")
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let check = |tag: &str| {
        Command::new("bash")
            .arg(release_script())
            .args(["check-tag", tag])
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    assert!(check(&format!("v{version}")).status.success());
    let out = check("v9.9.9");
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("not v{version}")), "{out:?}");

    // action.yml: the release and the repository over the placeholders, nothing else changed.
    let work = tempfile::tempdir().unwrap();
    let action = work.path().join("action.yml");
    std::fs::copy(repo_root().join("action.yml"), &action).unwrap();
    script(
        &release_script(),
        &["stamp", "v1.2.3", "acme/twinops", action.to_str().unwrap()],
    );
    let stamped = yaml(&action);
    let original = yaml(&repo_root().join("action.yml"));
    assert_eq!(stamped["inputs"]["version"]["default"], "v1.2.3");
    for (i, step) in stamped["runs"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        if step.get("run").is_some() {
            assert_eq!(step["env"]["TWINOPS_RELEASE_REPO"], "acme/twinops");
        }
        let mut a = step.clone();
        let mut b = original["runs"]["steps"][i].clone();
        for s in [&mut a, &mut b] {
            if let Some(env) = s.get_mut("env").and_then(Value::as_object_mut) {
                env.remove("TWINOPS_RELEASE_REPO");
            }
        }
        assert_eq!(a, b, "the release workflow changes only the placeholders");
    }
    assert!(!stamped.to_string().contains("unreleased"), "{stamped}");

    // The major tag moves to the newest release of its major, never back, never to a pre-release.
    let repo = Checkout::init(&work.path().join("repo"));
    repo.write("a", "a");
    repo.commit("a");
    for tag in ["v1.0.0", "v1.2.0", "v1.10.0", "v2.0.0", "v2.1.0-rc.1"] {
        repo.git(&["tag", tag]);
    }
    let major = |tag: &str| {
        let out = Command::new("bash")
            .arg(release_script())
            .args(["major", tag])
            .current_dir(&repo.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stdout(&out).trim().to_string()
    };
    assert_eq!(major("v1.10.0"), "v1");
    assert_eq!(
        major("v1.2.0"),
        "",
        "an older patch release leaves v1 alone"
    );
    assert_eq!(major("v2.0.0"), "v2");
    assert_eq!(major("v2.1.0-rc.1"), "");
}

#[test]
fn the_release_workflow_builds_every_target_the_install_script_downloads() {
    let w = yaml(&repo_root().join(".github/workflows/release.yml"));
    let on = w.get("on").or_else(|| w.get("true")).unwrap();
    assert_eq!(on["push"]["tags"][0], "v*.*.*");
    let build = &w["jobs"]["build"];
    let mut built: Vec<String> = build["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| text(&i["target"]))
        .collect();
    built.sort();
    let downloaded: Vec<String> = script(&install_script(), &["targets"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(built, downloaded);
    assert!(
        built
            .iter()
            .filter(|t| t.contains("linux"))
            .all(|t| t.ends_with("-musl"))
    );
    // The archives are named by the script the tests archive with, and the release publishes
    // them with the install script and one SHA256SUMS over all of them.
    let runs = |job: &Value| -> String {
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        runs(build).contains("scripts/release-assets.sh archive \"$GITHUB_REF_NAME\" \"$TARGET\"")
    );
    let publish = &w["jobs"]["publish"];
    assert_eq!(publish["permissions"]["contents"], "write");
    let script = runs(publish);
    let order: Vec<usize> = [
        "cp scripts/install-twinops.sh dist/",
        "release-assets.sh checksums dist",
        "release-assets.sh stamp",
        "gh release upload",
        "release-assets.sh major",
    ]
    .iter()
    .map(|s| {
        script
            .find(s)
            .unwrap_or_else(|| panic!("publish does not {s}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    // What the local release holds: one archive per target with twinops at its root.
    let dir = release().join(pinned_version());
    let asset = format!("twinops-{}-{}.tar.gz", pinned_version(), host_target());
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(dir.join(&asset))
        .output()
        .unwrap();
    assert_eq!(stdout(&listing), "twinops\n");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines().any(|l| l.ends_with(&format!("  {asset}"))),
        "{sums}"
    );
    assert!(
        sums.lines().any(|l| l.ends_with("  install-twinops.sh")),
        "{sums}"
    );
}

#[test]
fn the_action_only_installs_by_version_and_caches_by_what_it_resolved() {
    let a = yaml(&repo_root().join("action.yml"));
    let inputs = a["inputs"].as_object().unwrap();
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        ["version", "build-from-source", "ref", "repository"]
    );
    assert_eq!(inputs["version"]["default"], "unreleased", "never a branch");
    assert_eq!(inputs["build-from-source"]["default"], "false");
    assert_eq!(a["runs"]["using"], "composite");
    let steps = a["runs"]["steps"].as_array().unwrap();
    let names: Vec<String> = steps.iter().map(|s| text(&s["name"])).collect();
    assert_eq!(
        names,
        [
            "Resolve the twinops version",
            "Cache twinops",
            "Install twinops"
        ]
    );
    assert_eq!(steps[1]["uses"], "actions/cache@v4");
    assert_eq!(
        steps[1]["with"]["key"],
        "${{ steps.resolve.outputs.cache-key }}"
    );
    assert_eq!(steps[1]["with"]["path"], "${{ steps.resolve.outputs.dir }}");
    for step in [&steps[0], &steps[2]] {
        let run = step["run"].as_str().unwrap();
        assert!(run.contains("scripts/install-twinops.sh"), "{run}");
        assert!(
            step["env"]["TWINOPS_REPO"]
                .as_str()
                .unwrap()
                .contains("github.action_repository")
        );
        assert!(step["env"].get("TWINOPS_HUB").is_none());
    }
    let text = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
    assert!(
        !text.contains("twinops \"$") && !text.contains("read -r -a"),
        "the action runs no command"
    );
}
