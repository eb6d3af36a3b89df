//! The client edge, and the only place that knows IoT Hub's protocol. [`Hub`] is its API in the
//! model's terms: IDs, addresses, etags, typed patches and changes in; observed twins and typed
//! results out. Behind it:
//!
//! - `rest`: the REST API as wire documents ([`Rest`]) (HTTPS, SAS or bearer auth, retries by policy,
//!   pacing, request counts, the one query paging loop);
//! - `identity`: identity writes with IoT Hub's rules (`deviceScope`/`parentScopes`, the echo of the
//!   authentication block, why a module operation was refused with 401);
//! - `bulk`: identity creates as bulk registry rows;
//! - `query`: the SQL twinops sends (`IN` lists, the owner's `COUNT()` and projection queries);
//! - `read`: the one twin reader (GETs, `IN` queries or paged `SELECT *`, decided in one place),
//!   which plans, drift, rollout gates, `apply --wait` and export all use;
//! - `observe` and `body`: wire twins into model observations and model values into wire bodies;
//! - `error`, `retry`, `pace`: errors by status and `ErrorCode` ([`Error`]), the backoff policy
//!   ([`Backoff`]), pacing.

mod body;
mod bulk;
mod error;
pub(crate) mod export;
mod identity;
mod objects;
mod observe;
pub(crate) mod pace;
mod query;
pub(crate) mod read;
mod rest;
mod retry;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use bulk::{BULK_ROWS, Created, NewIdentity};
pub use error::{Error, Permission};
pub use identity::{Deleted, IdentityWrite, KeyError, StepError};
pub use objects::ObjectWrite;
pub use observe::written_keys;
pub use rest::{ClientOptions, Credentials, QueryPage, RequestCounts, Rest, install_crypto};
pub use retry::Backoff;
pub use twinops_iothub::quota::OpClass;

use twinops_core::model::{
    DeviceId, ETag, ModuleId, ObservedConfiguration, ObservedTwin, Owner, TwinAddress,
};
use twinops_core::plan::TwinPatch;
use twinops_iothub::connection_string::{Secret, ServiceConnectionString};

/// A client of one hub, in the model's terms.
pub struct Hub {
    rest: Rest,
    /// The `deviceScope` of edge parents, read once per parent and run.
    scopes: tokio::sync::Mutex<HashMap<DeviceId, Option<String>>>,
}

impl Hub {
    /// A client for the hub a connection string names.
    pub fn new(
        cs: &ServiceConnectionString,
        bearer: Option<Secret>,
        options: ClientOptions,
    ) -> anyhow::Result<Hub> {
        Ok(Hub {
            rest: Rest::new(cs, bearer, options)?,
            scopes: Default::default(),
        })
    }

    /// The REST API underneath, as wire documents.
    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    /// Reads a PEM file for [`ClientOptions::ca_pem`].
    pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
        Rest::read_ca(path)
    }

    /// Where retry progress goes (a line of talk each).
    pub fn set_notify(&mut self, notify: Arc<dyn Fn(String) + Send + Sync>) {
        self.rest.set_notify(notify);
    }

    /// Paces requests per class from now on.
    pub fn set_pace(&mut self, pacer: Arc<pace::Pacer>) {
        self.rest.set_pace(pacer);
    }

    pub fn pacer(&self) -> Option<&Arc<pace::Pacer>> {
        self.rest.pacer()
    }

    /// The host name (with port) this client talks to.
    pub fn host(&self) -> &str {
        self.rest.host()
    }

    pub fn counts(&self) -> &Arc<RequestCounts> {
        self.rest.counts()
    }

    // ---- twins

    /// A twin as the model sees it (what the 412 rule, gates and `--wait` compare).
    pub async fn twin(&self, address: &TwinAddress) -> Result<ObservedTwin, Error> {
        let t = self
            .rest
            .get_twin(&address.device, address.module_id())
            .await?;
        observe::twin(t)
    }

    /// Merge-patches a twin's tags and desired properties under `If-Match: "<etag>"`; the twin as
    /// the write left it.
    pub async fn patch_twin(
        &self,
        address: &TwinAddress,
        patch: &TwinPatch,
        if_match: &ETag,
    ) -> Result<ObservedTwin, Error> {
        let t = self
            .rest
            .patch_twin(
                &address.device,
                address.module_id(),
                &patch.to_value(),
                if_match,
            )
            .await?;
        observe::twin(t)
    }

    // ---- queries and configurations

    /// How many device twins and module twins hold a ledger of `owner` (two `COUNT()` queries).
    pub async fn count_owned(&self, owner: &Owner) -> Result<(u64, u64), Error> {
        query::count_owned(&self.rest, owner).await
    }

    /// Every identity whose twin holds a ledger of `owner` (projection queries, a page per 100).
    pub async fn owned(&self, owner: &Owner) -> Result<Vec<TwinAddress>, Error> {
        query::owned(&self.rest, owner).await
    }

    /// A module identity's `managedBy`.
    pub async fn module_managed_by(
        &self,
        device: &DeviceId,
        module: &ModuleId,
    ) -> Result<Option<String>, Error> {
        let m = self.rest.get_module(device, module).await?;
        Ok(m.managed_by.filter(|s| !s.is_empty()))
    }

    /// Configurations by ID, as the desired keys each writes: one read per ID. One deleted since a
    /// twin named it is left out.
    pub async fn configurations_by_id(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<BTreeMap<String, ObservedConfiguration>, Error> {
        let mut out = BTreeMap::new();
        for id in ids {
            match self.rest.get_configuration(&id).await {
                Ok(c) => {
                    out.insert(id, observe::configuration(c));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
