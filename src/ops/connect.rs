//! Hub selection (SPEC §4): `--hub`, else `TWINOPS_HUB`, else `IOTHUB_CONNECTION_STRING`; `local[:DIR]`
//! starts the embedded emulator in-process and reaches it through the same HTTPS client and SAS auth.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::cli::{AuthMode, HubArgs, Pace};
use crate::hub::pace::{Pacer, parse_rate_flag, tier_rates};
use crate::hub::{ClientOptions, Hub, OpClass};
use crate::output;
use twinops_core::plan::secret::DigestKey;
use twinops_iothub::connection_string::{Secret, ServiceConnectionString};
use twinops_iothub::host::is_loopback;

/// The default state directory of `--hub local`.
pub(crate) const LOCAL_STATE: &str = ".twinops/hub";

/// A connected hub; keeps the embedded emulator alive while in use.
pub(crate) struct Connection {
    pub hub: Hub,
    /// What a saved plan is bound to: HostName with port, or the embedded hub's ID.
    pub identity: String,
    /// Whether requests carry SAS tokens (not an Entra ID bearer token): IoT Hub refuses some
    /// operations under SAS that it allows under Entra ID.
    pub sas: bool,
    /// The key of every digest of a sensitive value in plans (SPEC §13). Under token auth without
    /// `TWINOPS_PLAN_KEY` it is this run's alone, so `plan --out` refuses to save a plan with
    /// sensitive values there (`cmd::plan`).
    pub digest_key: DigestKey,
    embedded: Option<twinops_emulator::Running>,
}

/// The plan key's environment variable.
pub(crate) const PLAN_KEY_VAR: &str = "TWINOPS_PLAN_KEY";

/// The digest key of this run: from `TWINOPS_PLAN_KEY` when set, else from the hub's SAS key
/// (the same hub gives the same key on every run), else (token auth) a random key of this run
/// alone.
fn digest_key(sas_key: Option<&Secret>) -> DigestKey {
    if let Ok(k) = std::env::var(PLAN_KEY_VAR)
        && !k.is_empty()
    {
        return DigestKey::derive(k.as_bytes());
    }
    match sas_key {
        Some(k) => DigestKey::derive(k.expose().as_bytes()),
        None => DigestKey::derive(&rand::random::<[u8; 32]>()),
    }
}

impl Connection {
    /// Stops the embedded hub, if any, after its writes are durable.
    pub(crate) async fn close(self) {
        if let Some(e) = self.embedded {
            e.shutdown().await;
        }
    }
}

fn hub_string(common: &HubArgs) -> anyhow::Result<String> {
    if let Some(h) = &common.hub {
        return Ok(h.clone());
    }
    if let Ok(h) = std::env::var("IOTHUB_CONNECTION_STRING")
        && !h.trim().is_empty()
    {
        return Ok(h);
    }
    bail!(
        "no hub given; pass --hub (or set TWINOPS_HUB or IOTHUB_CONNECTION_STRING) with either\n  \
         a connection string: --hub 'HostName=<hub>.azure-devices.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>'\n  \
         or the embedded local hub: --hub local (state in {LOCAL_STATE}) or --hub local:DIR"
    )
}

/// The pacer for this run: explicit `--rate`/`--tier`, else S1 one unit for remote hubs, else none.
pub(crate) fn pacer(pace: Option<&Pace>, local: bool) -> anyhow::Result<Option<Arc<Pacer>>> {
    let mut rates: Vec<(OpClass, crate::hub::pace::Rate)> = Vec::new();
    if let Some(p) = pace {
        if let Some(t) = &p.tier {
            rates = tier_rates(t, p.units).map_err(anyhow::Error::msg)?;
        }
        for r in &p.rates {
            let (c, rate) = parse_rate_flag(r).map_err(anyhow::Error::msg)?;
            rates.retain(|(k, _)| *k != c);
            rates.push((c, rate));
        }
    }
    if rates.is_empty() {
        if local {
            return Ok(None);
        }
        rates = tier_rates("S1", 1).map_err(anyhow::Error::msg)?;
    }
    Ok(Some(Arc::new(Pacer::new(&rates))))
}

/// Connects to the selected hub.
pub(crate) async fn connect(common: &HubArgs, pace: Option<&Pace>) -> anyhow::Result<Connection> {
    let hub = hub_string(common)?;
    let ca_pem = common.ca_cert.as_deref().map(Hub::read_ca).transpose()?;
    if hub == "local" || hub.starts_with("local:") {
        let dir = hub
            .strip_prefix("local:")
            .filter(|d| !d.is_empty())
            .unwrap_or(LOCAL_STATE);
        let running = twinops_emulator::start(twinops_emulator::Config {
            state: Some(PathBuf::from(dir)),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..twinops_emulator::Config::default()
        })
        .await
        .with_context(|| format!("starting the embedded hub with state in `{dir}`"))?;
        let cs = ServiceConnectionString::parse(running.connection_string().expose())
            .context("the embedded hub's connection string")?;
        let mut client = Hub::new(
            &cs,
            None,
            ClientOptions {
                ca_pem: Some(running.ca_pem().as_bytes().to_vec()),
                ..ClientOptions::default()
            },
        )?;
        if let Some(p) = pacer(pace, true)? {
            client.set_pace(p);
        }
        client.set_notify(Arc::new(|line| output::progress(&line)));
        return Ok(Connection {
            identity: format!("local:{}", running.hub_id()),
            sas: true,
            digest_key: digest_key(cs.key.as_ref()),
            hub: client,
            embedded: Some(running),
        });
    }
    let cs = ServiceConnectionString::parse(&hub).context("reading the hub connection string")?;
    let bearer = match common.auth {
        AuthMode::Sas => None,
        AuthMode::Token => Some(Secret::new(
            std::env::var("TWINOPS_ACCESS_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .context("--auth token needs TWINOPS_ACCESS_TOKEN (e.g. from `az account get-access-token --resource https://iothubs.azure.net`)")?
                .trim()
                .to_string(),
        )),
    };
    let mut client = Hub::new(
        &cs,
        bearer,
        ClientOptions {
            ca_pem,
            ..ClientOptions::default()
        },
    )?;
    if let Some(p) = pacer(pace, is_loopback(&cs.host))? {
        client.set_pace(p);
    }
    client.set_notify(Arc::new(|line| output::progress(&line)));
    let sas = matches!(common.auth, AuthMode::Sas);
    Ok(Connection {
        identity: cs.host.clone(),
        sas,
        digest_key: digest_key(cs.key.as_ref().filter(|_| sas)),
        hub: client,
        embedded: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("localhost:8443"));
        assert!(is_loopback("127.0.0.1:1"));
        assert!(!is_loopback("hub.azure-devices.net"));
    }

    #[test]
    fn remote_hubs_default_to_s1_pacing_and_local_to_none() {
        assert!(pacer(None, true).unwrap().is_none());
        let p = pacer(None, false).unwrap().unwrap();
        assert_eq!(p.rate(OpClass::TwinWrite), Some(50.0));
    }
}
