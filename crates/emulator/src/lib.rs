//! The local IoT Hub emulator (SPEC §9): IoT Hub's service REST API over HTTPS with durable state.
//!
//! - [`start`] runs a hub in this process from a [`Config`] and returns a [`Running`] handle
//!   (`--hub local:DIR` and tests use it).
//! - [`cli`] is the command line of `twinops emulator` and of the standalone `twinops-emulator`
//!   binary (`src/main.rs`): the flags, and the run loop that prints
//!   [`Running::startup_lines`] through the caller's console and waits for SIGINT/SIGTERM.
//! - [`spawn`] owns the startup lines' format and runs the real binary as a child process for
//!   tests and benchmarks, reading those lines back ([`spawn::Spawned`]).
//! - `server` is the HTTP edge (TLS, routes, the auth/stats gate), `store` the durable state in
//!   redb, `twin` and `identity` IoT Hub's write rules, `bulk` the bulk registry call, `pager` query
//!   paging over `query` (the query language), `auth` SAS policies, `stats` request accounting,
//!   `tls` the certificate and accepting connections over it (REST and MQTT), `error` IoT Hub's
//!   error responses, `configuration` automatic configurations (applied by a loop started here),
//!   `jobs` export jobs (writing the registry to a blob container through the Blob REST API),
//!   `throttle` quota simulation, `faults` fault injection, `clock` the one place that reads the
//!   wall clock, `private` the state's owner-only files and directories. Durations in flags
//!   follow `twinops_iothub::duration`.
//! - `mqtt` is the device side (MQTT over TLS on `--mqtt`, default 8883 for `twinops emulator`,
//!   off for the embedded hub, and MQTT over WebSockets on the HTTPS listener whenever the device
//!   side runs), fed by the store's desired-change announcements; `presence` records which
//!   identities are connected.

// What code outside this crate does not use is `pub(crate)`, so rustc reports what is dead.
#![warn(unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use twinops_iothub::connection_string::Secret;

mod auth;
mod bulk;
pub mod cli;
mod clock;
mod configuration;
mod device_actions;
mod error;
pub mod faults;
mod identity;
mod jobs;
pub mod mqtt;
mod pager;
mod presence;
mod private;
pub mod query;
mod server;
pub mod spawn;
mod stats;
mod store;
pub mod throttle;
mod tls;
mod twin;

/// IoT Hub applies configurations every 5 minutes; a local hub does it sooner.
pub(crate) const DEFAULT_CONFIG_INTERVAL: Duration = Duration::from_secs(5);

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// State directory; `None` keeps everything in memory.
    pub state: Option<PathBuf>,
    pub listen: SocketAddr,
    pub hostname: String,
    /// Fixes the `iothubowner` primary key (base64).
    pub owner_key: Option<String>,
    pub query_page_max: usize,
    pub bearer_token: Option<String>,
    pub faults: Option<faults::FaultSpec>,
    pub faults_seed: Option<u64>,
    pub throttle: Option<throttle::ThrottleSpec>,
    /// How often automatic configurations are applied (also right after each change).
    pub config_interval: Duration,
    /// The MQTT device side's address; `None` (the default) serves no MQTT.
    pub mqtt: Option<SocketAddr>,
    /// A simulated fleet on the MQTT side.
    pub simulate: Option<mqtt::simulate::Fleet>,
    /// How long the query index trails the store (`--index-lag`; zero: not at all).
    pub index_lag: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: "localhost".into(),
            owner_key: None,
            query_page_max: server::DEFAULT_PAGE,
            bearer_token: None,
            faults: None,
            faults_seed: None,
            throttle: None,
            config_interval: DEFAULT_CONFIG_INTERVAL,
            mqtt: None,
            simulate: None,
            index_lag: Duration::ZERO,
        }
    }
}

/// A hub running in this process.
pub struct Running {
    host: String,
    hub_id: String,
    ca_pem_path: PathBuf,
    ca_pem: String,
    keys: Vec<(String, Secret)>,
    hub: Option<Arc<server::Hub>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// The MQTT listener's address, when it serves.
    mqtt_addr: Option<SocketAddr>,
    /// The MQTT side and the simulated fleet.
    device_tasks: Vec<JoinHandle<()>>,
    /// A directory of our own to remove at the end (the certificate of an in-memory hub).
    scratch: Option<PathBuf>,
    /// What did not start as asked (e.g. a busy MQTT port), for the caller to show.
    warnings: Vec<String>,
}

impl Running {
    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host)
    }

    /// `localhost:PORT`: the connection string's HostName.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `iothubowner` connection string (contains the key: never print it).
    pub fn connection_string(&self) -> Secret {
        let key = self.policy_key(auth::OWNER).map(|k| k.expose().to_string());
        Secret::new(format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host,
            auth::OWNER,
            key.unwrap_or_default()
        ))
    }

    /// The three startup lines `twinops emulator` prints (format in [`spawn`], which reads them
    /// back). They contain the owner key: print them only where a local test hub is described.
    pub fn startup_lines(&self) -> String {
        spawn::startup_lines(&self.url(), &self.connection_string(), &self.ca_pem_path)
    }

    /// The PEM file a client must trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the MQTT device side listens (`None`: off, or its port was busy).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// `wss://localhost:PORT/$iothub/websocket`, where devices connect with MQTT over
    /// WebSockets (`None` when the device side is off).
    pub fn websocket_url(&self) -> Option<String> {
        let on = self.hub.as_ref().is_some_and(|h| h.devices.is_some());
        on.then(|| format!("wss://{}{}", self.host, mqtt::websocket::PATH))
    }

    /// What did not start as asked, one sentence each (e.g. the MQTT port was busy).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A random ID created with the state and kept in it (what a saved plan binds to).
    pub fn hub_id(&self) -> &str {
        &self.hub_id
    }

    /// The primary key of a shared access policy (`iothubowner`, `service`, `registryRead`,
    /// `registryReadWrite`).
    pub fn policy_key(&self, name: &str) -> Option<&Secret> {
        self.keys.iter().find(|(n, _)| n == name).map(|(_, k)| k)
    }

    /// Stops accepting, drops open connections and closes the state, so the same directory can
    /// be opened again at once.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for task in self.device_tasks.drain(..) {
            let _ = task.await;
        }
        // Store calls run on blocking threads that hold the hub; wait for the last one so the
        // database file is closed (and unlocked) when this returns.
        if let Some(hub) = self.hub.take() {
            let mut hub = hub;
            for _ in 0..200 {
                match Arc::try_unwrap(hub) {
                    Ok(h) => {
                        drop(h);
                        break;
                    }
                    Err(h) => {
                        hub = h;
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for task in self.device_tasks.drain(..) {
            task.abort();
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `bytes` random bytes as lowercase hex (hub IDs, tracking IDs, scratch directory names).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn check_owner_key(key: &str) -> anyhow::Result<()> {
    let n = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| anyhow::anyhow!("--owner-key is not valid base64"))?
        .len();
    anyhow::ensure!(
        (16..=64).contains(&n),
        "--owner-key must decode to 16 to 64 bytes, got {n}"
    );
    Ok(())
}

/// Starts a hub and returns once it accepts connections.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    check(&config)?;
    let state = open_state(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let host = format!("{}:{}", config.hostname, addr.port());
    if let Some(dir) = &config.state {
        write_connection_strings(dir, &host, &state.keys)?;
    }
    let (tls_dir, scratch) = tls_home(&config);
    let identity = tls::load_or_create(&tls_dir, &config.hostname, &addr.ip().to_string())?;
    let mut warnings = Vec::new();
    let mqtt_listener = match config.mqtt {
        Some(at) => bind_mqtt(at, &mut warnings).await,
        None => None,
    };
    let mqtt_addr = mqtt_listener.as_ref().and_then(|l| l.local_addr().ok());
    anyhow::ensure!(
        config.simulate.is_none() || config.mqtt.is_some(),
        "--simulate-devices needs the MQTT side: drop `--mqtt off`"
    );

    let authority = auth::Authority {
        hosts: vec![host.clone(), format!("{}:{}", addr.ip(), addr.port())],
        policies: state.policies,
        bearer: config.bearer_token.clone().map(Secret::new),
    };
    let (stop, stopped) = watch::channel(false);
    let jobs = jobs::Jobs::open(&state.store, stopped.clone())?;
    // The device side runs unless `--mqtt off`, also when the MQTT port was busy: MQTT over
    // WebSockets on the HTTPS port needs no port of its own.
    let (devices, presence) = match config.mqtt {
        Some(_) => {
            let (d, p) = mqtt::Devices::new(stopped.clone());
            (Some(d), Some(p))
        }
        None => (None, None),
    };
    let hub = Arc::new(server::Hub {
        store: state.store,
        authority,
        stats: stats::Stats::default(),
        query_page_max: config.query_page_max,
        throttle: config.throttle.as_ref().map(throttle::Throttle::new),
        faults: config
            .faults
            .clone()
            .map(|f| faults::Faults::new(f, config.faults_seed)),
        configurations_changed: tokio::sync::Notify::new(),
        mqtt_addr,
        devices,
        jobs,
    });
    let app = server::app(hub.clone());
    let mut device_tasks = start_device_side(&config, &hub, mqtt_listener, &identity, &stopped)?;
    if let Some(presence) = presence {
        device_tasks.push(tokio::spawn(mqtt::run_broker(
            hub.clone(),
            presence,
            stopped.clone(),
        )));
    }
    let serving = server::serve(
        listener,
        identity.server_config.clone(),
        app,
        stopped.clone(),
    );
    if let Some(step) = hub.store.index_step() {
        device_tasks.push(tokio::spawn(lag_index(hub.clone(), step, stopped.clone())));
    }
    let applying = apply_configurations(hub.clone(), config.config_interval, stopped);
    let task = tokio::spawn(async move {
        tokio::join!(serving, applying);
    });
    Ok(Running {
        host,
        hub_id: state.hub_id,
        ca_pem_path: identity.cert_path,
        ca_pem: identity.cert_pem,
        keys: state.keys,
        hub: Some(hub),
        stop,
        task: Some(task),
        mqtt_addr,
        device_tasks,
        scratch,
        warnings,
    })
}

/// Refuses a configuration no hub can run, before anything is opened.
fn check(config: &Config) -> anyhow::Result<()> {
    if let Some(k) = &config.owner_key {
        check_owner_key(k)?;
    }
    anyhow::ensure!(
        config.query_page_max > 0,
        "--query-page-max must be at least 1"
    );
    anyhow::ensure!(
        !config.config_interval.is_zero(),
        "--config-interval must be longer than 0"
    );
    Ok(())
}

/// What a hub keeps across restarts, read (or created) at start.
struct State {
    store: store::Store,
    hub_id: String,
    /// Each policy's primary key, by policy name.
    keys: Vec<(String, Secret)>,
    policies: Vec<auth::Policy>,
}

/// Opens the store, marks every identity disconnected (no connection outlives a restart) and
/// reads the hub ID and policy keys, creating them on first start (`--owner-key` fixes the
/// owner's primary key).
fn open_state(config: &Config) -> anyhow::Result<State> {
    let mut store = store::Store::open(config.state.as_deref())?;
    store.set_index_lag(config.index_lag);
    let meta = |key: &str, init: fn() -> String| {
        store
            .meta_or_init(key, init)
            .map_err(|e| anyhow::anyhow!("reading the state: {e}"))
    };
    let hub_id = meta("hub_id", || random_hex(16))?;
    store
        .reset_presence()
        .map_err(|e| anyhow::anyhow!("resetting device connection states: {e}"))?;
    let mut keys = Vec::new();
    let mut policies = Vec::new();
    for (name, permissions) in auth::POLICIES {
        let mut primary = meta(&format!("key:{name}:primary"), identity::generate_key)?;
        let secondary = meta(&format!("key:{name}:secondary"), identity::generate_key)?;
        if *name == auth::OWNER
            && let Some(k) = &config.owner_key
        {
            primary = k.trim().to_string();
        }
        keys.push(((*name).to_string(), Secret::new(primary.clone())));
        policies.push(auth::Policy {
            name,
            permissions,
            primary: Secret::new(primary),
            secondary: Secret::new(secondary),
        });
    }
    Ok(State {
        store,
        hub_id,
        keys,
        policies,
    })
}

/// Where the TLS files live: under `--state`, or for an in-memory hub in a scratch directory of
/// its own (the second value), removed at shutdown.
fn tls_home(config: &Config) -> (PathBuf, Option<PathBuf>) {
    match &config.state {
        Some(dir) => (dir.join("tls"), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "twinops-emulator-{}-{}",
                std::process::id(),
                random_hex(6)
            ));
            (dir.clone(), Some(dir))
        }
    }
}

/// Starts the MQTT side on `listener` (when it is bound) and the simulated fleet (when asked
/// for), as tasks that end when `stopped` turns true.
fn start_device_side(
    config: &Config,
    hub: &Arc<server::Hub>,
    listener: Option<tokio::net::TcpListener>,
    identity: &tls::Identity,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if let Some(l) = listener {
        let tls = mqtt::tls_config(&identity.server_config);
        tasks.push(tokio::spawn(mqtt::serve(
            l,
            tls,
            hub.clone(),
            stopped.clone(),
        )));
    }
    if let (Some(fleet), Some(at)) = (config.simulate.clone(), hub.mqtt_addr) {
        let ip = if at.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            at.ip()
        };
        let target = mqtt::simulate::Target {
            addr: SocketAddr::new(ip, at.port()),
            hostname: config.hostname.clone(),
            tls: mqtt::client::tls_trusting(&identity.cert_pem)?,
        };
        tasks.push(tokio::spawn(mqtt::simulate::run(
            fleet,
            hub.clone(),
            target,
            stopped.clone(),
        )));
    }
    Ok(tasks)
}

/// The configuration loop: a reconcile pass now, then every `interval` and after each change to
/// a configuration, until `stop`.
async fn apply_configurations(
    hub: Arc<server::Hub>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let h = hub.clone();
        match tokio::task::spawn_blocking(move || configuration::pass::run(&h.store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "applying configurations failed"),
            Err(e) => tracing::warn!(error = %e, "the configuration worker failed"),
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(interval) => {}
            _ = hub.configurations_changed.notified() => {}
        }
    }
}

/// The file under `--state` that holds every policy's connection string, one a line, so a person
/// can try a client with less than `iothubowner` (a policy lacking ServiceConnect, say).
pub const CONNECTION_STRINGS_FILE: &str = "connection-strings.txt";

/// Writes [`CONNECTION_STRINGS_FILE`] (mode 0600: it holds keys), rewritten on every start since
/// the host's port may change.
fn write_connection_strings(
    dir: &Path,
    host: &str,
    keys: &[(String, Secret)],
) -> anyhow::Result<()> {
    let mut text = String::new();
    for (name, key) in keys {
        text.push_str(&format!(
            "HostName={host};SharedAccessKeyName={name};SharedAccessKey={}\n",
            key.expose()
        ));
    }
    private::write(&dir.join(CONNECTION_STRINGS_FILE), text.as_bytes())
}

/// `--index-lag`: snapshots the store for queries every `step`, until `stop`.
async fn lag_index(hub: Arc<server::Hub>, step: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = hub.store.snapshot_index() {
            tracing::warn!(error = %e, "snapshotting the query index failed");
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(step) => {}
        }
    }
}

/// Binds the MQTT port; a port that cannot be bound (busy, no permission) is a warning, and
/// devices connect over WebSockets on the HTTPS port only.
async fn bind_mqtt(at: SocketAddr, warnings: &mut Vec<String>) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(at).await {
        Ok(l) => Some(l),
        Err(e) => {
            warnings.push(format!(
                "MQTT over TLS not started: cannot listen on {at} ({e}); devices connect over \
                 WebSockets on the HTTPS port only"
            ));
            None
        }
    }
}
