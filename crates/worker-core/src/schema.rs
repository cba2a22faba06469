//! The SQL schema the worker relies on (`schema.sql`: tables, row-level security,
//! the result helpers, the notify trigger), embedded in the binary and applied as
//! one transaction.
//!
//! The script is idempotent (`create … if not exists`, `create or replace`, drop-and-
//! create for triggers and policies), so deployments and tests can apply it on every
//! start. Concurrent appliers (several test processes sharing one server, two workers
//! starting at once) are serialised by a transaction-scoped advisory lock, because
//! `create role` and `create table if not exists` are not safe to race.

use tokio_postgres::Client;

use crate::database::DatabaseProblem;

/// The schema script, as shipped in `schema.sql`.
pub const SQL: &str = include_str!("schema.sql");

/// The job table, schema-qualified, as `lease` needs it.
pub const JOB_TABLE: &str = "public.learning_submission_jobs";
/// The job table's column naming the submission a job is for.
pub const JOB_KEY_COLUMN: &str = "submission_id";
/// The channel the job table's insert trigger notifies.
pub const JOB_CHANNEL: &str = "learning_submission_jobs";

/// The queue of [`JOB_TABLE`].
pub fn queue_config() -> lease::QueueConfig {
    lease::QueueConfig::new(JOB_TABLE, JOB_KEY_COLUMN).expect("the job table's names are valid")
}

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

/// One line of `learning-worker check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `table learning_submissions`.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// What a failure of this check means (and so how to fix it).
    pub problem: DatabaseProblem,
}

impl Check {
    /// Whether a failure stops the worker from working (and so makes it unready).
    /// A missing lease index only makes it slower: `check` reports it, `/readyz`
    /// does not.
    pub fn blocks_work(&self) -> bool {
        !self.ok && self.problem != DatabaseProblem::LeaseIndexMissing
    }
}

/// Checks, as the connected role, that the objects the worker needs exist, that the
/// role has exactly the privileges it needs, and that it is not privileged.
pub async fn check(client: &Client) -> Result<Vec<Check>, tokio_postgres::Error> {
    use DatabaseProblem::{LeaseIndexMissing, PermissionDenied, SchemaMissing};
    const CHECKS: &[(&str, DatabaseProblem, &str)] = &[
        (
            "table learning_submissions",
            SchemaMissing,
            "select to_regclass('public.learning_submissions') is not null",
        ),
        (
            "table learning_submission_jobs",
            SchemaMissing,
            "select to_regclass('public.learning_submission_jobs') is not null",
        ),
        (
            "table unit_tasks",
            SchemaMissing,
            "select to_regclass('public.unit_tasks') is not null",
        ),
        (
            "notify trigger on learning_submission_jobs",
            SchemaMissing,
            "select exists (select 1 from pg_trigger where tgname = 'learning_submission_jobs_notify')",
        ),
        (
            "function learning_worker_update_completed",
            SchemaMissing,
            "select to_regprocedure('public.learning_worker_update_completed(uuid, text, text, jsonb)') is not null",
        ),
        (
            "function learning_worker_update_failed",
            SchemaMissing,
            "select to_regprocedure('public.learning_worker_update_failed(uuid, text, text)') is not null",
        ),
        (
            "function learning_worker_mark_retry",
            SchemaMissing,
            "select to_regprocedure('public.learning_worker_mark_retry(uuid, text, text, timestamptz)') is not null",
        ),
        (
            "index on learning_submission_jobs (status, visible_at, created_at)",
            LeaseIndexMissing,
            "select exists (select 1 from pg_index i \
                    where i.indrelid = 'public.learning_submission_jobs'::regclass and i.indisvalid \
                    and (i.indkey::int2[])[0:2] = (select array_agg(a.attnum order by o.n)::int2[] \
                        from unnest(array['status', 'visible_at', 'created_at']) with ordinality as o(name, n) \
                        join pg_attribute a on a.attrelid = i.indrelid and a.attname = o.name))",
        ),
        (
            "select on learning_submissions and unit_tasks",
            PermissionDenied,
            "select has_table_privilege('public.learning_submissions', 'select') \
                    and has_table_privilege('public.unit_tasks', 'select')",
        ),
        (
            "select, update, delete on learning_submission_jobs",
            PermissionDenied,
            "select has_table_privilege('public.learning_submission_jobs', 'select, update, delete')",
        ),
        (
            "execute on the three helper functions",
            PermissionDenied,
            "select has_function_privilege('public.learning_worker_update_completed(uuid, text, text, jsonb)', 'execute') \
                    and has_function_privilege('public.learning_worker_update_failed(uuid, text, text)', 'execute') \
                    and has_function_privilege('public.learning_worker_mark_retry(uuid, text, text, timestamptz)', 'execute')",
        ),
        (
            "role is not a superuser and cannot bypass row-level security",
            PermissionDenied,
            "select not rolsuper and not rolbypassrls from pg_roles where rolname = current_user",
        ),
    ];
    let mut checks = Vec::with_capacity(CHECKS.len());
    for (name, problem, sql) in CHECKS {
        // A missing object makes some checks raise instead of returning false.
        let ok = match client.query_one(*sql, &[]).await {
            Ok(row) => row.get::<_, Option<bool>>(0).unwrap_or(false),
            Err(error) if error.as_db_error().is_some() => false,
            Err(error) => return Err(error),
        };
        checks.push(Check {
            name: (*name).to_owned(),
            ok,
            problem: *problem,
        });
    }
    Ok(checks)
}

/// Who the connected role is, for refusing privileged roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleInfo {
    /// `current_user`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
}

impl RoleInfo {
    /// Roles the worker must not run as: superusers, roles that bypass RLS, and the
    /// platform's service roles.
    pub fn is_privileged(&self) -> bool {
        self.superuser
            || self.bypass_rls
            || ["postgres", "service_role", "supabase_admin"].contains(&self.name.as_str())
    }
}

/// Reads the connected role's attributes.
pub async fn role_info(client: &Client) -> Result<RoleInfo, tokio_postgres::Error> {
    let row = client
        .query_one("select current_user::text, rolsuper, rolbypassrls from pg_roles where rolname = current_user", &[])
        .await?;
    Ok(RoleInfo {
        name: row.get(0),
        superuser: row.get(1),
        bypass_rls: row.get(2),
    })
}
