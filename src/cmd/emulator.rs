//! `twinops emulator`: runs the local IoT Hub from its flags, prints the three startup lines and waits
//! for SIGINT/SIGTERM. The hub itself is the `twinops-emulator` library.

use twinops_emulator::Config;

use super::ExitStatus;
use crate::cli::EmulatorArgs;
use crate::output;

fn config(a: &EmulatorArgs) -> Config {
    Config {
        state: a.state.clone(),
        listen: a.listen,
        hostname: a.hostname.clone(),
        owner_key: a.owner_key.clone(),
        query_page_max: a.query_page_max,
        bearer_token: a.bearer_token.clone(),
        faults: a.faults.clone(),
        faults_seed: a.faults_seed,
        throttle: a.throttle.clone(),
        config_interval: a.config_interval,
        index_lag: a.index_lag,
        mqtt: a.mqtt.0,
        simulate: a
            .simulate_devices
            .clone()
            .map(|f| twinops_emulator::mqtt::simulate::Fleet {
                offline: a.simulate_offline.clone(),
                reject: a.simulate_reject.clone(),
                ack: a.simulate_ack,
                ..f
            }),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `twinops emulator` until interrupted.
pub(crate) async fn run(args: &EmulatorArgs) -> anyhow::Result<ExitStatus> {
    let running = twinops_emulator::start(config(args)).await?;
    for w in running.warnings() {
        output::talk(&format!("warning: {w}"));
    }
    // The emulator's own startup lines are the one place a key is printed: they describe a
    // local test hub, and scripts read the connection string from here.
    output::data(&running.startup_lines());
    if let Some(at) = running.mqtt_addr() {
        output::talk(&format!(
            "twinops emulator: MQTT device side on mqtts://{at} (TLS, same certificate)"
        ));
    }
    interrupted().await;
    running.shutdown().await;
    Ok(ExitStatus::Success)
}
