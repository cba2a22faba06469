//! Leasing, heartbeats and fenced writes.

use std::collections::HashSet;
use std::time::Duration;

use fixtures::TestDb;
use lease::{Queue, QueueConfig};

use crate::{LEASE, pool, queue, t0};

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_leasers_never_share_a_job() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let ids = fixtures::job().insert_many(&client, 3000).await.unwrap();
    let queue = queue(&db, 8);

    let leasers: Vec<_> = (0..8)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = queue.lease(7, LEASE, None).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|job| job.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for leaser in leasers {
        all.extend(leaser.await.unwrap());
    }

    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a job was handed to two holders");
    assert_eq!(distinct.len(), ids.len(), "every job was leased");
}

#[tokio::test]
async fn leases_in_visibility_order_and_skips_invisible_jobs() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let later = fixtures::job()
        .visible_in(-10.0)
        .insert(&client)
        .await
        .unwrap();
    let first = fixtures::job()
        .visible_in(-20.0)
        .insert(&client)
        .await
        .unwrap();
    fixtures::job()
        .visible_in(3600.0)
        .insert(&client)
        .await
        .unwrap();
    fixtures::job().leased(60.0).insert(&client).await.unwrap();
    let queue = queue(&db, 2);

    let leased = queue.lease(10, LEASE, None).await.unwrap();

    let ids: Vec<_> = leased.iter().map(|job| job.id).collect();
    assert_eq!(ids, [first.id, later.id]);
    assert_eq!(leased[0].reference, first.submission.id);
    assert_eq!(leased[0].payload, first.payload);
    assert_ne!(leased[0].lease_key, leased[1].lease_key);
}

#[tokio::test]
async fn heartbeat_extends_held_leases_and_reports_lost_ones() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 3).await.unwrap();
    let queue = queue(&db, 2);
    let now = t0();
    let leased = queue.lease(3, LEASE, Some(now)).await.unwrap();
    let keys: Vec<_> = leased.iter().map(|job| job.lease_key).collect();

    // Just before expiry, a heartbeat keeps all three.
    let later = now + LEASE - Duration::from_secs(1);
    assert_eq!(
        queue
            .heartbeat(&keys, LEASE, Some(later))
            .await
            .unwrap()
            .len(),
        3
    );
    // Nobody can take them at the old expiry.
    assert!(
        queue
            .lease(3, LEASE, Some(now + LEASE))
            .await
            .unwrap()
            .is_empty()
    );
    // After the extended lease runs out, another holder takes one; its old key is lost.
    let stolen = queue.lease(1, LEASE, Some(later + LEASE)).await.unwrap();
    assert_eq!(stolen.len(), 1);
    let held = queue
        .heartbeat(&keys, LEASE, Some(later + LEASE))
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    let lost = leased.iter().find(|job| job.id == stolen[0].id).unwrap();
    assert!(!held.contains(&lost.lease_key));
}

#[tokio::test]
async fn old_holder_cannot_write_after_takeover() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert(&client).await.unwrap();
    let queue = queue(&db, 2);
    let old = queue.lease(1, LEASE, Some(t0())).await.unwrap().remove(0);
    let new = queue
        .lease(1, LEASE, Some(t0() + LEASE))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(old.id, new.id);

    let mut connection = queue.pool().get().await.unwrap();
    assert!(
        queue.fence(&mut connection, &old).await.unwrap().is_none(),
        "old key is fenced out"
    );
    assert!(
        !queue
            .merge_payload(&old, &serde_json::json!({"x": 1}))
            .await
            .unwrap()
    );
    assert!(!queue.release(&old).await.unwrap());
    let fence = queue
        .fence(&mut connection, &new)
        .await
        .unwrap()
        .expect("new holder passes the fence");
    fence.complete().await.unwrap();

    let left: i64 = client
        .query_one("select count(*) from learning_submission_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn retry_requeues_with_backoff_and_fail_marks_failed() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let retried = fixtures::job().insert(&client).await.unwrap();
    let queue = queue(&db, 2);
    let job = queue.lease(1, LEASE, Some(t0())).await.unwrap().remove(0);
    let mut connection = queue.pool().get().await.unwrap();

    let fence = queue.fence(&mut connection, &job).await.unwrap().unwrap();
    fence
        .retry(Duration::from_secs(20), Some(t0()))
        .await
        .unwrap();

    let row = client
        .query_one(
            "select status, retry_count, lease_key is null, visible_at = $2 from learning_submission_jobs where id = $1",
            &[&retried.id, &(t0() + Duration::from_secs(20))],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(row.get::<_, bool>(2));
    assert!(row.get::<_, bool>(3), "visible 20 s later");
    assert!(
        queue
            .lease(1, LEASE, Some(t0() + Duration::from_secs(19)))
            .await
            .unwrap()
            .is_empty()
    );
    let again = queue
        .lease(1, LEASE, Some(t0() + Duration::from_secs(20)))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.retry_count, 1);

    let fence = queue.fence(&mut connection, &again).await.unwrap().unwrap();
    fence.fail("vision_failed").await.unwrap();
    let row = client
        .query_one(
            "select status, error_code from learning_submission_jobs where id = $1",
            &[&retried.id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("failed".to_owned(), "vision_failed".to_owned())
    );
    assert!(
        queue
            .lease(1, LEASE, Some(t0() + Duration::from_secs(3600)))
            .await
            .unwrap()
            .is_empty(),
        "failed jobs stay"
    );
}

#[tokio::test]
async fn release_keeps_retry_count_and_is_visible_now() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job()
        .retry_count(2)
        .insert(&client)
        .await
        .unwrap();
    let queue = queue(&db, 2);
    let job = queue.lease(1, LEASE, None).await.unwrap().remove(0);

    assert!(queue.release(&job).await.unwrap());

    let again = queue.lease(1, LEASE, None).await.unwrap().remove(0);
    assert_eq!((again.id, again.retry_count), (job.id, 2));
}

#[tokio::test]
async fn works_on_another_table_in_another_schema() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 5).await.unwrap();
    client
        .batch_execute(
            "create schema elsewhere; \
             create table elsewhere.work_items as select * from learning_submission_jobs; \
             delete from learning_submission_jobs;",
        )
        .await
        .unwrap();
    let config = QueueConfig::new("elsewhere.work_items", "submission_id").unwrap();
    let queue = Queue::new(pool(&db, 2), &config);

    let leased = queue.lease(10, LEASE, None).await.unwrap();

    assert_eq!(leased.len(), 5);
    let mut connection = queue.pool().get().await.unwrap();
    queue
        .fence(&mut connection, &leased[0])
        .await
        .unwrap()
        .unwrap()
        .complete()
        .await
        .unwrap();
    let left: i64 = client
        .query_one("select count(*) from elsewhere.work_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 4);
}

#[test]
fn names_must_be_plain_identifiers() {
    for (table, column) in [
        ("jobs; drop table x", "submission_id"),
        ("public.Jobs", "submission_id"),
        ("a.b.c", "submission_id"),
        ("jobs", "submission_id\""),
        ("", "submission_id"),
    ] {
        assert!(QueueConfig::new(table, column).is_err(), "{table} {column}");
    }
    assert!(QueueConfig::new("public.learning_submission_jobs", "submission_id").is_ok());
}

#[tokio::test]
async fn complete_many_acks_held_jobs_and_skips_lost_ones() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 3).await.unwrap();
    let queue = queue(&db, 2);
    let (jobs, taken) = three_leased_one_taken_over(&queue).await;

    let mut done = queue.complete_many(&jobs).await.unwrap();

    done.sort();
    let mut expected: Vec<_> = jobs
        .iter()
        .filter(|job| job.id != taken.id)
        .map(|job| job.id)
        .collect();
    expected.sort();
    assert_eq!(done, expected, "the two held jobs, not the taken one");
    assert_eq!(job_ids_left(&client).await, [taken.id]);
    assert!(queue.complete_many(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn complete_with_calls_once_and_only_while_the_lease_is_held() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 3).await.unwrap();
    client
        .batch_execute(
            "create table completions as \
             select distinct submission_id, null::text as note from learning_submission_jobs",
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "create function record_completion(p_submission uuid, p_note text) returns void
               language sql as $$
                 update completions set note = coalesce(note || ' then ', '') || p_note
                 where submission_id = p_submission $$;
             create function refuse(p_submission uuid) returns void language plpgsql
               as $$ begin raise exception 'already handled' using errcode = '55000'; end $$;",
        )
        .await
        .unwrap();
    let queue = queue(&db, 2);
    let (jobs, taken) = three_leased_one_taken_over(&queue).await;
    let (held, refused, stale) = (&jobs[0], &jobs[1], &jobs[2]);
    let call = "record_completion(done.reference, $3)";

    let completed = queue.complete_with(held, call, &[&"first"]).await.unwrap();
    let again = queue.complete_with(held, call, &[&"again"]).await.unwrap();
    let lost = queue.complete_with(stale, call, &[&"stale"]).await.unwrap();
    let raised = queue
        .complete_with(refused, "refuse(done.reference)", &[])
        .await
        .unwrap_err();

    assert!(completed, "the held job is completed");
    assert!(!again, "a completed job cannot be completed again");
    assert!(!lost, "a taken-over job is not completed by its old holder");
    assert_eq!(
        raised.sql_state(),
        Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
    let notes = notes_written(&client).await;
    assert_eq!(
        notes,
        [(held.reference, "first".to_owned())],
        "one call, for the held job"
    );
    let mut expected = vec![refused.id, taken.id];
    expected.sort();
    assert_eq!(
        job_ids_left(&client).await,
        expected,
        "a raising call deletes nothing; the taken job stays"
    );
}

#[tokio::test]
async fn complete_many_with_calls_each_held_job_with_its_own_values() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    // Three submissions, one job each.
    for _ in 0..3 {
        fixtures::job().insert(&client).await.unwrap();
    }
    client
        .batch_execute(
            "create table completions as \
             select submission_id, null::text as note from learning_submission_jobs;
             create function record_completion(p_submission uuid, p_note text) returns void
               language plpgsql as $$ begin
                 if p_note = 'refuse' then
                   raise exception 'already handled' using errcode = '55000';
                 end if;
                 update completions set note = coalesce(note || ' then ', '') || p_note
                 where submission_id = p_submission;
               end $$;",
        )
        .await
        .unwrap();
    let queue = queue(&db, 2);
    let (jobs, taken) = three_leased_one_taken_over(&queue).await;
    let batch: Vec<lease::JobKey> = jobs.iter().map(lease::LeasedJob::key).collect();
    let call = "record_completion(done.reference, ($3::text[])[done.n])";

    let refused = queue
        .complete_many_with(&batch, call, &[&vec!["first", "refuse", "stale"]])
        .await
        .unwrap_err();
    assert_eq!(
        refused.sql_state(),
        Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
    assert_eq!(
        job_ids_left(&client).await.len(),
        3,
        "a raising call rolls the whole batch back"
    );

    let completed = queue
        .complete_many_with(&batch, call, &[&vec!["first", "second", "stale"]])
        .await
        .unwrap();
    let again = queue
        .complete_many_with(&batch, call, &[&vec!["again", "again", "again"]])
        .await
        .unwrap();

    assert_eq!(
        completed,
        HashSet::from([jobs[0].id, jobs[1].id]),
        "the held jobs, not the taken one"
    );
    assert!(
        again.is_empty(),
        "a completed job cannot be completed again"
    );
    let mut notes = notes_written(&client).await;
    notes.sort();
    let mut expected = vec![
        (jobs[0].reference, "first".to_owned()),
        (jobs[1].reference, "second".to_owned()),
    ];
    expected.sort();
    assert_eq!(
        notes, expected,
        "one call per held job, each with its own value"
    );
    assert_eq!(job_ids_left(&client).await, [taken.id]);
    assert!(
        queue
            .complete_many_with(&[], call, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn merge_payloads_patches_held_jobs_only() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert_many(&client, 3).await.unwrap();
    let queue = queue(&db, 2);
    let (jobs, taken) = three_leased_one_taken_over(&queue).await;
    let patches: Vec<(lease::JobKey, serde_json::Value)> = jobs
        .iter()
        .enumerate()
        .map(|(n, job)| {
            (
                job.key(),
                serde_json::json!({"cached_text_md": format!("page {n}")}),
            )
        })
        .collect();

    let merged = queue.merge_payloads(&patches).await.unwrap();

    assert_eq!(merged, HashSet::from([jobs[0].id, jobs[1].id]));
    for (n, job) in jobs.iter().enumerate() {
        let payload: serde_json::Value = client
            .query_one(
                "select payload from learning_submission_jobs where id = $1",
                &[&job.id],
            )
            .await
            .unwrap()
            .get(0);
        let cached = payload
            .get("cached_text_md")
            .and_then(serde_json::Value::as_str);
        if job.id == taken.id {
            assert_eq!(cached, None, "the taken job's payload is untouched");
        } else {
            assert_eq!(cached, Some(format!("page {n}").as_str()));
            assert!(job.payload.get("student_sub").is_some());
            assert_eq!(
                payload.get("student_sub"),
                job.payload.get("student_sub"),
                "merged, not replaced"
            );
        }
    }
    assert!(queue.merge_payloads(&[]).await.unwrap().is_empty());
}

/// Leases three jobs, then lets another holder take the last of them over after
/// its lease ran out. Returns the three as first leased (the taken one last,
/// with its now stale key) and the taker's lease.
async fn three_leased_one_taken_over(queue: &Queue) -> (Vec<lease::LeasedJob>, lease::LeasedJob) {
    let mut jobs = queue.lease(3, LEASE, Some(t0())).await.unwrap();
    let taken = queue
        .lease(1, LEASE, Some(t0() + LEASE + LEASE))
        .await
        .unwrap()
        .remove(0);
    jobs.sort_by_key(|job| job.id == taken.id);
    assert_eq!(jobs[2].id, taken.id);
    (jobs, taken)
}

/// What the test's `record_completion` wrote: (submission, note) pairs.
async fn notes_written(client: &tokio_postgres::Client) -> Vec<(uuid::Uuid, String)> {
    client
        .query(
            "select submission_id, note from completions where note is not null",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The ids of the jobs still in the queue table, sorted.
async fn job_ids_left(client: &tokio_postgres::Client) -> Vec<uuid::Uuid> {
    let mut ids: Vec<uuid::Uuid> = client
        .query("select id from learning_submission_jobs", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_times_out_and_is_not_handed_out_again() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert(&client).await.unwrap();
    let proxy = fixtures::FaultProxy::start(db.tcp_addr()).unwrap();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        db.config_via(proxy.addr()),
        tokio_postgres::NoTls,
    ))
    .max_size(1)
    .build()
    .unwrap();
    let timeout = Duration::from_millis(500);
    let config = QueueConfig::new("public.learning_submission_jobs", "submission_id")
        .unwrap()
        .with_statement_timeout(timeout);
    let queue = Queue::new(pool, &config);
    // The one connection exists and works.
    assert!(
        queue
            .heartbeat(&[uuid::Uuid::nil()], LEASE, None)
            .await
            .unwrap()
            .is_empty()
    );

    proxy.set(fixtures::ProxyMode::Blackhole);
    let stalled = queue.heartbeat(&[uuid::Uuid::nil()], LEASE, None).await;
    assert!(
        matches!(stalled, Err(lease::Error::Timeout(after)) if after == timeout),
        "{stalled:?}"
    );
    assert_eq!(
        queue.pool().status().size,
        0,
        "the stalled connection left the pool"
    );

    proxy.set(fixtures::ProxyMode::Pass);
    let jobs = queue.lease(1, LEASE, None).await.unwrap();
    assert_eq!(jobs.len(), 1, "a fresh connection serves at once");
}
