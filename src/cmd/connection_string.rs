//! `twinops connection-string DEVICE[/MODULE]`: prints one identity's connection string, the only command
//! that outputs a key, and only when asked for it by name. The host has no port: the device SDK always
//! connects to 8883.

use anyhow::{Context, bail};

use super::{ExitStatus, connect};
use crate::cli::{ConnectionStringArgs, Format};
use crate::output;
use twinops_iothub::connection_string::{DeviceConnectionString, Secret};
use twinops_iothub::wire::Authentication;

fn primary_key(a: Option<Authentication>, what: &str) -> anyhow::Result<Secret> {
    let a = a.unwrap_or_default();
    if let Some(kind) = a
        .kind
        .filter(|k| *k != twinops_core::model::AuthenticationType::Sas)
    {
        bail!(
            "{what} authenticates with `{}`, not a key; it has no key connection string",
            kind.as_str()
        );
    }
    a.symmetric_key
        .and_then(|k| k.primary_key)
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .with_context(|| format!("the hub returned no key for {what}"))
}

pub async fn run(args: &ConnectionStringArgs) -> anyhow::Result<ExitStatus> {
    let (device, module) = match args.identity.split_once('/') {
        Some((d, m)) => (d.to_string(), Some(m.to_string())),
        None => (args.identity.clone(), None),
    };
    let conn = connect::connect(&args.hub, None).await?;
    let key = match &module {
        Some(m) => conn
            .hub
            .get_module(&device, m)
            .await
            .map(|x| x.authentication)
            .with_context(|| format!("reading module `{device}/{m}`")),
        None => conn
            .hub
            .get_device(&device)
            .await
            .map(|x| x.authentication)
            .with_context(|| format!("reading device `{device}`")),
    };
    let host = conn.hub.host().to_string();
    conn.close().await;
    let key = primary_key(key?, &args.identity)?;
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_string();
    let cs = DeviceConnectionString {
        host,
        device_id: device,
        module_id: module,
        key,
    };
    match args.output.format {
        Format::Json => {
            let doc = serde_json::json!({
                "identity": args.identity,
                "connection_string": cs.to_secret_string().expose(),
            });
            let mut buf = Vec::new();
            twinops_core::render::json(&mut buf, &doc)?;
            output::data(&String::from_utf8_lossy(&buf));
        }
        Format::Text | Format::Markdown => {
            output::data(&format!("{}\n", cs.to_secret_string().expose()));
        }
    }
    Ok(ExitStatus::Success)
}
