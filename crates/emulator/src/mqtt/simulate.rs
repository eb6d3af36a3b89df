//! A simulated fleet (`--simulate-devices`, `--simulate-offline`, `--simulate-reject`,
//! `--simulate-ack`): virtual devices and modules that connect to the emulator's own MQTT port over
//! real TLS, as separate clients would, and answer every desired patch in their reported properties
//! after a delay: by echoing it (equal values, the simplest acknowledgement `drift` recognises), with
//! the Plug and Play acknowledgement `{"value", "ac": 200, "ad", "av"}`, or, for the identities chosen
//! to reject, with the Plug and Play rejection `{"value": <old value>, "ac": 400, "ad", "av"}`. On
//! connect each one reads its twin and answers the desired values it has not answered in its form yet,
//! as a device app does after `get_twin`; so a device that rejected acknowledges once the emulator
//! restarts without `--simulate-reject` for it.
//!
//! Each device keeps its own copy of its twin (from the GET, then every patch), so that an answer
//! carries a key's whole desired value and its reported patch turns the old entry into exactly the
//! new one (nested keys it no longer has are sent as `null`).
//!
//! The roster is re-read every two seconds, so identities created later (`twinops apply`) join;
//! identities chosen to stay offline never connect. A simulated edge device's `$edgeAgent` connects
//! too (with the device's key, as IoT Edge does) and answers each deployment as IoT Edge's agent
//! does (`edge_agent`); `$edgeHub` is not simulated.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{Client, ConnectError, device_connect};
use super::codec::Packet;
use super::credentials::Who;
use super::edge_agent;
use super::topic;
use crate::clock;
use crate::configuration::deployment::EDGE_AGENT;
use crate::server::Hub;
use twinops_iothub::connection_string::Secret;
use twinops_iothub::duration;
use twinops_iothub::wire::JsonMap;

/// How often the roster is re-read.
const ROSTER_INTERVAL: Duration = Duration::from_secs(2);
/// How long an identity that was refused (disabled, deleted, no key) waits before another try.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// Lifetime of a simulated device's token; it reconnects with a fresh one before the end.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Which identities stay offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offline {
    /// This percentage of identities, chosen by a stable hash of their names.
    Percent(u8),
    /// These identities (`d` or `d/m`).
    Named(HashSet<String>),
}

/// Which identities reject every desired change (`--simulate-reject`).
#[derive(Debug, Clone)]
pub enum Reject {
    /// This percentage of identities, by the stable hash `--simulate-offline N%` uses but from the
    /// other end of its range, so the two sets do not overlap while their shares add up to 100% or
    /// less.
    Percent(u8),
    /// The identities matching any of these `--simulate-devices` patterns (`all` included).
    Matching(Patterns),
}

/// Globs in `--simulate-devices`' syntax, kept with their text (for equality and messages).
#[derive(Debug, Clone)]
pub struct Patterns {
    texts: Vec<String>,
    all: bool,
    set: globset::GlobSet,
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Patterns) -> bool {
        self.texts == other.texts
    }
}

impl PartialEq for Reject {
    fn eq(&self, other: &Reject) -> bool {
        match (self, other) {
            (Reject::Percent(a), Reject::Percent(b)) => a == b,
            (Reject::Matching(a), Reject::Matching(b)) => a == b,
            _ => false,
        }
    }
}

/// How the identities that do not reject acknowledge (`--simulate-ack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ack {
    /// The reported value equals the desired one.
    #[default]
    Echo,
    /// The Plug and Play form `{"value", "ac": 200, "ad", "av"}`.
    Pnp,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// A glob over `deviceId` (devices) and `deviceId/moduleId` (modules); `*` does not cross
    /// `/`. `all` selects every identity.
    pub pattern: String,
    /// Between a desired patch and its answer.
    pub delay: Duration,
    pub offline: Option<Offline>,
    pub reject: Option<Reject>,
    pub ack: Ack,
}

/// The `ad` of a simulated rejection.
pub const REJECTED: &str = "rejected by simulated device";
/// The `ad` of a simulated Plug and Play acknowledgement.
pub const ACCEPTED: &str = "accepted by simulated device";

/// How one identity answers desired values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Echo,
    Accept,
    Reject,
}

impl Fleet {
    /// Parses `PATTERN|all[:DELAY]` (DELAY in `twinops_iothub::duration`'s grammar: `500ms`,
    /// `2s`, `1h`, bare seconds; default 1s) and the optional `--simulate-offline` value (`5%` or
    /// `d1,d2/m1`). A suffix after the last `:` that is no duration belongs to the pattern.
    /// Nobody rejects and acknowledgements echo; set `reject` and `ack` for more.
    pub(crate) fn parse(devices: &str, offline: Option<&str>) -> Result<Fleet, String> {
        let (pattern, delay) = match devices
            .rsplit_once(':')
            .and_then(|(p, d)| Some((p, duration::parse(d).ok()?)))
        {
            Some((p, d)) => (p, Some(d)),
            None => (devices, None),
        };
        if pattern.is_empty() {
            return Err("--simulate-devices needs a pattern or `all`".into());
        }
        if pattern != "all" {
            matcher("--simulate-devices", pattern)?;
        }
        let offline = offline.map(parse_offline).transpose()?;
        Ok(Fleet {
            pattern: pattern.to_string(),
            delay: delay.unwrap_or(Duration::from_secs(1)),
            offline,
            reject: None,
            ack: Ack::Echo,
        })
    }

    fn selects(&self, name: &str, matcher: Option<&globset::GlobMatcher>) -> bool {
        let wanted = matcher.is_none_or(|m| m.is_match(name));
        let offline = match &self.offline {
            None => false,
            Some(Offline::Named(ids)) => ids.contains(name),
            Some(Offline::Percent(p)) => stable_hash(name) % 100 < u64::from(*p),
        };
        wanted && !offline
    }

    /// How the identity `name` (`d` or `d/m`) answers.
    fn answer(&self, name: &str) -> Answer {
        let rejects = match &self.reject {
            None => false,
            Some(Reject::Percent(p)) => stable_hash(name) % 100 >= 100 - u64::from(*p),
            Some(Reject::Matching(p)) => p.all || p.set.is_match(name),
        };
        match (rejects, self.ack) {
            (true, _) => Answer::Reject,
            (false, Ack::Echo) => Answer::Echo,
            (false, Ack::Pnp) => Answer::Accept,
        }
    }
}

/// `--simulate-devices PATTERN|all[:DELAY]` (no offline set).
impl std::str::FromStr for Fleet {
    type Err = String;

    fn from_str(s: &str) -> Result<Fleet, String> {
        Fleet::parse(s, None)
    }
}

/// `--simulate-offline PERCENT%|ID,...`.
impl std::str::FromStr for Offline {
    type Err = String;

    fn from_str(s: &str) -> Result<Offline, String> {
        parse_offline(s)
    }
}

/// `--simulate-reject PATTERN,...|N%`: `5%`, or comma-separated patterns of `--simulate-devices`'
/// syntax (a comma inside `{a,b}` belongs to the glob).
impl std::str::FromStr for Reject {
    type Err = String;

    fn from_str(s: &str) -> Result<Reject, String> {
        if let Some(p) = s.trim().strip_suffix('%') {
            return percent("--simulate-reject", s, p).map(Reject::Percent);
        }
        let texts: Vec<String> = split_patterns(s)
            .into_iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if texts.is_empty() {
            return Err("--simulate-reject needs patterns or a percentage".into());
        }
        let mut set = globset::GlobSetBuilder::new();
        for t in texts.iter().filter(|t| *t != "all") {
            set.add(glob("--simulate-reject", t)?);
        }
        let set = set
            .build()
            .map_err(|e| format!("--simulate-reject `{s}`: {e}"))?;
        Ok(Reject::Matching(Patterns {
            all: texts.iter().any(|t| t == "all"),
            texts,
            set,
        }))
    }
}

/// `--simulate-ack echo|pnp`.
impl std::str::FromStr for Ack {
    type Err = String;

    fn from_str(s: &str) -> Result<Ack, String> {
        match s.trim() {
            "echo" => Ok(Ack::Echo),
            "pnp" => Ok(Ack::Pnp),
            _ => Err(format!("--simulate-ack `{s}`: `echo` or `pnp`")),
        }
    }
}

fn parse_offline(s: &str) -> Result<Offline, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        return percent("--simulate-offline", s, p).map(Offline::Percent);
    }
    Ok(Offline::Named(
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    ))
}

fn percent(flag: &str, whole: &str, number: &str) -> Result<u8, String> {
    number
        .trim()
        .parse()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("{flag} `{whole}`: a percentage is 0% to 100%"))
}

/// Splits at the commas outside `{...}` alternations.
fn split_patterns(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn glob(flag: &str, pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{flag} pattern `{pattern}`: {e}"))
}

fn matcher(flag: &str, pattern: &str) -> Result<globset::GlobMatcher, String> {
    glob(flag, pattern).map(|g| g.compile_matcher())
}

/// FNV-1a: the same identities stay offline (or reject) from one run to the next.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where and how the virtual devices connect.
pub(crate) struct Target {
    /// The MQTT listener.
    pub(crate) addr: SocketAddr,
    /// The hub's host name (certificate name, username, token resource).
    pub(crate) hostname: String,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// Runs the fleet until `stop` turns true.
pub(crate) async fn run(
    fleet: Fleet,
    hub: Arc<Hub>,
    target: Target,
    mut stop: watch::Receiver<bool>,
) {
    let matcher = if fleet.pattern == "all" {
        None
    } else {
        matcher("--simulate-devices", &fleet.pattern).ok()
    };
    let target = Arc::new(target);
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut resting: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(ROSTER_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let h = hub.clone();
        let Ok(Ok(roster)) = tokio::task::spawn_blocking(move || roster(&h)).await else {
            continue;
        };
        let now = Instant::now();
        running.retain(|name, task| {
            if task.is_finished() {
                resting.insert(name.clone(), now + REFUSED_RETRY);
                false
            } else {
                true
            }
        });
        resting.retain(|_, until| *until > now);
        for who in roster {
            let name = who.name();
            // An edge device's `$edgeAgent` runs when its device is simulated (or named itself).
            let edge_agent = who.module.as_deref() == Some(EDGE_AGENT);
            let chosen = |n: &str| fleet.selects(n, matcher.as_ref());
            let selected = chosen(&name) || (edge_agent && chosen(&who.device));
            if running.contains_key(&name) || resting.contains_key(&name) || !selected {
                continue;
            }
            let answer = match fleet.answer(&name) {
                Answer::Reject => Answer::Reject,
                _ if edge_agent => fleet.answer(&who.device),
                a => a,
            };
            let device = Device {
                who,
                hub: hub.clone(),
                target: target.clone(),
                delay: fleet.delay,
                answer,
                edge_agent,
            };
            running.insert(name, tokio::spawn(device.run(stop.clone())));
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

/// Every identity with keys, and edge devices' `$edgeAgent` (which signs with its device's keys),
/// by name.
fn roster(hub: &Hub) -> Result<Vec<Who>, crate::error::Error> {
    let mut out = Vec::new();
    hub.store.scan_raw(|modules, key, _| {
        let who = match key.split_once('\0') {
            Some((d, m)) if modules => Who {
                device: d.to_string(),
                module: Some(m.to_string()),
            },
            _ => Who {
                device: key.to_string(),
                module: None,
            },
        };
        let system = who.module.as_deref().is_some_and(|m| m.starts_with('$'));
        if !system || who.module.as_deref() == Some(EDGE_AGENT) {
            out.push(who);
        }
    })?;
    Ok(out)
}

struct Device {
    who: Who,
    hub: Arc<Hub>,
    target: Arc<Target>,
    delay: Duration,
    answer: Answer,
    /// Answers as IoT Edge's agent does (`edge_agent::report`), not key by key.
    edge_agent: bool,
}

/// Why a session ended.
enum End {
    Stopped,
    /// The connection dropped or the token is due: connect again.
    Reconnect,
}

impl Device {
    fn key(&self) -> Option<Secret> {
        let auth = match &self.who.module {
            // IoT Edge's system modules authenticate with their device's keys.
            Some(m) if !m.starts_with('$') => self.hub.store.module(&self.who.device, m).ok()?.auth,
            _ => self.hub.store.device(&self.who.device).ok()?.auth,
        };
        auth.primary_key.map(Secret::new)
    }

    /// Connects and serves until stopped; ends when the hub refuses it (the roster retries).
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(key) = self.key() else {
                return;
            };
            let expiry = clock::unix_now() + TOKEN_TTL.as_secs();
            let Ok(connect) = device_connect(&self.target.hostname, &self.who, &key, expiry) else {
                return;
            };
            let t = &self.target;
            match Client::connect(t.addr, &t.hostname, t.tls.clone(), &connect).await {
                Ok(client) => {
                    backoff = Duration::from_millis(500);
                    let due = Instant::now() + TOKEN_TTL - Duration::from_secs(300);
                    if let End::Stopped = self.serve(client, &mut stop, due).await {
                        return;
                    }
                }
                Err(ConnectError::Refused(_)) => return,
                Err(e) => {
                    tracing::debug!(device = %self.who.name(), error = %e, "simulated device could not connect");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn serve(&self, mut c: Client, stop: &mut watch::Receiver<bool>, due: Instant) -> End {
        const GET_RID: &str = "sim-get";
        let subscribed = c
            .subscribe(&[topic::DESIRED_CHANGES, topic::TWIN_RESPONSES])
            .await;
        let asked = c
            .publish(&format!("$iothub/twin/GET/?$rid={GET_RID}"), b"")
            .await;
        if subscribed.is_err() || asked.is_err() {
            return End::Reconnect;
        }
        // Known once the GET is answered; patches that come before it wait in `early`.
        let mut twin: Option<Twin> = None;
        let mut early: Vec<JsonMap> = Vec::new();
        let mut answers: VecDeque<(Instant, JsonMap)> = VecDeque::new();
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        let mut rid = 0u64;
        loop {
            let next_answer = answers.front().map(|(at, _)| *at);
            tokio::select! {
                p = c.recv() => {
                    let Some(Packet::Publish(p)) = p else {
                        if p.is_none() { return End::Reconnect; }
                        continue;
                    };
                    let body: Option<JsonMap> = serde_json::from_slice::<Value>(&p.payload)
                        .ok()
                        .and_then(|v| v.as_object().cloned());
                    let at = Instant::now() + self.delay;
                    if topic::parse_response(&p.topic).is_some_and(|(s, r)| s == 200 && r == GET_RID) {
                        let Some(mut t) = body.as_ref().and_then(Twin::from_get) else {
                            continue;
                        };
                        let mut targets = if self.edge_agent { JsonMap::new() } else { t.unanswered(self.answer) };
                        for patch in early.drain(..) {
                            if version(&patch) > t.version() {
                                targets.extend(t.receive(self.answer, &patch));
                            }
                        }
                        if self.edge_agent {
                            targets = edge_agent::report(&t.desired, self.answer == Answer::Reject);
                        }
                        if !targets.is_empty() {
                            answers.push_back((at, targets));
                        }
                        twin = Some(t);
                    } else if p.topic.starts_with("$iothub/twin/PATCH/properties/desired/")
                        && let Some(patch) = body
                    {
                        match twin.as_mut() {
                            Some(t) => {
                                let mut targets = t.receive(self.answer, &patch);
                                if self.edge_agent {
                                    targets = edge_agent::report(&t.desired, self.answer == Answer::Reject);
                                }
                                answers.push_back((at, targets));
                            }
                            None => early.push(patch),
                        }
                    }
                }
                _ = sleep_until(next_answer) => {
                    let (Some((_, targets)), Some(t)) = (answers.pop_front(), twin.as_mut()) else {
                        continue;
                    };
                    let patch = t.report(&targets);
                    if patch.is_empty() {
                        continue;
                    }
                    rid += 1;
                    let topic = format!("$iothub/twin/PATCH/properties/reported/?$rid=sim-{rid}");
                    let body = Value::Object(patch).to_string();
                    if c.publish(&topic, body.as_bytes()).await.is_err() {
                        return End::Reconnect;
                    }
                }
                _ = ping.tick() => {
                    if c.send(&Packet::PingReq).await.is_err() {
                        return End::Reconnect;
                    }
                }
                _ = tokio::time::sleep_until(due) => return End::Reconnect,
                _ = stop.changed() => {
                    let _ = c.send(&Packet::Disconnect).await;
                    return End::Stopped;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A desired section's or patch's `$version` (0 when it has none).
fn version(section: &JsonMap) -> i64 {
    section.get("$version").and_then(Value::as_i64).unwrap_or(0)
}

/// A simulated device's own copy of its twin: the desired section with its `$version`, and the
/// reported properties without `$` keys.
#[derive(Debug, Clone, PartialEq)]
struct Twin {
    desired: JsonMap,
    reported: JsonMap,
}

impl Twin {
    /// From a twin GET answer `{"desired": {...}, "reported": {...}}`.
    fn from_get(body: &JsonMap) -> Option<Twin> {
        let desired = body.get("desired")?.as_object()?.clone();
        let mut reported = body
            .get("reported")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        reported.retain(|k, _| !k.starts_with('$'));
        Some(Twin { desired, reported })
    }

    fn version(&self) -> i64 {
        version(&self.desired)
    }

    /// The answers (key → reported entry) to the desired values not answered in `how`'s form yet.
    fn unanswered(&self, how: Answer) -> JsonMap {
        let v = self.version();
        self.desired
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .filter(|(k, d)| !answered(how, d, self.reported.get(*k), v))
            .map(|(k, d)| (k.clone(), answer(how, Some(d), self.reported.get(k), v)))
            .collect()
    }

    /// Takes in a desired patch; returns the answers to its top-level keys, each carrying the key's
    /// whole desired value after the patch (`null` for a removed one).
    fn receive(&mut self, how: Answer, patch: &JsonMap) -> JsonMap {
        let v = version(patch);
        let mut doc = Value::Object(std::mem::take(&mut self.desired));
        json_patch::merge(&mut doc, &Value::Object(patch.clone()));
        if let Value::Object(merged) = doc {
            self.desired = merged;
        }
        self.desired.insert("$version".into(), v.into());
        patch
            .keys()
            .filter(|k| !k.starts_with('$'))
            .map(|k| {
                let a = answer(how, self.desired.get(k), self.reported.get(k), v);
                (k.clone(), a)
            })
            .collect()
    }

    /// The reported patch that turns the current entries of `targets`' keys into the targets,
    /// applied to the copy; empty when they already are.
    fn report(&mut self, targets: &JsonMap) -> JsonMap {
        let patch: JsonMap = targets
            .iter()
            .filter_map(|(k, t)| Some((k.clone(), entry_patch(self.reported.get(k), t)?)))
            .collect();
        let mut doc = Value::Object(std::mem::take(&mut self.reported));
        json_patch::merge(&mut doc, &Value::Object(patch.clone()));
        if let Value::Object(merged) = doc {
            self.reported = merged;
        }
        patch
    }
}

/// The reported entry with which `how` answers a desired key whose whole value is now `desired`
/// (`None`: removed) at desired `$version` `version`, `last` being the key's reported entry:
/// the value itself (echo), `{"value", "ac": 200, "ad", "av"}` (accept; a removal is answered by
/// removing the entry), or `{"value": <old value>, "ac": 400, "ad", "av"}` (reject).
fn answer(how: Answer, desired: Option<&Value>, last: Option<&Value>, version: i64) -> Value {
    match (how, desired) {
        (Answer::Echo, d) | (Answer::Accept, d @ None) => d.cloned().unwrap_or(Value::Null),
        (Answer::Accept, Some(d)) => {
            serde_json::json!({"value": d, "ac": 200, "ad": ACCEPTED, "av": version})
        }
        (Answer::Reject, _) => {
            serde_json::json!({"value": running(last), "ac": 400, "ad": REJECTED, "av": version})
        }
    }
}

/// Whether `last` already answers `desired` at `version` as `how` would: equal (echo); the
/// acknowledgement of this value at this version or later (accept); a rejection at this version or
/// later, or no change at all, the device already running that value (reject).
fn answered(how: Answer, desired: &Value, last: Option<&Value>, version: i64) -> bool {
    let pnp = last.and_then(plug_and_play);
    match how {
        Answer::Echo => last == Some(desired),
        Answer::Accept => pnp.is_some_and(|(v, ac, av)| {
            v == Some(desired) && (200..300).contains(&ac) && av >= version
        }),
        Answer::Reject => {
            running(last) == *desired || pnp.is_some_and(|(_, ac, av)| ac >= 400 && av >= version)
        }
    }
}

/// `(value, ac, av)` of a Plug and Play entry.
fn plug_and_play(entry: &Value) -> Option<(Option<&Value>, i64, i64)> {
    let ac = entry.get("ac")?.as_i64()?;
    let av = entry.get("av")?.as_i64()?;
    Some((entry.get("value"), ac, av))
}

/// The value a device runs for a key, from the key's reported entry: a Plug and Play entry's
/// `value`, or the entry itself; `null` for none.
fn running(last: Option<&Value>) -> Value {
    match last {
        None => Value::Null,
        Some(e) => match plug_and_play(e) {
            Some((v, _, _)) => v.cloned().unwrap_or(Value::Null),
            None => e.clone(),
        },
    }
}

/// The merge-patch entry that turns `current` into `target`, or `None` when it already is. A
/// `null` inside an object cannot be written (merge patches read it as a removal), so such keys are
/// left out: a rejection with no old value reports no `value`.
fn entry_patch(current: Option<&Value>, target: &Value) -> Option<Value> {
    match (current, target) {
        (c, t) if c == Some(t) => None,
        (None, Value::Null) => None,
        (Some(Value::Object(c)), Value::Object(t)) => {
            let mut out: JsonMap = t
                .iter()
                .filter_map(|(k, tv)| Some((k.clone(), entry_patch(c.get(k), tv)?)))
                .collect();
            for k in c.keys().filter(|k| !t.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (_, Value::Object(t)) => Some(without_nulls(t)),
        (_, t) => Some(t.clone()),
    }
}

fn without_nulls(m: &JsonMap) -> Value {
    Value::Object(
        m.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::Object(o) => (k.clone(), without_nulls(o)),
                _ => (k.clone(), v.clone()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_parse_pattern_delay_and_offline_sets() {
        let f = Fleet::parse("all", None).unwrap();
        assert_eq!(
            (f.pattern.as_str(), f.delay),
            ("all", Duration::from_secs(1))
        );
        let f = Fleet::parse("sim-*:250ms", Some("10%")).unwrap();
        assert_eq!(f.pattern, "sim-*");
        assert_eq!(f.delay, Duration::from_millis(250));
        assert_eq!(f.offline, Some(Offline::Percent(10)));
        let f = Fleet::parse("a:b", Some("d1, d2/m")).unwrap();
        assert_eq!(
            f.pattern, "a:b",
            "a suffix that is no duration is part of the pattern"
        );
        assert_eq!(
            f.offline,
            Some(Offline::Named(
                ["d1".to_string(), "d2/m".to_string()].into()
            ))
        );
        assert!(Fleet::parse("", None).is_err());
        assert!(Fleet::parse("all", Some("101%")).is_err());
    }

    #[test]
    fn delays_follow_the_shared_duration_grammar() {
        let delay = |text: &str| Fleet::parse(text, None).unwrap().delay;
        assert_eq!(delay("all:1h"), Duration::from_secs(3600));
        assert_eq!(delay("all:1.5s"), Duration::from_millis(1500));
        assert_eq!(delay("all:2min"), Duration::from_secs(120));
        assert_eq!(delay("all:3"), Duration::from_secs(3), "bare seconds");
    }

    #[test]
    fn patterns_do_not_cross_the_module_separator() {
        let f = Fleet::parse("sim-*", Some("sim-2")).unwrap();
        let m = matcher("--simulate-devices", &f.pattern).unwrap();
        assert!(f.selects("sim-1", Some(&m)));
        assert!(!f.selects("sim-1/m", Some(&m)));
        assert!(!f.selects("sim-2", Some(&m)), "named offline");
        let all = Fleet::parse("all", Some("50%")).unwrap();
        let online = (0..1000)
            .filter(|i| all.selects(&format!("d{i}"), None))
            .count();
        assert!((400..600).contains(&online), "{online}");
    }

    fn map(v: Value) -> JsonMap {
        v.as_object().unwrap().clone()
    }

    fn twin(v: Value) -> Twin {
        Twin::from_get(&map(v)).unwrap()
    }

    #[test]
    fn reject_parses_patterns_with_alternations_and_percentages() {
        let r: Reject = "d1, sim-{a,b}*,dev/mod".parse().unwrap();
        let Reject::Matching(p) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(p.texts, ["d1", "sim-{a,b}*", "dev/mod"]);
        let f = Fleet {
            reject: Some(r),
            ..Fleet::parse("all", None).unwrap()
        };
        assert_eq!(f.answer("d1"), Answer::Reject);
        assert_eq!(f.answer("sim-b2"), Answer::Reject);
        assert_eq!(f.answer("sim-c2"), Answer::Echo);
        assert_eq!(f.answer("sim-a1/m"), Answer::Echo, "`*` does not cross `/`");
        assert_eq!(f.answer("dev/mod"), Answer::Reject);
        assert_eq!(
            f.answer("dev"),
            Answer::Echo,
            "a module pattern spares its device"
        );
        assert_eq!("7%".parse::<Reject>(), Ok(Reject::Percent(7)));
        assert_eq!(" 100% ".parse::<Reject>(), Ok(Reject::Percent(100)));
        let all: Reject = "all".parse().unwrap();
        let f = Fleet {
            reject: Some(all),
            ack: Ack::Pnp,
            ..Fleet::parse("all", None).unwrap()
        };
        assert_eq!(f.answer("x/y"), Answer::Reject);
    }

    #[test]
    fn bad_reject_and_ack_values_are_named() {
        let e = "101%".parse::<Reject>().unwrap_err();
        assert!(e.contains("--simulate-reject `101%`"), "{e}");
        let e = "x%".parse::<Reject>().unwrap_err();
        assert!(e.contains("a percentage is 0% to 100%"), "{e}");
        let e = "ok,sim-[".parse::<Reject>().unwrap_err();
        assert!(e.contains("--simulate-reject pattern `sim-[`"), "{e}");
        assert!(" , ".parse::<Reject>().is_err());
        assert_eq!("echo".parse::<Ack>(), Ok(Ack::Echo));
        assert_eq!("pnp".parse::<Ack>(), Ok(Ack::Pnp));
        let e = "ack".parse::<Ack>().unwrap_err();
        assert!(e.contains("--simulate-ack `ack`"), "{e}");
    }

    #[test]
    fn reject_percent_is_stable_and_apart_from_the_offline_share() {
        let f = Fleet {
            reject: Some(Reject::Percent(30)),
            ..Fleet::parse("all", Some("30%")).unwrap()
        };
        let names: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
        let rejecting: Vec<&String> = names
            .iter()
            .filter(|n| f.answer(n) == Answer::Reject)
            .collect();
        assert!((220..380).contains(&rejecting.len()), "{}", rejecting.len());
        assert!(
            rejecting.iter().all(|n| f.selects(n, None)),
            "none is offline"
        );
        let again: Vec<&String> = names
            .iter()
            .filter(|n| f.clone().answer(n) == Answer::Reject)
            .collect();
        assert_eq!(rejecting, again);
        let none = Fleet {
            reject: Some(Reject::Percent(0)),
            ..f.clone()
        };
        assert!(names.iter().all(|n| none.answer(n) == Answer::Echo));
    }

    #[test]
    fn answers_are_the_value_the_plug_and_play_acknowledgement_or_the_rejection() {
        let last = json!({"value": 5, "ac": 200, "ad": "x", "av": 2});
        assert_eq!(
            answer(Answer::Echo, Some(&json!(7)), Some(&last), 3),
            json!(7)
        );
        assert_eq!(
            answer(Answer::Accept, Some(&json!({"eco": true})), None, 3),
            json!({"value": {"eco": true}, "ac": 200, "ad": "accepted by simulated device", "av": 3})
        );
        assert_eq!(
            answer(Answer::Reject, Some(&json!(7)), Some(&last), 3),
            json!({"value": 5, "ac": 400, "ad": "rejected by simulated device", "av": 3})
        );
        assert_eq!(
            answer(Answer::Reject, Some(&json!(7)), Some(&json!(4)), 9),
            json!({"value": 4, "ac": 400, "ad": "rejected by simulated device", "av": 9}),
            "an echoed value is the old value"
        );
        assert_eq!(
            answer(Answer::Reject, Some(&json!(7)), None, 3)["value"],
            Value::Null
        );
        assert_eq!(answer(Answer::Accept, None, Some(&last), 3), Value::Null);
        assert_eq!(answer(Answer::Echo, None, Some(&json!(1)), 3), Value::Null);
    }

    #[test]
    fn on_connect_only_values_not_answered_in_the_devices_form_are_answered() {
        let t = twin(json!({
            "desired": {"a": 1, "b": 2, "c": 3, "d": 4, "$version": 4},
            "reported": {"a": 1, "b": {"value": 2, "ac": 200, "av": 4},
                         "c": {"value": 0, "ac": 400, "av": 4}, "d": 0, "$version": 2}
        }));
        let keys = |m: JsonMap| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(t.unanswered(Answer::Echo)), ["b", "c", "d"]);
        assert_eq!(keys(t.unanswered(Answer::Accept)), ["a", "c", "d"]);
        assert_eq!(
            keys(t.unanswered(Answer::Reject)),
            ["d"],
            "it rejects no value it already runs (a, b); c was rejected at this version"
        );
        let later = twin(json!({
            "desired": {"b": 2, "c": 3, "$version": 5},
            "reported": {"b": {"value": 2, "ac": 200, "av": 4}, "c": {"value": 0, "ac": 400, "av": 4}}
        }));
        assert_eq!(keys(later.unanswered(Answer::Accept)), ["b", "c"]);
        assert_eq!(keys(later.unanswered(Answer::Reject)), ["c"]);
        let done = twin(json!({"desired": {"a": 1, "$version": 3}, "reported": {"a": 1}}));
        assert!(done.unanswered(Answer::Echo).is_empty());
    }

    #[test]
    fn a_patch_is_answered_with_whole_values_and_reported_as_the_difference() {
        let mut t = twin(json!({
            "desired": {"mode": {"eco": true, "fan": 1}, "$version": 2},
            "reported": {"mode": {"eco": true, "fan": 1}, "$version": 2}
        }));
        let targets = t.receive(
            Answer::Accept,
            &map(json!({"mode": {"fan": 2}, "$version": 3})),
        );
        assert_eq!(
            targets,
            map(json!({"mode": {"value": {"eco": true, "fan": 2}, "ac": 200,
                                "ad": ACCEPTED, "av": 3}}))
        );
        assert_eq!(
            t.report(&targets),
            map(
                json!({"mode": {"eco": null, "fan": null, "value": {"eco": true, "fan": 2},
                                "ac": 200, "ad": ACCEPTED, "av": 3}})
            )
        );
        assert_eq!(t.reported, targets, "the copy follows");
        assert!(t.report(&targets).is_empty(), "nothing left to report");
        let targets = t.receive(Answer::Reject, &map(json!({"mode": null, "$version": 4})));
        assert_eq!(
            targets,
            map(json!({"mode": {"value": {"eco": true, "fan": 2}, "ac": 400,
                                "ad": REJECTED, "av": 4}}))
        );
        assert_eq!(
            t.report(&targets),
            map(json!({"mode": {"ac": 400, "ad": REJECTED, "av": 4}}))
        );
        let mut fresh = twin(json!({"desired": {"$version": 1}, "reported": {}}));
        let targets = fresh.receive(Answer::Reject, &map(json!({"x": 1, "$version": 2})));
        assert_eq!(
            fresh.report(&targets),
            map(json!({"x": {"ac": 400, "ad": REJECTED, "av": 2}})),
            "no old value: a merge patch cannot write `\"value\": null`"
        );
        let targets = fresh.receive(Answer::Echo, &map(json!({"x": 2, "$version": 3})));
        assert_eq!(fresh.report(&targets), map(json!({"x": 2})));
    }
}
