//! Leasing jobs from a PostgreSQL table so that no two workers process the same
//! job while a lease lives, and no write lands after a lease is lost.
//!
//! # The lease lifecycle
//!
//! A job is `queued`; [`Queue::lease`] makes it `leased` with a fresh `lease_key`
//! and `leased_until = now() + lease` (one statement, `FOR UPDATE SKIP LOCKED`);
//! [`Queue::heartbeat`] extends every key a worker holds (one statement, every
//! third of the lease). One fenced write ends the lease: complete (the row is
//! deleted), retry (`queued`, `retry_count + 1`, visible after a backoff), fail
//! (`failed`) or release (`queued`, unchanged). A lease whose `leased_until` passes
//! without a heartbeat — a crash, a pause, a partition — makes the job leasable
//! again with a new key, and the old key is dead. The repository draws this once,
//! in `docs/architecture.md` ("The lease lifecycle"); `docs/learning-path.md` tells
//! the stories it answers, and `examples/fencing_demo.rs` makes the stale write
//! happen.
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
//! **Batches.** On a durable database every commit waits for the disk, so a busy
//! worker's writes are cheaper together: [`Queue::complete_many_with`] completes
//! many jobs, each with its own values, and [`Queue::merge_payloads`] patches many
//! payloads, each in one statement, one commit. Each job is still fenced by its own
//! key: a lost lease drops out of the batch and the others go through.
//!
//! **Time** in the table is the database's (`now()`): who holds a lease, and until
//! when, never depends on a worker's clock being right. A worker may still keep its
//! own *conservative* deadline (`worker-core` does: the moment it sent the lease
//! statement plus the lease, less a margin), which only ever gives a job up early.
//! Every time-dependent statement takes an optional `now` so tests move the clock
//! instead of sleeping.
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
pub use queue::{Fence, JobKey, LeasedJob, Queue, QueueConfig};
