//! One job's life: text bypass, OCR cache, retries, failures, skipped jobs.

use std::time::Duration;

use fixtures::StubCalls;
use fixtures::TestDb;
use serde_json::Value;
use worker_core::metrics::Processed;

use crate::harness::Setup;

#[tokio::test(flavor = "multi_thread")]
async fn drains_a_mix_completing_each_submission_once() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let log = tempfile_path(&db);
    let task = fixtures::task().insert(&client).await.unwrap();
    let mut submissions = Vec::new();
    for index in 0..12 {
        let new = fixtures::submission()
            .task(&task)
            .student(&format!("student-{index}"));
        let new = match index % 3 {
            0 => new.text(&format!("My answer number {index} about chlorophyll.")),
            1 => new.image(),
            _ => new.pdf(),
        };
        let submission = new.insert(&client).await.unwrap();
        fixtures::job()
            .submission(&submission)
            .insert(&client)
            .await
            .unwrap();
        submissions.push(submission);
    }

    let metrics = Setup::new().call_log(log.clone()).drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Completed), 12);
    let calls = StubCalls::read(&log);
    for submission in &submissions {
        let row = client
            .query_one(
                "select analysis_status, text_body, analysis_json->>'schema', feedback_md is not null \
                 from learning_submissions where id = $1",
                &[&submission.id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "completed");
        assert_eq!(row.get::<_, String>(2), "criteria.v2");
        assert!(row.get::<_, bool>(3));
        let text: String = row.get(1);
        match submission.kind {
            fixtures::SubmissionKind::Text => {
                assert_eq!(
                    Some(&text),
                    submission.text_body.as_ref(),
                    "the student's text verbatim"
                );
                assert_eq!(
                    calls.count("vision", submission.id),
                    0,
                    "text bypasses vision"
                );
            }
            _ => {
                assert!(text.starts_with("# Stub OCR"), "{text}");
                assert_eq!(calls.count("vision", submission.id), 1);
            }
        }
        assert_eq!(calls.count("feedback", submission.id), 1);
    }
    let jobs: i64 = client
        .query_one("select count(*) from learning_submission_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0, "every job deleted");
}

fn tempfile_path(db: &TestDb) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}-calls.log", db.name()))
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_feedback_failure_is_retried_without_vision() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let log = tempfile_path(&db);
    let submission = fixtures::submission()
        .image()
        .insert(&client)
        .await
        .unwrap();
    let job = fixtures::job()
        .submission(&submission)
        .insert(&client)
        .await
        .unwrap();
    let setup = Setup::new()
        .failures("feedback:transient:1")
        .call_log(log.clone());

    let first = setup.drain(&db).await;

    assert_eq!(first.processed_count(Processed::Retried), 1);
    let row = client
        .query_one(
            "select j.status, j.retry_count, j.visible_at > now() + interval '9 seconds', \
                    j.payload->>'cached_text_md', s.analysis_status, s.error_code, s.feedback_last_error \
             from learning_submission_jobs j join learning_submissions s on s.id = j.submission_id where j.id = $1",
            &[&job.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(
        row.get::<_, bool>(2),
        "requeued with a backoff of at least 10 s"
    );
    assert!(
        row.get::<_, Option<String>>(3)
            .unwrap()
            .starts_with("# Stub OCR"),
        "OCR cached in the payload"
    );
    assert_eq!(row.get::<_, String>(4), "pending");
    assert_eq!(row.get::<_, String>(5), "feedback_retrying");
    assert_eq!(row.get::<_, String>(6), "stub feedback failure");

    client
        .execute(
            "update learning_submission_jobs set visible_at = now()",
            &[],
        )
        .await
        .unwrap();
    let second = setup.drain(&db).await;

    assert_eq!(second.processed_count(Processed::Completed), 1);
    let calls = StubCalls::read(&log);
    assert_eq!(calls.count("vision", submission.id), 1, "vision ran once");
    assert_eq!(calls.count("feedback", submission.id), 2);
    let row = client
        .query_one(
            "select analysis_status, error_code, text_body from learning_submissions where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert!(row.get::<_, String>(2).starts_with("# Stub OCR"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_vision_failure_records_retry_metadata() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let submission = fixtures::submission()
        .image()
        .insert_with_job(&client)
        .await
        .unwrap();

    Setup::new().failures("vision:transient:1").drain(&db).await;

    let row = client
        .query_one(
            "select s.vision_attempts, s.error_code, s.vision_last_attempt_at is not null, j.retry_count, j.status \
             from learning_submissions s join learning_submission_jobs j on j.submission_id = s.id where s.id = $1",
            &[&submission.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), "vision_retrying");
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, i32>(3), 1);
    assert_eq!(row.get::<_, String>(4), "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_and_permanent_errors_fail_with_their_code() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let exhausted = fixtures::submission()
        .image()
        .insert_with_job(&client)
        .await
        .unwrap();
    let mut setup = Setup::new().failures("vision:transient:99");
    setup.max_retries = 2;
    setup.backoff = Duration::ZERO;

    let metrics = setup.drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Retried), 2);
    assert_eq!(metrics.processed_count(Processed::Failed), 1);
    let permanent = fixtures::submission()
        .insert_with_job(&client)
        .await
        .unwrap();
    Setup::new()
        .failures("feedback:permanent:1")
        .drain(&db)
        .await;

    for (submission, code, attempts) in [
        // Two retries and the failure itself each count a vision attempt.
        (&exhausted, "vision_failed", 3),
        (&permanent, "feedback_failed", 0),
    ] {
        let row = client
            .query_one(
                "select s.analysis_status, s.error_code, s.vision_attempts, j.status, j.error_code \
                 from learning_submissions s join learning_submission_jobs j on j.submission_id = s.id where s.id = $1",
                &[&submission.id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "failed");
        assert_eq!(row.get::<_, String>(1), code);
        assert_eq!(row.get::<_, i32>(2), attempts);
        assert_eq!(row.get::<_, String>(3), "failed");
        assert_eq!(row.get::<_, String>(4), code);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handled_invisible_and_malformed_jobs_do_not_stop_the_others() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::submission()
        .status("completed")
        .insert_with_job(&client)
        .await
        .unwrap();
    let hidden = fixtures::submission()
        .student("alice")
        .insert(&client)
        .await
        .unwrap();
    let payload = serde_json::json!({"student_sub": "mallory", "criteria": []});
    fixtures::job()
        .submission(&hidden)
        .payload(payload)
        .insert(&client)
        .await
        .unwrap();
    let broken = fixtures::submission().insert(&client).await.unwrap();
    let broken_job = fixtures::job()
        .submission(&broken)
        .payload(serde_json::json!({"no": "student"}))
        .insert(&client)
        .await
        .unwrap();
    fixtures::submission()
        .insert_with_job(&client)
        .await
        .unwrap();

    let metrics = Setup::new().drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Completed), 1);
    assert_eq!(metrics.processed_count(Processed::Skipped), 3);
    let statuses: Vec<(String, String)> = client
        .query("select s.student_sub, s.analysis_status from learning_submissions s order by s.created_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(statuses[0].1, "completed");
    assert_eq!(
        statuses[1].1, "pending",
        "an invisible submission is not touched"
    );
    assert_eq!(statuses[3].1, "completed");
    let jobs: Vec<(uuid::Uuid, String, Option<String>)> = client
        .query(
            "select id, status, error_code from learning_submission_jobs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        jobs,
        [(
            broken_job.id,
            "failed".to_owned(),
            Some("invalid_payload".to_owned())
        )],
        "only the malformed job stays, failed"
    );
    let _ = Value::Null;
}

/// Feedback that, while it "thinks", lets someone else complete the submission (or
/// only the `only` one) — the race the completion helper's state check exists for —
/// and answers when `together` jobs have asked, so their results form one batch.
struct CompletedMeanwhile {
    admin: tokio_postgres::Client,
    only: Option<uuid::Uuid>,
    together: tokio::sync::Barrier,
}

impl worker_core::adapter::FeedbackAdapter for CompletedMeanwhile {
    fn feedback<'a>(
        &'a self,
        input: &'a worker_core::adapter::FeedbackInput,
        _: &'a tokio_util::sync::CancellationToken,
    ) -> worker_core::adapter::AdapterFuture<'a, worker_core::adapter::FeedbackOutput> {
        Box::pin(async move {
            if self.only.is_none_or(|only| only == input.job.submission_id) {
                self.admin
                    .execute(
                        "update learning_submissions set analysis_status = 'completed', \
                                feedback_md = 'written by someone else' where id = $1",
                        &[&input.job.submission_id],
                    )
                    .await
                    .unwrap();
            }
            self.together.wait().await;
            Ok(worker_core::adapter::FeedbackOutput {
                feedback_md: "ours".to_owned(),
                analysis_json: serde_json::json!({"schema": "criteria.v2"}),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_completed_meanwhile_keeps_the_other_result_and_loses_its_job() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let job = fixtures::job().insert(&client).await.unwrap();
    let mut setup = Setup::new();
    setup.feedback = Some(std::sync::Arc::new(CompletedMeanwhile {
        admin: db.connect().await.unwrap(),
        only: None,
        together: tokio::sync::Barrier::new(1),
    }));

    let metrics = setup.drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Skipped), 1);
    assert_eq!(metrics.processed_count(Processed::Completed), 0);
    let row = client
        .query_one(
            "select feedback_md, (select count(*) from learning_submission_jobs) \
             from learning_submissions where id = $1",
            &[&job.submission.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "written by someone else");
    assert_eq!(row.get::<_, i64>(1), 0, "the job is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raising_helper_in_a_batch_fails_only_its_own_job() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(fixtures::job().insert(&client).await.unwrap());
    }
    let victim = jobs[2].submission.id;
    let mut setup = Setup::new();
    setup.concurrency = jobs.len();
    // All four answer at once, so their results are written as one batch.
    setup.feedback = Some(std::sync::Arc::new(CompletedMeanwhile {
        admin: db.connect().await.unwrap(),
        only: Some(victim),
        together: tokio::sync::Barrier::new(jobs.len()),
    }));

    let metrics = setup.drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Completed), 3);
    assert_eq!(metrics.processed_count(Processed::Skipped), 1);
    for job in &jobs {
        let feedback: String = client
            .query_one(
                "select feedback_md from learning_submissions where id = $1",
                &[&job.submission.id],
            )
            .await
            .unwrap()
            .get(0);
        let expected = if job.submission.id == victim {
            "written by someone else"
        } else {
            "ours"
        };
        assert_eq!(feedback, expected);
    }
    let left: i64 = client
        .query_one("select count(*) from learning_submission_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every job is removed");
}
