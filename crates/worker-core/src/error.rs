//! Why the worker loop stopped before its time.

use crate::database::DatabaseProblem;

/// Why [`crate::worker::run`] gave up. In `run` mode only a failure to start
/// ends it; `drain` also gives up on problems that waiting cannot cure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database cannot serve the worker until an operator acts.
    #[error("{0}; fix: {fix}", fix = .0.fix())]
    Database(DatabaseProblem),
    /// The model backend is misconfigured (a missing model, refused credentials,
    /// a missing host tool); leased jobs were returned unspent.
    #[error("the model backend is misconfigured: {0}")]
    Backend(String),
}
