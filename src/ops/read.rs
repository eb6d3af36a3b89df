//! How an operation reads the hub (SPEC §17): by queries and GETs at the hub's read quota, or
//! through an export job into the operator's storage container, off the query quota. `auto` takes
//! the export when a storage URL is given and the API read, estimated at the pace in force, would
//! take longer than two minutes; a failed export under `auto` falls back to the API read and says
//! so.

use std::time::Duration;

use anyhow::bail;

use super::connect::Connection;
use crate::cli::{ReadArgs, ReadMode};
use crate::hub::Error;
use crate::hub::export::{ExportCost, ExportError, ExportRequest};
use crate::hub::read::{self, Observation, ReadPlan};
use crate::storage::{Blobs, StorageUrl};
use twinops_core::plan::ReadDoc;
use twinops_core::report::{Event, Reporter};

/// The read an operation was asked for.
#[derive(Clone, Debug)]
pub(crate) struct ReadChoice {
    pub mode: ReadMode,
    pub storage: Option<StorageUrl>,
    pub timeout: Duration,
    pub keep: bool,
    /// `auto` reads through an export job above this estimated API read time.
    pub above: Duration,
}

impl ReadChoice {
    /// The flags, checked before any request: `--read export` needs `--storage`.
    pub(crate) fn of(args: &ReadArgs) -> anyhow::Result<ReadChoice> {
        if args.mode == ReadMode::Export
            && args.storage.as_deref().is_none_or(|s| s.trim().is_empty())
        {
            bail!(
                "--read export needs --storage (or TWINOPS_STORAGE): a container SAS URL the hub's export job writes to"
            );
        }
        if args.export_timeout.is_zero() {
            bail!("--export-timeout must be longer than 0s, e.g. 30m");
        }
        let storage = args
            .storage
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(StorageUrl::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(ReadChoice {
            mode: args.mode,
            storage,
            timeout: args.export_timeout,
            keep: args.keep_export,
            above: args.export_above,
        })
    }

    /// The API read, always (saved plans, scoped reads).
    pub(crate) fn api() -> ReadChoice {
        ReadChoice {
            mode: ReadMode::Api,
            storage: None,
            timeout: Duration::from_secs(1800),
            keep: false,
            above: Duration::MAX,
        }
    }
}

/// Whether to read through an export, and why (in words, for the operator).
async fn decide(
    conn: &Connection,
    choice: &ReadChoice,
    reads: &ReadPlan,
) -> Result<(bool, String), Error> {
    match (choice.mode, &choice.storage) {
        (ReadMode::Api, _) => Ok((false, "--read api".into())),
        (ReadMode::Export, _) => Ok((true, "--read export".into())),
        (ReadMode::Auto, None) => Ok((false, "no --storage given".into())),
        (ReadMode::Auto, Some(_)) if conn.hub.pacer().is_none() => {
            Ok((false, "the hub is not paced (local or loopback)".into()))
        }
        (ReadMode::Auto, Some(_)) => {
            let seconds = if reads.full {
                // A whole-hub read: the hub's size first, with one COUNT() per collection.
                let twins = conn
                    .hub
                    .query_count("SELECT COUNT() AS n FROM devices")
                    .await?
                    + conn
                        .hub
                        .query_count("SELECT COUNT() AS n FROM devices.modules")
                        .await?;
                read::full_read_seconds(twins as usize, read::Rates::of(&conn.hub))
            } else {
                reads.estimated_seconds.unwrap_or(0.0)
            };
            let export = seconds >= choice.above.as_secs_f64();
            let words = format!(
                "the API read would take about {seconds:.0}s at the pace in force ({} --export-above {})",
                if export { "not under" } else { "under" },
                twinops_iothub::duration::format(choice.above)
            );
            Ok((export, words))
        }
    }
}

/// Reads what `reads` names into `sink`, through an export job or the API as `choice` says. The
/// sink is made anew for a fallback (`fresh`), so nothing of a failed export's partial read stays.
pub(crate) async fn read_into<S>(
    conn: &Connection,
    choice: &ReadChoice,
    reads: &ReadPlan,
    concurrency: usize,
    reporter: &dyn Reporter,
    mut fresh: impl FnMut() -> S,
    feed: impl Fn(&mut S, Observation) -> Result<(), Error>,
) -> anyhow::Result<(S, ReadDoc)> {
    let (export, why) = decide(conn, choice, reads).await?;
    if export && let Some(url) = &choice.storage {
        reporter.event(Event::ReadVia {
            export: true,
            why: why.clone(),
        });
        let blobs = Blobs::new(url.clone())?;
        let req = ExportRequest {
            blobs: &blobs,
            timeout: choice.timeout,
            keep: choice.keep,
        };
        let mut sink = fresh();
        match conn.hub.read_export(&req, |o| feed(&mut sink, o)).await {
            Ok(cost) => return Ok((sink, export_doc(&cost))),
            Err(e) if choice.mode == ReadMode::Auto => {
                reporter.event(Event::ReadVia {
                    export: false,
                    why: format!("the export failed ({e}); reading by queries and GETs instead"),
                });
            }
            Err(e) => return Err(export_error(e)),
        }
    } else if choice.mode != ReadMode::Api && choice.storage.is_some() {
        reporter.event(Event::ReadVia { export: false, why });
    }
    let mut sink = fresh();
    read::read(&conn.hub, reads, concurrency, |o| feed(&mut sink, o)).await?;
    Ok((
        sink,
        ReadDoc {
            via: "api".into(),
            job_id: None,
            identities: None,
        },
    ))
}

fn export_doc(cost: &ExportCost) -> ReadDoc {
    ReadDoc {
        via: "export".into(),
        job_id: Some(cost.job_id.clone()),
        identities: Some(cost.identities),
    }
}

fn export_error(e: ExportError) -> anyhow::Error {
    anyhow::anyhow!("reading the hub through an export job: {e}; nothing was written")
}
