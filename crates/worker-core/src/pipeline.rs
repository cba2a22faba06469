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
use tokio_util::sync::CancellationToken;

use crate::batch::{Batched, Batcher, in_order};

use crate::adapter::{
    AdapterError, ErrorClass, FeedbackAdapter, FeedbackInput, JobContext, VisionAdapter,
    VisionInput,
};
use crate::payload::JobPayload;
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
    /// Submission missing or already handled (found so before the work, or when a
    /// helper changed nothing: another job of the same submission won): job deleted.
    Skipped,
    /// The lease was lost: nothing was written.
    LeaseLost,
    /// Given back to the queue (shutdown or an unexpected error).
    Released,
    /// The payload is unusable: job marked failed (`invalid_payload`), its
    /// submission failed with `input_corrupt`.
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
    completions: Batcher<Completion, Option<bool>>,
}

/// A job's submission, read as its student.
struct SubmissionRead {
    reference: uuid::Uuid,
    student_sub: String,
}

/// A job's result.
struct Completion {
    job: JobKey,
    submission: uuid::Uuid,
    student_sub: String,
    text_md: String,
    feedback_md: String,
    analysis: Value,
}

const ACT_AS: &str = "select set_config('app.current_sub', $1, true)";
/// The columns the worker uses, with the platform's types: `size_bytes` is an
/// `integer`, `internal_metadata` a `jsonb` that is never null. No task table is
/// read: the task comes from the job's payload.
const READ_SUBMISSION: &str = "select kind, text_body, storage_key, mime_type, size_bytes, sha256, \
            analysis_status, internal_metadata \
     from public.learning_submissions where id = $1";
/// Whether this transaction's helper call wrote the submission: the helpers set
/// these columns to `now()`, the transaction's start, and change nothing at all
/// when the submission was no longer pending or extracted. Read as the student.
const WROTE: &str = "select coalesce(completed_at = now(), false), \
            coalesce(vision_last_attempt_at = now(), false), \
            coalesce(feedback_last_attempt_at = now(), false) \
     from public.learning_submissions where id = $1";
/// The `SECURITY DEFINER` helper writes each result; the queue deletes the jobs in
/// the same statement, fenced by their keys. The fourth argument is typed: the
/// platform has a `json` and a `jsonb` overload, and an untyped one is ambiguous.
const COMPLETE_EACH: &str = "public.learning_worker_update_completed(done.reference, \
     ($3::text[])[done.n], ($4::text[])[done.n], ($5::jsonb[])[done.n])";
const MARK_RETRY: &str =
    "select public.learning_worker_mark_retry($1::uuid, $2::text, $3::text, now())";
const UPDATE_FAILED: &str =
    "select public.learning_worker_update_failed($1::uuid, $2::text, $3::text)";

/// The submission as the worker reads it.
struct Submission {
    kind: SubmissionKind,
    text_body: Option<String>,
    storage_key: Option<String>,
    mime_type: Option<String>,
    size_bytes: Option<i32>,
    sha256: Option<String>,
    analysis_status: AnalysisStatus,
    internal_metadata: Value,
}

/// What a helper call did, read back in its transaction.
#[derive(Clone, Copy, Debug, Default)]
struct Wrote {
    vision: bool,
    feedback: bool,
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
        let payload = match JobPayload::decode(&job.payload) {
            Ok(payload) => payload,
            Err(error) => return self.fail_invalid_payload(job, &error.to_string()).await,
        };
        let Some(submission) = self.read_submission(job, &payload.student_sub).await? else {
            tracing::info!(job_id = %job.id, submission_id = %job.reference, "submission missing or not visible; removing the job");
            return self.skip(job).await;
        };
        if !submission.analysis_status.is_open() {
            tracing::info!(job_id = %job.id, submission_id = %job.reference, status = %submission.analysis_status, "submission already handled; removing the job");
            return self.skip(job).await;
        }
        let context = JobContext {
            job_id: job.id,
            submission_id: job.reference,
            retry_count: job.retry_count,
        };
        let text_md = if submission.kind == SubmissionKind::Text {
            submission.text_body.clone().unwrap_or_default()
        } else if let Some(cached) = payload.cached_text_md {
            tracing::debug!(job_id = %job.id, "using cached OCR; vision skipped");
            cached
        } else {
            let input = VisionInput {
                job: context.clone(),
                kind: submission.kind,
                storage_key: submission.storage_key.clone(),
                mime_type: submission.mime_type.clone(),
                size_bytes: submission.size_bytes,
                sha256: submission.sha256.clone(),
                internal_metadata: Some(submission.internal_metadata.clone()),
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
            criteria: payload.task.criteria,
            instruction_md: payload.task.instruction_md,
            hints_md: payload.task.hints_md,
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
            submission: job.reference,
            student_sub: payload.student_sub,
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
            text_body: row.try_get(1)?,
            storage_key: row.try_get(2)?,
            mime_type: row.try_get(3)?,
            size_bytes: row.try_get(4)?,
            sha256: row.try_get(5)?,
            analysis_status: row.try_get(6)?,
            internal_metadata: row.try_get(7)?,
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

    /// Writes the result and deletes the job in one fenced transaction, batched
    /// with the other running jobs' results: one round trip and one commit for the
    /// batch (see [`complete_all`]). If the helper changed nothing (another job of
    /// the same submission completed it meanwhile), the job is gone all the same and
    /// the outcome says so: a result is never written twice.
    async fn complete(&self, job: &LeasedJob, completion: Completion) -> Result<Outcome, Failure> {
        let queue = self.queue.clone();
        let batched = self
            .completions
            .submit(completion, move |batch| {
                Box::pin(complete_all(queue.clone(), batch))
            })
            .await;
        let written = match batched {
            Batched::Done(written) => written,
            Batched::Failed(error) => return Err(error.into()),
            Batched::Alone(completion) => complete_all(self.queue.clone(), &[completion])
                .await?
                .pop()
                .flatten(),
            Batched::Lost => return Err(Failure::Cancelled),
        };
        Ok(match written {
            None => Outcome::LeaseLost,
            Some(true) => Outcome::Completed,
            Some(false) => {
                tracing::info!(job_id = %job.id, submission_id = %job.reference, "the submission was already completed or failed; its job is removed and nothing was written");
                Outcome::Skipped
            }
        })
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
        let student_sub = JobPayload::decode(&job.payload)
            .map(|payload| payload.student_sub)
            .unwrap_or_default();
        self.queue
            .bounded(async |client| {
                let Some(fence) = self.queue.fence(client, job).await? else {
                    return Ok(Outcome::LeaseLost);
                };
                let transaction = fence.transaction();
                let (call, code) = if retry {
                    (MARK_RETRY, phase.as_str())
                } else {
                    (UPDATE_FAILED, error.input.unwrap_or(phase.failed_code()).as_str())
                };
                transaction
                    .execute(call, &[&job.reference, &code, &error.message])
                    .await?;
                let wrote = wrote(transaction, &student_sub, job.reference).await?;
                let vision_side = if retry { phase == Phase::Vision } else { code != SubmissionErrorCode::FeedbackFailed.as_str() };
                if !(if vision_side { wrote.vision } else { wrote.feedback }) {
                    tracing::info!(job_id = %job.id, submission_id = %job.reference, "the submission was already completed or failed; its job is removed");
                    fence.complete().await?;
                    return Ok(Outcome::Skipped);
                }
                if retry {
                    fence
                        .retry(
                            retry_delay(self.backoff, job.retry_count, random_fraction()),
                            None,
                        )
                        .await?;
                    return Ok(Outcome::Retried(phase));
                }
                let code = error.input.unwrap_or(phase.failed_code());
                fence.fail(code.as_str()).await?;
                Ok(Outcome::Failed(code))
            })
            .await
    }

    /// A job whose payload the worker cannot use: the job fails (`invalid_payload`)
    /// and so does its submission (`input_corrupt`, written by the helper, which
    /// needs no student), so that no student's page waits for it forever.
    async fn fail_invalid_payload(
        &self,
        job: &LeasedJob,
        reason: &str,
    ) -> Result<Outcome, Failure> {
        tracing::error!(job_id = %job.id, submission_id = %job.reference, error = reason, "unusable job payload; failing the job and its submission");
        let code = SubmissionErrorCode::InputCorrupt;
        let ended = self
            .queue
            .bounded(async |client| {
                let Some(fence) = self.queue.fence(client, job).await? else {
                    return Ok(false);
                };
                fence
                    .transaction()
                    .execute(UPDATE_FAILED, &[&job.reference, &code.as_str(), &reason])
                    .await?;
                fence.fail("invalid_payload").await?;
                Ok(true)
            })
            .await?;
        Ok(if ended {
            Outcome::InvalidPayload
        } else {
            Outcome::LeaseLost
        })
    }

    /// Removes a job whose submission is missing or already handled, in a fenced
    /// transaction of its own.
    async fn skip(&self, job: &LeasedJob) -> Result<Outcome, Failure> {
        let ended = self
            .queue
            .bounded(async |client| {
                let Some(fence) = self.queue.fence(client, job).await? else {
                    return Ok(false);
                };
                fence.complete().await?;
                Ok(true)
            })
            .await?;
        Ok(if ended {
            Outcome::Skipped
        } else {
            Outcome::LeaseLost
        })
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

/// Completes a batch of jobs in one transaction whose statements are pipelined
/// (one round trip): `begin`; one statement deleting every job whose lease still
/// holds and calling the helper for each ([`COMPLETE_EACH`]); per job, as its
/// student, whether the helper wrote ([`WROTE`]); `commit`. For each job:
/// `None` if its lease was lost (nothing was called for it), else whether its
/// result was written.
async fn complete_all(
    queue: Queue,
    batch: &[Completion],
) -> Result<Vec<Option<bool>>, lease::Error> {
    type Step<'a> = std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>,
    >;
    let ids: Vec<uuid::Uuid> = batch.iter().map(|completion| completion.job.id).collect();
    let keys: Vec<uuid::Uuid> = batch
        .iter()
        .map(|completion| completion.job.lease_key)
        .collect();
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
    let sql = queue.complete_many_sql(COMPLETE_EACH);
    let outputs = queue
        .bounded(async |client| {
            let complete = client.prepare_cached(&sql).await?;
            let act_as = client.prepare_cached(ACT_AS).await?;
            let read = client.prepare_cached(WROTE).await?;
            let client: &tokio_postgres::Client = client;
            let mut steps: Vec<Step<'_>> = Vec::with_capacity(2 * batch.len() + 3);
            steps.push(Box::pin(async {
                client.batch_execute("begin").await.map(|()| Vec::new())
            }));
            let complete = &complete;
            let (ids, keys, texts, feedback, analyses) =
                (&ids, &keys, &texts, &feedback, &analyses);
            steps.push(Box::pin(async move {
                client
                    .query(complete, &[ids, keys, texts, feedback, analyses])
                    .await
            }));
            for completion in batch {
                let (act_as, read) = (&act_as, &read);
                steps.push(Box::pin(async move {
                    client.query(act_as, &[&completion.student_sub]).await
                }));
                steps.push(Box::pin(async move {
                    client.query(read, &[&completion.submission]).await
                }));
            }
            steps.push(Box::pin(async {
                client.batch_execute("commit").await.map(|()| Vec::new())
            }));
            let mut outputs = Vec::with_capacity(steps.len());
            for output in in_order(steps).await {
                outputs.push(output?);
            }
            Ok(outputs)
        })
        .await?;
    let done: std::collections::HashSet<uuid::Uuid> =
        outputs[1].iter().map(|row| row.get(0)).collect();
    Ok(batch
        .iter()
        .enumerate()
        .map(|(n, completion)| {
            done.contains(&completion.job.id).then(|| {
                outputs[3 + 2 * n]
                    .first()
                    .is_some_and(|row| row.get::<_, bool>(0))
            })
        })
        .collect())
}

/// Whether the helper just called in `transaction` wrote the submission, read as
/// its student (see [`WROTE`]).
async fn wrote(
    transaction: &deadpool_postgres::Transaction<'_>,
    student_sub: &str,
    submission: uuid::Uuid,
) -> Result<Wrote, tokio_postgres::Error> {
    transaction.execute(ACT_AS, &[&student_sub]).await?;
    Ok(transaction
        .query_opt(WROTE, &[&submission])
        .await?
        .map(|row| Wrote {
            vision: row.get(1),
            feedback: row.get(2),
        })
        .unwrap_or_default())
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
