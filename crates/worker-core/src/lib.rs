//! The learning worker's core: everything the `learning-worker` binary does between
//! "a job was leased" and "its result was written".
//!
//! Today this crate holds the database contract the worker relies on ([`schema`]):
//! the tables, the row-level-security policy, the notify trigger, the three
//! `SECURITY DEFINER` helpers through which the worker changes a submission, and the
//! least-privilege `gustav_worker` role. The pipeline (adapters, OCR cache, retry
//! policy, concurrency) builds on these objects.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
//! // Create (or confirm) every object the worker needs; running it again changes nothing.
//! worker_core::schema::apply(client).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Why the helpers are `SECURITY DEFINER`
//!
//! The worker's role may read submissions (and only the current student's, through
//! row-level security keyed on `app.current_sub`) but may not update them. Every state
//! change goes through a function that checks the submission is in a state it may
//! leave (`pending` or `extracted`) and raises otherwise. That check, inside the
//! database, is what makes "a result is written at most once" hold even when two
//! workers race: the second call fails instead of overwriting the first.

pub mod schema;
