//! `examples/github/`: each workflow copied into a repository's `.github/workflows/`, its jobs run as
//! GitHub Actions would run them (see the parent module for what runs and what the test stands in
//! for), through the flows a team meets: plan on a pull request with one marked comment per hub,
//! apply of the reviewed plan on merge, a saved plan refused because main moved on and the
//! `workflow_dispatch` that recovers, drift found and reported once per hub; and the same per hub
//! with the matrix workflows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::condition::{self, Context};
use super::{
    Artifacts, Cache, Call, Checkout, Hub, JobRun, Recorder, StepRun, assert_no_secret, bash,
    pinned_version, release, repo_root, small_fleet, talks_to_ci_service, text, trust,
    twinops_lines, yaml,
};
use crate::cli::other_writer;
use crate::support::Emulator;

const EXAMPLES: [&str; 6] = [
    "plan.yml",
    "apply.yml",
    "drift.yml",
    "matrix.yml",
    "matrix-apply.yml",
    "matrix-drift.yml",
];

fn example(name: &str) -> Value {
    yaml(&repo_root().join("examples/github").join(name))
}

/// A workflow's triggers (`on:`, which a YAML 1.1 reader may read as `true`).
fn triggers(w: &Value) -> &serde_json::Map<String, Value> {
    w.get("on")
        .or_else(|| w.get("true"))
        .and_then(Value::as_object)
        .expect("a workflow has triggers")
}

fn steps(job: &Value) -> &[Value] {
    job["steps"].as_array().expect("steps")
}

fn step_name(step: &Value) -> String {
    step["name"]
        .as_str()
        .or_else(|| step["uses"].as_str())
        .expect("a step has a name or uses an action")
        .to_string()
}

/// The context a GitHub event gives, and the outputs of the steps the test does not run (those
/// that ask GitHub), as GitHub would answer them.
pub struct Event {
    name: &'static str,
    context: BTreeMap<String, String>,
    given: BTreeMap<String, String>,
}

impl Event {
    fn new(name: &'static str) -> Event {
        let mut context = BTreeMap::new();
        context.insert("github.event_name".into(), name.into());
        context.insert("github.ref_name".into(), "main".into());
        context.insert(
            "github.event.repository.default_branch".into(),
            "main".into(),
        );
        context.insert("github.token".into(), "ghs_not_a_real_token".into());
        Event {
            name,
            context,
            given: BTreeMap::new(),
        }
    }

    pub fn pull_request(base: &str, number: u32) -> Event {
        let mut e = Event::new("pull_request");
        e.context
            .insert("github.event.pull_request.base.sha".into(), base.into());
        e.context.insert(
            "github.event.pull_request.number".into(),
            number.to_string(),
        );
        e.context
            .insert("github.ref_name".into(), format!("{number}/merge"));
        e
    }

    pub fn push() -> Event {
        Event::new("push")
    }

    pub fn dispatch() -> Event {
        Event::new("workflow_dispatch")
    }

    pub fn schedule() -> Event {
        Event::new("schedule")
    }

    /// The secret `name` holds `value` (instead of its hub's connection string).
    pub fn secret(mut self, name: &str, value: &str) -> Event {
        self.context.insert(format!("secrets.{name}"), value.into());
        self
    }

    /// What a step that asks GitHub (not run here) would output.
    pub fn given(mut self, step: &str, key: &str, value: &str) -> Event {
        self.given
            .insert(format!("steps.{step}.outputs.{key}"), value.into());
        self
    }
}

struct Vars<'a> {
    vars: &'a BTreeMap<String, String>,
    ok: bool,
}

impl Context for Vars<'_> {
    fn lookup(&self, name: &str) -> String {
        if let Some(v) = self.vars.get(name) {
            return v.clone();
        }
        // An output a step did not set, and an input nobody gave, are empty.
        if name.starts_with("steps.") || name.starts_with("inputs.") {
            return String::new();
        }
        panic!("the test gives no value for `{name}`")
    }

    fn succeeded(&self) -> bool {
        self.ok
    }
}

/// A repository that holds the examples in `.github/workflows/`, the hubs its secrets name, and
/// what GitHub keeps between runs (artifacts, run ids).
pub struct Github {
    pub checkout: Checkout,
    pub hubs: BTreeMap<String, Hub>,
    recorder: Recorder,
    home: PathBuf,
    action: PathBuf,
    artifacts: Artifacts,
    cache: Cache,
    runs: u32,
    covered: BTreeSet<(String, String)>,
    _dir: tempfile::TempDir,
}

/// One job's runner: its directory (HOME), what its expressions read, its environment, what
/// its steps put on PATH, and whether its steps so far succeeded.
struct Runner {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    path: Vec<PathBuf>,
    ok: bool,
}

impl Runner {
    fn cx(&self) -> Vars<'_> {
        Vars {
            vars: &self.vars,
            ok: self.ok,
        }
    }
}

/// What a step did.
struct Ran {
    ok: bool,
    calls: Vec<Call>,
    log: String,
    outputs: BTreeMap<String, String>,
}

impl Ran {
    fn failed(log: String) -> Ran {
        Ran {
            ok: false,
            calls: vec![],
            log,
            outputs: BTreeMap::new(),
        }
    }
}

impl Github {
    /// `secrets`: the secret names the workflows read, each a hub of its own.
    pub fn new(secrets: &[&str]) -> Github {
        let dir = tempfile::tempdir().unwrap();
        let checkout = Checkout::init(&dir.path().join("repo"));
        for name in EXAMPLES {
            checkout.write(
                &format!(".github/workflows/{name}"),
                &std::fs::read_to_string(repo_root().join("examples/github").join(name)).unwrap(),
            );
        }
        let hubs = secrets
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    Hub {
                        emulator: Emulator::start(),
                    },
                )
            })
            .collect();
        // The action as `uses: OWNER/twinops@v1` checks it out: action.yml and scripts/ of the
        // release's tag, with the release written into action.yml by the release workflow.
        let action = dir.path().join("runner/_actions/OWNER/twinops/v1");
        std::fs::create_dir_all(action.join("scripts")).unwrap();
        std::fs::copy(repo_root().join("action.yml"), action.join("action.yml")).unwrap();
        std::fs::copy(
            repo_root().join("scripts/install-twinops.sh"),
            action.join("scripts/install-twinops.sh"),
        )
        .unwrap();
        super::script(
            &repo_root().join("scripts/release-assets.sh"),
            &[
                "stamp",
                &pinned_version(),
                "OWNER/twinops",
                action.join("action.yml").to_str().unwrap(),
            ],
        );
        Github {
            checkout,
            hubs,
            recorder: Recorder::new(&dir.path().join("recorder")),
            home: dir.path().join("home"),
            action,
            artifacts: Artifacts::default(),
            cache: Cache {
                dir: dir.path().join("cache"),
            },
            runs: 0,
            covered: BTreeSet::new(),
            _dir: dir,
        }
    }

    /// Runs workflow `file` (from `.github/workflows/`) for `event` on the commit checked out:
    /// returns its run id and its jobs (one per matrix combination; a job whose `if:` is false is
    /// left out).
    pub fn run(&mut self, file: &str, event: &Event) -> (u32, Vec<JobRun>) {
        self.checkout.clean();
        let w = yaml(&self.checkout.dir.join(".github/workflows").join(file));
        assert!(
            triggers(&w).contains_key(event.name),
            "{file} does not run on {}",
            event.name
        );
        self.runs += 1;
        let run = self.runs;
        let mut jobs = Vec::new();
        for (job_id, job) in w["jobs"].as_object().expect("jobs") {
            let combos: Vec<BTreeMap<String, String>> =
                match job.pointer("/strategy/matrix/include") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|i| {
                            i.as_object()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| (format!("matrix.{k}"), text(v)))
                                .collect()
                        })
                        .collect(),
                    _ => vec![BTreeMap::new()],
                };
            for matrix in combos {
                let name = matrix
                    .get("matrix.hub")
                    .cloned()
                    .unwrap_or_else(|| job_id.clone());
                let Some(mut runner) = self.runner(run, &w, job, event, &name, matrix) else {
                    continue;
                };
                let steps = steps(job)
                    .iter()
                    .map(|step| self.step(file, run, step, event, &mut runner))
                    .collect();
                jobs.push(JobRun {
                    name,
                    ok: runner.ok,
                    steps,
                });
            }
        }
        (run, jobs)
    }

    /// A fresh runner for one job (twinops is there only if the job's steps install it), with the
    /// job's context and environment; `None` when the job's `if:` is false.
    fn runner(
        &self,
        run: u32,
        w: &Value,
        job: &Value,
        event: &Event,
        name: &str,
        matrix: BTreeMap<String, String>,
    ) -> Option<Runner> {
        let dir = self.home.join(format!("run{run}-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut vars: BTreeMap<String, String> = self
            .hubs
            .iter()
            .map(|(secret, hub)| {
                (
                    format!("secrets.{secret}"),
                    hub.emulator.connection_string.clone(),
                )
            })
            .collect();
        vars.extend(event.context.clone());
        vars.extend(matrix);
        let sha = self.checkout.git(&["rev-parse", "HEAD"]);
        vars.insert("github.sha".into(), sha.clone());
        vars.insert("github.run_id".into(), run.to_string());
        let mut r = Runner {
            dir,
            vars,
            env: BTreeMap::new(),
            path: Vec::new(),
            ok: true,
        };
        if !condition::runs(job["if"].as_str(), &r.cx()) {
            return None;
        }
        for scope in [&w["env"], &job["env"]] {
            for (k, v) in scope.as_object().into_iter().flatten() {
                let v = condition::substitute(&text(v), &r.cx());
                r.vars.insert(format!("env.{k}"), v.clone());
                r.env.insert(k.clone(), v);
            }
        }
        let workspace = self.checkout.dir.display().to_string();
        let summary = r.dir.join("step-summary.md").display().to_string();
        for (k, v) in [
            ("GITHUB_EVENT_NAME", event.name.to_string()),
            ("GITHUB_SHA", sha),
            ("GITHUB_REPOSITORY", "acme/fleet".into()),
            ("GITHUB_RUN_ID", run.to_string()),
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_WORKSPACE", workspace),
            ("GITHUB_STEP_SUMMARY", summary),
        ] {
            r.env.insert(k.into(), v);
        }
        trust(&mut r.env, &self.hubs);
        Some(r)
    }

    /// One step of a job, under its `if:`.
    fn step(
        &mut self,
        file: &str,
        run: u32,
        step: &Value,
        event: &Event,
        r: &mut Runner,
    ) -> StepRun {
        let name = step_name(step);
        if !condition::runs(step["if"].as_str(), &r.cx()) {
            return StepRun::skipped(name);
        }
        let mut env = r.env.clone();
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            env.insert(k.clone(), condition::substitute(&text(v), &r.cx()));
        }
        let with: BTreeMap<String, String> = step["with"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), condition::substitute(&text(v), &r.cx())))
            .collect();
        let id = step["id"].as_str().unwrap_or("-");
        let ran = if let Some(uses) = step["uses"].as_str() {
            self.uses(uses, &with, run, &env, r)
        } else {
            let script = step["run"].as_str().expect("a step runs or uses");
            if talks_to_ci_service(script) {
                assert!(
                    twinops_lines(script).is_empty(),
                    "{file}: step {name} talks to GitHub and calls twinops: the test cannot run it"
                );
                let prefix = format!("steps.{id}.outputs.");
                Ran {
                    ok: true,
                    calls: vec![],
                    log: "asks GitHub: not run".into(),
                    outputs: event
                        .given
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.strip_prefix(&prefix)?.to_string(), v.clone()))
                        })
                        .collect(),
                }
            } else {
                let ran = self.shell(script, &env, r);
                let expected = twinops_lines(script);
                for c in &ran.calls {
                    assert!(
                        expected
                            .iter()
                            .any(|l| l.split_whitespace().nth(1)
                                == c.args.first().map(String::as_str)),
                        "{file}: step {name} called twinops {:?}, which its script does not show",
                        c.args
                    );
                }
                if !ran.calls.is_empty() {
                    self.covered.insert((file.into(), name.clone()));
                }
                ran
            }
        };
        for (k, v) in ran.outputs {
            r.vars.insert(format!("steps.{id}.outputs.{k}"), v);
        }
        r.ok &= ran.ok;
        StepRun {
            name,
            ran: true,
            ok: ran.ok,
            calls: ran.calls,
            log: ran.log,
        }
    }

    /// A `run:` script in bash as the runner runs it (`bash -e -o pipefail`): its outputs
    /// ($GITHUB_OUTPUT), and the directories it puts on PATH ($GITHUB_PATH) for the next steps.
    fn shell(&self, script: &str, env: &BTreeMap<String, String>, r: &mut Runner) -> Ran {
        let output = r.dir.join("output");
        let github_path = r.dir.join("path");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&github_path);
        let mut env = env.clone();
        env.insert("GITHUB_OUTPUT".into(), output.display().to_string());
        env.insert("GITHUB_PATH".into(), github_path.display().to_string());
        env.insert("RUNNER_TEMP".into(), r.dir.display().to_string());
        let sh = bash(
            &self.checkout.dir,
            script,
            &["-eo", "pipefail"],
            &env,
            &r.path,
            &self.recorder,
            &r.dir,
        );
        let outputs = std::fs::read_to_string(&output)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for line in std::fs::read_to_string(&github_path)
            .unwrap_or_default()
            .lines()
        {
            r.path.push(PathBuf::from(line));
        }
        Ran {
            ok: sh.code == 0,
            calls: sh.calls,
            log: format!("{}{}", sh.stdout, sh.stderr),
            outputs,
        }
    }

    /// A `uses:` step: the actions the examples use, each as GitHub runs it for them.
    fn uses(
        &mut self,
        uses: &str,
        with: &BTreeMap<String, String>,
        run: u32,
        env: &BTreeMap<String, String>,
        r: &mut Runner,
    ) -> Ran {
        let dir = &self.checkout.dir;
        let log = match uses {
            "actions/checkout@v4" => "checked out".to_string(),
            "OWNER/twinops@v1" => return self.action(with, env, r),
            "actions/upload-artifact@v4" => {
                let file = &with["path"];
                let Ok(bytes) = std::fs::read(dir.join(file)) else {
                    return Ran::failed(format!("no file {file} to upload"));
                };
                let name = Path::new(file).file_name().unwrap().to_string_lossy();
                self.artifacts
                    .upload(run, &with["name"], vec![(name.into(), bytes)]);
                format!("uploaded {file}")
            }
            "actions/download-artifact@v4" => {
                let from: u32 = with["run-id"].parse().expect("a run id");
                let into = dir.join(with.get("path").map(String::as_str).unwrap_or("."));
                for (name, bytes) in self.artifacts.download(from, &with["name"]) {
                    std::fs::write(into.join(name), bytes).unwrap();
                }
                format!("downloaded {} of run {from}", with["name"])
            }
            other => panic!("the test does not run the action {other}"),
        };
        Ran {
            ok: true,
            calls: vec![],
            log,
            outputs: BTreeMap::new(),
        }
    }

    /// `uses: OWNER/twinops@v1`: the composite action's steps, from its checkout under
    /// `_actions/`, with `github.action_repository` empty (as it can be in a composite action),
    /// its cache kept between jobs, and the release downloads served from the local release.
    fn action(
        &mut self,
        with: &BTreeMap<String, String>,
        env: &BTreeMap<String, String>,
        r: &mut Runner,
    ) -> Ran {
        let action = yaml(&self.action.join("action.yml"));
        let mut inner = Runner {
            dir: r.dir.clone(),
            vars: BTreeMap::new(),
            env: BTreeMap::new(),
            path: Vec::new(),
            ok: true,
        };
        for (k, spec) in action["inputs"].as_object().unwrap() {
            let v = with
                .get(k)
                .cloned()
                .unwrap_or_else(|| text(&spec["default"]));
            inner.vars.insert(format!("inputs.{k}"), v);
        }
        inner
            .vars
            .insert("github.action_repository".into(), String::new());
        let mut log = String::new();
        let mut save = None;
        for step in action["runs"]["steps"].as_array().unwrap() {
            if step["uses"].as_str() == Some("actions/cache@v4") {
                let path = condition::substitute(&text(&step["with"]["path"]), &inner.cx());
                let key = condition::substitute(&text(&step["with"]["key"]), &inner.cx());
                save = self.cache.restore(&key, Path::new(&path));
                continue;
            }
            let mut step_env = env.clone();
            for (k, v) in step["env"].as_object().into_iter().flatten() {
                step_env.insert(k.clone(), condition::substitute(&text(v), &inner.cx()));
            }
            step_env.insert(
                "GITHUB_ACTION_PATH".into(),
                self.action.display().to_string(),
            );
            step_env.insert(
                "TWINOPS_RELEASES".into(),
                format!("file://{}", release().display()),
            );
            inner.path = r.path.clone();
            let ran = self.shell(step["run"].as_str().unwrap(), &step_env, &mut inner);
            r.path = inner.path.clone();
            log.push_str(&ran.log);
            assert!(ran.calls.is_empty(), "the action runs no twinops command");
            if !ran.ok {
                return Ran::failed(log);
            }
            if let Some(id) = step["id"].as_str() {
                for (k, v) in ran.outputs {
                    inner.vars.insert(format!("steps.{id}.outputs.{k}"), v);
                }
            }
        }
        if let Some((key, path)) = save {
            self.cache.save(&key, &path);
        }
        Ran {
            ok: true,
            calls: vec![],
            log,
            outputs: BTreeMap::new(),
        }
    }

    /// Every step of `files` that calls twinops ran (with at least one call) in this test.
    pub fn assert_every_twinops_step_ran(&self, files: &[&str]) {
        for file in files {
            let w = example(file);
            for job in w["jobs"].as_object().unwrap().values() {
                for step in steps(job) {
                    if let Some(script) = step["run"].as_str()
                        && !twinops_lines(script).is_empty()
                    {
                        let key = (file.to_string(), step_name(step));
                        assert!(
                            self.covered.contains(&key),
                            "{file}: step {:?} never ran here",
                            key.1
                        );
                    }
                }
            }
        }
    }
}

fn only(jobs: Vec<JobRun>) -> JobRun {
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    jobs.into_iter().next().unwrap()
}

fn by_hub(jobs: Vec<JobRun>) -> BTreeMap<String, JobRun> {
    jobs.into_iter().map(|j| (j.name.clone(), j)).collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_github_examples_plan_comment_apply_recover_and_report_drift_on_one_hub() {
    let mut gh = Github::new(&["IOTHUB_CONNECTION_STRING"]);
    let manifests = repo_root().join("manifests");
    let fleet = std::fs::read_to_string(manifests.join("fleet.yaml")).unwrap();
    let thermostats = std::fs::read_to_string(manifests.join("thermostats.yaml")).unwrap();
    gh.checkout.write("manifests/fleet.yaml", &fleet);
    let first = gh.checkout.commit("the fleet's first manifests");

    // The hub starts empty: applying main by hand (workflow_dispatch) plans and applies it.
    let job = only(gh.run("apply.yml", &Event::dispatch()).1);
    assert!(job.ok, "{job:#?}");
    assert_eq!(
        job.ran(),
        [
            "actions/checkout@v4",
            "OWNER/twinops@v1",
            "Plan the default branch",
            "Apply it"
        ]
    );
    assert_eq!(job.codes("Plan the default branch"), [0]);
    assert_eq!(job.codes("Apply it"), [0]);
    let job = only(gh.run("drift.yml", &Event::schedule()).1);
    assert!(job.ok, "{job:#?}");
    assert_eq!(job.codes("Drift"), [0]);
    assert!(!job.step("Fail on drift").ran);

    // A pull request adds the thermostats: plan.yml plans only them (--changed-from its base),
    // keeps the plan as twinops-plan-production and writes the marked comment.
    gh.checkout
        .git(&["checkout", "-q", "-b", "thermostats", "main"]);
    gh.checkout
        .write("manifests/thermostats.yaml", &thermostats);
    gh.checkout.commit("twenty thermostats");
    gh.checkout.pull_request_merge("thermostats", "main");
    let (plan_run, jobs) = gh.run("plan.yml", &Event::pull_request(&first, 7));
    let job = only(jobs);
    assert!(job.ok, "{job:#?}");
    assert_eq!(job.codes("Validate"), [0]);
    assert_eq!(job.codes("Plan"), [2], "changes to review");
    let plan = json(&gh.checkout.dir.join("plan.json"));
    assert_eq!(plan["scope"]["changed_from"], first.as_str());
    assert!(plan["summary"]["create"].as_u64().unwrap() >= 20, "{plan}");
    let comment = gh.checkout.read("comment.md");
    assert!(
        comment.starts_with("<!-- twinops-plan:production -->\n### twinops plan for"),
        "{comment}"
    );
    assert!(comment.contains("therm-001"), "{comment}");
    assert!(
        !comment.contains("myFirstDevice"),
        "only the change is planned"
    );
    for f in ["plan.json", "plan.md", "comment.md"] {
        assert_no_secret(f, &gh.checkout.read(f), &gh.hubs);
    }
    assert!(job.step("Comment the plan on the pull request").ran);

    // With a key the hub refuses, the plan fails: the job fails, nothing is uploaded, and the
    // comment says so (the same marked comment, updated).
    let cs = &gh.hubs["IOTHUB_CONNECTION_STRING"]
        .emulator
        .connection_string;
    let (host, _) = cs.split_once("SharedAccessKey=").unwrap();
    let revoked = format!("{host}SharedAccessKey=bm90IHRoZSBrZXkgb2YgdGhpcyBodWIgYXQgYWxs");
    let pr = Event::pull_request(&first, 7).secret("IOTHUB_CONNECTION_STRING", &revoked);
    let job = only(gh.run("plan.yml", &pr).1);
    assert!(!job.ok);
    assert_eq!(job.codes("Plan"), [1]);
    assert!(!job.step("Keep the reviewed plan").ran);
    assert!(job.step("Comment the plan on the pull request").ran);
    let comment = gh.checkout.read("comment.md");
    assert!(
        comment.starts_with(
            "<!-- twinops-plan:production -->\n### twinops plan for `production` failed"
        ),
        "{comment}"
    );
    assert_no_secret("the failed plan's comment", &comment, &gh.hubs);

    // Merged: apply.yml downloads that plan and applies exactly it.
    gh.checkout.merge("thermostats");
    let push = Event::push().given("saved", "mode", "saved").given(
        "saved",
        "run-id",
        &plan_run.to_string(),
    );
    let job = only(gh.run("apply.yml", &push).1);
    assert!(job.ok, "{job:#?}");
    assert!(!job.step("Plan the default branch").ran);
    assert_eq!(job.codes("Apply the reviewed plan"), [0]);
    assert_eq!(
        only(gh.run("drift.yml", &Event::schedule()).1).codes("Drift"),
        [0]
    );

    // Two pull requests change the thermostats; the second is merged first, so the plan reviewed
    // on the first no longer matches main: twinops refuses it, and the job says how to recover.
    gh.checkout
        .git(&["checkout", "-q", "-b", "brighter", "main"]);
    gh.checkout.write(
        "manifests/thermostats.yaml",
        &thermostats.replace("brightness: 70", "brightness: 80"),
    );
    gh.checkout.commit("brighter displays");
    let main = gh.checkout.git(&["rev-parse", "main"]);
    gh.checkout.pull_request_merge("brighter", "main");
    let (brighter_run, jobs) = gh.run("plan.yml", &Event::pull_request(&main, 8));
    assert_eq!(only(jobs).codes("Plan"), [2]);
    gh.checkout.git(&["checkout", "-q", "-b", "slower", "main"]);
    gh.checkout.write(
        "manifests/thermostats.yaml",
        &thermostats.replace("telemetryInterval: 15", "telemetryInterval: 20"),
    );
    gh.checkout.commit("a slower hall sensor");
    gh.checkout.merge("slower");
    gh.checkout.merge("brighter");
    let push = Event::push().given("saved", "mode", "saved").given(
        "saved",
        "run-id",
        &brighter_run.to_string(),
    );
    let job = only(gh.run("apply.yml", &push).1);
    assert!(!job.ok, "the moved-on plan is refused: {job:#?}");
    assert_eq!(job.codes("Apply the reviewed plan"), [1]);
    let log = &job.step("Apply the reviewed plan").log;
    assert!(log.contains("manifests changed"), "{log}");
    assert!(log.contains("workflow_dispatch"), "{log}");
    // Recovery: run apply.yml by hand on main.
    let job = only(gh.run("apply.yml", &Event::dispatch()).1);
    assert!(job.ok, "{job:#?}");
    assert_eq!(job.codes("Apply it"), [0]);
    assert_eq!(
        only(gh.run("drift.yml", &Event::schedule()).1).codes("Drift"),
        [0]
    );

    // Someone changes an owned desired value in the hub: drift.yml reports it and fails.
    let hub = &gh.hubs["IOTHUB_CONNECTION_STRING"].emulator;
    other_writer(
        hub,
        "therm-001",
        serde_json::json!({"properties": {"desired": {"telemetryInterval": 5}}}),
    )
    .await;
    let job = only(gh.run("drift.yml", &Event::schedule()).1);
    assert!(!job.ok, "drift fails the job");
    assert_eq!(job.codes("Drift"), [2]);
    assert!(job.step("Keep one open issue for this hub").ran);
    assert!(job.step("Fail on drift").ran);
    let drift = gh.checkout.read("drift.md");
    assert!(drift.contains("therm-001"), "{drift}");
    assert_no_secret("drift.md", &drift, &gh.hubs);

    gh.assert_every_twinops_step_ran(&["plan.yml", "apply.yml", "drift.yml"]);
}

#[tokio::test]
async fn the_github_matrix_examples_plan_apply_and_report_drift_per_hub() {
    let mut gh = Github::new(&["IOTHUB_BERLIN", "IOTHUB_MUNICH"]);
    for hub in ["berlin", "munich"] {
        gh.checkout.write(
            &format!("manifests/{hub}/fleet.yaml"),
            &small_fleet(hub, 30),
        );
    }
    let first = gh.checkout.commit("two hubs");
    let jobs = by_hub(gh.run("matrix-apply.yml", &Event::dispatch()).1);
    assert_eq!(jobs.keys().collect::<Vec<_>>(), ["berlin", "munich"]);
    for job in jobs.values() {
        assert!(job.ok, "{job:#?}");
        assert_eq!(job.codes("Apply it"), [0]);
    }

    // A pull request changes berlin only: its shard has changes, munich's plans nothing.
    gh.checkout
        .git(&["checkout", "-q", "-b", "berlin-45", "main"]);
    gh.checkout
        .write("manifests/berlin/fleet.yaml", &small_fleet("berlin", 45));
    gh.checkout.commit("berlin reports less often");
    gh.checkout.pull_request_merge("berlin-45", "main");
    let (plan_run, jobs) = gh.run("matrix.yml", &Event::pull_request(&first, 9));
    let jobs = by_hub(jobs);
    assert_eq!(jobs["berlin"].codes("Plan"), [2]);
    assert_eq!(jobs["munich"].codes("Plan"), [0]);
    for (hub, job) in &jobs {
        assert!(job.ok, "{job:#?}");
        let plan = json(&gh.checkout.dir.join(format!("plan-{hub}.json")));
        assert_eq!(plan["scope"]["changed_from"], first.as_str(), "{hub}");
    }
    let comment = gh.checkout.read("comment.md");
    assert!(comment.starts_with("<!-- twinops-plan:"), "{comment}");

    // Merged: each hub applies the plan its shard saved (the artifact names match).
    gh.checkout.merge("berlin-45");
    let push = Event::push().given("saved", "mode", "saved").given(
        "saved",
        "run-id",
        &plan_run.to_string(),
    );
    for (hub, job) in by_hub(gh.run("matrix-apply.yml", &push).1) {
        assert!(job.ok, "{hub}: {job:#?}");
        assert_eq!(job.codes("Apply the reviewed plan"), [0], "{hub}");
    }
    for (hub, job) in by_hub(gh.run("matrix-drift.yml", &Event::schedule()).1) {
        assert!(job.ok, "{hub}: {job:#?}");
        assert_eq!(job.codes("Drift"), [0], "{hub}");
    }
    other_writer(
        &gh.hubs["IOTHUB_MUNICH"].emulator,
        "munich-2",
        serde_json::json!({"properties": {"desired": {"telemetryInterval": 5}}}),
    )
    .await;
    let jobs = by_hub(gh.run("matrix-drift.yml", &Event::schedule()).1);
    assert_eq!(jobs["berlin"].codes("Drift"), [0]);
    assert!(jobs["berlin"].ok);
    assert_eq!(jobs["munich"].codes("Drift"), [2]);
    assert!(!jobs["munich"].ok, "munich drifted");
    assert!(jobs["munich"].step("Fail on drift").ran);

    gh.assert_every_twinops_step_ran(&["matrix.yml", "matrix-apply.yml", "matrix-drift.yml"]);
}

/// Whether a step calls `uses`.
fn uses(step: &Value, action: &str) -> bool {
    step["uses"].as_str() == Some(action)
}

#[test]
fn the_github_examples_install_with_the_action_and_keep_secrets_out_of_inputs_logs_and_scripts() {
    for name in EXAMPLES {
        let source =
            std::fs::read_to_string(repo_root().join("examples/github").join(name)).unwrap();
        assert!(!source.contains("cargo install"), "{name} builds twinops");
        let w = example(name);
        for (job_id, job) in w["jobs"].as_object().unwrap() {
            let steps = steps(job);
            let action = steps
                .iter()
                .position(|s| uses(s, "OWNER/twinops@v1"))
                .unwrap_or_else(|| panic!("{name}/{job_id} does not install twinops"));
            assert!(
                steps[action]["with"].is_null(),
                "{name}: the action takes no command or hub"
            );
            for (i, step) in steps.iter().enumerate() {
                for v in step["with"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(_, v)| v)
                {
                    assert!(!text(v).contains("secrets."), "{name}: a secret in `with:`");
                }
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                assert!(
                    !script.contains("${{"),
                    "{name}: an expression inside a script (pass it through env): {script}"
                );
                assert!(
                    !script.contains("$TWINOPS_HUB") && !script.contains("${TWINOPS_HUB"),
                    "{name}: a script reads the connection string"
                );
                if !twinops_lines(script).is_empty() {
                    assert!(i > action, "{name}: twinops runs before it is installed");
                }
            }
        }
        // Secrets reach jobs through env only.
        for (k, v) in w["jobs"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|j| j["env"].as_object().into_iter().flatten())
        {
            if text(v).contains("secrets") {
                assert!(k == "TWINOPS_HUB", "{name}: secret in {k}");
            }
        }
    }
}

#[test]
fn the_github_examples_agree_on_triggers_artifact_names_markers_and_hubs() {
    let on = |name: &str| -> Vec<String> { triggers(&example(name)).keys().cloned().collect() };
    assert_eq!(on("plan.yml"), ["pull_request"]);
    assert_eq!(on("matrix.yml"), ["pull_request"]);
    assert_eq!(on("apply.yml"), ["push", "workflow_dispatch"]);
    assert_eq!(on("matrix-apply.yml"), ["push", "workflow_dispatch"]);
    assert_eq!(on("drift.yml"), ["schedule", "workflow_dispatch"]);
    assert_eq!(on("matrix-drift.yml"), ["schedule", "workflow_dispatch"]);
    // The apply side downloads what the plan side uploads, from the workflow it names.
    for (plan, apply) in [
        ("plan.yml", "apply.yml"),
        ("matrix.yml", "matrix-apply.yml"),
    ] {
        let name_of = |file: &str, action: &str| -> String {
            let w = example(file);
            let job = w["jobs"].as_object().unwrap().values().next().unwrap();
            let step = steps(job)
                .iter()
                .find(|s| uses(s, action))
                .unwrap_or_else(|| panic!("{file} has no {action}"));
            step["with"]["name"].as_str().unwrap().to_string()
        };
        let uploaded = name_of(plan, "actions/upload-artifact@v4");
        let downloaded = name_of(apply, "actions/download-artifact@v4");
        // The single-hub pair names it through env.HUB_NAME, which both workflows set alike.
        assert_eq!(uploaded, downloaded, "{plan} -> {apply}");
        assert_eq!(
            example(plan)["env"],
            example(apply)["env"],
            "{plan} -> {apply}"
        );
        let text =
            std::fs::read_to_string(repo_root().join("examples/github").join(apply)).unwrap();
        assert!(
            text.contains(&format!("gh run list --workflow {plan} ")),
            "{apply} looks for {plan}'s runs"
        );
        // One comment per hub, found by the marker the plan step writes.
        let text = std::fs::read_to_string(repo_root().join("examples/github").join(plan)).unwrap();
        assert_eq!(
            text.matches("<!-- twinops-plan:$HUB_NAME -->").count(),
            2,
            "{plan}: the marker is written and searched for"
        );
        assert!(
            !text.contains("--edit-last"),
            "{plan}: the bot's last comment is not ours"
        );
    }
    let hubs = |name: &str| {
        example(name)["jobs"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()["strategy"]["matrix"]
            .clone()
    };
    assert_eq!(hubs("matrix.yml"), hubs("matrix-apply.yml"));
    assert_eq!(hubs("matrix.yml"), hubs("matrix-drift.yml"));
    // The pull-request plans read the base commit: the checkout has the history.
    for name in ["plan.yml", "matrix.yml"] {
        let w = example(name);
        let job = w["jobs"].as_object().unwrap().values().next().unwrap();
        let checkout = steps(job)
            .iter()
            .find(|s| uses(s, "actions/checkout@v4"))
            .unwrap();
        assert_eq!(checkout["with"]["fetch-depth"], 0, "{name}");
    }
}
