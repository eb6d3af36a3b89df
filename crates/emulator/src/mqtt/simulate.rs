//! A simulated fleet (`--simulate-devices`, `--simulate-offline`): virtual devices and modules that
//! connect to the emulator's own MQTT port over real TLS, as separate clients would, and echo every
//! desired patch into their reported properties after a delay (equal values, the simplest
//! acknowledgement `drift` recognises). On connect each one reads its twin and echoes desired
//! values its reported properties do not match yet.
//!
//! The roster is re-read every two seconds, so identities created later (`twinops apply`) join;
//! identities chosen to stay offline never connect. Edge system modules (no keys) are skipped.

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
use super::topic;
use crate::clock;
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

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// A glob over `deviceId` (devices) and `deviceId/moduleId` (modules); `*` does not cross
    /// `/`. `all` selects every identity.
    pub pattern: String,
    /// Between a desired patch and its echo.
    pub delay: Duration,
    pub offline: Option<Offline>,
}

impl Fleet {
    /// Parses `PATTERN|all[:DELAY]` (DELAY in `twinops_iothub::duration`'s grammar: `500ms`,
    /// `2s`, `1h`, bare seconds; default 1s) and the optional `--simulate-offline` value (`5%` or
    /// `d1,d2/m1`). A suffix after the last `:` that is no duration belongs to the pattern.
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
            matcher(pattern)?;
        }
        let offline = offline.map(parse_offline).transpose()?;
        Ok(Fleet {
            pattern: pattern.to_string(),
            delay: delay.unwrap_or(Duration::from_secs(1)),
            offline,
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

fn parse_offline(s: &str) -> Result<Offline, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let p: u8 = p
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| format!("--simulate-offline `{s}`: a percentage is 0% to 100%"))?;
        return Ok(Offline::Percent(p));
    }
    Ok(Offline::Named(
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    ))
}

fn matcher(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("--simulate-devices pattern `{pattern}`: {e}"))
}

/// FNV-1a: the same identities stay offline from one run to the next.
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
        matcher(&fleet.pattern).ok()
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
            if running.contains_key(&name)
                || resting.contains_key(&name)
                || !fleet.selects(&name, matcher.as_ref())
            {
                continue;
            }
            let device = Device {
                who,
                hub: hub.clone(),
                target: target.clone(),
                delay: fleet.delay,
            };
            running.insert(name, tokio::spawn(device.run(stop.clone())));
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

/// Every identity with keys, by name.
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
        if !who.module.as_deref().is_some_and(|m| m.starts_with('$')) {
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
            None => self.hub.store.device(&self.who.device).ok()?.auth,
            Some(m) => self.hub.store.module(&self.who.device, m).ok()?.auth,
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
        let mut echoes: VecDeque<(Instant, JsonMap)> = VecDeque::new();
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        let mut rid = 0u64;
        loop {
            let next_echo = echoes.front().map(|(at, _)| *at);
            tokio::select! {
                p = c.recv() => {
                    let Some(Packet::Publish(p)) = p else {
                        if p.is_none() { return End::Reconnect; }
                        continue;
                    };
                    let body: Option<JsonMap> = serde_json::from_slice::<Value>(&p.payload)
                        .ok()
                        .and_then(|v| v.as_object().cloned());
                    if topic::parse_response(&p.topic).is_some_and(|(s, r)| s == 200 && r == GET_RID) {
                        if let Some(patch) = body.and_then(|b| unacknowledged(&b)) {
                            echoes.push_back((Instant::now() + self.delay, patch));
                        }
                    } else if p.topic.starts_with("$iothub/twin/PATCH/properties/desired/")
                        && let Some(mut patch) = body
                    {
                        patch.remove("$version");
                        echoes.push_back((Instant::now() + self.delay, patch));
                    }
                }
                _ = sleep_until(next_echo) => {
                    if let Some((_, patch)) = echoes.pop_front() {
                        rid += 1;
                        let topic = format!("$iothub/twin/PATCH/properties/reported/?$rid=sim-{rid}");
                        let body = Value::Object(patch).to_string();
                        if c.publish(&topic, body.as_bytes()).await.is_err() {
                            return End::Reconnect;
                        }
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

/// From a twin GET answer: the desired values the reported ones do not equal yet, if any.
fn unacknowledged(twin: &JsonMap) -> Option<JsonMap> {
    let desired = twin.get("desired")?.as_object()?;
    let reported = twin.get("reported").and_then(Value::as_object);
    let patch: JsonMap = desired
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .filter(|(k, v)| reported.and_then(|r| r.get(*k)) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!patch.is_empty()).then_some(patch)
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
        let m = matcher(&f.pattern).unwrap();
        assert!(f.selects("sim-1", Some(&m)));
        assert!(!f.selects("sim-1/m", Some(&m)));
        assert!(!f.selects("sim-2", Some(&m)), "named offline");
        let all = Fleet::parse("all", Some("50%")).unwrap();
        let online = (0..1000)
            .filter(|i| all.selects(&format!("d{i}"), None))
            .count();
        assert!((400..600).contains(&online), "{online}");
    }

    #[test]
    fn only_unacknowledged_desired_values_are_echoed() {
        let twin = json!({"desired": {"a": 1, "b": 2, "$version": 3}, "reported": {"a": 1, "$version": 2}});
        assert_eq!(
            unacknowledged(twin.as_object().unwrap()),
            Some(json!({"b": 2}).as_object().unwrap().clone())
        );
        let done = json!({"desired": {"a": 1, "$version": 3}, "reported": {"a": 1}});
        assert_eq!(unacknowledged(done.as_object().unwrap()), None);
    }
}
