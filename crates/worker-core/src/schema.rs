//! The SQL schema of `shared/spec/schema.md`, embedded in the binary and applied as
//! one transaction.
//!
//! The script is idempotent (`create … if not exists`, `create or replace`, drop-and-
//! create for triggers and policies), so deployments and tests can apply it on every
//! start. Concurrent appliers (several test processes sharing one server, two workers
//! starting at once) are serialised by a transaction-scoped advisory lock, because
//! `create role` and `create table if not exists` are not safe to race.

use tokio_postgres::Client;

/// The schema script, as shipped in `schema.sql`.
pub const SQL: &str = include_str!("schema.sql");

/// The advisory-lock key that serialises concurrent [`apply`] calls.
///
/// An arbitrary constant; it only has to differ from other advisory locks the
/// platform takes.
const APPLY_LOCK_KEY: i64 = 0x6c77_5f73_6368_656d;

/// Applies [`SQL`] in one transaction; running it again changes nothing.
///
/// Needs a role that may create tables, functions and roles (the platform's owner or
/// a superuser), not the worker's own role.
pub async fn apply(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("select pg_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await?;
    transaction.batch_execute(SQL).await?;
    transaction.commit().await
}
