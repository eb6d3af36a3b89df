//! Automatic configurations as stored: CRUD with IoT Hub's status codes and etags, and what the
//! configuration loop (`configuration::pass`) reads and records. The rules that decide what a
//! configuration writes into twins are `configuration`'s.

use redb::{ReadableDatabase, ReadableTable};

use super::persistence::{CONFIGURATIONS, META, Tx, decode, decode_rows, encode};
use super::{IfMatch, Store};
use crate::configuration::{self, ConfigurationRecord};
use crate::error::Error;
use twinops_iothub::wire;

const CONFIGURATION_SEQ: &str = "counter:configuration";
/// Set when a configuration is deleted: twins may still carry its status.
const SWEEP: &str = "configurations:sweep";

/// What one pass of the configuration loop found for one configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PassResult {
    pub(crate) targeted_count: i64,
    pub(crate) applied_count: i64,
    pub(crate) reported_successful_count: i64,
    pub(crate) reported_failed_count: i64,
    /// Custom metric name → count of matching twins.
    pub(crate) metric_results: wire::JsonMap,
}

impl Store {
    pub(crate) fn configuration(&self, id: &str) -> Result<ConfigurationRecord, Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONFIGURATIONS)?;
        t.get(id)?
            .map(|v| decode(v.value()))
            .transpose()?
            .ok_or_else(|| Error::ConfigurationNotFound(id.to_string()))
    }

    /// Up to `top` configurations in ID order.
    pub(crate) fn list_configurations(
        &self,
        top: usize,
    ) -> Result<Vec<ConfigurationRecord>, Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONFIGURATIONS)?;
        decode_rows(t.iter()?.take(top))
    }

    /// `PUT /configurations/{id}`: create without `If-Match`, else a conditional update of the
    /// mutable parts (`schemaVersion`, `targetCondition`, `labels`, `priority`, `metrics`: a live
    /// hub takes a new `schemaVersion` on update); `id` and `content` stay.
    pub(crate) fn put_configuration(
        &self,
        id: &str,
        body: &wire::Configuration,
        if_match: &IfMatch,
    ) -> Result<ConfigurationRecord, Error> {
        configuration::check_id(id)?;
        // Live hubs need `content` in every body, updates included (where it is then ignored).
        if body.content.is_none() {
            return Err(Error::ArgumentInvalid(
                "a configuration body needs content".into(),
            ));
        }
        if !body.id.is_empty() && body.id != id {
            return Err(Error::ArgumentInvalid(
                "id in the body differs from the one in the path".into(),
            ));
        }
        self.write(|tx| {
            let rec = match (if_match, tx.configuration(id)?) {
                (IfMatch::Absent, Some(_)) => {
                    return Err(Error::ConfigurationAlreadyExists(id.to_string()));
                }
                (IfMatch::Absent, None) => tx.new_configuration(id, body)?,
                (_, None) => return Err(Error::ConfigurationNotFound(id.to_string())),
                (m, Some(cur)) => {
                    if !m.allows(&cur.etag) {
                        return Err(Error::PreconditionFailed(format!(
                            "etag does not match configuration {id}"
                        )));
                    }
                    let m = configuration::mutable(body, cur.kind())?;
                    let mut results = cur.metric_results.clone();
                    results.retain(|k, _| m.metric_queries.contains_key(k));
                    ConfigurationRecord {
                        schema_version: m.schema_version,
                        labels: m.labels,
                        target_condition: m.target_condition,
                        priority: m.priority,
                        metric_queries: m.metric_queries,
                        metric_results: results,
                        last_updated_time_utc: tx.now.clone(),
                        etag: tx.next_etag()?,
                        ..cur
                    }
                }
            };
            tx.save_configuration(&rec)?;
            Ok(rec)
        })
    }

    /// `DELETE /configurations/{id}`: works without `If-Match` (live-hub.md); one that is given
    /// must match. The next reconcile pass removes the
    /// configuration's status from twins (their desired values stay).
    pub(crate) fn delete_configuration(&self, id: &str, if_match: &IfMatch) -> Result<(), Error> {
        self.write(|tx| {
            let cur = tx
                .configuration(id)?
                .ok_or_else(|| Error::ConfigurationNotFound(id.to_string()))?;
            if !if_match.allows(&cur.etag) {
                return Err(Error::PreconditionFailed(format!(
                    "etag does not match configuration {id}"
                )));
            }
            tx.configurations.remove(id)?;
            // Twins may hold its status: the next pass visits them even if no configuration is left.
            let mark = tx.now.clone();
            tx.meta.insert(SWEEP, mark.as_str())?;
            Ok(())
        })
    }

    /// Every configuration, and the sweep mark a delete left (twins may still carry a deleted
    /// configuration's status), read together for one pass of the configuration loop.
    pub(crate) fn configurations_to_apply(
        &self,
    ) -> Result<(Vec<ConfigurationRecord>, Option<String>), Error> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONFIGURATIONS)?;
        let mut records = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            records.push(decode::<ConfigurationRecord>(v.value())?);
        }
        let meta = txn.open_table(META)?;
        let sweep = meta.get(SWEEP)?.map(|v| v.value().to_string());
        Ok((records, sweep))
    }

    /// Records a pass's counts and metrics on the configurations that still exist (writing only
    /// those that changed), and lifts the sweep mark `sweep` the pass started from, unless a
    /// delete during the pass marked it again.
    pub(crate) fn record_pass(
        &self,
        results: &[(String, PassResult)],
        sweep: Option<&str>,
    ) -> Result<(), Error> {
        self.write(|tx| {
            for (id, result) in results {
                let Some(mut cur) = tx.configuration(id)? else {
                    continue;
                };
                let now = PassResult {
                    targeted_count: cur.targeted_count,
                    applied_count: cur.applied_count,
                    reported_successful_count: cur.reported_successful_count,
                    reported_failed_count: cur.reported_failed_count,
                    metric_results: cur.metric_results.clone(),
                };
                if now == *result {
                    continue;
                }
                cur.targeted_count = result.targeted_count;
                cur.applied_count = result.applied_count;
                cur.reported_successful_count = result.reported_successful_count;
                cur.reported_failed_count = result.reported_failed_count;
                cur.metric_results = result.metric_results.clone();
                tx.save_configuration(&cur)?;
            }
            if let Some(mark) = sweep {
                let still = tx.meta.get(SWEEP)?.map(|v| v.value() == mark);
                if still == Some(true) {
                    tx.meta.remove(SWEEP)?;
                }
            }
            Ok(())
        })
    }
}

impl Tx<'_> {
    fn configuration(&self, id: &str) -> Result<Option<ConfigurationRecord>, Error> {
        self.configurations
            .get(id)?
            .map(|v| decode::<ConfigurationRecord>(v.value()))
            .transpose()
    }

    fn save_configuration(&mut self, rec: &ConfigurationRecord) -> Result<(), Error> {
        let bytes = encode(rec)?;
        self.configurations
            .insert(rec.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// A new configuration from a create's body, within the hub's limit.
    fn new_configuration(
        &mut self,
        id: &str,
        body: &wire::Configuration,
    ) -> Result<ConfigurationRecord, Error> {
        if self.configurations.iter()?.count() >= configuration::MAX_CONFIGURATIONS {
            return Err(Error::ArgumentInvalid(format!(
                "the hub already holds {} configurations",
                configuration::MAX_CONFIGURATIONS
            )));
        }
        let content = body.content.clone().unwrap_or_default();
        let kind = configuration::content_kind(&content)?;
        let m = configuration::mutable(body, kind)?;
        let seq = self.counter(CONFIGURATION_SEQ)? + 1;
        self.meta
            .insert(CONFIGURATION_SEQ, seq.to_string().as_str())?;
        Ok(ConfigurationRecord {
            id: id.to_string(),
            schema_version: m.schema_version,
            labels: m.labels,
            content,
            content_type: body.content_type.clone(),
            target_condition: m.target_condition,
            priority: m.priority,
            created_time_utc: self.now.clone(),
            last_updated_time_utc: self.now.clone(),
            etag: self.next_etag()?,
            metric_queries: m.metric_queries,
            metric_results: wire::JsonMap::new(),
            targeted_count: 0,
            applied_count: 0,
            reported_successful_count: 0,
            reported_failed_count: 0,
            seq,
        })
    }
}
