//! What the worker needs of the platform's database, and `learning-worker check`.
//!
//! The platform (gustav) owns its schema and builds it with its own migrations; the
//! worker ships no SQL for it and never asks an operator to change it. It relies on:
//!
//! - `learning_submission_jobs`, the queue, with the platform's columns and its one
//!   index `(status, visible_at)` (the lease statement is written for that index);
//! - `learning_submissions`, read as the job's student: the platform's row-level
//!   policy shows a member of `gustav_limited` a row only while `app.current_sub`
//!   names its student;
//! - three `SECURITY DEFINER` helpers that write a submission's result, failure or
//!   retry. They do nothing (and say nothing) when the submission is no longer pending
//!   or extracted, so the worker reads back what its call did;
//! - the role `gustav_worker` (a member of `gustav_limited`) with its grants.
//!
//! Nothing notifies about jobs. The only notification is the platform's on channel
//! `learning_submissions` (every new submission, whose job is inserted in the same
//! transaction, and every status change): the worker listens there as a hint and
//! polls every `WORKER_POLL_INTERVAL` for the rest (retries whose backoff ended,
//! expired leases).

use tokio_postgres::Client;

use crate::database::DatabaseProblem;

/// The job table, schema-qualified, as `lease` needs it.
pub const JOB_TABLE: &str = "public.learning_submission_jobs";
/// The job table's column naming the submission a job is for.
pub const JOB_KEY_COLUMN: &str = "submission_id";
/// The platform's channel: a new submission (and its job) or a status change.
pub const JOB_CHANNEL: &str = "learning_submissions";

/// The queue of [`JOB_TABLE`].
pub fn queue_config() -> lease::QueueConfig {
    lease::QueueConfig::new(JOB_TABLE, JOB_KEY_COLUMN).expect("the job table's names are valid")
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
    /// A warning ([`DatabaseProblem::is_warning`]) is reported by `check` and
    /// changes nothing else.
    pub fn blocks_work(&self) -> bool {
        !self.ok && !self.problem.is_warning()
    }
}

/// The columns the worker reads or writes, with the platform's types.
const COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "learning_submissions",
        &[
            ("id", "uuid"),
            ("student_sub", "text"),
            ("kind", "text"),
            ("text_body", "text"),
            ("storage_key", "text"),
            ("mime_type", "text"),
            ("size_bytes", "integer"),
            ("sha256", "text"),
            ("analysis_status", "text"),
            ("internal_metadata", "jsonb"),
            ("completed_at", "timestamp with time zone"),
            ("vision_last_attempt_at", "timestamp with time zone"),
            ("feedback_last_attempt_at", "timestamp with time zone"),
        ],
    ),
    (
        "learning_submission_jobs",
        &[
            ("id", "uuid"),
            ("submission_id", "uuid"),
            ("payload", "jsonb"),
            ("status", "text"),
            ("retry_count", "integer"),
            ("visible_at", "timestamp with time zone"),
            ("lease_key", "uuid"),
            ("leased_until", "timestamp with time zone"),
            ("error_code", "text"),
            ("created_at", "timestamp with time zone"),
            ("updated_at", "timestamp with time zone"),
        ],
    ),
];

/// The helpers, by the signatures the worker calls.
pub const HELPERS: [&str; 3] = [
    "public.learning_worker_update_completed(uuid, text, text, jsonb)",
    "public.learning_worker_update_failed(uuid, text, text)",
    "public.learning_worker_mark_retry(uuid, text, text, timestamptz)",
];

/// Checks, as the connected role, that the platform's objects the worker needs are
/// there with the types it reads, that the role may use them (privileges and
/// row-level security), and that it is not privileged; and warns when the
/// platform's result helpers are open to every role.
pub async fn check(client: &Client) -> Result<Vec<Check>, tokio_postgres::Error> {
    use DatabaseProblem::{HelpersOpenToPublic, PermissionDenied, SchemaMissing};
    let mut checks: Vec<(String, DatabaseProblem, String)> = Vec::new();
    for (table, columns) in COLUMNS {
        let wanted: Vec<String> = columns
            .iter()
            .map(|(name, ty)| format!("('{name}', '{ty}')"))
            .collect();
        checks.push((
            format!(
                "table {table} and the types of its {} columns the worker uses",
                columns.len()
            ),
            SchemaMissing,
            format!(
                "select count(*) = {count} from (values {values}) wanted(name, ty) \
                 join pg_attribute a on a.attrelid = to_regclass('public.{table}') \
                   and a.attname = wanted.name and not a.attisdropped \
                   and format_type(a.atttypid, a.atttypmod) = wanted.ty",
                count = columns.len(),
                values = wanted.join(", "),
            ),
        ));
    }
    for helper in HELPERS {
        checks.push((
            format!("function {}", helper.trim_start_matches("public.")),
            SchemaMissing,
            format!("select to_regprocedure('{helper}') is not null"),
        ));
    }
    checks.push((
        "select on learning_submissions".to_owned(),
        PermissionDenied,
        "select has_table_privilege('public.learning_submissions', 'select')".to_owned(),
    ));
    checks.push((
        "select, update, delete on learning_submission_jobs".to_owned(),
        PermissionDenied,
        "select has_table_privilege('public.learning_submission_jobs', 'select, update, delete')"
            .to_owned(),
    ));
    checks.push((
        "execute on the three helper functions".to_owned(),
        PermissionDenied,
        format!(
            "select {}",
            HELPERS
                .iter()
                .map(|helper| format!("has_function_privilege('{helper}', 'execute')"))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    ));
    // Under row-level security without a policy for this role every submission
    // would look missing, and the worker would remove every job.
    checks.push((
        "a row-level policy lets the role read a submission as its student".to_owned(),
        PermissionDenied,
        "select (select not c.relrowsecurity or exists ( \
             select from pg_policy p where p.polrelid = c.oid and p.polcmd in ('r', '*') \
               and p.polpermissive \
               and (0 = any(p.polroles) or exists ( \
                   select from unnest(p.polroles) r where pg_has_role(current_user, r, 'usage')))) \
         from pg_class c where c.oid = to_regclass('public.learning_submissions'))"
            .to_owned(),
    ));
    checks.push((
        "role is not a superuser and cannot bypass row-level security".to_owned(),
        PermissionDenied,
        "select not rolsuper and not rolbypassrls from pg_roles where rolname = current_user"
            .to_owned(),
    ));
    checks.push((
        "only the worker may call the result helpers (warning)".to_owned(),
        HelpersOpenToPublic,
        "select not exists (select from pg_proc p \
             where p.pronamespace = 'public'::regnamespace and p.prosecdef \
               and p.proname in ('learning_worker_update_completed', 'learning_worker_update_failed', \
                                 'learning_worker_mark_retry') \
               and (p.proacl is null or exists (select from aclexplode(p.proacl) a \
                                                where a.grantee = 0 and a.privilege_type = 'EXECUTE')))"
            .to_owned(),
    ));
    let mut results = Vec::with_capacity(checks.len());
    for (name, problem, sql) in checks {
        // A missing object makes some checks raise instead of returning false.
        let ok = match client.query_one(sql.as_str(), &[]).await {
            Ok(row) => row.get::<_, Option<bool>>(0).unwrap_or(false),
            Err(error) if error.as_db_error().is_some() => false,
            Err(error) => return Err(error),
        };
        results.push(Check { name, ok, problem });
    }
    Ok(results)
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
