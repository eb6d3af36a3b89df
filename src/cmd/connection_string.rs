//! `twinops connection-string DEVICE[/MODULE]`: prints one identity's connection string, the only command
//! that outputs a key, and only when asked for it by name. The host has no port: the device SDK always
//! connects to 8883.

use anyhow::Context;

use super::{ExitStatus, print};
use crate::cli::{ConnectionStringArgs, Format};
use crate::hub::{Error, KeyError};
use crate::ops::connect;
use crate::output;
use twinops_core::render::text;
use twinops_core::report::Refusal;
use twinops_iothub::connection_string::DeviceConnectionString;

pub(crate) async fn run(args: &ConnectionStringArgs) -> anyhow::Result<ExitStatus> {
    let address = &args.identity;
    let conn = connect::connect(&args.hub, None).await?;
    let key = conn.hub.primary_key(address).await;
    // Under SAS a live hub answers a module read with 401 when its device is missing or
    // disabled: ask the device why, as apply does.
    let refusal = match &key {
        Err(KeyError::Hub(Error::Unauthorized { .. })) if conn.sas && address.module.is_some() => {
            Some(conn.hub.refusal(&address.device).await)
        }
        _ => None,
    };
    let host = conn.hub.host().to_string();
    conn.close().await;
    let what = match address.module_id() {
        Some(_) => format!("module `{address}`"),
        None => format!("device `{address}`"),
    };
    let key = match key {
        Ok(k) => k,
        Err(KeyError::Hub(e)) => match refusal {
            Some(r @ (Refusal::DeviceMissing(_) | Refusal::DeviceDisabled(_))) => {
                anyhow::bail!(
                    "reading {what}: {}",
                    text::refusal(&r, &e.chain().to_string())
                )
            }
            _ => return Err(e).with_context(|| format!("reading {what}")),
        },
        Err(KeyError::NotSas(kind)) => anyhow::bail!(
            "{address} authenticates with `{}`, not a key; it has no key connection string",
            kind.as_str()
        ),
        Err(KeyError::NoKey) => anyhow::bail!("the hub returned no key for {address}"),
    };
    let host = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_string();
    let cs = DeviceConnectionString {
        host,
        device_id: address.device.to_string(),
        module_id: address.module.as_ref().map(ToString::to_string),
        key,
    };
    match args.output.format {
        Format::Json => {
            let doc = serde_json::json!({
                "identity": address.to_string(),
                "connection_string": cs.to_secret_string().expose(),
            });
            print(|b| twinops_core::render::json(b, &doc))?;
        }
        Format::Text | Format::Markdown => {
            output::data(&format!("{}\n", cs.to_secret_string().expose()));
        }
    }
    Ok(ExitStatus::Success)
}
