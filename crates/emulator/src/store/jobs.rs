//! Import/export job records (table `jobs`: job ID → JSON), so that `GET /jobs` lists the history
//! across restarts. The record is the jobs module's; this stores it as it is given. Never a
//! container URI: it holds a SAS.

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::Store;
use super::persistence::{decode, encode};
use crate::error::Error;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

impl Store {
    /// Saves (or replaces) a job's record, durably.
    pub(crate) fn save_job<T: serde::Serialize>(&self, id: &str, job: &T) -> Result<(), Error> {
        let bytes = encode(job)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(JOBS)?;
            t.insert(id, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every job record, in job ID order.
    pub(crate) fn jobs<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(JOBS) {
            Ok(t) => t,
            // A hub that never ran a job has no table.
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(decode(row?.1.value())?);
        }
        Ok(out)
    }
}
