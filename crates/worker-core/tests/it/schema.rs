//! The schema contract (`schema.sql`) checked against a real server.

use std::time::Duration;

use fixtures::TestDb;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Every schema object of `public` and the worker role, one line each, sorted: two
/// equal fingerprints mean the schema did not change.
const FINGERPRINT: &str = r#"
select string_agg(item, E'\n' order by item) from (
    select format('rel %s %s rls=%s acl=%s', c.relname, c.relkind, c.relrowsecurity, c.relacl)
      from pg_class c where c.relnamespace = 'public'::regnamespace
    union all
    select format('col %s.%s %s notnull=%s default=%s', a.attrelid::regclass, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
      from pg_attribute a
      join pg_class c on c.oid = a.attrelid and c.relnamespace = 'public'::regnamespace
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where a.attnum > 0 and not a.attisdropped
    union all
    select format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
      from pg_constraint where connamespace = 'public'::regnamespace
    union all
    select format('fn %s %s acl=%s', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)), p.proacl)
      from pg_proc p where p.pronamespace = 'public'::regnamespace
    union all
    select format('trigger %s', pg_get_triggerdef(oid)) from pg_trigger where not tgisinternal
    union all
    select format('policy %s %s %s %s', polrelid::regclass, polname, polcmd, pg_get_expr(polqual, polrelid))
      from pg_policy
    union all
    select format('role %s login=%s super=%s bypassrls=%s', rolname, rolcanlogin, rolsuper, rolbypassrls)
      from pg_roles where rolname = 'gustav_worker'
) items (item)
"#;

async fn fingerprint(client: &Client) -> String {
    client.query_one(FINGERPRINT, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn applying_twice_changes_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut client = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&client).await.unwrap();
    let before = fingerprint(&client).await;
    assert!(
        before.contains("fn learning_worker_update_completed("),
        "{before}"
    );
    assert!(
        before.contains("trigger CREATE TRIGGER learning_submission_jobs_notify"),
        "{before}"
    );

    worker_core::schema::apply(&mut client).await.unwrap();
    worker_core::schema::apply(&mut client).await.unwrap();

    assert_eq!(fingerprint(&client).await, before);
    let kept: i64 = client
        .query_one(
            "select count(*) from learning_submissions where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "re-applying keeps the data");
}

#[tokio::test]
async fn worker_sees_only_the_current_students_submissions() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let alice = fixtures::submission()
        .student("alice")
        .insert(&admin)
        .await
        .unwrap();
    fixtures::submission()
        .student("bob")
        .insert(&admin)
        .await
        .unwrap();
    let mut worker = db.connect_as_worker().await.unwrap();

    let unscoped: i64 = worker
        .query_one("select count(*) from learning_submissions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unscoped, 0, "without app.current_sub nothing is visible");

    let transaction = worker.transaction().await.unwrap();
    transaction
        .execute(
            "select set_config('app.current_sub', $1, true)",
            &[&"alice"],
        )
        .await
        .unwrap();
    let visible: Vec<uuid::Uuid> = transaction
        .query("select id from learning_submissions", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(visible, vec![alice.id]);
}

#[tokio::test]
async fn worker_cannot_update_submissions_directly() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();

    let error = worker
        .execute(
            "update learning_submissions set analysis_status = 'completed' where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let error = worker
        .execute("delete from unit_tasks", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}

#[tokio::test]
async fn worker_calls_the_three_helpers() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let completed = fixtures::submission().insert(&admin).await.unwrap();
    let failed = fixtures::submission().image().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let analysis = serde_json::json!({"schema": "criteria.v2", "parse_status": "parsed"});

    worker
        .execute(
            "select learning_worker_mark_retry($1, 'vision', 'model timed out', now())",
            &[&failed.id],
        )
        .await
        .unwrap();
    worker
        .execute(
            "select learning_worker_update_failed($1, 'vision_failed', repeat('x', 5000))",
            &[&failed.id],
        )
        .await
        .unwrap();
    worker
        .execute(
            "select learning_worker_update_completed($1, 'the text', 'well done', $2)",
            &[&completed.id, &analysis],
        )
        .await
        .unwrap();

    let row = admin
        .query_one(
            "select analysis_status, error_code, vision_attempts, length(vision_last_error) \
             from learning_submissions where id = $1",
            &[&failed.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), "vision_failed");
    assert_eq!(row.get::<_, i32>(2), 1);
    assert_eq!(
        row.get::<_, i32>(3),
        1024,
        "the message is cut to 1024 chars"
    );
    let row = admin
        .query_one(
            "select analysis_status, feedback_md, analysis_json, completed_at is not null \
             from learning_submissions where id = $1",
            &[&completed.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, String>(1), "well done");
    assert_eq!(row.get::<_, serde_json::Value>(2), analysis);
    assert!(row.get::<_, bool>(3));
}

#[tokio::test]
async fn completing_twice_raises() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let complete = "select learning_worker_update_completed($1, 'text', 'first', '{}'::jsonb)";

    worker.execute(complete, &[&submission.id]).await.unwrap();
    let error = worker
        .execute(complete, &[&submission.id])
        .await
        .unwrap_err();

    assert_eq!(
        error.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
    let feedback: String = admin
        .query_one(
            "select feedback_md from learning_submissions where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(feedback, "first");
}

#[tokio::test]
async fn helpers_reject_unknown_codes_and_phases() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();

    for statement in [
        "select learning_worker_update_failed($1, 'oops', 'x')",
        "select learning_worker_mark_retry($1, 'grading', 'x', now())",
    ] {
        let error = worker
            .execute(statement, &[&submission.id])
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{statement}"
        );
    }
}

#[tokio::test]
async fn inserting_a_job_notifies_the_channel() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let (listener, mut connection) = db.worker_config().connect(NoTls).await.unwrap();
    let (notifications, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) =
            std::future::poll_fn(|context| connection.poll_message(context)).await
        {
            if let AsyncMessage::Notification(notification) = message {
                let _ = notifications.send(notification.channel().to_owned());
            }
        }
    });
    listener
        .batch_execute("listen learning_submission_jobs")
        .await
        .unwrap();

    fixtures::job().insert(&admin).await.unwrap();

    let channel = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("a notification arrives")
        .unwrap();
    assert_eq!(channel, "learning_submission_jobs");
}

/// The quoted words of each `check (column in (…))` constraint, by `table.column`.
async fn check_constraint_words(
    client: &Client,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let rows = client
        .query(
            "select conrelid::regclass::text, pg_get_constraintdef(oid) from pg_constraint \
             where contype = 'c' and connamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .filter_map(|row| {
            let table: String = row.get(0);
            let definition: String = row.get(1);
            // CHECK ((kind = ANY (ARRAY['text'::text, 'image'::text, 'file'::text])))
            let column = definition
                .strip_prefix("CHECK ((")?
                .split(' ')
                .next()?
                .to_owned();
            let words: Vec<String> = definition
                .split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (!words.is_empty()).then(|| (format!("{table}.{column}"), words))
        })
        .collect()
}

fn words<T: std::fmt::Display>(all: &[T]) -> Vec<String> {
    all.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_sets_are_exactly_the_schema_check_constraints() {
    use worker_core::vocabulary::{AnalysisStatus, JobStatus, SubmissionErrorCode, SubmissionKind};
    let db = TestDb::new().await.unwrap();
    let sets = check_constraint_words(&db.connect().await.unwrap()).await;
    assert_eq!(
        sets["learning_submissions.kind"],
        words(SubmissionKind::ALL)
    );
    assert_eq!(
        sets["learning_submissions.analysis_status"],
        words(AnalysisStatus::ALL)
    );
    assert_eq!(
        sets["learning_submissions.error_code"],
        words(SubmissionErrorCode::ALL)
    );
    assert_eq!(
        sets["learning_submission_jobs.status"],
        words(JobStatus::ALL)
    );
    assert_eq!(
        sets.len(),
        4,
        "a new check constraint wants its closed set: {sets:?}"
    );
}

#[test]
fn each_phase_names_the_codes_the_schema_functions_write() {
    use worker_core::vocabulary::Phase;
    for phase in Phase::ALL {
        // learning_worker_mark_retry writes p_phase || '_retrying'.
        assert_eq!(phase.retrying_code().as_str(), format!("{phase}_retrying"));
        assert_eq!(phase.failed_code().as_str(), format!("{phase}_failed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_the_worker_does_not_know_is_a_conversion_error_not_a_default() {
    use worker_core::vocabulary::SubmissionKind;
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let known: SubmissionKind = client
        .query_one("select 'image'::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(known, SubmissionKind::Image);
    let unknown = client
        .query_one("select 'video'::text", &[])
        .await
        .unwrap()
        .try_get::<_, SubmissionKind>(0)
        .unwrap_err();
    let cause = std::error::Error::source(&unknown).map(ToString::to_string);
    assert_eq!(
        cause.as_deref(),
        Some("\"video\" is not a SubmissionKind this worker knows; is the schema newer?"),
        "{unknown}"
    );
}

/// The definitions of the job table's indexes, sorted.
async fn job_indexes(client: &Client) -> Vec<String> {
    client
        .query(
            "select indexdef from pg_indexes where tablename = 'learning_submission_jobs' \
             and indexname <> 'learning_submission_jobs_pkey' order by indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn lease_index_check(client: &Client) -> worker_core::schema::Check {
    worker_core::schema::check(client)
        .await
        .unwrap()
        .into_iter()
        .find(|check| check.problem == worker_core::database::DatabaseProblem::LeaseIndexMissing)
        .expect("the lease index is checked")
}

#[tokio::test]
async fn the_lease_index_is_created_beside_the_platform_s_and_old_ones_are_renamed() {
    let db = TestDb::new().await.unwrap();
    let mut client = db.connect().await.unwrap();
    let lease_index = "CREATE INDEX learning_submission_jobs_lease_idx ON public.learning_submission_jobs USING btree (status, visible_at, created_at)";
    assert_eq!(job_indexes(&client).await, [lease_index]);
    assert!(lease_index_check(&client).await.ok);

    // The platform's database: the contract's two-column index under the contract's name.
    client
        .batch_execute(
            "drop index learning_submission_jobs_lease_idx;
             create index learning_submission_jobs_status_visible_at_idx
               on public.learning_submission_jobs (status, visible_at);",
        )
        .await
        .unwrap();
    let missing = lease_index_check(&client).await;
    assert!(!missing.ok);
    assert!(
        !missing.blocks_work(),
        "slower, not broken: the worker stays ready"
    );
    assert_eq!(missing.problem.code(), "db_lease_index_missing");
    assert!(
        missing
            .problem
            .fix()
            .contains("create index concurrently learning_submission_jobs_lease_idx")
    );
    worker_core::schema::apply(&mut client).await.unwrap();
    assert_eq!(
        job_indexes(&client).await,
        [
            lease_index,
            "CREATE INDEX learning_submission_jobs_status_visible_at_idx ON public.learning_submission_jobs USING btree (status, visible_at)",
        ],
        "the platform's index stays, the lease index joins it"
    );
    assert!(lease_index_check(&client).await.ok);

    // A database set up by an earlier version: the three columns under the contract name.
    client
        .batch_execute(
            "drop index learning_submission_jobs_lease_idx;
             drop index learning_submission_jobs_status_visible_at_idx;
             create index learning_submission_jobs_status_visible_at_idx
               on public.learning_submission_jobs (status, visible_at, created_at);",
        )
        .await
        .unwrap();
    worker_core::schema::apply(&mut client).await.unwrap();
    assert_eq!(
        job_indexes(&client).await,
        [lease_index],
        "renamed, not duplicated"
    );
}
