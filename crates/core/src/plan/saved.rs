//! Saved plans: a plan as a file holds it ([`SavedPlan`], change documents with sensitive values
//! concealed), and the one way back from it to a plan the executor takes ([`SavedPlan::resolve`]).

use super::{Change, ChangeDoc, Plan, ReadError, TwinPatch, secret};
use crate::model::{Fleet, TwinAddress};

/// A plan as a file holds it: change documents, sensitive values concealed.
pub type SavedPlan = Plan<ChangeDoc>;

impl SavedPlan {
    /// The plan to execute: every change checked, every concealed value got back (a reference from
    /// `env`, an inline value from `fleet`, the manifests the plan was made from) and compared with
    /// the digest the plan recorded under `key`. Refused as a whole on any problem, so nothing is
    /// sent; a plan whose digests were made under another key is refused before anything else.
    pub fn resolve(
        self,
        env: &dyn crate::manifest::Env,
        fleet: Option<&Fleet>,
        key: secret::DigestKey,
    ) -> Result<Plan, ReadError> {
        let holds_digests = self.changes.iter().any(|c| !c.sensitive().is_empty());
        match &self.digest_key {
            Some(f) if *f != key.fingerprint() => return Err(ReadError::OtherKey),
            None if holds_digests => return Err(ReadError::Unkeyed),
            _ => {}
        }
        let mut sources = secret::Sources::new(env, fleet, key);
        let mut problems = Vec::new();
        let mut inline: Option<(usize, String, String)> = None;
        // Without manifests, nothing is looked up: the run is refused for the inline values alone.
        let changes: Vec<Change> = {
            let mut reveal =
                |address: &TwinAddress, patch: &mut TwinPatch, concealed: secret::Concealed| {
                    if fleet.is_none() {
                        for path in concealed.inline() {
                            let (count, _, _) = inline
                                .get_or_insert_with(|| (0, address.to_string(), path.to_string()));
                            *count += 1;
                        }
                    }
                    if fleet.is_none() && inline.is_some() {
                        return Vec::new();
                    }
                    concealed.reveal(address, patch, &mut sources, &mut problems)
                };
            let mut out = Vec::with_capacity(self.changes.len());
            for doc in self.changes {
                let what = format!("{:?} of `{}`", doc.kind(), doc.device_id());
                out.push(
                    doc.into_change(&mut reveal, key)
                        .map_err(|e| ReadError::Malformed(format!("{what}: {e}")))?,
                );
            }
            out
        };
        if let Some((count, address, path)) = inline {
            return Err(ReadError::NeedsManifests {
                count,
                address,
                path,
            });
        }
        if !problems.is_empty() {
            return Err(ReadError::Secrets(problems));
        }
        Ok(Plan {
            format_version: self.format_version,
            hub: self.hub,
            owner: self.owner,
            manifest_digest: self.manifest_digest,
            summary: self.summary,
            changes,
            conflicts: self.conflicts,
            requests: self.requests,
            estimated_apply_seconds: self.estimated_apply_seconds,
            estimated_read_seconds: self.estimated_read_seconds,
            read_seconds: self.read_seconds,
            scope: self.scope,
            no_longer_declared: self.no_longer_declared,
            rollout: self.rollout,
            warnings: self.warnings,
            read: self.read,
            digest_key: self.digest_key,
            objects: self.objects,
            awaiting: Vec::new(),
        })
    }
}

impl Plan {
    /// The plan as a file holds it.
    pub fn to_saved(&self) -> SavedPlan {
        SavedPlan {
            format_version: self.format_version,
            hub: self.hub.clone(),
            owner: self.owner.clone(),
            manifest_digest: self.manifest_digest.clone(),
            summary: self.summary,
            changes: self.changes.iter().map(Change::to_doc).collect(),
            conflicts: self.conflicts.clone(),
            requests: self.requests.clone(),
            estimated_apply_seconds: self.estimated_apply_seconds,
            estimated_read_seconds: self.estimated_read_seconds,
            read_seconds: self.read_seconds,
            scope: self.scope.clone(),
            no_longer_declared: self.no_longer_declared.clone(),
            rollout: self.rollout.clone(),
            warnings: self.warnings.clone(),
            read: self.read.clone(),
            digest_key: self.digest_key.clone(),
            objects: self.objects.clone(),
            awaiting: Vec::new(),
        }
    }
}
