//! Runs parsed queries over the store with IoT Hub's paging: pages of `x-ms-max-item-count` rows
//! (default 100, capped by `--query-page-max`), an opaque continuation token naming the last row
//! served, and no token on the last page. `COUNT()` scans everything and answers one `Raw` row.
//!
//! The token is base64url of the last key and a hash of the query text: IoT Hub expects the same
//! query with each continuation, and a different one is refused rather than silently mixed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;

use super::error::Error;
use super::query::{self, Collection, ParseError, Select};
use super::store::Store;

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    /// `Twin` for `SELECT *`, `Raw` for projections and counts.
    pub(crate) item_type: &'static str,
    pub(crate) continuation: Option<String>,
}

fn query_hash(sql: &str) -> u64 {
    let mut h = DefaultHasher::new();
    sql.trim().hash(&mut h);
    h.finish()
}

fn encode_token(last_key: &str, sql: &str) -> String {
    B64URL.encode(format!("{:016x}{last_key}", query_hash(sql)))
}

fn decode_token(token: &str, sql: &str) -> Result<String, Error> {
    let bad =
        || Error::ArgumentInvalid("the continuation token is not valid for this query".into());
    let raw = B64URL.decode(token.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    if text.len() < 16 || !text.is_char_boundary(16) {
        return Err(bad());
    }
    let (hash, key) = text.split_at(16);
    if hash != format!("{:016x}", query_hash(sql)) {
        return Err(bad());
    }
    Ok(key.to_string())
}

/// Maps a parse error to IoT Hub's answer: an over-long query fails with `PreconditionFailed`
/// (as observed on real hubs, Azure/azure-iot-sdk-csharp#1680), anything else with a bare 400
/// `ArgumentInvalid;BadRequest`, as live hubs answer syntax errors (live-hub.md): the message
/// names no position, so a client cannot rely on one.
pub(crate) fn parse_error(e: ParseError) -> Error {
    match e {
        ParseError::TooLong { .. } => Error::PreconditionFailed(format!("query rejected: {e}")),
        other => {
            tracing::debug!(error = %other, "query refused");
            Error::ArgumentInvalid("BadRequest".into())
        }
    }
}

/// Runs `sql`, returning the page after `continuation` with at most `page_size` rows.
pub(crate) fn run(
    store: &Store,
    sql: &str,
    continuation: Option<&str>,
    page_size: usize,
) -> Result<Page, Error> {
    let q = query::parse(sql).map_err(parse_error)?;
    let modules = q.collection == Collection::Modules;
    if q.is_count() {
        let mut n: u64 = 0;
        store.scan(modules, None, |_, twin| {
            if q.matches(&twin) {
                n += 1;
            }
            ControlFlow::Continue(())
        })?;
        if let Some(top) = q.top {
            n = n.min(top);
        }
        return Ok(Page {
            items: q.count_row(n).into_iter().collect(),
            item_type: "Raw",
            continuation: None,
        });
    }
    let after = continuation
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| decode_token(c, sql))
        .transpose()?;
    // TOP n limits the whole result: the token does not count served rows, so TOP is applied
    // to the first page only and no continuation is offered with it.
    let limit = match q.top {
        Some(top) => page_size.min(usize::try_from(top).unwrap_or(usize::MAX)),
        None => page_size,
    };
    let mut items = Vec::new();
    let mut last_key = None;
    let mut more = false;
    store.scan(modules, after.as_deref(), |key, twin| {
        if !q.matches(&twin) {
            return ControlFlow::Continue(());
        }
        if items.len() == limit {
            more = true;
            return ControlFlow::Break(());
        }
        items.push(q.project(&twin));
        last_key = Some(key.to_string());
        ControlFlow::Continue(())
    })?;
    let continuation = match (more && q.top.is_none(), last_key) {
        (true, Some(k)) => Some(encode_token(&k, sql)),
        _ => None,
    };
    Ok(Page {
        items,
        item_type: if matches!(q.select, Select::All) {
            "Twin"
        } else {
            "Raw"
        },
        continuation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IfMatch;
    use twinops_iothub::wire;

    fn store_with(n: usize) -> Store {
        let s = Store::open(None).unwrap();
        for i in 0..n {
            let id = format!("d{i:03}");
            let body = wire::Device {
                device_id: id.clone(),
                ..Default::default()
            };
            s.put_device(&id, &body, &IfMatch::Absent).unwrap();
        }
        s
    }

    #[test]
    fn pages_cover_every_twin_once_and_the_last_has_no_token() {
        let s = store_with(7);
        let sql = "SELECT * FROM devices";
        let mut seen = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let p = run(&s, sql, token.as_deref(), 3).unwrap();
            assert_eq!(p.item_type, "Twin");
            pages += 1;
            seen.extend(
                p.items
                    .iter()
                    .map(|t| t["deviceId"].as_str().unwrap().to_string()),
            );
            match p.continuation {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, (0..7).map(|i| format!("d{i:03}")).collect::<Vec<_>>());
    }

    #[test]
    fn an_exactly_full_last_page_has_no_token() {
        let s = store_with(4);
        let p = run(&s, "SELECT * FROM devices", None, 4).unwrap();
        assert_eq!(p.items.len(), 4);
        assert_eq!(p.continuation, None);
    }

    #[test]
    fn count_and_projections_are_raw() {
        let s = store_with(5);
        let p = run(&s, "SELECT COUNT() AS n FROM devices", None, 2).unwrap();
        assert_eq!(p.items, vec![serde_json::json!({"n": 5})]);
        assert_eq!(p.item_type, "Raw");
        let p = run(
            &s,
            "SELECT deviceId FROM devices WHERE deviceId = 'd001'",
            None,
            10,
        )
        .unwrap();
        assert_eq!(p.items, vec![serde_json::json!({"deviceId": "d001"})]);
        assert_eq!(p.item_type, "Raw");
    }

    #[test]
    fn tokens_belong_to_their_query() {
        let s = store_with(5);
        let p = run(&s, "SELECT * FROM devices", None, 2).unwrap();
        let t = p.continuation.unwrap();
        assert!(matches!(
            run(&s, "SELECT * FROM devices.modules", Some(&t), 2),
            Err(Error::ArgumentInvalid(_))
        ));
        assert!(matches!(
            run(&s, "SELECT * FROM devices", Some("%%%"), 2),
            Err(Error::ArgumentInvalid(_))
        ));
    }

    #[test]
    fn bad_and_long_queries_are_refused() {
        let s = store_with(0);
        assert!(matches!(
            run(&s, "SELEKT * FROM devices", None, 2),
            Err(Error::ArgumentInvalid(_))
        ));
        let long = format!(
            "SELECT * FROM devices WHERE deviceId = '{}'",
            "x".repeat(9000)
        );
        assert!(matches!(
            run(&s, &long, None, 2),
            Err(Error::PreconditionFailed(_))
        ));
    }
}
