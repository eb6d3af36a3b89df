//! Outcomes of identity updates and deletes, from what the hub client did (it holds IoT Hub's
//! rules for those writes: `crate::hub::Hub::update_device` and the rest).

use super::{Executor, Outcome, Status, outcome};
use crate::hub::{Deleted, IdentityWrite, StepError};
use twinops_core::plan::Change;
use twinops_core::report::Reason;

/// The outcome of an identity update.
pub(super) async fn written(
    ex: &Executor<'_>,
    c: &Change,
    result: Result<IdentityWrite, StepError>,
) -> Outcome {
    match result {
        Ok(IdentityWrite::Written) => outcome(c, Status::Applied),
        Ok(IdentityWrite::WrittenTwice) => outcome(c, Status::Applied).because(Reason::TwoWrites),
        Ok(IdentityWrite::Changed) => outcome(c, Status::Conflict).because(Reason::IdentityChanged),
        Ok(IdentityWrite::ChangedBetweenWrites) => {
            outcome(c, Status::Conflict).because(Reason::ChangedBetweenWrites)
        }
        Ok(IdentityWrite::ParentNotEdge(p)) => {
            outcome(c, Status::Failed).because(Reason::ParentNotEdge(p))
        }
        Err(e) => ex.failed(c, e).await,
    }
}

/// The outcome of an identity delete.
pub(super) async fn deleted(
    ex: &Executor<'_>,
    c: &Change,
    result: Result<Deleted, StepError>,
) -> Outcome {
    match result {
        Ok(Deleted::Deleted) => outcome(c, Status::Applied),
        Ok(Deleted::AlreadyGone) => outcome(c, Status::Applied).because(Reason::AlreadyGone),
        Ok(Deleted::Changed) => outcome(c, Status::Conflict).because(Reason::ChangedNotDeleted),
        Ok(Deleted::TwinChanged) => outcome(c, Status::Conflict).because(Reason::ModuleTwinChanged),
        Err(e) => ex.failed(c, e).await,
    }
}
