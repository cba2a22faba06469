//! Leasing jobs from a PostgreSQL table so that no two workers process the same
//! job while a lease lives, and no write lands after a lease is lost.
//!
//! # The lease lifecycle
//!
//! ```text
//!            lease (one statement, FOR UPDATE SKIP LOCKED,
//!            fresh lease_key, leased_until = now + lease)
//!   queued ─────────────────────────────────────────────► leased ──┐ heartbeat every
//!     ▲  ▲                                                  │  │ ◄─┘ lease/3: one
//!     │  │ release (shutdown, unexpected error)             │  │     statement for all
//!     │  └──────────────────────────────────────────────────┘  │     held keys
//!     │    retry (retry_count+1, visible_at = now + backoff)   │
//!     └────────────────────────────────────────────────────────┤
//!                                              complete: delete │ fail: status failed
//!   leased_until passes without a heartbeat (crash, partition):
//!   the job is leasable again, with a new key; the old key is dead.
//! ```
//!
//! **Fencing.** Every write names the job *and* its `lease_key`, and reports whether it
//! touched the row. [`Queue::fence`] opens a transaction that locks the row only if the
//! key still matches; the caller adds its own writes (the result) to that transaction
//! and ends it with [`Fence::complete`], [`Fence::retry`], [`Fence::fail`] or
//! [`Fence::release`]. A worker whose lease was taken over gets `None` and writes
//! nothing, so a result is never written by a worker that lost its lease. The
//! common end — write the result, delete the job — also exists as one statement,
//! [`Queue::complete_with`]: a fenced `DELETE … RETURNING` whose row, if any, feeds
//! the caller's SQL call, so the whole completion is one round trip and atomic.
//! [`Queue::complete_many`] acks many jobs that have nothing else to write.
//!
//! **Time** is the database's (`now()`), so worker clocks never matter; every
//! time-dependent statement takes an optional `now` so tests move the clock instead
//! of sleeping.
//!
//! **Wake-ups.** [`Listener`] LISTENs on a dedicated connection and reconnects by
//! itself; the worker polls as a fallback.
//!
//! The table and reference column are configuration ([`QueueConfig`]), so the crate
//! serves any table with the job columns.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(pool: deadpool_postgres::Pool) -> Result<(), lease::Error> {
//! use std::time::Duration;
//!
//! let config = lease::QueueConfig::new("public.learning_submission_jobs", "submission_id")?;
//! let queue = lease::Queue::new(pool, &config);
//! for job in queue.lease(4, Duration::from_secs(45), None).await? {
//!     // ... process; keep `queue.heartbeat(&[job.lease_key], ..)` going meanwhile ...
//!     let mut client = queue.pool().get().await?;
//!     match queue.fence(&mut client, &job).await? {
//!         Some(fence) => fence.complete().await?,
//!         None => { /* lease lost: someone else owns the job now */ }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod listener;
mod queue;

pub use error::Error;
pub use listener::{Listener, ListenerTls};
pub use queue::{Fence, LeasedJob, Queue, QueueConfig};
