//! The platform's schema as the worker meets it (built by `fixtures::platform`),
//! checked against a real server: row-level security, the helpers' real behaviour
//! (no-ops on a mismatch, two overloads), the one notification, and `check`.

use std::time::Duration;

use fixtures::TestDb;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

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
        .execute(
            "select 1 from learning_submissions where id = $1 for update",
            &[&submission.id],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "the worker cannot lock a submission: a check before the helper call is racy"
    );
}

#[tokio::test]
async fn a_hidden_section_hides_the_task_even_from_the_student_who_answered_it() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission()
        .student("alice")
        .insert(&admin)
        .await
        .unwrap();
    let mut worker = db.connect_as_worker().await.unwrap();
    let visible_tasks = async |worker: &mut Client| -> i64 {
        let transaction = worker.transaction().await.unwrap();
        transaction
            .execute("select set_config('app.current_sub', 'alice', true)", &[])
            .await
            .unwrap();
        transaction
            .query_one("select count(*) from unit_tasks", &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(visible_tasks(&mut worker).await, 1);

    admin
        .execute(
            "update module_section_releases set visible = false, released_at = null \
             where section_id = $1",
            &[&submission.task.section_id],
        )
        .await
        .unwrap();

    assert_eq!(
        visible_tasks(&mut worker).await,
        0,
        "the task context must come from the job's payload"
    );
}

#[tokio::test]
async fn the_helpers_write_what_the_platform_defines() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let completed = fixtures::submission().insert(&admin).await.unwrap();
    let failed = fixtures::submission().image().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let analysis = serde_json::json!({"schema": "criteria.v2", "score": 3, "criteria_results": []});

    worker
        .execute(
            "select learning_worker_mark_retry($1, 'vision', 'model timed out', now())",
            &[&failed.id],
        )
        .await
        .unwrap();
    worker
        .execute(
            "select learning_worker_update_failed($1, 'input_corrupt', repeat('x', 5000))",
            &[&failed.id],
        )
        .await
        .unwrap();
    worker
        .execute(
            "select learning_worker_update_completed($1, 'the text', 'well done', $2::jsonb)",
            &[&completed.id, &analysis],
        )
        .await
        .unwrap();

    let row = admin
        .query_one(
            "select analysis_status, error_code, vision_attempts, length(vision_last_error), \
                    analysis_json is null \
             from learning_submissions where id = $1",
            &[&failed.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), "input_corrupt");
    assert_eq!(
        row.get::<_, i32>(2),
        1,
        "the retry counted; input_* does not"
    );
    assert_eq!(
        row.get::<_, i32>(3),
        1024,
        "the message is cut to 1024 chars"
    );
    assert!(row.get::<_, bool>(4));
    let row = admin
        .query_one(
            "select analysis_status, feedback_md, analysis_json, completed_at is not null, \
                    vision_attempts, vision_last_attempt_at = feedback_last_attempt_at \
             from learning_submissions where id = $1",
            &[&completed.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, String>(1), "well done");
    assert_eq!(row.get::<_, serde_json::Value>(2), analysis);
    assert!(row.get::<_, bool>(3));
    assert_eq!(
        row.get::<_, i32>(4),
        1,
        "completion counts a vision attempt"
    );
    assert!(row.get::<_, bool>(5));
}

#[tokio::test]
async fn an_untyped_analysis_is_ambiguous_between_the_two_overloads() {
    let db = TestDb::new().await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let error = worker
        .prepare("select learning_worker_update_completed($1, $2, $3, $4)")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::AMBIGUOUS_FUNCTION));
    worker
        .prepare("select learning_worker_update_completed($1, $2, $3, $4::jsonb)")
        .await
        .expect("typed, the jsonb overload is chosen");
}

#[tokio::test]
async fn a_second_completion_changes_nothing_and_says_nothing() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&admin).await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let complete = "select learning_worker_update_completed($1, 'text', $2, '{}'::jsonb)";

    worker
        .execute(complete, &[&submission.id, &"first"])
        .await
        .unwrap();
    worker
        .execute(complete, &[&submission.id, &"second"])
        .await
        .expect("the platform's helpers do not raise on a mismatch");
    worker
        .execute(
            "select learning_worker_update_failed($1, 'feedback_failed', 'late')",
            &[&submission.id],
        )
        .await
        .unwrap();

    let row = admin
        .query_one(
            "select feedback_md, analysis_status from learning_submissions where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "first");
    assert_eq!(row.get::<_, String>(1), "completed");
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
            Some(&SqlState::RAISE_EXCEPTION),
            "{statement}"
        );
    }
}

#[tokio::test]
async fn a_new_submission_notifies_the_platforms_channel_and_a_job_alone_nothing() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&admin).await.unwrap();
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
        .batch_execute("listen learning_submissions; listen learning_submission_jobs")
        .await
        .unwrap();

    fixtures::job()
        .submission(&submission)
        .insert(&admin)
        .await
        .unwrap();
    fixtures::submission().insert(&admin).await.unwrap();

    let channel = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("a notification arrives")
        .unwrap();
    assert_eq!(
        channel, "learning_submissions",
        "the job insert came first and said nothing"
    );
}

/// The quoted words of a named check constraint.
async fn check_constraint_words(client: &Client, name: &str) -> Vec<String> {
    let definition: String = client
        .query_one(
            "select pg_get_constraintdef(oid) from pg_constraint \
             where conname = $1 and connamespace = 'public'::regnamespace",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    // CHECK ((kind = ANY (ARRAY['text'::text, 'image'::text, 'file'::text])))
    let mut words: Vec<String> = definition
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    words.sort();
    words
}

fn words<T: std::fmt::Display>(all: &[T]) -> Vec<String> {
    let mut words: Vec<String> = all.iter().map(ToString::to_string).collect();
    words.sort();
    words
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_sets_are_exactly_the_schema_check_constraints() {
    use worker_core::vocabulary::{AnalysisStatus, JobStatus, SubmissionErrorCode, SubmissionKind};
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    for (constraint, closed_set) in [
        (
            "learning_submissions_kind_check",
            words(SubmissionKind::ALL),
        ),
        (
            "learning_submissions_analysis_status_check",
            words(AnalysisStatus::ALL),
        ),
        (
            "learning_submissions_error_code_check",
            words(SubmissionErrorCode::ALL),
        ),
        (
            "learning_submission_jobs_status_check",
            words(JobStatus::ALL),
        ),
    ] {
        assert_eq!(
            check_constraint_words(&client, constraint).await,
            closed_set,
            "{constraint}"
        );
    }
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

#[tokio::test]
async fn check_passes_on_the_platform_as_it_is_and_warns_about_public_execute() {
    let db = TestDb::new().await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let checks = worker_core::schema::check(&worker).await.unwrap();
    let failed: Vec<_> = checks.iter().filter(|check| check.blocks_work()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let warning = checks
        .iter()
        .find(|check| !check.ok)
        .expect("the platform leaves EXECUTE on its helpers to PUBLIC");
    assert_eq!(warning.problem.code(), "db_helpers_open_to_public");

    let admin = db.connect().await.unwrap();
    admin
        .batch_execute(
            "revoke execute on function \
               public.learning_worker_update_completed(uuid, text, text, jsonb), \
               public.learning_worker_update_completed(uuid, text, text, json), \
               public.learning_worker_update_failed(uuid, text, text), \
               public.learning_worker_mark_retry(uuid, text, text, timestamptz) from public",
        )
        .await
        .unwrap();
    let checks = worker_core::schema::check(&worker).await.unwrap();
    assert!(
        checks.iter().all(|check| check.ok),
        "the revoke the fix names cures the warning and leaves the worker its grant: {checks:#?}"
    );
}

#[tokio::test]
async fn check_fails_with_the_cause_when_a_column_type_or_policy_is_wrong() {
    let db = TestDb::new().await.unwrap();
    let admin = db.connect().await.unwrap();
    let worker = db.connect_as_worker().await.unwrap();
    let failing = async || -> Vec<(String, &'static str)> {
        worker_core::schema::check(&worker)
            .await
            .unwrap()
            .into_iter()
            .filter(|check| check.blocks_work())
            .map(|check| (check.name, check.problem.code()))
            .collect()
    };

    admin
        .batch_execute("alter table learning_submissions alter column size_bytes type bigint")
        .await
        .unwrap();
    assert_eq!(
        failing().await,
        [(
            "table learning_submissions and the types of its 13 columns the worker uses".to_owned(),
            "db_schema_missing"
        )]
    );
    admin
        .batch_execute(
            "alter table learning_submissions alter column size_bytes type integer; \
             drop policy learning_submissions_select_self on learning_submissions",
        )
        .await
        .unwrap();
    assert_eq!(
        failing().await,
        [(
            "a row-level policy lets the role read a submission as its student".to_owned(),
            "db_permission_denied"
        )]
    );
}
