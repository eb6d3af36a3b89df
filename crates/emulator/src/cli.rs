//! The emulator's command line, defined once for `twinops emulator` and the standalone
//! `twinops-emulator` binary: the clap flags ([`EmulatorArgs`], whose doc comments are the help
//! text) and [`run`], which starts a hub from them, hands the startup lines to a [`Console`] and
//! serves until SIGINT or SIGTERM.
//!
//! It prints nothing itself: each binary passes a [`Console`] that prints its own way (`twinops`
//! through its output module), so stdout carries exactly the three startup lines.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use clap::Args;

use crate::Config;
use crate::mqtt::simulate::{Ack, Fleet, Offline, Reject};

/// `twinops emulator` flags.
#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// Directory of the durable state (default: in memory, lost on exit).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Host name the hub calls itself (in its URL, connection string and certificate).
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// Fixes the `iothubowner` key (base64); otherwise one is generated and kept in the state.
    #[arg(long, hide_env_values = true)]
    pub owner_key: Option<String>,
    /// A bearer token accepted as hub-wide owner access (tests the Entra ID path).
    #[arg(long, hide_env_values = true)]
    pub bearer_token: Option<String>,
    /// Largest query page served, whatever `x-ms-max-item-count` asks for.
    #[arg(long, default_value_t = crate::server::DEFAULT_PAGE)]
    pub query_page_max: usize,
    /// Injected faults, `KIND:PROBABILITY` comma-separated: 429, 429ra, 500, 503, reset,
    /// reset-after, and `latency:5-50ms` (or `latency:5ms`, `latency:0.5:5-50ms`).
    #[arg(long, value_parser = crate::faults::FaultSpec::parse)]
    pub faults: Option<crate::faults::FaultSpec>,
    /// Seeds the fault injection's random draws (reproducible for sequential requests).
    #[arg(long)]
    pub faults_seed: Option<u64>,
    /// IoT Hub quotas: a tier (`S1:1`, `S3:2`) and/or per-class rates
    /// (`registry_write=6000/min,twin_write=500/s`).
    #[arg(long, value_parser = crate::throttle::ThrottleSpec::parse)]
    pub throttle: Option<crate::throttle::ThrottleSpec>,
    /// How often automatic configurations are applied (`5s`, `500ms`, `1m`, bare seconds).
    #[arg(long, default_value = "5s", value_parser = twinops_iothub::duration::parse)]
    pub config_interval: std::time::Duration,
    /// How long the query index trails writes, as IoT Hub's is eventually consistent: queries
    /// show a write only after DURATION, and deleted identities stay in them as long (`0`: none).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = twinops_iothub::duration::parse)]
    pub index_lag: std::time::Duration,
    /// Device side: MQTT over TLS on ADDR:PORT, or `off`. If the port is busy, the emulator warns
    /// and serves REST alone.
    #[arg(long, value_name = "ADDR:PORT|off", default_value = crate::mqtt::DEFAULT_ADDR)]
    pub mqtt: crate::mqtt::Listen,
    /// Simulates the identities matching PATTERN (`deviceId` or `deviceId/moduleId` globs, `all`
    /// for every one) as devices connected over MQTT that answer desired values in reported
    /// properties after DELAY (e.g. `500ms`, `2s`, `1h`; default 1s): the current ones when they
    /// connect, then every patch (see `--simulate-ack` and `--simulate-reject`).
    #[arg(long, value_name = "PATTERN|all[:DELAY]")]
    pub simulate_devices: Option<Fleet>,
    /// Simulated identities that stay offline: a percentage (`5%`, chosen by a stable hash of
    /// the ID) or a list of IDs (`d1,d2/m1`).
    #[arg(long, value_name = "PERCENT%|ID,...", requires = "simulate_devices")]
    pub simulate_offline: Option<Offline>,
    /// Simulated identities that reject every desired change: patterns of `--simulate-devices`'
    /// syntax (`d1,sim-*,dev/mod`, `all`) or a percentage (`10%`, chosen by the same stable hash as
    /// `--simulate-offline`, from the other end, so the two shares do not overlap). They report
    /// each changed key as `{"value": <old value>, "ac": 400, "ad": "rejected by simulated
    /// device", "av": <desired $version>}`.
    #[arg(
        long,
        value_name = "PATTERN,...|PERCENT%",
        requires = "simulate_devices"
    )]
    pub simulate_reject: Option<Reject>,
    /// How the other simulated identities acknowledge a desired change: `echo` reports the desired
    /// value itself; `pnp` reports the Plug and Play form `{"value": <value>, "ac": 200, "ad":
    /// "accepted by simulated device", "av": <desired $version>}`.
    #[arg(
        long,
        value_name = "echo|pnp",
        default_value = "echo",
        requires = "simulate_devices"
    )]
    pub simulate_ack: Ack,
}

impl EmulatorArgs {
    /// The hub these flags describe.
    fn config(&self) -> Config {
        Config {
            state: self.state.clone(),
            listen: self.listen,
            hostname: self.hostname.clone(),
            owner_key: self.owner_key.clone(),
            query_page_max: self.query_page_max,
            bearer_token: self.bearer_token.clone(),
            faults: self.faults.clone(),
            faults_seed: self.faults_seed,
            throttle: self.throttle.clone(),
            config_interval: self.config_interval,
            index_lag: self.index_lag,
            mqtt: self.mqtt.0,
            simulate: self.simulate_devices.clone().map(|f| Fleet {
                offline: self.simulate_offline.clone(),
                reject: self.simulate_reject.clone(),
                ack: self.simulate_ack,
                ..f
            }),
        }
    }
}

/// Where [`run`] writes: data goes to stdout, talk to stderr (the binary decides how).
pub trait Console {
    /// Data for stdout: the three startup lines, which scripts read. They hold the owner key.
    fn data(&self, text: &str);
    /// One line of talk for stderr: warnings and the MQTT address.
    fn talk(&self, line: &str);
}

/// Runs the emulator from its flags until SIGINT or SIGTERM, then shuts it down cleanly (so the
/// state can be reopened at once and an in-memory hub's scratch directory is removed).
pub async fn run(args: &EmulatorArgs, console: &impl Console) -> anyhow::Result<()> {
    let running = crate::start(args.config()).await?;
    // Listen before the startup lines go out: whoever reads them may signal at once, and a
    // signal that came before the handler would end the process without a clean shutdown.
    let interrupted = interrupted();
    for w in running.warnings() {
        console.talk(&format!("warning: {w}"));
    }
    // The emulator's own startup lines are the one place a key is printed: they describe a
    // local test hub, and scripts read the connection string from here.
    console.data(&running.startup_lines());
    if let Some(at) = running.mqtt_addr() {
        console.talk(&format!(
            "twinops emulator: MQTT device side on mqtts://{at} (TLS, same certificate)"
        ));
    }
    if let Some(url) = running.websocket_url() {
        console.talk(&format!(
            "twinops emulator: MQTT over WebSockets on {url} (subprotocol mqtt)"
        ));
    }
    interrupted.await;
    running.shutdown().await;
    Ok(())
}

/// Listens for SIGINT and SIGTERM from now on; the future resolves on the first.
fn interrupted() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
