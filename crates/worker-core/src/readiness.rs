//! What keeps the worker from working right now: the circuit breaker on the model
//! backend, and a database problem. Shared by the worker loop (which sets it), the
//! binary, and `/readyz` (which reports it).
//!
//! # The circuit breaker
//!
//! When the model server is down, every job would fail the same way. Charging
//! those failures to the submissions would end students' work as `failed` for an
//! operator's outage, so a backend failure (unavailable or misconfigured, see
//! [`crate::adapter`]) instead *opens the breaker*:
//!
//! ```text
//!   closed ──job fails: backend's fault──► open: job returned unspent,
//!     ▲                                         no leasing, /readyz 503
//!     │                                           │ probe at once, then with
//!     └──────────── probe succeeds ───────────────┘ backoff (1 s … 30 s)
//! ```
//!
//! A job returned this way keeps its `retry_count` and is visible again at once.
//! One exception guards against an input that only *looks* like an outage (an
//! image that makes the model server time out every time): if the immediate probe
//! finds the backend healthy, the job gets a strike, and a job with
//! [`STRIKES_BEFORE_CHARGING`] strikes pays for the next backend failure as a
//! transient one.

use std::sync::Mutex;

use crate::adapter::AdapterError;
use crate::database::DatabaseProblem;

/// How many backend failures with a healthy backend a job may cause before it
/// pays for them.
pub const STRIKES_BEFORE_CHARGING: u32 = 3;

/// The breaker and the database's state.
#[derive(Default)]
pub struct Readiness {
    backend: Mutex<Option<AdapterError>>,
    database: Mutex<Option<DatabaseProblem>>,
}

impl Readiness {
    /// Opens the breaker (or updates its cause); whether the cause changed.
    pub fn backend_down(&self, cause: &AdapterError) -> bool {
        replace(&self.backend, Some(cause.clone()))
    }

    /// Closes the breaker; whether it was open.
    pub fn backend_up(&self) -> bool {
        replace(&self.backend, None)
    }

    /// Why the breaker is open, if it is.
    pub fn backend(&self) -> Option<AdapterError> {
        self.backend.lock().expect("readiness lock").clone()
    }

    /// Records a database problem; whether it changed.
    pub fn database_down(&self, problem: DatabaseProblem) -> bool {
        replace(&self.database, Some(problem))
    }

    /// The database serves again; whether it did not before.
    pub fn database_up(&self) -> bool {
        replace(&self.database, None)
    }

    /// The current database problem, if any.
    pub fn database(&self) -> Option<DatabaseProblem> {
        *self.database.lock().expect("readiness lock")
    }

    /// Why the worker is not ready (a reason code and a sentence), if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(problem) = self.database() {
            return Some(format!("{}: {}", problem.code(), problem.describe()));
        }
        self.backend().map(|cause| {
            let code = match cause.class {
                crate::adapter::ErrorClass::Misconfigured => "backend_misconfigured",
                _ => "backend_unavailable",
            };
            format!("{code}: {}", cause.message)
        })
    }
}

fn replace<T: PartialEq>(slot: &Mutex<Option<T>>, value: Option<T>) -> bool {
    let mut slot = slot.lock().expect("readiness lock");
    let changed = *slot != value;
    *slot = value;
    changed
}
