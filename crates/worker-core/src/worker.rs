//! The worker loop: how many jobs run at once, how leases stay alive, and how the
//! worker stops.
//!
//! # Concurrency model
//!
//! One tokio task per job, at most `concurrency` of them (a `JoinSet`). The main
//! loop leases exactly as many jobs as there are free slots, in one statement, then
//! sleeps until a job finishes, a notification arrives, or the poll interval passes.
//! A separate heartbeat task extends *all* held leases with one statement every
//! `lease / 3`. A job whose key is missing from the heartbeat's answer lost its lease
//! (it expired during a database outage and someone else took it): its task is
//! cancelled and writes nothing.
//!
//! Each job also carries a deadline by the worker's own clock: the moment the
//! lease (or the last successful heartbeat) statement was *sent*, plus the lease,
//! minus a tenth of it as margin. The database computed `leased_until` from a
//! `now()` taken after that moment, so the deadline is never later than the real
//! expiry. A job still running at its deadline — heartbeats failed or hung, say
//! because the network to the database is cut — is cancelled at that instant by a
//! timer of its own, before another worker can lease it, and it starts no adapter
//! call once cancelled.
//!
//! # When the backend or the database fails
//!
//! A job that ends [`Outcome::Returned`] (the model backend failed, not the
//! submission) opens the circuit breaker of [`crate::readiness`]: the loop stops
//! leasing, probes the backend at once and then with backoff, and leases again
//! when a probe succeeds. A statement that fails is classified
//! ([`DatabaseProblem`]) and reported on `/readyz`. In drain mode, a problem that
//! waiting cannot cure (a misconfigured backend, a wrong password, a missing
//! schema) ends the loop with an [`Error`] once running jobs are done.
//!
//! # Shutdown
//!
//! On shutdown the loop stops leasing; running jobs may finish within the grace
//! period while heartbeats continue; then the rest are cancelled and return their
//! jobs to the queue (fenced release, `retry_count` unchanged).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lease::{LeasedJob, Listener, Queue};
use tokio::task::JoinSet;
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::adapter::{AdapterError, ErrorClass};
use crate::database::DatabaseProblem;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::metrics::Processed;
use crate::pipeline::{JobControl, Outcome, Pipeline};
use crate::readiness::{Readiness, STRIKES_BEFORE_CHARGING};

/// Probe backoff bounds while the breaker is open.
const PROBE_MIN: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(30);

/// Whether the worker runs forever or stops when the queue is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Long-running.
    Run,
    /// Until no job is visible and none is running.
    Drain,
}

/// The worker's settings, validated by the binary.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs at once.
    pub concurrency: usize,
    /// Lease length; heartbeats every third of it.
    pub lease: Duration,
    /// Fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// How long running jobs may finish after shutdown starts.
    pub shutdown_grace: Duration,
}

struct InFlight {
    lease_key: Uuid,
    control: Arc<JobControl>,
    task: tokio::task::Id,
}

type InFlightJobs = Arc<Mutex<HashMap<Uuid, InFlight>>>;

/// What the loop reports to, besides its log.
#[derive(Clone, Default)]
pub struct Observers {
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The breaker and database state, for `/readyz`.
    pub readiness: Arc<Readiness>,
}

/// Runs the worker until `shutdown` fires (or, in drain mode, the queue is empty),
/// woken early by `listener` when jobs arrive.
pub async fn run(
    pipeline: Arc<Pipeline>,
    config: WorkerConfig,
    listener: Listener,
    observers: Observers,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let worker_id = Uuid::from_bytes(random_bytes());
    tracing::info!(worker_id = %worker_id, concurrency = config.concurrency, mode = ?mode, "worker started");
    let Observers { metrics, readiness } = observers;
    let mut breaker = Breaker::new(readiness);
    let mut gave_up = None;
    let inflight: InFlightJobs = Arc::default();
    let heartbeats = tokio::spawn(heartbeat_loop(
        pipeline.queue.clone(),
        config.lease,
        Arc::clone(&inflight),
    ));
    let mut tasks: JoinSet<(Uuid, Outcome, Duration)> = JoinSet::new();
    let mut database_backoff = Duration::from_millis(100);

    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if breaker.is_open() {
            if let Err(cause) = breaker.probe_when_due(&pipeline).await
                && mode == Mode::Drain
                && cause.class == ErrorClass::Misconfigured
            {
                gave_up = Some(Error::Backend(cause.message));
                break;
            }
            if breaker.is_open() {
                let next_probe = breaker.next_probe.unwrap_or_else(TokioInstant::now);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => record(joined, &inflight, &metrics, &mut breaker),
                    () = tokio::time::sleep_until(next_probe) => {}
                }
                continue;
            }
        }
        let free = config.concurrency.saturating_sub(tasks.len());
        let mut leased_none = false;
        if free > 0 {
            let sent = Instant::now();
            match pipeline.queue.lease(free, config.lease, None).await {
                Ok(jobs) => {
                    database_backoff = Duration::from_millis(100);
                    if breaker.readiness.database_up() {
                        tracing::info!("the database serves again");
                    }
                    leased_none = jobs.is_empty();
                    for job in jobs {
                        let control = JobControl::new(sent + surely_held(config.lease));
                        if breaker.charges(job.id) {
                            control.charge_backend_failures();
                        }
                        start_job(&mut tasks, &pipeline, &inflight, &metrics, job, control);
                    }
                }
                Err(error) => {
                    let problem = DatabaseProblem::of_queue(&error);
                    if breaker.readiness.database_down(problem) {
                        tracing::warn!(cause = problem.code(), error = %error, fix = problem.fix(), "cannot lease jobs: {}", problem.describe());
                    }
                    if mode == Mode::Drain && !problem.may_pass() {
                        gave_up = Some(Error::Database(problem));
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(database_backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    // Capped so that the worker is back within a third of a lease
                    // once the database is.
                    database_backoff = (database_backoff * 2)
                        .min(crate::connection::statement_timeout(config.lease));
                    continue;
                }
            }
        }
        if mode == Mode::Drain && leased_none && tasks.is_empty() {
            tracing::info!("queue drained");
            break;
        }
        let has_free_slot = tasks.len() < config.concurrency;
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                record(joined, &inflight, &metrics, &mut breaker);
                // Jobs end together when their batch commits (see `batch`): one
                // lease statement for all the slots they free.
                while let Some(joined) = tasks.try_join_next() {
                    record(joined, &inflight, &metrics, &mut breaker);
                }
            }
            _ = listener.wait(config.poll_interval), if has_free_slot && (mode == Mode::Run || leased_none) => {}
        }
    }

    if !tasks.is_empty() {
        tracing::info!(
            running = tasks.len(),
            grace_s = config.shutdown_grace.as_secs(),
            "letting running jobs finish"
        );
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(joined) => record(joined, &inflight, &metrics, &mut breaker),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(running = tasks.len(), "grace period over; returning unfinished jobs to the queue");
                    for job in inflight.lock().expect("inflight lock").values() {
                        job.control.cancel.cancel();
                    }
                    while let Some(joined) = tasks.join_next().await {
                        record(joined, &inflight, &metrics, &mut breaker);
                    }
                    break;
                }
            }
        }
    }
    heartbeats.abort();
    tracing::info!(worker_id = %worker_id, "worker stopped");
    gave_up.map_or(Ok(()), Err)
}

/// The loop's side of the circuit breaker (see [`crate::readiness`]).
struct Breaker {
    readiness: Arc<Readiness>,
    /// Per job: backend failures it caused while the backend probed healthy.
    strikes: HashMap<Uuid, u32>,
    /// Jobs returned since the breaker opened, until the first probe.
    suspects: Vec<Uuid>,
    next_probe: Option<TokioInstant>,
    backoff: Duration,
}

impl Breaker {
    fn new(readiness: Arc<Readiness>) -> Breaker {
        Breaker {
            readiness,
            strikes: HashMap::new(),
            suspects: Vec::new(),
            next_probe: None,
            backoff: PROBE_MIN,
        }
    }

    fn is_open(&self) -> bool {
        self.readiness.backend().is_some()
    }

    fn charges(&self, job_id: Uuid) -> bool {
        self.strikes
            .get(&job_id)
            .is_some_and(|strikes| *strikes >= STRIKES_BEFORE_CHARGING)
    }

    fn job_ended(&mut self, job_id: Uuid, outcome: &Outcome) {
        let Outcome::Returned(cause) = outcome else {
            self.strikes.remove(&job_id);
            return;
        };
        if self.readiness.backend_down(cause) {
            tracing::warn!(class = ?cause.class, cause = %cause.message, "the model backend failed; not leasing until a probe succeeds");
        }
        if self.next_probe.is_none() {
            self.next_probe = Some(TokioInstant::now());
            self.suspects.clear();
        }
        self.suspects.push(job_id);
    }

    /// Probes the backend if the time has come; closes the breaker on success.
    async fn probe_when_due(&mut self, pipeline: &Pipeline) -> Result<(), AdapterError> {
        let now = TokioInstant::now();
        if self.next_probe.is_some_and(|due| due > now) {
            return Ok(());
        }
        let probed = async {
            pipeline.vision.probe().await?;
            pipeline.feedback.probe().await
        }
        .await;
        match probed {
            Ok(()) => {
                // The backend was healthy right after these jobs failed: the
                // failures may be theirs. Later successes prove nothing of the kind.
                for job in self.suspects.drain(..) {
                    *self.strikes.entry(job).or_default() += 1;
                }
                self.next_probe = None;
                self.backoff = PROBE_MIN;
                if self.readiness.backend_up() {
                    tracing::info!("the model backend answers again; leasing");
                }
                Ok(())
            }
            Err(cause) => {
                self.suspects.clear();
                if self.readiness.backend_down(&cause) {
                    tracing::warn!(class = ?cause.class, cause = %cause.message, "the model backend is still down; not leasing");
                }
                self.next_probe = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(PROBE_MAX);
                Err(cause)
            }
        }
    }
}

fn start_job(
    tasks: &mut JoinSet<(Uuid, Outcome, Duration)>,
    pipeline: &Arc<Pipeline>,
    inflight: &InFlightJobs,
    metrics: &Arc<Metrics>,
    job: LeasedJob,
    control: JobControl,
) {
    let control = Arc::new(control);
    let (job_id, lease_key) = (job.id, job.lease_key);
    metrics.add_inflight(1);
    let pipeline = Arc::clone(pipeline);
    let task_control = Arc::clone(&control);
    let task = tasks.spawn(async move {
        let started = Instant::now();
        tracing::debug!(job_id = %job.id, submission_id = %job.reference, retry_count = job.retry_count, "job started");
        let outcome = tokio::select! {
            outcome = pipeline.process(&job, &task_control) => outcome,
            never = task_control.expire_at_deadline(job.id) => never,
        };
        (job.id, outcome, started.elapsed())
    });
    // Inserted before the main loop can join the task, which it does only after
    // this function returns.
    inflight.lock().expect("inflight lock").insert(
        job_id,
        InFlight {
            lease_key,
            control,
            task: task.id(),
        },
    );
}

fn record(
    joined: Result<(Uuid, Outcome, Duration), tokio::task::JoinError>,
    inflight: &InFlightJobs,
    metrics: &Metrics,
    breaker: &mut Breaker,
) {
    metrics.add_inflight(-1);
    let (job_id, outcome, duration) = match joined {
        Ok(result) => result,
        Err(error) => {
            // A panicking job must not take the worker down. Forgetting it stops
            // its heartbeats, so its lease expires and the job is leased again.
            tracing::error!(error = %error, "job task panicked");
            inflight
                .lock()
                .expect("inflight lock")
                .retain(|_, job| job.task != error.id());
            return;
        }
    };
    inflight.lock().expect("inflight lock").remove(&job_id);
    breaker.job_ended(job_id, &outcome);
    let status = match &outcome {
        Outcome::Completed => Some(Processed::Completed),
        Outcome::Failed(code) => {
            metrics.failed(*code);
            Some(Processed::Failed)
        }
        Outcome::Retried(phase) => {
            metrics.retried(*phase);
            Some(Processed::Retried)
        }
        Outcome::Skipped | Outcome::InvalidPayload => Some(Processed::Skipped),
        Outcome::LeaseLost => {
            tracing::warn!(job_id = %job_id, "lease lost: the job was cancelled and wrote nothing");
            metrics.lease_lost();
            None
        }
        Outcome::Released | Outcome::Returned(_) => None,
    };
    if let Some(status) = status {
        metrics.processed(status, duration);
    }
    tracing::info!(job_id = %job_id, outcome = ?outcome, duration_ms = duration.as_millis() as u64, "job ended");
}

/// How long after sending a lease or heartbeat statement the lease is surely
/// still ours: the lease minus a tenth as margin for timer and scheduling delays.
fn surely_held(lease: Duration) -> Duration {
    lease - lease / 10
}

/// Extends every held lease every `lease / 3` with one statement, cancelling jobs
/// whose lease is lost.
async fn heartbeat_loop(queue: Queue, lease: Duration, inflight: InFlightJobs) {
    let interval = lease / 3;
    loop {
        tokio::time::sleep(interval).await;
        let keys: Vec<Uuid> = inflight
            .lock()
            .expect("inflight lock")
            .values()
            .map(|job| job.lease_key)
            .collect();
        let sent = Instant::now();
        let held = if keys.is_empty() {
            Ok(Default::default())
        } else {
            queue.heartbeat(&keys, lease, None).await
        };
        let jobs = inflight.lock().expect("inflight lock");
        match held {
            Ok(held) => {
                for (job_id, job) in jobs.iter() {
                    if held.contains(&job.lease_key) {
                        job.control.extend_until(sent + surely_held(lease));
                    } else if keys.contains(&job.lease_key) && !job.control.lease_lost() {
                        // Either the lease was taken over, or the job has just
                        // finished and its row is gone: cancelling is right for the
                        // first and harmless for the second. The job's outcome tells
                        // which, and only a real loss is counted (in `record`).
                        tracing::debug!(job_id = %job_id, "key not extended; cancelling the job");
                        job.control.lose_lease();
                    }
                }
            }
            Err(error) => tracing::warn!(error = %error, "heartbeat failed"),
        }
    }
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes
}
