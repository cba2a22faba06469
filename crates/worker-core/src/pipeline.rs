//! One job, from "leased" to "written": the steps of `learning-worker.md`,
//! "A job's life".
//!
//! Database work happens in short transactions *between* the slow adapter calls;
//! no transaction is open while a model thinks. Every write goes through the lease
//! fence, so a job whose lease was lost writes nothing.
//!
//! ```text
//!   read submission (RLS: app.current_sub = student) ──missing / already handled──► delete job
//!        │
//!        ▼
//!   text? ──yes──► student's text ─────────────────────────────┐
//!        │ no                                                  │
//!        ▼                                                     ▼
//!   payload.cached_text_md? ──yes──► cached OCR ──────────► feedback ──► one fenced
//!        │ no                                                  ▲        statement: delete
//!        ▼                                                     │        job + update_completed
//!   vision ──► fenced: cache text in job payload ──────────────┘
//!
//!   transient error, retries left ──► fenced: mark_retry + requeue with backoff
//!   permanent / retries exhausted ──► fenced: update_failed + job failed
//!   the backend's fault (outage, misconfiguration) ──► fenced release, retries
//!                                        unspent; the worker's breaker opens
//!   lease lost ──► stop, write nothing        shutdown ──► fenced release
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lease::{JobKey, LeasedJob, Queue};
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batched, Batcher, in_order};

use crate::adapter::{
    AdapterError, ErrorClass, FeedbackAdapter, FeedbackInput, JobContext, VisionAdapter,
    VisionInput,
};
use crate::vocabulary::{AnalysisStatus, Phase, SubmissionErrorCode, SubmissionKind};

/// How one job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Result written, job deleted.
    Completed,
    /// Submission and job marked failed with this code.
    Failed(SubmissionErrorCode),
    /// Requeued with backoff after a transient error in this phase.
    Retried(Phase),
    /// Submission missing or already handled: job deleted.
    Skipped,
    /// The lease was lost: nothing was written.
    LeaseLost,
    /// Given back to the queue (shutdown or an unexpected error).
    Released,
    /// The payload is unusable: job marked failed (`invalid_payload`).
    InvalidPayload,
    /// The backend failed (unavailable or misconfigured), not the submission: the
    /// job was given back with its retries unspent, and the breaker should open.
    Returned(AdapterError),
}

/// Cancels a job and says why, and knows until when its lease is surely ours.
pub struct JobControl {
    /// Fires on lease loss or shutdown.
    pub cancel: CancellationToken,
    lease_lost: AtomicBool,
    charge_backend_failures: AtomicBool,
    valid_until: Mutex<Instant>,
}

impl JobControl {
    /// A job whose lease is surely ours until `valid_until` (our clock).
    pub fn new(valid_until: Instant) -> JobControl {
        JobControl {
            cancel: CancellationToken::new(),
            lease_lost: AtomicBool::new(false),
            charge_backend_failures: AtomicBool::new(false),
            valid_until: Mutex::new(valid_until),
        }
    }

    /// This job has caused backend failures while the backend was healthy (see
    /// [`crate::readiness`]): the next one spends a retry like a transient failure.
    pub fn charge_backend_failures(&self) {
        self.charge_backend_failures.store(true, Ordering::SeqCst);
    }

    /// Until when the lease is surely ours, by our own clock.
    pub fn valid_until(&self) -> Instant {
        *self.valid_until.lock().expect("lease deadline lock")
    }

    /// A heartbeat extended the lease.
    pub fn extend_until(&self, valid_until: Instant) {
        let mut current = self.valid_until.lock().expect("lease deadline lock");
        *current = (*current).max(valid_until);
    }

    /// Gives the lease up if it may be over by our own clock — heartbeats failed
    /// or hung for a whole lease — and says whether it did.
    pub fn expire_if_past_deadline(&self, job_id: uuid::Uuid) -> bool {
        if Instant::now() < self.valid_until() {
            return false;
        }
        if !self.lease_lost() {
            tracing::warn!(job_id = %job_id, "lease may have expired without a heartbeat; cancelling the job");
            self.lose_lease();
        }
        true
    }

    /// Cancels the job at its deadline, so that it never works, and never starts
    /// an adapter call, past its lease. Never returns.
    pub async fn expire_at_deadline<T>(&self, job_id: uuid::Uuid) -> T {
        while !self.expire_if_past_deadline(job_id) {
            tokio::time::sleep_until(self.valid_until().into()).await;
        }
        std::future::pending().await
    }

    /// The lease is gone: stop and write nothing.
    pub fn lose_lease(&self) {
        self.lease_lost.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Whether [`lose_lease`](Self::lose_lease) was called.
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.load(Ordering::SeqCst)
    }
}

/// What the pipeline needs besides the job.
pub struct Pipeline {
    /// The queue (and its pool).
    pub queue: Queue,
    /// OCR.
    pub vision: Arc<dyn VisionAdapter>,
    /// Feedback.
    pub feedback: Arc<dyn FeedbackAdapter>,
    /// `WORKER_MAX_RETRIES`.
    pub max_retries: i32,
    /// `WORKER_BACKOFF_SECONDS`.
    pub backoff: Duration,
    /// The running jobs' submission reads, a transaction per batch.
    reads: Batcher<SubmissionRead, Option<Row>>,
    /// Their OCR cache writes, one statement per batch.
    ocr_caches: Batcher<(JobKey, Value), bool>,
    /// Their results, one statement per batch.
    completions: Batcher<Completion, bool>,
}

/// A job's submission, read as its student.
struct SubmissionRead {
    reference: uuid::Uuid,
    student_sub: String,
}

/// A job's result.
struct Completion {
    job: JobKey,
    text_md: String,
    feedback_md: String,
    analysis: Value,
}

const ACT_AS: &str = "select set_config('app.current_sub', $1, true)";
const READ_SUBMISSION: &str = "select s.kind, s.text_body, s.storage_key, s.mime_type, s.size_bytes, s.sha256, \
            s.analysis_status, s.internal_metadata, t.instruction_md, t.criteria \
     from learning_submissions s left join unit_tasks t on t.id = s.task_id \
     where s.id = $1";
/// The `SECURITY DEFINER` helper writes the result; the queue deletes the job in
/// the same statement, fenced by its key.
const COMPLETE_ONE: &str = "learning_worker_update_completed(done.reference, $3, $4, $5)";
const COMPLETE_EACH: &str = "learning_worker_update_completed(done.reference, \
     ($3::text[])[done.n], ($4::text[])[done.n], ($5::jsonb[])[done.n])";

/// The submission and task as the worker reads them.
struct Submission {
    kind: SubmissionKind,
    text_body: Option<String>,
    storage_key: Option<String>,
    mime_type: Option<String>,
    size_bytes: Option<i32>,
    sha256: Option<String>,
    analysis_status: AnalysisStatus,
    internal_metadata: Option<Value>,
    instruction_md: Option<String>,
    criteria: Option<Value>,
}

enum Transition {
    Delete,
    Fail(&'static str),
}

enum Failure {
    Adapter(Phase, AdapterError),
    Cancelled,
    Database(lease::Error),
}

impl From<lease::Error> for Failure {
    fn from(error: lease::Error) -> Failure {
        Failure::Database(error)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Failure {
        Failure::Database(lease::Error::Postgres(error))
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(error: deadpool_postgres::PoolError) -> Failure {
        Failure::Database(lease::Error::Pool(error))
    }
}

impl Pipeline {
    /// A pipeline on `queue` with these adapters; `max_retries` transient failures
    /// per job, retried after `backoff × 2^retries`.
    pub fn new(
        queue: Queue,
        vision: Arc<dyn VisionAdapter>,
        feedback: Arc<dyn FeedbackAdapter>,
        max_retries: i32,
        backoff: Duration,
    ) -> Pipeline {
        Pipeline {
            queue,
            vision,
            feedback,
            max_retries,
            backoff,
            reads: Batcher::default(),
            ocr_caches: Batcher::default(),
            completions: Batcher::default(),
        }
    }

    /// Processes one leased job to its end. Never panics on bad data and never
    /// returns an error: every failure becomes an [`Outcome`].
    pub async fn process(&self, job: &LeasedJob, control: &JobControl) -> Outcome {
        let result = self.try_process(job, control).await;
        let failure = match result {
            Ok(outcome) => return outcome,
            Err(failure) => failure,
        };
        if control.lease_lost() {
            return Outcome::LeaseLost;
        }
        match failure {
            Failure::Adapter(_, error)
                if error.class.is_backend()
                    && !control.charge_backend_failures.load(Ordering::SeqCst) =>
            {
                tracing::warn!(job_id = %job.id, class = ?error.class, error = %error.message, "the model backend failed, not the submission; returning the job unspent");
                match self.queue.release(job).await {
                    Ok(false) => Outcome::LeaseLost,
                    Ok(true) => Outcome::Returned(error),
                    Err(release_error) => {
                        tracing::warn!(job_id = %job.id, error = %release_error, "cannot return the job; its lease will expire");
                        Outcome::Returned(error)
                    }
                }
            }
            Failure::Adapter(phase, error) => {
                match self.record_adapter_failure(job, phase, &error).await {
                    Ok(outcome) => outcome,
                    Err(error) => self.release_after(job, &error).await,
                }
            }
            Failure::Cancelled => match self.queue.release(job).await {
                Ok(true) => Outcome::Released,
                Ok(false) => Outcome::LeaseLost,
                Err(error) => {
                    tracing::warn!(job_id = %job.id, error = %error, "cannot release the job; its lease will expire");
                    Outcome::Released
                }
            },
            Failure::Database(error) => self.release_after(job, &error).await,
        }
    }

    async fn try_process(&self, job: &LeasedJob, control: &JobControl) -> Result<Outcome, Failure> {
        let Some(student_sub) = job
            .payload
            .get("student_sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
        else {
            tracing::error!(job_id = %job.id, "job payload has no student_sub; marking the job failed");
            return self
                .finish(
                    job,
                    Transition::Fail("invalid_payload"),
                    Outcome::InvalidPayload,
                )
                .await;
        };
        let Some(submission) = self.read_submission(job, student_sub).await? else {
            tracing::info!(job_id = %job.id, submission_id = %job.reference, "submission missing or not visible; removing the job");
            return self.finish(job, Transition::Delete, Outcome::Skipped).await;
        };
        if !submission.analysis_status.is_open() {
            tracing::info!(job_id = %job.id, submission_id = %job.reference, status = %submission.analysis_status, "submission already handled; removing the job");
            return self.finish(job, Transition::Delete, Outcome::Skipped).await;
        }
        let context = JobContext {
            job_id: job.id,
            submission_id: job.reference,
            retry_count: job.retry_count,
        };
        let cached = job.payload.get("cached_text_md").and_then(Value::as_str);
        let text_md = if submission.kind == SubmissionKind::Text {
            submission.text_body.clone().unwrap_or_default()
        } else if let Some(cached) = cached {
            tracing::debug!(job_id = %job.id, "using cached OCR; vision skipped");
            cached.to_owned()
        } else {
            let input = VisionInput {
                job: context.clone(),
                kind: submission.kind,
                storage_key: submission.storage_key.clone(),
                mime_type: submission.mime_type.clone(),
                size_bytes: submission.size_bytes,
                sha256: submission.sha256.clone(),
                internal_metadata: submission.internal_metadata.clone(),
            };
            let started = Instant::now();
            let output = adapter_call(control, job, Phase::Vision, || {
                self.vision.extract(&input, &control.cancel)
            })
            .await?
            .map_err(|error| Failure::Adapter(Phase::Vision, error))?;
            tracing::info!(job_id = %job.id, submission_id = %job.reference, phase = "vision", duration_ms = started.elapsed().as_millis() as u64, "vision done");
            let patch = json!({"cached_text_md": output.text_md, "cached_raw_metadata": output.raw_metadata});
            if !self.cache_ocr(job, patch).await? {
                return Ok(Outcome::LeaseLost);
            }
            output.text_md
        };
        let input = FeedbackInput {
            job: context,
            text_md: text_md.clone(),
            criteria: job
                .payload
                .get("criteria")
                .cloned()
                .or(submission.criteria)
                .unwrap_or(Value::Null),
            instruction_md: job
                .payload
                .get("instruction_md")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(submission.instruction_md),
            hints_md: job
                .payload
                .get("hints_md")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let started = Instant::now();
        let output = adapter_call(control, job, Phase::Feedback, || {
            self.feedback.feedback(&input, &control.cancel)
        })
        .await?
        .map_err(|error| Failure::Adapter(Phase::Feedback, error))?;
        tracing::info!(job_id = %job.id, submission_id = %job.reference, phase = "feedback", duration_ms = started.elapsed().as_millis() as u64, "feedback done");
        let completion = Completion {
            job: job.key(),
            text_md,
            feedback_md: output.feedback_md,
            analysis: output.analysis_json,
        };
        self.complete(job, completion).await
    }

    /// Reads the submission as its student (RLS), batched with the other running
    /// jobs' reads (see [`read_submissions`]).
    async fn read_submission(
        &self,
        job: &LeasedJob,
        student_sub: &str,
    ) -> Result<Option<Submission>, Failure> {
        let request = SubmissionRead {
            reference: job.reference,
            student_sub: student_sub.to_owned(),
        };
        let queue = self.queue.clone();
        let batched = self
            .reads
            .submit(request, move |batch| {
                Box::pin(read_submissions(queue.clone(), batch))
            })
            .await;
        let row = match batched {
            Batched::Done(row) => row,
            Batched::Failed(error) => return Err(error.into()),
            Batched::Alone(request) => read_submissions(self.queue.clone(), &[request])
                .await?
                .pop()
                .flatten(),
            Batched::Lost => return Err(Failure::Cancelled),
        };
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Submission {
            kind: row.try_get(0)?,
            text_body: row.get(1),
            storage_key: row.get(2),
            mime_type: row.get(3),
            size_bytes: row.get(4),
            sha256: row.get(5),
            analysis_status: row.try_get(6)?,
            internal_metadata: row.get(7),
            instruction_md: row.get(8),
            criteria: row.get(9),
        }))
    }

    /// Caches the OCR text in the job's payload, fenced, batched with the other
    /// running jobs' cache writes; `false` if the lease is lost. Answers only
    /// once the write is committed: the cache is durable before feedback starts.
    async fn cache_ocr(&self, job: &LeasedJob, patch: Value) -> Result<bool, Failure> {
        let queue = self.queue.clone();
        let batched = self
            .ocr_caches
            .submit((job.key(), patch), move |batch| {
                let queue = queue.clone();
                Box::pin(async move {
                    let held = queue.merge_payloads(batch).await?;
                    Ok(batch
                        .iter()
                        .map(|(job, _)| held.contains(&job.id))
                        .collect())
                })
            })
            .await;
        match batched {
            Batched::Done(held) => Ok(held),
            Batched::Failed(error) => Err(error.into()),
            Batched::Alone((_, patch)) => Ok(self.queue.merge_payload(job, &patch).await?),
            Batched::Lost => Err(Failure::Cancelled),
        }
    }

    /// Writes the result and deletes the job in one fenced statement (see
    /// [`Queue::complete_many_with`]), batched with the other running jobs'
    /// results: one round trip and one commit for the batch. If the submission was
    /// completed meanwhile (the helper raises), the job is removed.
    async fn complete(&self, job: &LeasedJob, completion: Completion) -> Result<Outcome, Failure> {
        let queue = self.queue.clone();
        let batched = self
            .completions
            .submit(completion, move |batch| {
                Box::pin(complete_all(queue.clone(), batch))
            })
            .await;
        let written = match batched {
            Batched::Done(held) => Ok(held),
            Batched::Failed(error) => Err(error),
            Batched::Alone(completion) => {
                self.queue
                    .complete_with(
                        job,
                        COMPLETE_ONE,
                        &[
                            &completion.text_md,
                            &completion.feedback_md,
                            &completion.analysis,
                        ],
                    )
                    .await
            }
            Batched::Lost => return Err(Failure::Cancelled),
        };
        match written {
            Ok(true) => Ok(Outcome::Completed),
            Ok(false) => Ok(Outcome::LeaseLost),
            Err(error)
                if error.sql_state() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) =>
            {
                tracing::info!(job_id = %job.id, "submission was handled meanwhile; removing the job");
                self.finish(job, Transition::Delete, Outcome::Skipped).await
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn record_adapter_failure(
        &self,
        job: &LeasedJob,
        phase: Phase,
        error: &AdapterError,
    ) -> Result<Outcome, lease::Error> {
        // A backend failure reaches here only when the job is charged for it.
        let retry = error.class != ErrorClass::Permanent && job.retry_count < self.max_retries;
        tracing::warn!(job_id = %job.id, submission_id = %job.reference, phase = phase.as_str(), class = ?error.class, error = %error.message, retry, "adapter failed");
        self.queue
            .bounded(async |client| {
                let Some(fence) = self.queue.fence(client, job).await? else {
                    return Ok(Outcome::LeaseLost);
                };
                if retry {
                    fence
                        .transaction()
                        .execute(
                            "select learning_worker_mark_retry($1, $2, $3, now())",
                            &[&job.reference, &phase.as_str(), &error.message],
                        )
                        .await?;
                    fence
                        .retry(
                            retry_delay(self.backoff, job.retry_count, random_fraction()),
                            None,
                        )
                        .await?;
                    return Ok(Outcome::Retried(phase));
                }
                let code = phase.failed_code();
                fence
                    .transaction()
                    .execute(
                        "select learning_worker_update_failed($1, $2, $3)",
                        &[&job.reference, &code.as_str(), &error.message],
                    )
                    .await?;
                fence.fail(code.as_str()).await?;
                Ok(Outcome::Failed(code))
            })
            .await
    }

    /// Ends the job (delete, or mark failed) in a fenced transaction of its own.
    async fn finish(
        &self,
        job: &LeasedJob,
        transition: Transition,
        outcome: Outcome,
    ) -> Result<Outcome, Failure> {
        let ended = self
            .queue
            .bounded(async |client| {
                let Some(fence) = self.queue.fence(client, job).await? else {
                    return Ok(false);
                };
                match transition {
                    Transition::Delete => fence.complete().await?,
                    Transition::Fail(code) => fence.fail(code).await?,
                }
                Ok(true)
            })
            .await?;
        Ok(if ended { outcome } else { Outcome::LeaseLost })
    }

    /// Returns the job to the queue after an unexpected (database) error. The
    /// database may be restarting, so the release is tried a few times; if it never
    /// goes through, the lease simply expires and the job is leased again.
    async fn release_after(&self, job: &LeasedJob, error: &lease::Error) -> Outcome {
        tracing::error!(job_id = %job.id, error = %error, "unexpected error; returning the job to the queue");
        let mut pause = Duration::from_millis(250);
        for _ in 0..4 {
            match self.queue.release(job).await {
                Ok(true) => return Outcome::Released,
                Ok(false) => return Outcome::LeaseLost,
                Err(error) => {
                    tracing::warn!(job_id = %job.id, error = %error, "release failed; retrying")
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        Outcome::Released
    }
}

/// Reads many submissions, each as its own student (RLS: `app.current_sub`), in
/// one read-only transaction whose statements are pipelined: `begin`, then per
/// submission `set_config` and the read, then `commit`, all in one round trip.
/// `set_config(…, true)` holds until the next one or the transaction's end, so
/// each read sees exactly its own student's rows.
async fn read_submissions(
    queue: Queue,
    batch: &[SubmissionRead],
) -> Result<Vec<Option<Row>>, lease::Error> {
    type Step<'a> = std::pin::Pin<
        Box<dyn Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a>,
    >;
    queue
        .bounded(async |client| {
            let act_as = client.prepare_cached(ACT_AS).await?;
            let read = client.prepare_cached(READ_SUBMISSION).await?;
            let client: &tokio_postgres::Client = client;
            let mut steps: Vec<Step<'_>> = Vec::with_capacity(2 * batch.len() + 2);
            steps.push(Box::pin(async {
                client.batch_execute("begin").await.map(|()| None)
            }));
            for request in batch {
                let (act_as, read) = (&act_as, &read);
                steps.push(Box::pin(async move {
                    client
                        .execute(act_as, &[&request.student_sub])
                        .await
                        .map(|_| None)
                }));
                steps.push(Box::pin(async move {
                    client.query_opt(read, &[&request.reference]).await
                }));
            }
            steps.push(Box::pin(async {
                client.batch_execute("commit").await.map(|()| None)
            }));
            let mut rows = Vec::with_capacity(batch.len());
            // Steps 2, 4, … are the reads.
            for (step, output) in in_order(steps).await.into_iter().enumerate() {
                let row = output?;
                if step % 2 == 0 && step > 0 && step <= 2 * batch.len() {
                    rows.push(row);
                }
            }
            Ok(rows)
        })
        .await
}

/// Completes a batch of jobs with their results in one statement (see
/// [`COMPLETE_EACH`]); says for each whether its lease was still held.
async fn complete_all(queue: Queue, batch: &[Completion]) -> Result<Vec<bool>, lease::Error> {
    let keys: Vec<JobKey> = batch.iter().map(|completion| completion.job).collect();
    let texts: Vec<&str> = batch
        .iter()
        .map(|completion| completion.text_md.as_str())
        .collect();
    let feedback: Vec<&str> = batch
        .iter()
        .map(|completion| completion.feedback_md.as_str())
        .collect();
    let analyses: Vec<&Value> = batch
        .iter()
        .map(|completion| &completion.analysis)
        .collect();
    let completed = queue
        .complete_many_with(&keys, COMPLETE_EACH, &[&texts, &feedback, &analyses])
        .await?;
    Ok(keys.iter().map(|key| completed.contains(&key.id)).collect())
}

/// Starts an adapter call unless the job is already cancelled (its lease may be
/// over), and abandons it when the job is cancelled meanwhile.
///
/// The debug event marks the moment the call starts, with the lease it runs
/// under: `cargo xtask chaos` checks those against the lease history ("no call
/// while another worker holds a live lease").
async fn adapter_call<T, F: Future<Output = T>>(
    control: &JobControl,
    job: &LeasedJob,
    phase: Phase,
    start: impl FnOnce() -> F,
) -> Result<T, Failure> {
    // The deadline timer may not have run yet (the process was paused, say):
    // look at the clock too.
    control.expire_if_past_deadline(job.id);
    if control.cancel.is_cancelled() {
        return Err(Failure::Cancelled);
    }
    tracing::debug!(job_id = %job.id, submission_id = %job.reference, lease_key = %job.lease_key, retry_count = job.retry_count, phase = phase.as_str(), "adapter call starts");
    let future = start();
    tokio::select! {
        biased;
        () = control.cancel.cancelled() => Err(Failure::Cancelled),
        output = future => {
            if control.cancel.is_cancelled() { Err(Failure::Cancelled) } else { Ok(output) }
        }
    }
}

/// `backoff × 2^retry_count`, plus `jitter` (0.0–1.0) × 10 %.
pub fn retry_delay(backoff: Duration, retry_count: i32, jitter: f64) -> Duration {
    let exponent = u32::try_from(retry_count.clamp(0, 20)).unwrap_or(0);
    let base = backoff.saturating_mul(2u32.saturating_pow(exponent));
    base + base.mul_f64(0.1 * jitter.clamp(0.0, 1.0))
}

fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}
