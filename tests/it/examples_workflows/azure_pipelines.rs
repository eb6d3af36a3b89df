//! `examples/azure-pipelines/`: each pipeline copied into a repository, its stages, jobs and steps
//! run as an Azure Pipelines agent would run them (templates expanded with their parameters,
//! `$(variables)` replaced, variables mapped to the environment as the agent maps them, secrets
//! only through `env:`, `##vso[...]` logging commands obeyed, conditions evaluated) against an
//! emulator: plan on a pull request with its marked comment, apply on main behind the environment
//! (its approval is the service's; here it is given), nothing to apply skips the approval, and the
//! scheduled drift.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::condition::{self, Context};
use super::{
    Artifacts, Cache, Checkout, Hub, JobRun, Recorder, StepRun, assert_no_secret, bash,
    pinned_version, release, repo_root, talks_to_ci_service, text, trust, twinops_lines, yaml,
};
use crate::cli::other_writer;
use crate::support::Emulator;

const PIPELINES: [&str; 4] = ["plan.yml", "apply.yml", "drift.yml", "install-twinops.yml"];

/// Where the examples live in the repository that uses them.
const DIR: &str = "pipelines";

fn example(name: &str) -> Value {
    yaml(&repo_root().join("examples/azure-pipelines").join(name))
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
        // An output variable that was not set is empty.
        if name.starts_with("variables.") || name.starts_with("dependencies.") {
            return String::new();
        }
        panic!("the test gives no value for `{name}`")
    }

    fn succeeded(&self) -> bool {
        self.ok
    }
}

/// `$(name)` macros replaced by the variables' values; `strict`: an unknown one panics (Azure
/// leaves it as it is, which in a script is a command substitution).
fn macros(text: &str, vars: &BTreeMap<String, String>, strict: bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let name = &after[..end];
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        match vars.get(&format!("variables.{name}")) {
            Some(v) if is_name => {
                out.push_str(v);
                rest = &after[end + 1..];
            }
            _ => {
                assert!(
                    !(strict && is_name),
                    "the test gives no value for the variable $({name})"
                );
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every string of `v` with its `${{ parameters.x }}` replaced.
fn expand(v: &Value, params: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(condition::substitute(
            s,
            &Vars {
                vars: params,
                ok: true,
            },
        )),
        Value::Array(items) => Value::Array(items.iter().map(|i| expand(i, params)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), expand(v, params)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The steps of a job with their templates expanded (`- template: FILE` with its parameters'
/// defaults, overridden by the `parameters:` given).
fn expanded(steps: &[Value], dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for step in steps {
        let Some(file) = step["template"].as_str() else {
            out.push(step.clone());
            continue;
        };
        let t = yaml(&dir.join(file));
        let mut params = BTreeMap::new();
        for p in t["parameters"].as_array().into_iter().flatten() {
            params.insert(
                format!("parameters.{}", p["name"].as_str().unwrap()),
                text(&p["default"]),
            );
        }
        for (k, v) in step["parameters"].as_object().into_iter().flatten() {
            params.insert(format!("parameters.{k}"), text(v));
        }
        let steps = expand(&t["steps"], &params);
        out.extend(expanded(steps.as_array().unwrap(), dir));
    }
    out
}

fn step_name(step: &Value) -> String {
    for key in ["displayName", "name"] {
        if let Some(n) = step[key].as_str() {
            return n.to_string();
        }
    }
    if let Some(a) = step["publish"].as_str() {
        return format!("publish {a}");
    }
    if step.get("download").is_some() {
        return format!("download {}", text(&step["artifact"]));
    }
    if let Some(t) = step["task"].as_str() {
        return t.to_string();
    }
    if step.get("checkout").is_some() {
        return "checkout".into();
    }
    panic!("a step the test does not know: {step}")
}

/// Why a pipeline runs (`Build.Reason`) and the variables that go with it.
pub struct Reason {
    name: &'static str,
    vars: BTreeMap<String, String>,
}

impl Reason {
    pub fn pull_request(target: &str, id: u32) -> Reason {
        let mut vars = BTreeMap::new();
        vars.insert("System.PullRequest.TargetBranchName".into(), target.into());
        vars.insert("System.PullRequest.PullRequestId".into(), id.to_string());
        Reason {
            name: "PullRequest",
            vars,
        }
    }

    pub fn ci() -> Reason {
        Reason {
            name: "IndividualCI",
            vars: BTreeMap::new(),
        }
    }

    pub fn schedule() -> Reason {
        Reason {
            name: "Schedule",
            vars: BTreeMap::new(),
        }
    }
}

/// A repository holding the pipelines, its hub (the variable group's secret), and what Azure
/// DevOps keeps between runs.
struct Azure {
    checkout: Checkout,
    hubs: BTreeMap<String, Hub>,
    recorder: Recorder,
    home: PathBuf,
    artifacts: Artifacts,
    cache: Cache,
    runs: u32,
    covered: BTreeSet<(String, String)>,
    _dir: tempfile::TempDir,
}

/// A run's variables (`variables.NAME`), and which are secret (never in a script's environment).
#[derive(Clone)]
struct Variables {
    values: BTreeMap<String, String>,
    secret: BTreeSet<String>,
}

/// One job's agent: its variables, what its steps put on PATH, whether they succeeded so far, the
/// output variables they set (`STEP.VAR`), and the caches to save after the job.
struct Agent {
    vars: Variables,
    path: Vec<PathBuf>,
    ok: bool,
    outputs: BTreeMap<String, String>,
    saves: Vec<(String, PathBuf)>,
}

/// The outputs a job's steps set (`STEP.VAR`), and whether it succeeded.
struct Outcome {
    ok: bool,
    outputs: BTreeMap<String, String>,
}

impl Azure {
    fn new() -> Azure {
        let dir = tempfile::tempdir().unwrap();
        let checkout = Checkout::init(&dir.path().join("repo"));
        for name in PIPELINES {
            checkout.write(
                &format!("{DIR}/{name}"),
                &std::fs::read_to_string(repo_root().join("examples/azure-pipelines").join(name))
                    .unwrap(),
            );
        }
        let mut hubs = BTreeMap::new();
        hubs.insert(
            "IOTHUB_CONNECTION_STRING".to_string(),
            Hub {
                emulator: Emulator::start(),
            },
        );
        Azure {
            checkout,
            hubs,
            recorder: Recorder::new(&dir.path().join("recorder")),
            home: dir.path().join("agent"),
            artifacts: Artifacts::default(),
            cache: Cache {
                dir: dir.path().join("cache"),
            },
            runs: 0,
            covered: BTreeSet::new(),
            _dir: dir,
        }
    }

    /// The variables of a run: the predefined ones the examples read, the reason's, and the
    /// pipeline's own (its variable group's are secret: the hub's connection string).
    fn variables(&self, run: u32, reason: &Reason, p: &Value) -> Variables {
        let mut values: BTreeMap<String, String> = [
            ("Build.Reason", reason.name.to_string()),
            ("Build.BuildNumber", format!("20240101.{run}")),
            ("Build.Repository.ID", "0000-repository".into()),
            (
                "Build.SourcesDirectory",
                self.checkout.dir.display().to_string(),
            ),
            (
                "Build.SourceVersion",
                self.checkout.git(&["rev-parse", "HEAD"]),
            ),
            ("System.CollectionUri", "https://dev.azure.com/acme/".into()),
            ("System.TeamProjectId", "0000-project".into()),
            ("System.AccessToken", "not-a-real-access-token".into()),
            ("Agent.OS", "Linux".into()),
            ("Agent.OSArchitecture", "X64".into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("variables.{k}"), v))
        .collect();
        let mut secret = BTreeSet::from(["System.AccessToken".to_string()]);
        for (k, v) in &reason.vars {
            values.insert(format!("variables.{k}"), v.clone());
        }
        for v in p["variables"].as_array().into_iter().flatten() {
            if let Some(group) = v["group"].as_str() {
                assert_eq!(group, "twinops-production");
                for (name, hub) in &self.hubs {
                    values.insert(
                        format!("variables.{name}"),
                        hub.emulator.connection_string.clone(),
                    );
                    secret.insert(name.clone());
                }
            } else {
                values.insert(
                    format!("variables.{}", v["name"].as_str().unwrap()),
                    text(&v["value"]),
                );
            }
        }
        Variables { values, secret }
    }

    /// Runs pipeline `file` for `reason` on the commit checked out: its jobs as they ran, the
    /// jobs of stages whose condition was false left out.
    fn run(&mut self, file: &str, reason: &Reason) -> Vec<JobRun> {
        self.checkout.clean();
        self.runs += 1;
        let run = self.runs;
        let dir = self.checkout.dir.join(DIR);
        let p = yaml(&dir.join(file));
        let vars = self.variables(run, reason, &p);
        let stages: Vec<Value> = match p["stages"].as_array() {
            Some(s) => s.clone(),
            None => vec![serde_json::json!({
                "stage": "__default",
                "jobs": [{"job": "__default", "steps": p["steps"].clone()}],
            })],
        };
        let mut done: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut jobs = Vec::new();
        let mut previous: Option<String> = None;
        for stage in &stages {
            let name = stage["stage"].as_str().unwrap().to_string();
            let deps: Vec<String> = match &stage["dependsOn"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(text).collect(),
                _ => previous.iter().cloned().collect(),
            };
            previous = Some(name.clone());
            let mut seen = vars.values.clone();
            for d in &deps {
                for (k, v) in &done[d].outputs {
                    seen.insert(format!("dependencies.{d}.outputs.{k}"), v.clone());
                }
            }
            let ok = deps.iter().all(|d| done[d].ok);
            let cx = Vars { vars: &seen, ok };
            let mut outcome = Outcome {
                ok: true,
                outputs: BTreeMap::new(),
            };
            if condition::runs(stage["condition"].as_str(), &cx) {
                for job in stage["jobs"].as_array().unwrap() {
                    let job_name = job["job"]
                        .as_str()
                        .or_else(|| job["deployment"].as_str())
                        .unwrap();
                    let steps = job["steps"]
                        .as_array()
                        .or_else(|| job.pointer("/strategy/runOnce/deploy/steps")?.as_array())
                        .expect("a job has steps");
                    let (r, outputs) = self.job(file, run, job_name, &expanded(steps, &dir), &vars);
                    outcome.ok &= r.ok;
                    for (k, v) in outputs {
                        outcome.outputs.insert(format!("{job_name}.{k}"), v);
                    }
                    jobs.push(r);
                }
            }
            done.insert(name, outcome);
        }
        jobs
    }

    /// One job on a fresh agent workspace (twinops is there only if the job installs it): its
    /// steps under their conditions, then the cache saved.
    fn job(
        &mut self,
        file: &str,
        run: u32,
        job_name: &str,
        steps: &[Value],
        vars: &Variables,
    ) -> (JobRun, BTreeMap<String, String>) {
        let workspace = self.home.join(format!("run{run}-{job_name}"));
        std::fs::create_dir_all(workspace.join("_temp")).unwrap();
        let mut agent = Agent {
            vars: vars.clone(),
            path: Vec::new(),
            ok: true,
            outputs: BTreeMap::new(),
            saves: Vec::new(),
        };
        agent.vars.values.insert(
            "variables.Pipeline.Workspace".into(),
            workspace.display().to_string(),
        );
        agent.vars.values.insert(
            "variables.Agent.TempDirectory".into(),
            workspace.join("_temp").display().to_string(),
        );
        let mut out = Vec::new();
        for step in steps {
            let name = macros(&step_name(step), &agent.vars.values, true);
            let cx = Vars {
                vars: &agent.vars.values,
                ok: agent.ok,
            };
            if !condition::runs(step["condition"].as_str(), &cx) {
                out.push(StepRun::skipped(name));
                continue;
            }
            let r = self.step(file, run, step, name, &workspace, &mut agent);
            agent.ok &= r.ok;
            out.push(r);
        }
        for (key, at) in std::mem::take(&mut agent.saves) {
            self.cache.save(&key, &at);
        }
        let job = JobRun {
            name: job_name.to_string(),
            ok: agent.ok,
            steps: out,
        };
        (job, agent.outputs)
    }

    /// One step: the agent's built-in steps and tasks the examples use, or a bash script.
    fn step(
        &mut self,
        file: &str,
        run: u32,
        step: &Value,
        name: String,
        workspace: &Path,
        agent: &mut Agent,
    ) -> StepRun {
        let mut r = StepRun {
            name,
            ran: true,
            ok: true,
            calls: vec![],
            log: String::new(),
        };
        let vars = &agent.vars.values;
        if step.get("checkout").is_some() {
            assert_eq!(step["checkout"], "self");
        } else if let Some(a) = step["publish"].as_str() {
            let artifact = macros(&text(&step["artifact"]), vars, true);
            let bytes = std::fs::read(self.checkout.dir.join(a)).unwrap();
            self.artifacts
                .upload(run, &artifact, vec![(a.to_string(), bytes)]);
        } else if step.get("download").is_some() {
            assert_eq!(step["download"], "current");
            let artifact = macros(&text(&step["artifact"]), vars, true);
            let into = workspace.join(&artifact);
            std::fs::create_dir_all(&into).unwrap();
            for (f, bytes) in self.artifacts.download(run, &artifact) {
                std::fs::write(into.join(f), bytes).unwrap();
            }
        } else if step["task"].as_str() == Some("Cache@2") {
            let key = macros(&text(&step["inputs"]["key"]), vars, true);
            let at = PathBuf::from(macros(&text(&step["inputs"]["path"]), vars, true));
            agent.saves.extend(self.cache.restore(&key, &at));
        } else if let Some(script) = step["bash"].as_str() {
            if talks_to_ci_service(script) {
                assert!(
                    twinops_lines(script).is_empty(),
                    "{file}: step {} talks to Azure DevOps and calls twinops",
                    r.name
                );
                r.log = "asks Azure DevOps: not run".into();
            } else {
                self.bash_step(step, script, workspace, agent, &mut r);
                if !r.calls.is_empty() {
                    self.covered.insert((file.into(), r.name.clone()));
                }
            }
        } else {
            panic!("{file}: a step the test does not run: {step}");
        }
        r
    }

    /// A bash step as the agent runs it (`bash --noprofile --norc FILE`, no `-e`): the variables
    /// that are not secret in the environment (`A.B` as `A_B`), the step's `env:`, and its
    /// `##vso[...]` logging commands obeyed.
    fn bash_step(
        &self,
        step: &Value,
        script: &str,
        workspace: &Path,
        agent: &mut Agent,
        r: &mut StepRun,
    ) {
        let vars = &agent.vars.values;
        let mut env: BTreeMap<String, String> = vars
            .iter()
            .filter_map(|(k, v)| {
                let k = k.strip_prefix("variables.")?;
                (!agent.vars.secret.contains(k))
                    .then(|| (k.to_uppercase().replace('.', "_"), v.clone()))
            })
            .collect();
        env.insert("TF_BUILD".into(), "True".into());
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            env.insert(k.clone(), macros(&text(v), vars, true));
        }
        // The local release stands in for the downloads from GitHub.
        env.insert(
            "TWINOPS_RELEASES".into(),
            format!("file://{}", release().display()),
        );
        trust(&mut env, &self.hubs);
        let sh = bash(
            &self.checkout.dir,
            &macros(script, vars, false),
            &[],
            &env,
            &agent.path,
            &self.recorder,
            workspace,
        );
        for line in sh.stdout.lines() {
            if let Some(p) = line.strip_prefix("##vso[task.prependpath]") {
                agent.path.push(PathBuf::from(p));
            } else if let Some(p) = line.strip_prefix("##vso[task.uploadsummary]") {
                assert!(Path::new(p).is_file(), "{}: no summary at {p}", r.name);
            } else if let Some(rest) = line.strip_prefix("##vso[task.setvariable variable=") {
                let (var, value) = rest.split_once(']').unwrap();
                let (var, props) = var.split_once(';').unwrap_or((var, ""));
                let at = step["name"].as_str().expect("an output's step has a name");
                agent
                    .vars
                    .values
                    .insert(format!("variables.{at}.{var}"), value.into());
                if props.contains("isOutput=true") {
                    agent.outputs.insert(format!("{at}.{var}"), value.into());
                }
            }
        }
        r.ok = sh.code == 0;
        r.calls = sh.calls;
        r.log = format!("{}{}", sh.stdout, sh.stderr);
    }

    /// Every bash step of `files` that calls twinops ran in this test.
    fn assert_every_twinops_step_ran(&self, files: &[&str]) {
        let dir = self.checkout.dir.join(DIR);
        for file in files {
            let p = example(file);
            let mut steps: Vec<Value> = p["steps"].as_array().cloned().unwrap_or_default();
            for stage in p["stages"].as_array().into_iter().flatten() {
                for job in stage["jobs"].as_array().unwrap() {
                    let s = job["steps"]
                        .as_array()
                        .or_else(|| job.pointer("/strategy/runOnce/deploy/steps")?.as_array())
                        .unwrap();
                    steps.extend(s.iter().cloned());
                }
            }
            for step in expanded(&steps, &dir) {
                if let Some(script) = step["bash"].as_str()
                    && !twinops_lines(script).is_empty()
                {
                    let vars = BTreeMap::from([(
                        "variables.HUB_NAME".to_string(),
                        "production".to_string(),
                    )]);
                    let key = (file.to_string(), macros(&step_name(&step), &vars, false));
                    assert!(self.covered.contains(&key), "{file}: {:?} never ran", key.1);
                }
            }
        }
    }
}

fn only(jobs: Vec<JobRun>) -> JobRun {
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    jobs.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_azure_pipelines_plan_comment_apply_behind_the_environment_and_report_drift() {
    let mut az = Azure::new();
    let manifests = repo_root().join("manifests");
    let fleet = std::fs::read_to_string(manifests.join("fleet.yaml")).unwrap();
    let thermostats = std::fs::read_to_string(manifests.join("thermostats.yaml")).unwrap();
    az.checkout.write("manifests/fleet.yaml", &fleet);
    let first = az.checkout.commit("the fleet's first manifests");
    let track = |az: &Azure| {
        az.checkout
            .git(&["update-ref", "refs/remotes/origin/main", "main"])
    };
    track(&az);

    // CI on main: the Plan stage installs twinops, plans (changes: the hub is empty) and keeps
    // the plan; the Apply stage (after the environment's approval) applies exactly it.
    let jobs = az.run("apply.yml", &Reason::ci());
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let plan = &jobs[0];
    assert!(plan.ok, "{plan:#?}");
    assert_eq!(plan.codes("twinops --version"), [0]);
    assert_eq!(plan.codes("Plan"), [2]);
    let apply = &jobs[1];
    assert!(apply.ok, "{apply:#?}");
    assert_eq!(apply.codes("Apply the reviewed plan"), [0]);
    // The deployment job's agent restores the Plan job's install from the cache (keyed by the
    // exact version).
    let install = apply.step(&format!("Install twinops {}", pinned_version()));
    assert!(
        install.ok && install.log.contains("already installed"),
        "{install:#?}"
    );
    let drift = only(az.run("drift.yml", &Reason::schedule()));
    assert!(drift.ok, "{drift:#?}");
    assert_eq!(drift.codes("Drift"), [0]);

    // A pull request adds the thermostats: the plan covers them only (--changed-from the target
    // branch) and the comment carries the hub's marker.
    az.checkout
        .git(&["checkout", "-q", "-b", "thermostats", "main"]);
    az.checkout
        .write("manifests/thermostats.yaml", &thermostats);
    az.checkout.commit("twenty thermostats");
    az.checkout.pull_request_merge("thermostats", "main");
    let job = only(az.run("plan.yml", &Reason::pull_request("main", 12)));
    assert!(job.ok, "{job:#?}");
    assert_eq!(job.codes("Validate"), [0]);
    assert_eq!(job.codes("Plan"), [2]);
    assert!(job.step("Comment the plan on the pull request").ran);
    let plan: Value =
        serde_json::from_slice(&std::fs::read(az.checkout.dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["scope"]["changed_from"], first.as_str(), "origin/main");
    let comment = az.checkout.read("comment.md");
    assert!(
        comment.starts_with("<!-- twinops-plan:production -->\n### twinops plan for"),
        "{comment}"
    );
    assert!(
        !comment.contains("myFirstDevice"),
        "only the change is planned"
    );
    for f in ["plan.json", "comment.md"] {
        assert_no_secret(f, &az.checkout.read(f), &az.hubs);
    }

    // Merged: CI on main plans and applies the thermostats; run again, nothing to apply, so the
    // Apply stage (and its approval) is skipped.
    az.checkout.merge("thermostats");
    track(&az);
    let jobs = az.run("apply.yml", &Reason::ci());
    assert_eq!(jobs[0].codes("Plan"), [2]);
    assert_eq!(jobs[1].codes("Apply the reviewed plan"), [0]);
    assert!(jobs.iter().all(|j| j.ok), "{jobs:#?}");
    let jobs = az.run("apply.yml", &Reason::ci());
    assert_eq!(jobs.len(), 1, "no Apply stage without changes: {jobs:#?}");
    assert_eq!(jobs[0].codes("Plan"), [0]);

    // Drift in the hub fails the scheduled run with an error in its log.
    other_writer(
        &az.hubs["IOTHUB_CONNECTION_STRING"].emulator,
        "therm-002",
        serde_json::json!({"properties": {"desired": {"telemetryInterval": 5}}}),
    )
    .await;
    let drift = only(az.run("drift.yml", &Reason::schedule()));
    assert!(!drift.ok);
    assert_eq!(drift.codes("Drift"), [2]);
    let log = &drift.step("Drift").log;
    assert!(
        log.contains("##vso[task.logissue type=error]Drift on production"),
        "{log}"
    );
    assert!(az.checkout.read("drift.md").contains("therm-002"));

    az.assert_every_twinops_step_ran(&["plan.yml", "apply.yml", "drift.yml"]);
}

#[test]
fn the_azure_pipelines_trigger_as_documented_and_pass_secrets_through_env_only() {
    let trigger = |name: &str| example(name)["trigger"].clone();
    let pr = |name: &str| example(name)["pr"].clone();
    assert_eq!(trigger("plan.yml"), "none");
    assert_eq!(pr("plan.yml")["branches"]["include"][0], "main");
    assert_eq!(trigger("apply.yml")["branches"]["include"][0], "main");
    assert_eq!(pr("apply.yml"), "none");
    assert_eq!(trigger("drift.yml"), "none");
    assert_eq!(pr("drift.yml"), "none");
    assert!(example("drift.yml")["schedules"][0]["cron"].is_string());
    assert_eq!(example("drift.yml")["schedules"][0]["always"], true);
    // The apply runs in a deployment job behind an environment (its approval check).
    let apply = example("apply.yml");
    let deploy = &apply["stages"][1]["jobs"][0];
    assert!(deploy["deployment"].is_string());
    assert_eq!(deploy["environment"], "iothub-production");
    // What the Plan stage publishes is what the deployment downloads.
    let published = &apply["stages"][0]["jobs"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("publish").is_some())
        .unwrap()["artifact"];
    let downloaded = &deploy["strategy"]["runOnce"]["deploy"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("download").is_some())
        .unwrap()["artifact"];
    assert_eq!(published, downloaded);
    // The comment goes through the REST API's threads, found by the marker it writes.
    let plan =
        std::fs::read_to_string(repo_root().join("examples/azure-pipelines/plan.yml")).unwrap();
    assert!(plan.contains("/pullRequests/$SYSTEM_PULLREQUEST_PULLREQUESTID/threads"));
    assert_eq!(plan.matches("<!-- twinops-plan:$HUB_NAME -->").count(), 2);
    for name in PIPELINES {
        let source =
            std::fs::read_to_string(repo_root().join("examples/azure-pipelines").join(name))
                .unwrap();
        let p = example(name);
        let dir = repo_root().join("examples/azure-pipelines");
        let mut steps: Vec<Value> = p["steps"].as_array().cloned().unwrap_or_default();
        for stage in p["stages"].as_array().into_iter().flatten() {
            for job in stage["jobs"].as_array().unwrap() {
                steps.extend(
                    job["steps"]
                        .as_array()
                        .or_else(|| job.pointer("/strategy/runOnce/deploy/steps")?.as_array())
                        .unwrap()
                        .iter()
                        .cloned(),
                );
            }
        }
        let steps = expanded(&steps, &dir);
        let install = steps.iter().position(|s| {
            s["displayName"]
                .as_str()
                .is_some_and(|d| d.starts_with("Install twinops"))
        });
        for (i, step) in steps.iter().enumerate() {
            let Some(script) = step["bash"].as_str() else {
                continue;
            };
            assert!(
                !script.contains("$(IOTHUB") && !script.contains("$TWINOPS_HUB"),
                "{name}: a script reads the connection string"
            );
            if !twinops_lines(script).is_empty() {
                assert!(
                    install.is_some_and(|at| at < i),
                    "{name}: twinops runs before it is installed"
                );
            }
            for (k, v) in step["env"].as_object().into_iter().flatten() {
                if text(v).contains("IOTHUB_CONNECTION_STRING") {
                    assert_eq!(k, "TWINOPS_HUB", "{name}");
                }
            }
        }
        assert!(!source.contains("cargo install"), "{name} builds twinops");
    }
}
