//! The learning worker's core: everything the `learning-worker` binary does between
//! "a job was leased" and "its result was written".
//!
//! - [`schema`]: the database contract (tables, row-level security, the notify
//!   trigger, the three `SECURITY DEFINER` helpers, the `gustav_worker` role).
//! - [`adapter`]: the vision (OCR) and feedback steps as traits with
//!   transient/permanent errors; [`stub`] is the deterministic backend and
//!   [`ollama`] the real one (`AI_BACKEND=local`).
//! - [`pipeline`]: one job's life, step by step, every write fenced by its lease,
//!   its database steps batched with the other running jobs'.
//! - [`worker`]: the loop — concurrency, heartbeats, wake-ups, shutdown, drain.
//! - [`readiness`]: the circuit breaker that keeps an outage of the model backend
//!   from failing students' work, and the database's state; [`database`]: database
//!   problems named with their fix.
//! - [`metrics`]: counters for `/metrics`; [`health`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! # The lease lifecycle, from the worker's side
//!
//! 1. The loop leases as many jobs as it has free slots (one statement,
//!    `FOR UPDATE SKIP LOCKED`, by the database clock). Each job gets a fresh
//!    `lease_key`.
//! 2. While jobs run, one heartbeat statement every `lease / 3` extends all their
//!    leases. A key missing from the answer means the lease was lost: the job's task
//!    is cancelled and writes nothing.
//! 3. Every write carries the key. The final write — result plus job deletion — is one
//!    statement that deletes the job row *by id and key* and, only if that found it,
//!    calls the helper that writes the result; if the key no longer matches, nothing
//!    is written.
//! 4. A crashed worker stops heartbeating; after `leased_until` another worker may
//!    lease the job with a new key, and the old key can no longer write.
//!
//! # The concurrency model
//!
//! One tokio task per job, at most `WORKER_CONCURRENCY` at once. No database
//! transaction stays open while a model runs: the pipeline reads in one short
//! transaction, calls the adapters with no connection held, and writes in another.
//! So a slow model never holds row locks or pool connections, and a pool of a few
//! connections serves many concurrent jobs.
//!
//! Those short transactions are *group-committed* across jobs (the private `batch`
//! module): the reads, OCR cache writes and results of all running jobs that arrive
//! while the previous batch is in the database go together, in one round trip and
//! one commit. No job waits for a timer, so one job alone is written at once; each
//! job keeps its own fence inside the batch; and a batch that fails is rerun job by
//! job, so one job's error is never another's. On a durable database, where every
//! commit waits for the disk, this is what lets `WORKER_CONCURRENCY` buy throughput.
//!
//! # OCR reuse
//!
//! Vision is the expensive step, so its result is cached in the job's own payload
//! (`cached_text_md`, `cached_raw_metadata`) the moment it exists (a fenced update).
//! If feedback then fails transiently, or the worker crashes, the next attempt finds
//! the cache and goes straight to feedback: once the cache is written, no retry pays
//! for OCR again. The one window left is between the vision reply and the commit of
//! its cache write: a crash or a lost lease there repeats OCR on the next attempt
//! (never a wrong result, only the cost). The cache write's answer comes after its
//! commit, so feedback never starts on an OCR text that is not yet durable. Text
//! submissions skip vision entirely; the student's own text is used verbatim.
//!
//! ```text
//!   attempt 1: vision ✓ ─► cache in payload ─► feedback ✗ (transient) ─► retry later
//!   attempt 2: cache hit ───────────────────► feedback ✓ ─► completed
//! ```
//!
//! # Example
//!
//! ```no_run
//! # async fn example(pool: deadpool_postgres::Pool, database: tokio_postgres::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use worker_core::{pipeline::Pipeline, stub::StubAdapter, worker};
//!
//! let stub = Arc::new(StubAdapter { delay: Duration::ZERO, failures: vec![], call_log: None });
//! let queue = lease::Queue::new(pool, &worker_core::schema::queue_config());
//! let pipeline = Arc::new(Pipeline::new(queue, stub.clone(), stub, 3, Duration::from_secs(10)));
//! let settings = worker::WorkerConfig {
//!     concurrency: 4,
//!     lease: Duration::from_secs(45),
//!     poll_interval: Duration::from_millis(500),
//!     shutdown_grace: Duration::from_secs(30),
//! };
//! // Wake-ups when jobs are inserted, on a connection of its own (TLS as the pool's).
//! let listener = lease::Listener::spawn(database, tokio_postgres::NoTls, worker_core::schema::JOB_CHANNEL)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let observers = worker::Observers::default();
//! worker::run(pipeline, settings, listener, observers, worker::Mode::Drain, shutdown).await?;
//! # Ok(())
//! # }
//! ```

pub mod adapter;
pub mod analysis;
mod batch;
pub mod connection;
pub mod database;
mod error;
pub mod health;
pub mod metrics;
#[cfg(feature = "ollama")]
pub mod ollama;
pub mod payload;
pub mod pipeline;
pub mod readiness;
pub mod schema;
pub mod stub;
pub mod vocabulary;
pub mod worker;

pub use error::Error;
