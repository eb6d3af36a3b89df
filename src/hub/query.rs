//! The SQL twinops sends to IoT Hub's query API: `IN` lists of device IDs under the query size
//! limit, and the queries over the ledger tag that find an owner's identities. IDs and owners are
//! quoted here and nowhere else.

use futures::TryStreamExt;

use super::{Error, Rest, observe};
use twinops_core::model::{DeviceId, LEDGER_TAG, Owner, TwinAddress};

/// The page size asked for; the hub caps it (IoT Hub and the emulator at 100 by default).
pub(crate) const PAGE_REQUEST: usize = 1000;

/// The longest `IN`-list query sent: IoT Hub refuses query texts over about 8 KB.
pub(crate) const MAX_IN_QUERY_BYTES: usize = 7_500;

pub(crate) const ALL_DEVICES: &str = "SELECT * FROM devices";
pub(crate) const ALL_MODULES: &str = "SELECT * FROM devices.modules";
pub(crate) const IN_PREFIX_DEVICES: &str = "SELECT * FROM devices WHERE deviceId IN [";
pub(crate) const IN_PREFIX_MODULES: &str = "SELECT * FROM devices.modules WHERE deviceId IN [";

/// Whether an ID can stand in a query's string literal as written: `IN` lists quote IDs in `'`,
/// and an ID holding one is read by GET instead of escaped in a way a live hub was never observed
/// to accept.
pub(crate) fn quotable(id: &str) -> bool {
    !id.contains('\'')
}

/// How `IN` lists cut a run of devices into queries of at most [`MAX_IN_QUERY_BYTES`], each
/// `overhead` bytes besides its list: calls `each(first, end, rows)` per query over
/// `items[first..end]`, each item `(id, rows it returns)`.
pub(crate) fn chunks<'a>(
    overhead: usize,
    items: impl Iterator<Item = (&'a DeviceId, usize)>,
    mut each: impl FnMut(usize, usize, usize),
) {
    // The overhead + `'id'` joined by `, `.
    let (mut first, mut len, mut rows, mut n) = (0, overhead, 0, 0);
    for (i, (id, r)) in items.enumerate() {
        if n > 0 && len + 2 + id.len() + 2 > MAX_IN_QUERY_BYTES {
            each(first, i, rows);
            (first, len, rows, n) = (i, overhead, 0, 0);
        }
        len += id.len() + 2 + if n > 0 { 2 } else { 0 };
        rows += r;
        n += 1;
    }
    if n > 0 {
        each(first, first + n, rows);
    }
}

/// The `IN`-list queries `prefix'a', 'b']` of these devices.
pub(crate) fn in_queries(prefix: &str, ids: &[&DeviceId]) -> Vec<String> {
    in_lists(ids, |list| format!("{prefix}{list}]"))
}

/// `query(list)` for `IN` lists (`'a', 'b'`) of these devices, cut so that each query stays
/// under [`MAX_IN_QUERY_BYTES`]. The IDs must be [`quotable`].
pub(crate) fn in_lists(ids: &[&DeviceId], query: impl Fn(&str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    chunks(
        query("").len(),
        ids.iter().map(|id| (*id, 0)),
        |first, end, _| {
            let list: Vec<String> = ids[first..end].iter().map(|id| format!("'{id}'")).collect();
            out.push(query(&list.join(", ")));
        },
    );
    out
}

/// `SELECT COUNT() AS n …`: the count, summed over its pages.
pub(crate) async fn count(rest: &Rest, sql: &str) -> Result<u64, Error> {
    let mut n = 0;
    rest.query_all(sql, PAGE_REQUEST, |rows| {
        n += rows
            .iter()
            .filter_map(|r| r.get("n").and_then(serde_json::Value::as_u64))
            .sum::<u64>();
        Ok(())
    })
    .await?;
    Ok(n)
}

/// `devices` or `devices.modules` rows whose ledger holds an entry of `owner` (form 2: a key of
/// `owners`, written in IoT Hub's `[[…]]` form as it is no plain word; form 1: `owner`). The owner
/// is 1..64 of `A-Za-z0-9._-` (checked by `Owner`), so it stands in quotes and brackets as is.
fn owned_where(owner: &Owner) -> String {
    let key = twinops_core::plan::ledger::owner_key(owner);
    format!(
        "WHERE IS_DEFINED(tags.{LEDGER_TAG}.owners.[[{key}]]) OR tags.{LEDGER_TAG}.owner = '{owner}'"
    )
}

pub(crate) async fn count_owned(rest: &Rest, owner: &Owner) -> Result<(u64, u64), Error> {
    let mut counts = [0u64; 2];
    for (n, collection) in counts.iter_mut().zip(["devices", "devices.modules"]) {
        let sql = format!(
            "SELECT COUNT() AS n FROM {collection} {}",
            owned_where(owner)
        );
        *n = count(rest, &sql).await?;
    }
    Ok((counts[0], counts[1]))
}

pub(crate) async fn owned(rest: &Rest, owner: &Owner) -> Result<Vec<TwinAddress>, Error> {
    let mut out = Vec::new();
    for sql in [
        format!("SELECT deviceId FROM devices {}", owned_where(owner)),
        format!(
            "SELECT deviceId, moduleId FROM devices.modules {}",
            owned_where(owner)
        ),
    ] {
        let pages = rest.pages(&sql, PAGE_REQUEST);
        futures::pin_mut!(pages);
        while let Some(rows) = pages.try_next().await? {
            for r in rows {
                let field = |k: &str| r.get(k).and_then(|v| v.as_str());
                let Some(device) = field("deviceId") else {
                    continue;
                };
                let device = observe::device_id(device)?;
                out.push(match field("moduleId") {
                    Some(m) => TwinAddress::module(device, observe::module_id(m)?),
                    None => TwinAddress::device(device),
                });
            }
        }
    }
    // Query rows can repeat while the index catches up.
    out.sort();
    out.dedup();
    Ok(out)
}
