//! Managed hub objects (SPEC §16) in the model's terms: ADM configurations and IoT Edge deployments
//! read as [`ObservedObject`]s and written from a plan's [`ObjectChange`]s with IoT Hub's rules —
//! quoted `If-Match`, `content` sent again in every update (IoT Hub requires it and ignores a
//! change of it), and the queries a plan's previews and warnings ask.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use serde_json::{Value, json};

use super::{Error, Hub};
use twinops_core::model::{DeviceId, ETag, ObjectCounts, ObjectKind, ObservedObject};
use twinops_core::plan::objects::{ObjectBody, ObjectChange};
use twinops_iothub::wire::Configuration;

/// How an object write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectWrite {
    Written,
    /// Created already (409) with this owner's labels: nothing to do.
    Existed,
    /// The object changed (or went) since the plan: not written.
    Changed,
    /// Gone already (a delete's 404).
    Gone,
}

fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn count(metrics: Option<&Value>, name: &str) -> Option<u64> {
    metrics?.get("results")?.get(name)?.as_u64()
}

/// A configuration as the model sees it.
pub(super) fn observed(c: Configuration) -> Result<ObservedObject, Error> {
    let content = Value::Object(c.content.clone().unwrap_or_default());
    let kind = if content.get("modulesContent").is_some() {
        ObjectKind::Deployment
    } else {
        ObjectKind::Configuration
    };
    let labels = c
        .labels
        .as_ref()
        .map(|m| strings(Some(&Value::Object(m.clone()))))
        .unwrap_or_default();
    let system = c.system_metrics.as_ref();
    Ok(ObservedObject {
        kind,
        labels,
        target: c.target_condition.clone().unwrap_or_default(),
        priority: c.priority.unwrap_or(0),
        metrics: strings(c.metrics.as_ref().and_then(|m| m.get("queries"))),
        counts: ObjectCounts {
            targeted: count(system, "targetedCount"),
            applied: count(system, "appliedCount"),
            reported_successful: count(system, "reportedSuccessfulCount"),
            reported_failed: count(system, "reportedFailedCount"),
        },
        content,
        etag: c.etag.clone().filter(|e| !e.is_empty()).ok_or_else(|| {
            Error::Invalid(format!("configuration `{}` came without an etag", c.id))
        })?,
        id: c.id,
    })
}

/// The wire body of an object: its ID, content and the written fields.
fn body(id: &str, content: Value, b: &ObjectBody) -> Configuration {
    Configuration {
        id: id.to_string(),
        schema_version: Some("1.0".into()),
        labels: Some(
            b.labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        ),
        content: content.as_object().cloned(),
        target_condition: Some(b.target.clone()),
        priority: Some(b.priority),
        metrics: Some(json!({"queries": b.metrics})),
        ..Configuration::default()
    }
}

impl Hub {
    /// Every configuration and deployment of the hub (one request: a hub holds at most 100 of
    /// each kind, and `GET /configurations` lists them all).
    pub async fn objects(&self) -> Result<Vec<ObservedObject>, Error> {
        self.rest
            .list_configurations()
            .await?
            .into_iter()
            .map(observed)
            .collect()
    }

    /// One object, `None` when it is gone.
    pub async fn object(&self, id: &str) -> Result<Option<ObservedObject>, Error> {
        match self.rest.get_configuration(id).await {
            Ok(c) => observed(c).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one planned object change.
    pub async fn write_object(&self, c: &ObjectChange) -> Result<ObjectWrite, Error> {
        match c {
            ObjectChange::Create {
                id,
                body: b,
                content,
                ..
            } => match self
                .rest
                .put_configuration(&body(id, content.clone(), b), None)
                .await
            {
                Ok(_) => Ok(ObjectWrite::Written),
                // Created by an earlier, interrupted run: the ID is the content's digest, so an
                // object of this ID labelled as ours is the one planned.
                Err(Error::AlreadyExists { .. }) => match self.object(id).await? {
                    Some(o) if o.labels == b.labels => Ok(ObjectWrite::Existed),
                    _ => Ok(ObjectWrite::Changed),
                },
                Err(e) => Err(e),
            },
            ObjectChange::Update {
                id,
                if_match,
                body: b,
                ..
            } => {
                let Some(now) = self.object(id).await? else {
                    return Ok(ObjectWrite::Changed);
                };
                if now.etag != *if_match {
                    return Ok(ObjectWrite::Changed);
                }
                let etag =
                    ETag::new(if_match.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
                // The content goes back as the hub holds it: IoT Hub requires it in every update.
                match self
                    .rest
                    .put_configuration(&body(id, now.content, b), Some(&etag))
                    .await
                {
                    Ok(_) => Ok(ObjectWrite::Written),
                    Err(Error::PreconditionFailed { .. }) => Ok(ObjectWrite::Changed),
                    Err(e) => Err(e),
                }
            }
            ObjectChange::Delete { id, if_match, .. } => {
                let etag =
                    ETag::new(if_match.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
                match self.rest.delete_configuration(id, &etag).await {
                    Ok(()) => Ok(ObjectWrite::Written),
                    Err(e) if e.is_not_found() => Ok(ObjectWrite::Gone),
                    Err(Error::PreconditionFailed { .. }) => Ok(ObjectWrite::Changed),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The edge agents of the devices `target` selects that report a failed deployment, as
    /// `device: code description` (at most 20): IoT Edge's `lastDesiredStatus`.
    pub async fn failed_edge_agents(&self, target: &str) -> Result<Vec<String>, Error> {
        use twinops_core::plan::object_checks::{Collection, Condition, sql};
        let c = Condition::of(target);
        let targeted: std::collections::BTreeSet<String> = self
            .query_first(&sql(Collection::Devices, &[&c.text], &[], false), 1000)
            .await?
            .into_iter()
            .collect();
        let rows = self
            .query_rows(
                "SELECT deviceId, properties.reported.lastDesiredStatus FROM devices.modules WHERE moduleId = '$edgeAgent' AND IS_DEFINED(properties.reported.lastDesiredStatus.code) AND properties.reported.lastDesiredStatus.code != 200",
                1000,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let d = r.get("deviceId")?.as_str()?;
                if !targeted.contains(d) {
                    return None;
                }
                let status = r
                    .get("lastDesiredStatus")
                    .or_else(|| r.pointer("/properties/reported/lastDesiredStatus"))?;
                let code = status
                    .get("code")
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let text = status
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Some(format!("{d}: {code} {text}").trim_end().to_string())
            })
            .take(20)
            .collect())
    }

    /// The rows of the first page of a query, at most `limit`.
    pub async fn query_rows(&self, sql: &str, limit: usize) -> Result<Vec<Value>, Error> {
        let pages = self.rest.pages(sql, limit.max(1));
        futures::pin_mut!(pages);
        let mut rows = pages.try_next().await?.unwrap_or_default();
        rows.truncate(limit);
        Ok(rows)
    }

    /// How many devices (module twins, for a module configuration) an object's target selects now:
    /// what its `targetedCount` must reach before its other counts say anything (right after a
    /// write, the hub has not evaluated it yet and counts 0 of 0). Deployments target edge devices.
    pub async fn expected_targets(&self, kind: ObjectKind, target: &str) -> Result<u64, Error> {
        use twinops_core::plan::object_checks::{Condition, sql};
        let c = Condition::of(target);
        let mut conds = vec![c.text.as_str()];
        if kind == ObjectKind::Deployment {
            conds.insert(0, "capabilities.iotEdge = true");
        }
        self.query_count(&sql(c.collection, &conds, &[], true))
            .await
    }

    /// `SELECT COUNT() AS n …`: the count.
    pub async fn query_count(&self, sql: &str) -> Result<u64, Error> {
        super::query::count(&self.rest, sql).await
    }

    /// The `deviceId`s (`deviceId/moduleId` for module rows) of the first page of a query, at most
    /// `limit`.
    pub async fn query_first(&self, sql: &str, limit: usize) -> Result<Vec<String>, Error> {
        Ok(self
            .query_rows(sql, limit)
            .await?
            .iter()
            .filter_map(|r| {
                let d = r.get("deviceId")?.as_str()?;
                Some(match r.get("moduleId").and_then(Value::as_str) {
                    Some(m) => format!("{d}/{m}"),
                    None => d.to_string(),
                })
            })
            .collect())
    }

    /// The devices among `ids` that `query(list)` selects for an `IN` list of them (`'a', 'b'`):
    /// every page of as many queries as the query size limit asks for. IDs that cannot stand in
    /// a query's string literal are left out.
    pub async fn devices_selected(
        &self,
        ids: &[&DeviceId],
        query: impl Fn(&str) -> String,
    ) -> Result<BTreeSet<String>, Error> {
        let ids: Vec<&DeviceId> = ids
            .iter()
            .copied()
            .filter(|id| super::query::quotable(id.as_str()))
            .collect();
        let mut out = BTreeSet::new();
        for sql in super::query::in_lists(&ids, query) {
            self.rest
                .query_all(&sql, super::query::PAGE_REQUEST, |rows| {
                    out.extend(
                        rows.iter()
                            .filter_map(|r| r.get("deviceId")?.as_str().map(str::to_string)),
                    );
                    Ok(())
                })
                .await?;
        }
        Ok(out)
    }
}
