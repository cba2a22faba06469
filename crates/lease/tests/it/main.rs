//! Integration tests of `lease` against the fixtures cluster: exclusivity under
//! concurrency, heartbeats, fencing, retries, LISTEN/NOTIFY and configurability.

mod leasing;
mod listening;
mod model;

use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, Pool};
use fixtures::TestDb;
use lease::{Queue, QueueConfig};
use tokio_postgres::NoTls;

pub(crate) const LEASE: Duration = Duration::from_secs(30);

pub(crate) fn pool(db: &TestDb, size: usize) -> Pool {
    Pool::builder(Manager::new(db.config(), NoTls))
        .max_size(size)
        .build()
        .unwrap()
}

pub(crate) fn queue(db: &TestDb, size: usize) -> Queue {
    let config = QueueConfig::new("public.learning_submission_jobs", "submission_id").unwrap();
    Queue::new(pool(db, size), &config)
}

/// A fixed instant for tests that move the clock by hand.
pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}
