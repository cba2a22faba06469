//! How the worker connects, so that a stalled network cannot stall the worker.
//!
//! A partition that drops packets without resetting the connection gives no error
//! at all: a statement just waits, for as long as the kernel keeps retransmitting
//! (about fifteen minutes on Linux). Three bounds together make such a cut visible
//! within a lease, all derived from the lease length:
//!
//! - every queue call, the wait for its connection included, is bounded by
//!   [`statement_timeout`] (a third of the lease: a heartbeat slower than the
//!   heartbeat interval is as good as lost); a call that times out discards its
//!   connection instead of returning it to the pool ([`lease::Queue::bounded`]);
//! - the pool's waits for a free, a new or a recycled connection are bounded by
//!   the same time, so a dead server cannot hold a caller either;
//! - TCP keepalives (idle connections, the LISTEN one included) and a TCP user
//!   timeout (unacknowledged writes) of one lease let the kernel close a connection
//!   into a real partition, so a connection stuck elsewhere dies too.
//!
//! The worker loop then treats the timeout like any unreachable database: not
//! ready, back off (at most [`statement_timeout`]), lease again; its jobs were
//! already cancelled by their own deadline before their leases could end.

use std::time::Duration;

use deadpool_postgres::{BuildError, Manager, Pool, Runtime};
use lease::ListenerTls;

/// The bound on one database call for a lease of `lease`: a third of it, at least
/// two seconds (a busy but healthy database must not look partitioned).
pub fn statement_timeout(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_secs(2))
}

/// Adds keepalives, a TCP user timeout of one lease and, unless the DSN has one, a
/// connect timeout to `config`.
pub fn harden(config: &mut tokio_postgres::Config, lease: Duration) {
    config
        .keepalives(true)
        .keepalives_idle(statement_timeout(lease))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(lease);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(statement_timeout(lease));
    }
}

/// A pool of at most `size` connections made with `tls`, each wait bounded by
/// [`statement_timeout`].
pub fn pool<T: ListenerTls>(
    config: tokio_postgres::Config,
    tls: T,
    size: usize,
    lease: Duration,
) -> Result<Pool, BuildError> {
    let timeout = Some(statement_timeout(lease));
    Pool::builder(Manager::new(config, tls))
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
}

/// The job queue on `pool`, every call bounded by [`statement_timeout`].
pub fn queue(pool: Pool, lease: Duration) -> lease::Queue {
    lease::Queue::new(
        pool,
        &crate::schema::queue_config().with_statement_timeout(statement_timeout(lease)),
    )
}
