//! The loop: concurrency cap, heartbeats, lease takeover, wake-ups, shutdown,
//! database restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fixtures::TestDb;
use fixtures::{FaultProxy, ProxyMode, StubCalls, eventually};
use tokio_util::sync::CancellationToken;
use worker_core::adapter::{
    AdapterError, AdapterFuture, FeedbackAdapter, FeedbackInput, FeedbackOutput, VisionAdapter,
    VisionInput, VisionOutput,
};
use worker_core::metrics::Processed;
use worker_core::pipeline::JobControl;

use crate::harness::Setup;

/// The answer of the test adapters below: a valid, minimal feedback.
fn plain_feedback() -> FeedbackOutput {
    FeedbackOutput {
        feedback_md: "ok".to_owned(),
        analysis_json: serde_json::json!({"schema": "criteria.v2"}),
    }
}

/// Counts concurrent feedback calls and remembers the highest count.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl FeedbackAdapter for Concurrency {
    fn feedback<'a>(
        &'a self,
        _: &'a FeedbackInput,
        _: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput> {
        Box::pin(async move {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(plain_feedback())
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrency_cap_is_never_exceeded() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    for _ in 0..15 {
        fixtures::job().insert(&client).await.unwrap();
    }
    let adapter = Arc::new(Concurrency::default());
    let mut setup = Setup::new();
    setup.concurrency = 3;
    setup.feedback = Some(adapter.clone());

    let metrics = setup.drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Completed), 15);
    assert_eq!(
        adapter.max.load(Ordering::SeqCst),
        3,
        "three at once, never more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_longer_than_the_lease_are_processed_once_by_two_workers() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let log = std::env::temp_dir().join(format!("{}-calls.log", db.name()));
    let submissions = fixtures::submission()
        .image()
        .insert_many_with_jobs(&client, 4)
        .await
        .unwrap();
    // Each job takes 2 × 1.5 s against a 1.2 s lease: only heartbeats keep it.
    let mut setup = Setup::new()
        .delay(Duration::from_millis(1500))
        .call_log(log.clone());
    setup.lease = Duration::from_millis(1200);
    setup.concurrency = 2;

    let (first, second) = tokio::join!(setup.drain(&db), setup.drain(&db));

    assert_eq!(
        first.processed_count(Processed::Completed) + second.processed_count(Processed::Completed),
        4
    );
    let calls = StubCalls::read(&log);
    for submission in &submissions {
        assert_eq!(calls.count("vision", submission.id), 1, "processed once");
        assert_eq!(calls.count("feedback", submission.id), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_over_lease_cancels_the_old_holder_and_it_writes_nothing() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let submission = fixtures::submission().insert(&client).await.unwrap();
    let job = fixtures::job()
        .submission(&submission)
        .insert(&client)
        .await
        .unwrap();
    let mut slow = Setup::new().delay(Duration::from_secs(60));
    slow.lease = Duration::from_millis(900);
    slow.shutdown_grace = Duration::from_millis(100);
    let running = slow.spawn(&db);
    fixtures::one_job_leased(&client).await;

    // Another worker takes the job over as if the lease had expired: leasing with
    // the clock an hour ahead does it in one statement, with a fresh key.
    let taker = Setup::new().pipeline(&db);
    let an_hour_later = std::time::SystemTime::now() + Duration::from_secs(3600);
    let stolen = taker
        .queue
        .lease(1, Duration::from_secs(30), Some(an_hour_later))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(stolen.id, job.id);
    fixtures::wait_until(
        "the old holder notices",
        Duration::from_secs(60),
        async || {
            !running
                .metrics
                .render()
                .contains("ai_worker_lease_lost_total 0")
        },
    )
    .await;
    let outcome = taker.process(&stolen, &a_fresh_lease()).await;
    let metrics = std::sync::Arc::clone(&running.metrics);
    running.stop().await;
    let running_lost = metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("ai_worker_lease_lost_total "))
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let running_completed = metrics.processed_count(Processed::Completed);

    assert_eq!(outcome, worker_core::pipeline::Outcome::Completed);
    assert_eq!(running_lost, 1, "the old holder lost its lease once");
    assert_eq!(running_completed, 0, "and wrote nothing");
    let row = client
        .query_one(
            "select analysis_status, feedback_md from learning_submissions where id = $1",
            &[&submission.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
}

fn a_fresh_lease() -> JobControl {
    JobControl::new(std::time::Instant::now() + Duration::from_secs(30))
}

/// A vision call that lasts until it is cancelled or abandoned, and says when
/// that happened.
#[derive(Default)]
struct UntilCancelled {
    started: tokio::sync::Notify,
    ended: Arc<tokio::sync::Notify>,
}

/// Notifies when dropped: the worker may abandon a call rather than wait for it.
struct NotifyOnDrop(Arc<tokio::sync::Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl VisionAdapter for UntilCancelled {
    fn extract<'a>(
        &'a self,
        _: &'a VisionInput,
        cancel: &'a CancellationToken,
    ) -> AdapterFuture<'a, VisionOutput> {
        Box::pin(async move {
            let _ended = NotifyOnDrop(Arc::clone(&self.ended));
            self.started.notify_one();
            cancel.cancelled().await;
            Err(AdapterError::transient("cancelled"))
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_from_the_database_stops_its_job_before_the_lease_ends() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let submission = fixtures::submission()
        .image()
        .insert(&client)
        .await
        .unwrap();
    fixtures::job()
        .submission(&submission)
        .insert(&client)
        .await
        .unwrap();
    let proxy = FaultProxy::start(db.tcp_addr()).unwrap();
    let vision = Arc::new(UntilCancelled::default());
    let mut cut_off = Setup::new();
    cut_off.lease = Duration::from_secs(3);
    cut_off.vision = Some(vision.clone());
    let running = cut_off.spawn_on(db.worker_config_via(proxy.addr()));
    vision.started.notified().await;

    // Heartbeats now hang in the black hole: only the worker's own clock can
    // tell it that the lease is over.
    proxy.set(ProxyMode::Blackhole);
    tokio::time::timeout(Duration::from_secs(60), vision.ended.notified())
        .await
        .expect("the cut-off worker kept working past its lease");
    let lease_still_live: bool = client
        .query_one(
            "select leased_until > now() from learning_submission_jobs where submission_id = $1",
            &[&submission.id],
        )
        .await
        .unwrap()
        .get(0);
    proxy.set(ProxyMode::Pass);
    running.stop().await;

    assert!(
        lease_still_live,
        "the job was cancelled only after its lease had ended in the database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_wakes_an_idle_worker() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let mut setup = Setup::new();
    setup.poll_interval = Duration::from_secs(600);
    let running = setup.spawn(&db);
    // Idle: its LISTEN is in place (and its start-up leases found nothing).
    eventually(
        &client,
        "select count(*) = 1 from pg_stat_activity where query = 'listen \"learning_submissions\"'",
        "worker listening",
    )
    .await;

    let submission = fixtures::submission()
        .insert_with_job(&client)
        .await
        .unwrap();

    eventually(
        &client,
        &format!(
            "select analysis_status = 'completed' from learning_submissions where id = '{}'",
            submission.id
        ),
        "the job done long before the 600 s poll",
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_returns_unfinished_jobs_and_lets_quick_ones_finish() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let job = fixtures::job()
        .retry_count(1)
        .insert(&client)
        .await
        .unwrap();
    let mut stuck = Setup::new().delay(Duration::from_secs(60));
    stuck.shutdown_grace = Duration::from_millis(200);
    let running = stuck.spawn(&db);
    fixtures::one_job_leased(&client).await;

    running.stop().await;

    let row = client
        .query_one(
            "select status, lease_key is null, leased_until is null, retry_count, visible_at <= now() \
             from learning_submission_jobs where id = $1",
            &[&job.id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert!(row.get::<_, bool>(1) && row.get::<_, bool>(2));
    assert_eq!(row.get::<_, i32>(3), 1, "retry_count unchanged");
    assert!(row.get::<_, bool>(4));

    let quick = Setup::new().delay(Duration::from_millis(300));
    let running = quick.spawn(&db);
    fixtures::one_job_leased(&client).await;
    running.stop().await;
    let left: i64 = client
        .query_one("select count(*) from learning_submission_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 0,
        "a job that finishes within the grace period completes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_survives_a_database_restart() {
    let db = TestDb::on(fixtures::Server::private().unwrap())
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    for _ in 0..20 {
        fixtures::job().insert(&client).await.unwrap();
    }
    let mut setup = Setup::new().delay(Duration::from_millis(100));
    setup.concurrency = 2;
    // Short leases: a job whose release could not reach the restarting server is
    // leased again once its lease runs out.
    setup.lease = Duration::from_secs(3);
    let running = setup.spawn(&db);
    eventually(
        &client,
        "select count(*) <= 16 from learning_submission_jobs",
        "some jobs done",
    )
    .await;

    tokio::task::block_in_place(|| db.server().require_cluster().unwrap().restart()).unwrap();

    let client = db.connect().await.unwrap();
    eventually(
        &client,
        "select count(*) = 0 from learning_submission_jobs",
        "all jobs done after the restart",
    )
    .await;
    let completed = fixtures::completed_submissions(&client).await;
    assert_eq!(completed, 20);
    running.stop().await;
}

/// Panics on every call, counting them.
#[derive(Default)]
struct Panicking {
    calls: AtomicUsize,
}

impl FeedbackAdapter for Panicking {
    fn feedback<'a>(
        &'a self,
        _: &'a FeedbackInput,
        _: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        panic!("a bug in an adapter");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_job_neither_stops_the_worker_nor_keeps_its_lease() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::job().insert(&client).await.unwrap();
    let adapter = Arc::new(Panicking::default());
    let mut setup = Setup::new();
    setup.lease = Duration::from_millis(900);
    setup.shutdown_grace = Duration::from_millis(100);
    setup.feedback = Some(adapter.clone());
    let running = setup.spawn(&db);

    // A second call means the first lease expired (no heartbeat kept it) and the
    // still-running worker leased the job again.
    fixtures::wait_until(
        "the job is leased again",
        Duration::from_secs(60),
        async || {
            assert!(!running.handle.is_finished(), "the worker stopped");
            adapter.calls.load(Ordering::SeqCst) >= 2
        },
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_worker_is_unready_within_two_leases_and_works_within_one_after_the_heal() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let proxy = FaultProxy::start(db.tcp_addr()).unwrap();
    let mut setup = Setup::new();
    setup.lease = Duration::from_secs(6);
    setup.poll_interval = Duration::from_millis(200);
    let running = setup.spawn_on(db.worker_config_via(proxy.addr()));
    fixtures::job().insert(&client).await.unwrap();
    eventually(
        &client,
        "select count(*) = 0 from learning_submission_jobs",
        "the first job is done before the cut",
    )
    .await;

    // A cut that neither heals nor resets: nothing but the worker's own bounds
    // can tell it apart from a slow database.
    proxy.set(ProxyMode::Blackhole);
    fixtures::wait_until(
        "the worker reports the database unreachable",
        setup.lease * 2,
        async || {
            running.readiness.database()
                == Some(worker_core::database::DatabaseProblem::Unreachable)
        },
    )
    .await;
    let during = fixtures::job().insert(&client).await.unwrap();

    proxy.set(ProxyMode::Pass);
    fixtures::wait_until("the worker is ready again", setup.lease, async || {
        running.readiness.database().is_none()
    })
    .await;
    let after = fixtures::job().insert(&client).await.unwrap();
    let gone = async |id: uuid::Uuid| -> bool {
        client
            .query_one(
                "select not exists (select 1 from learning_submission_jobs where id = $1)",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    };
    fixtures::wait_until(
        "a job enqueued after the heal is done",
        setup.lease,
        async || gone(after.id).await,
    )
    .await;
    // A lease statement that sat in the black hole reaches the server when the cut
    // heals and leases the job to a caller that stopped waiting: it is done once
    // that lease has run out.
    fixtures::wait_until(
        "the job enqueued during the cut is done",
        setup.lease * 2,
        async || gone(during.id).await,
    )
    .await;
    let completed = fixtures::completed_submissions(&client).await;
    running.stop().await;
    assert_eq!(completed, 3, "every job completed, once each");
}

/// A feedback adapter that, while it runs, asks the server how many of the
/// worker's sessions on this database sit in an open transaction (what a
/// transaction spanning the model call would look like).
struct LooksAtTransactions {
    observer: tokio_postgres::Client,
    database: String,
    seen: std::sync::Mutex<Vec<i64>>,
}

impl FeedbackAdapter for LooksAtTransactions {
    fn feedback<'a>(
        &'a self,
        _: &'a FeedbackInput,
        _: &'a CancellationToken,
    ) -> AdapterFuture<'a, FeedbackOutput> {
        Box::pin(async move {
            let open: i64 = self
                .observer
                .query_one(
                    "select count(*) from pg_stat_activity \
                     where datname = $1 and usename = 'gustav_worker' \
                     and state like 'idle in transaction%'",
                    &[&self.database],
                )
                .await
                .expect("the observer's query runs")
                .get(0);
            self.seen.lock().unwrap().push(open);
            Ok(plain_feedback())
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_transaction_is_open_while_a_model_runs() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    fixtures::submission()
        .image()
        .insert_many_with_jobs(&client, 6)
        .await
        .unwrap();
    let adapter = Arc::new(LooksAtTransactions {
        observer: db.connect().await.unwrap(),
        database: db.name().to_owned(),
        seen: std::sync::Mutex::default(),
    });
    // One job at a time: another job's short completion transaction, caught between
    // its statements, is not what this test looks for.
    let mut setup = Setup::new();
    setup.concurrency = 1;
    setup.feedback = Some(adapter.clone());

    let metrics = setup.drain(&db).await;

    assert_eq!(metrics.processed_count(Processed::Completed), 6);
    let seen = adapter.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6, "one look per feedback call");
    assert!(
        seen.iter().all(|open| *open == 0),
        "worker sessions inside a transaction during model calls: {seen:?}"
    );
}
