//! The worker scenario: three `learning-worker` processes, each connected through
//! its own [`fixtures::FaultProxy`], drain jobs whose outcome is configured per
//! job, while faults hit them. Everything checked afterwards comes from records
//! the workers cannot fake:
//!
//! - `chaos_job_log`: a trigger logs every change of a job's status, lease key,
//!   lease expiry or retry count, with `clock_timestamp()`: the lease history;
//! - `chaos_submission_log`: a trigger logs every submission status change: a
//!   result written twice would show as two rows;
//! - `chaos_calls`: each worker's debug event "adapter call starts" (time, job,
//!   lease key, phase), parsed from the worker logs and cross-checked against
//!   the stub's own call log (`AI_STUB_CALL_LOG`, which has no timestamps);
//! - `chaos_faults`: what the harness injected, when, and into which process.
//!
//! Each job's outcome is set by its starting `retry_count` against one global
//! `AI_STUB_FAIL` (the stub fails while `retry_count` is below a threshold), so
//! the expected status, error code and number of adapter calls of a fault-free
//! run follow from the spec's retry rules ([`expected`]). Calls beyond that are
//! duplicates; each must come from a lease that ended without a result while a
//! fault hit its holder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use fixtures::seed::{self, Kinds};
use fixtures::{FaultProxy, ProxyMode, SubmissionKind};
use worker_core::adapter::ErrorClass;
use worker_core::stub::{StubFailure, parse_stub_failures};
use worker_core::vocabulary::Phase;
use xshell::Shell;

use super::{Rng, epoch_seconds, signal};
use crate::db::{Db, secret_file};

const WORKERS: usize = 3;
const CONCURRENCY: &str = "64";
const LEASE_SECONDS: &str = "2";
/// Longer than the lease: every job needs heartbeats to survive.
const STUB_DELAY_MS: &str = "2200";
const MAX_RETRIES: i32 = 3;
/// Vision fails permanently at retry count 0 and transiently below 5 (so, with
/// 3 retries, images starting at 2 or 3 exhaust them); feedback fails
/// permanently at 0 and transiently below 3 (texts starting at 1 succeed on
/// their third try).
const STUB_FAIL: &str =
    "vision:permanent:1,feedback:permanent:1,feedback:transient:3,vision:transient:5";

/// A kind of job: its submission kind, starting retry count, and share of the mix.
struct Class {
    kind: SubmissionKind,
    retry_count: i32,
    weight: usize,
}

const CLASSES: [Class; 7] = [
    Class {
        kind: SubmissionKind::Text,
        retry_count: 3,
        weight: 8,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 5,
        weight: 5,
    },
    Class {
        kind: SubmissionKind::Text,
        retry_count: 1,
        weight: 2,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 2,
        weight: 2,
    },
    Class {
        kind: SubmissionKind::Text,
        retry_count: 0,
        weight: 1,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 0,
        weight: 1,
    },
    Class {
        kind: SubmissionKind::Image,
        retry_count: 3,
        weight: 1,
    },
];

/// What a fault-free run does with a job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) status: &'static str,
    pub(crate) error_code: Option<&'static str>,
    pub(crate) vision_calls: u32,
    pub(crate) feedback_calls: u32,
}

/// The spec's rules ("A job's life", step 8, and the stub's `AI_STUB_FAIL`)
/// replayed for one job.
pub(crate) fn expected(
    kind: SubmissionKind,
    mut retry_count: i32,
    failures: &[StubFailure],
    max_retries: i32,
) -> Expected {
    let failure = |phase: Phase, retry_count: i32| {
        failures
            .iter()
            .find(|f| f.phase == phase && retry_count < f.below_retry_count)
            .map(|f| f.class)
    };
    let (mut vision_calls, mut feedback_calls, mut cached) = (0, 0, false);
    let end = |status, error_code, vision_calls, feedback_calls| Expected {
        status,
        error_code,
        vision_calls,
        feedback_calls,
    };
    loop {
        if kind != SubmissionKind::Text && !cached {
            vision_calls += 1;
            match failure(Phase::Vision, retry_count) {
                None => cached = true,
                Some(ErrorClass::Transient) if retry_count < max_retries => {
                    retry_count += 1;
                    continue;
                }
                Some(_) => {
                    return end(
                        "failed",
                        Some("vision_failed"),
                        vision_calls,
                        feedback_calls,
                    );
                }
            }
        }
        feedback_calls += 1;
        match failure(Phase::Feedback, retry_count) {
            None => return end("completed", None, vision_calls, feedback_calls),
            Some(ErrorClass::Transient) if retry_count < max_retries => retry_count += 1,
            Some(_) => {
                return end(
                    "failed",
                    Some("feedback_failed"),
                    vision_calls,
                    feedback_calls,
                );
            }
        }
    }
}

pub(crate) struct Setup<'a> {
    pub(crate) sh: &'a Shell,
    pub(crate) cluster: &'a fixtures::TestCluster,
    pub(crate) bin: &'a Path,
    pub(crate) scratch: &'a Path,
    pub(crate) worker_password: &'a str,
    pub(crate) fault_period: Duration,
    pub(crate) quick: bool,
}

/// The scenario's numbers and what went wrong.
#[derive(Default)]
pub(crate) struct Report {
    seconds: f64,
    faults: BTreeMap<&'static str, usize>,
    processes: usize,
    jobs: u64,
    completed: u64,
    failed: u64,
    not_as_configured: u64,
    calls: u64,
    expected_calls: u64,
    duplicates: BTreeMap<String, u64>,
    wasted_without_duplicate: u64,
    foreign_lease_calls: u64,
    expired_own_lease_calls: u64,
    written_twice: u64,
    lost: u64,
    stuck: u64,
    pub(crate) violations: Vec<String>,
}

impl Report {
    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let duplicates: u64 = self.duplicates.values().sum();
        let by_cause: Vec<String> = self
            .duplicates
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        vec![
            (
                "faults injected".into(),
                format!(
                    "{} ({})",
                    self.faults.values().sum::<usize>(),
                    faults.join(", ")
                ),
            ),
            (
                "worker processes started".into(),
                self.processes.to_string(),
            ),
            (
                "jobs".into(),
                format!(
                    "{} ({} completed, {} failed; {} not as configured)",
                    self.jobs, self.completed, self.failed, self.not_as_configured
                ),
            ),
            (
                "adapter calls".into(),
                format!(
                    "{} (a fault-free run makes {})",
                    self.calls, self.expected_calls
                ),
            ),
            (
                "duplicate calls".into(),
                format!(
                    "{duplicates} ({})",
                    if by_cause.is_empty() {
                        "none".to_owned()
                    } else {
                        by_cause.join(", ")
                    }
                ),
            ),
            (
                "calls under a lost lease, result kept (OCR cache)".into(),
                self.wasted_without_duplicate.to_string(),
            ),
            (
                "calls while another worker held a live lease".into(),
                self.foreign_lease_calls.to_string(),
            ),
            (
                "calls after the caller's own lease ended".into(),
                self.expired_own_lease_calls.to_string(),
            ),
            (
                "results written twice".into(),
                self.written_twice.to_string(),
            ),
            ("lost (pending without a job)".into(), self.lost.to_string()),
            (
                "stuck (queued or leased at the end)".into(),
                self.stuck.to_string(),
            ),
            ("scenario time".into(), format!("{:.1} s", self.seconds)),
        ]
    }

    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }
}

/// One roll (see [`World::inject`]) for each kind of fault.
const EVERY_FAULT: [usize; 7] = [5, 20, 35, 50, 60, 80, 95];

struct Worker {
    slot: usize,
    instance: usize,
    child: Child,
}

struct FaultRecord {
    kind: &'static str,
    /// `None`: every worker (a database restart).
    instance: Option<usize>,
    started: SystemTime,
    ended: SystemTime,
}

/// The running system: the workers, their proxies, and what was done to them.
struct World<'a> {
    setup: &'a Setup<'a>,
    db: Db<'a>,
    proxies: Vec<FaultProxy>,
    dsn_files: Vec<PathBuf>,
    workers: Vec<Worker>,
    instances: usize,
    logs: PathBuf,
    call_log: PathBuf,
    faults: Vec<FaultRecord>,
}

pub(crate) fn run(setup: &Setup<'_>, rng: &mut Rng) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::default();
    eprintln!("xtask chaos: workers: set up");
    let db = Db {
        sh: setup.sh,
        cluster: setup.cluster,
        name: "chaos",
    };
    db.admin("postgres", "create database chaos")?;
    db.apply_schema()?;
    db.stdin_sql(&format!(
        "alter role gustav_worker login password '{}';\n{INSTRUMENTATION}{}",
        setup.worker_password,
        seed::tasks_sql(1, 1),
    ))?;
    let failures = parse_stub_failures(STUB_FAIL)?;
    let initial = if setup.quick { 2_000 } else { 3_000 };
    seed(&db, initial, &failures)?;
    let logs = setup.scratch.join("worker-logs");
    std::fs::create_dir_all(&logs)?;
    let mut world = World {
        setup,
        db,
        proxies: Vec::new(),
        dsn_files: Vec::new(),
        workers: Vec::new(),
        instances: 0,
        call_log: setup.scratch.join("stub-calls.log"),
        logs,
        faults: Vec::new(),
    };
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], setup.cluster.port()));
    for slot in 0..WORKERS {
        let proxy = FaultProxy::start(target)?;
        let dsn = format!(
            "postgresql://gustav_worker:{}@127.0.0.1:{}/chaos?application_name=chaos-slot-{slot}",
            setup.worker_password,
            proxy.addr().port()
        );
        world.dsn_files.push(secret_file(
            setup.scratch,
            &format!("worker-{slot}.dsn"),
            &dsn,
        )?);
        world.proxies.push(proxy);
    }
    for slot in 0..WORKERS {
        world.spawn(slot)?;
    }

    eprintln!(
        "xtask chaos: workers: injecting faults for {:.0} s",
        setup.fault_period.as_secs_f64()
    );
    let faults_started = Instant::now();
    let mut next_feed = Instant::now() + Duration::from_secs(10);
    // Every kind of fault at least once, in random order, then random ones.
    let mut deck: Vec<usize> = EVERY_FAULT.to_vec();
    while faults_started.elapsed() < setup.fault_period || !deck.is_empty() {
        std::thread::sleep(rng.seconds(0.8, 2.2));
        if !setup.quick && Instant::now() >= next_feed {
            // Below the workers' throughput (~55 jobs/s here), so the backlog stays
            // bounded however long the run.
            seed(&world.db, 400, &failures)?;
            next_feed += Duration::from_secs(10);
        }
        let roll = if deck.is_empty() {
            rng.below(100)
        } else {
            deck.swap_remove(rng.below(deck.len()))
        };
        world.inject(roll, rng, &mut report)?;
    }
    for proxy in &world.proxies {
        proxy.set(ProxyMode::Pass);
    }

    eprintln!("xtask chaos: workers: faults over; waiting for the queue to settle");
    let settle_deadline = Instant::now() + Duration::from_secs(if setup.quick { 120 } else { 300 });
    loop {
        let open = world
            .db
            .poll("select count(*) from learning_submission_jobs where status in ('queued', 'leased')")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok());
        if open == Some(0) {
            break;
        }
        if Instant::now() >= settle_deadline {
            report.violation(format!(
                "the queue did not settle within the deadline: {open:?} jobs still queued or leased"
            ));
            break;
        }
        for worker in &mut world.workers {
            if let Ok(Some(status)) = worker.child.try_wait() {
                report.violation(format!(
                    "worker instance {} died on its own ({status})",
                    worker.instance
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for worker in std::mem::take(&mut world.workers) {
        world.stop(worker, &mut report);
    }
    report.processes = world.instances;

    eprintln!("xtask chaos: workers: checking");
    world.check(&mut report)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

impl World<'_> {
    fn spawn(&mut self, slot: usize) -> anyhow::Result<()> {
        self.instances += 1;
        let instance = self.instances;
        let log = std::fs::File::create(self.logs.join(format!("{instance}.log")))?;
        let child = fixtures::command(&self.setup.bin.join("learning-worker"))
            .arg("run")
            .env("LEARNING_DATABASE_URL_FILE", &self.dsn_files[slot])
            .env("WORKER_CONCURRENCY", CONCURRENCY)
            .env("WORKER_CONCURRENCY_CAP", CONCURRENCY)
            .env("WORKER_LEASE_SECONDS", LEASE_SECONDS)
            .env("WORKER_MAX_RETRIES", MAX_RETRIES.to_string())
            .env("WORKER_BACKOFF_SECONDS", "1")
            .env("WORKER_POLL_INTERVAL", "0.5")
            .env("WORKER_SHUTDOWN_GRACE_SECONDS", "1")
            .env("AI_BACKEND", "stub")
            .env("AI_STUB_DELAY_MS", STUB_DELAY_MS)
            .env("AI_STUB_FAIL", STUB_FAIL)
            .env("AI_STUB_CALL_LOG", &self.call_log)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,worker_core::pipeline=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start learning-worker")?;
        self.workers.push(Worker {
            slot,
            instance,
            child,
        });
        Ok(())
    }

    fn take_worker(&mut self, slot: usize) -> Worker {
        let index = self
            .workers
            .iter()
            .position(|worker| worker.slot == slot)
            .expect("every slot has a worker");
        self.workers.swap_remove(index)
    }

    /// SIGTERM, then the exit the spec promises: 0, after the grace period.
    fn stop(&mut self, mut worker: Worker, report: &mut Report) {
        signal(worker.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match worker.child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => {
                    report.violation(format!(
                        "worker instance {} exited with {status} after SIGTERM",
                        worker.instance
                    ));
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    report.violation(format!(
                        "worker instance {} did not stop within 30 s of SIGTERM",
                        worker.instance
                    ));
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    return;
                }
            }
        }
    }

    /// Injects the fault that `roll` (0–99) picks, on a random worker slot.
    fn inject(&mut self, roll: usize, rng: &mut Rng, report: &mut Report) -> anyhow::Result<()> {
        let slot = rng.below(WORKERS);
        let instance = self
            .workers
            .iter()
            .find(|worker| worker.slot == slot)
            .map(|worker| worker.instance);
        let started = SystemTime::now();
        let kind = match roll {
            0..10 => {
                // A long GC-like pause or a frozen VM: the process wakes up
                // after its leases expired, with its timers all due at once.
                let pid = self
                    .workers
                    .iter()
                    .find(|w| w.slot == slot)
                    .map(|w| w.child.id());
                if let Some(pid) = pid {
                    signal(pid, libc::SIGSTOP);
                    std::thread::sleep(rng.seconds(2.5, 4.0));
                    signal(pid, libc::SIGCONT);
                }
                "sigstop"
            }
            10..30 => {
                let mut worker = self.take_worker(slot);
                signal(worker.child.id(), libc::SIGKILL);
                let _ = worker.child.wait();
                self.spawn(slot)?;
                "sigkill"
            }
            30..45 => {
                let worker = self.take_worker(slot);
                self.stop(worker, report);
                self.spawn(slot)?;
                "sigterm"
            }
            45..57 => {
                self.setup
                    .cluster
                    .restart()
                    .context("cannot restart PostgreSQL")?;
                self.record("pg_restart", None, started);
                return Ok(());
            }
            57..72 => {
                let _ = self.db.poll(&format!(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                     where application_name = 'chaos-slot-{slot}'"
                ));
                "terminate_backends"
            }
            72..88 => {
                self.proxies[slot].set(ProxyMode::Blackhole);
                std::thread::sleep(rng.seconds(2.5, 4.0));
                self.proxies[slot].set(ProxyMode::Pass);
                "network_blackhole"
            }
            _ => {
                self.proxies[slot].set(ProxyMode::Drop);
                std::thread::sleep(rng.seconds(0.3, 1.0));
                self.proxies[slot].set(ProxyMode::Pass);
                "network_drop"
            }
        };
        self.record(kind, instance, started);
        Ok(())
    }

    fn record(&mut self, kind: &'static str, instance: Option<usize>, started: SystemTime) {
        self.faults.push(FaultRecord {
            kind,
            instance,
            started,
            ended: SystemTime::now(),
        });
    }

    fn check(&self, report: &mut Report) -> anyhow::Result<()> {
        for fault in &self.faults {
            *report.faults.entry(fault.kind).or_default() += 1;
        }
        self.load_records(report)?;
        let timeline = self.setup.scratch.join("faults.txt");
        let lines: Vec<String> = self
            .faults
            .iter()
            .map(|f| {
                format!(
                    "{:.3} {:.3} {} instance {:?}",
                    epoch_seconds(f.started),
                    epoch_seconds(f.ended),
                    f.kind,
                    f.instance
                )
            })
            .collect();
        std::fs::write(timeline, lines.join("\n"))?;
        let db = &self.db;

        let outcome = db.query(
            "select count(*), \
                    count(*) filter (where s.analysis_status = 'completed'), \
                    count(*) filter (where s.analysis_status = 'failed'), \
                    count(*) filter (where s.analysis_status is distinct from e.status \
                                        or s.error_code is distinct from e.error_code), \
                    count(*) filter (where s.analysis_status in ('pending', 'extracted') and j.id is null), \
                    count(*) filter (where (e.status = 'completed' and j.id is not null) \
                                        or (e.status = 'failed' and j.status is distinct from 'failed')) \
             from chaos_expected e \
             join learning_submissions s on s.id = e.submission_id \
             left join learning_submission_jobs j on j.submission_id = s.id",
        )?;
        let [jobs, completed, failed, mismatched, lost, wrong_job_state] = numbers(&outcome)?;
        (report.jobs, report.completed, report.failed, report.lost) =
            (jobs, completed, failed, lost);
        report.not_as_configured = mismatched;
        if mismatched > 0 {
            let examples = db.query(
                "select e.kind || ' starting at retry ' || e.initial_retry_count || ': expected ' || e.status \
                        || coalesce(' ' || e.error_code, '') || ', got ' || s.analysis_status || coalesce(' ' || s.error_code, '') \
                 from chaos_expected e join learning_submissions s on s.id = e.submission_id \
                 where s.analysis_status is distinct from e.status or s.error_code is distinct from e.error_code limit 3",
            )?;
            report.violation(format!(
                "{mismatched} submissions did not end as configured, e.g. {}",
                examples.replace('\n', "; ")
            ));
        }
        if lost > 0 {
            report.violation(format!("{lost} submissions are pending with no job: lost"));
        }
        if wrong_job_state > 0 {
            report.violation(format!(
                "{wrong_job_state} jobs do not match their submission's end state"
            ));
        }
        report.stuck = numbers::<1>(&db.query(
            "select count(*) from learning_submission_jobs where status in ('queued', 'leased')",
        )?)?[0];
        if report.stuck > 0 {
            report.violation(format!("{} jobs are still queued or leased", report.stuck));
        }
        report.written_twice = numbers::<1>(&db.query(
            "select count(*) from (select submission_id from chaos_submission_log \
             where status in ('completed', 'failed') group by submission_id having count(*) > 1) twice",
        )?)?[0];
        if report.written_twice > 0 {
            report.violation(format!(
                "{} submissions had their result written twice",
                report.written_twice
            ));
        }

        let leases = db.query(&format!(
            "with {CALLS_IN_STATE} \
             select count(*) filter (where foreign_live), count(*) filter (where not own_live) \
             from calls_in_state"
        ))?;
        [report.foreign_lease_calls, report.expired_own_lease_calls] = numbers(&leases)?;
        if report.foreign_lease_calls > 0 {
            let examples = db.query(&format!(
                "with {CALLS_IN_STATE} \
                 select phase || ' call on job ' || job_id || ' by instance ' || instance || ' at ' || at \
                 from calls_in_state where foreign_live limit 3"
            ))?;
            report.violation(format!(
                "{} adapter calls started while another worker held a live lease, e.g. {}",
                report.foreign_lease_calls,
                examples.replace('\n', "; ")
            ));
        }
        self.check_duplicates(report)
    }

    /// Duplicates: calls beyond a fault-free run, per submission and phase. Each
    /// must be matched by a call made under a lease that ended without a result
    /// (released or taken over), and that lease's holder must have been hit by a
    /// fault while it held the lease — or while the statement that granted it was
    /// in flight: a lease sent into a black hole is granted only when the cut
    /// heals, and its worker, counting from the moment it sent the statement,
    /// rightly gives it up early.
    fn check_duplicates(&self, report: &mut Report) -> anyhow::Result<()> {
        let db = &self.db;
        let counts = db.query(
            "select e.submission_id || '|' || p.phase || '|' || p.expected || '|' || count(c.at) \
             from chaos_expected e \
             cross join lateral (values ('vision', e.vision_calls), ('feedback', e.feedback_calls)) p(phase, expected) \
             left join chaos_calls c on c.submission_id = e.submission_id and c.phase = p.phase \
             group by e.submission_id, p.phase, p.expected",
        )?;
        let mut extra: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut too_few = 0;
        for line in counts.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            ensure!(fields.len() == 4, "unexpected row {line:?}");
            let (expected, actual): (u64, u64) = (fields[2].parse()?, fields[3].parse()?);
            report.calls += actual;
            report.expected_calls += expected;
            if actual < expected {
                too_few += 1;
            } else if actual > expected {
                extra.insert(
                    (fields[0].to_owned(), fields[1].to_owned()),
                    actual - expected,
                );
            }
        }
        if too_few > 0 {
            report.violation(format!(
                "{too_few} submission phases had fewer adapter calls than a fault-free run"
            ));
        }
        let wasted = db.query(&format!(
            "with {LEASES} \
             select c.submission_id || '|' || c.phase || '|' || coalesce( \
                      (select f.kind from chaos_faults f \
                       where (f.instance is null or f.instance = c.instance) \
                         and f.started_at <= coalesce(l.ended_at, 'infinity') \
                         and f.ended_at >= l.granted_at - interval '1 second' \
                       order by f.started_at limit 1), 'none') \
                    || '|instance ' || c.instance || ', call at ' || c.at || ', lease ' || l.granted_at \
                    || ' to ' || coalesce(l.ended_at::text, 'open') || ' (' || l.ending_state || ')' \
             from chaos_calls c join leases l on l.lease_key = c.lease_key \
             where l.ending <> 'done' order by c.at"
        ))?;
        let mut unexplained = Vec::new();
        for line in wasted.lines() {
            let fields: Vec<&str> = line.split('|').collect();
            ensure!(fields.len() == 4, "unexpected row {line:?}");
            let key = (fields[0].to_owned(), fields[1].to_owned());
            if fields[2] == "none" {
                unexplained.push(fields[3].to_owned());
            }
            match extra.get_mut(&key) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    *report.duplicates.entry(fields[2].to_owned()).or_default() += 1;
                }
                _ => report.wasted_without_duplicate += 1,
            }
        }
        if !unexplained.is_empty() {
            report.violation(format!(
                "{} calls ran under a lease that was lost although no fault hit its worker, e.g. {}",
                unexplained.len(),
                unexplained[..unexplained.len().min(3)].join("; ")
            ));
        }
        let unmatched: u64 = extra.values().sum();
        if unmatched > 0 {
            report.violation(format!(
                "{unmatched} duplicate calls have no lost lease behind them"
            ));
        }
        Ok(())
    }

    /// Loads the workers' adapter-call events and the fault timeline, after
    /// checking the events against the stub's own call log.
    fn load_records(&self, report: &mut Report) -> anyhow::Result<()> {
        let mut csv = String::new();
        let mut from_events: BTreeMap<(String, String), u64> = BTreeMap::new();
        for instance in 1..=self.instances {
            let text = std::fs::read_to_string(self.logs.join(format!("{instance}.log")))?;
            for line in text.lines() {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if event["message"] != "adapter call starts" {
                    continue;
                }
                let field =
                    |name: &str| event[name].as_str().map(str::to_owned).unwrap_or_default();
                let (submission, phase) = (field("submission_id"), field("phase"));
                writeln!(
                    csv,
                    "{instance},{},{},{submission},{},{},{phase}",
                    field("timestamp"),
                    field("job_id"),
                    field("lease_key"),
                    event["retry_count"].as_i64().unwrap_or(-1),
                )?;
                *from_events.entry((submission, phase)).or_default() += 1;
            }
        }
        let mut from_stub: BTreeMap<(String, String), u64> = BTreeMap::new();
        for line in std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
        {
            let fields: Vec<&str> = line.split(' ').collect();
            if let [phase, submission, _job] = fields[..] {
                *from_stub
                    .entry((submission.to_owned(), phase.to_owned()))
                    .or_default() += 1;
            }
        }
        if from_events != from_stub {
            let differing = from_stub
                .iter()
                .filter(|(key, count)| from_events.get(*key) != Some(count))
                .count();
            report.violation(format!(
                "the workers' adapter-call events and the stub call log disagree for {differing} submission phases"
            ));
        }
        let calls_csv = self.setup.scratch.join("calls.csv");
        std::fs::write(&calls_csv, csv)?;
        self.db.query(&format!(
            "\\copy chaos_calls from '{}' with (format csv)",
            calls_csv.display()
        ))?;
        let mut faults =
            String::from("insert into chaos_faults (kind, instance, started_at, ended_at) values ");
        let rows: Vec<String> = self
            .faults
            .iter()
            .map(|fault| {
                format!(
                    "('{}', {}, to_timestamp({:.6}), to_timestamp({:.6}))",
                    fault.kind,
                    fault.instance.map_or("null".to_owned(), |i| i.to_string()),
                    epoch_seconds(fault.started),
                    epoch_seconds(fault.ended)
                )
            })
            .collect();
        if !rows.is_empty() {
            faults.push_str(&rows.join(", "));
            self.db.stdin_sql(&faults)?;
        }
        Ok(())
    }
}

/// Every adapter call with the state of its job at the call's start (the last
/// lease-log row before it): `foreign_live` when another key held a live lease,
/// `own_live` when the call's own lease was live.
const CALLS_IN_STATE: &str = "calls_in_state as ( \
    select c.*, \
           coalesce(st.status = 'leased' and st.lease_key <> c.lease_key and st.leased_until > c.at, false) \
             as foreign_live, \
           coalesce(st.status = 'leased' and st.lease_key = c.lease_key and st.leased_until > c.at, false) \
             as own_live \
    from chaos_calls c \
    left join lateral (select l.status, l.lease_key, l.leased_until from chaos_job_log l \
                       where l.job_id = c.job_id and l.at <= c.at order by l.seq desc limit 1) st on true)";

/// Every lease a job ever had: when it was granted, when and how it ended —
/// `done` (the holder recorded a result: deleted, failed, or requeued with the
/// retry count raised), `lost` (released unchanged, or taken over after it
/// expired) or `open`.
const LEASES: &str = "leases as ( \
    select k.lease_key, k.granted_at, e.at as ended_at, \
           coalesce(e.op || ' ' || coalesce(e.status, '') || ' retry ' || coalesce(e.retry_count, -1), 'open') as ending_state, \
           case when e.seq is null then 'open' \
                when e.op = 'delete' or e.status = 'failed' \
                     or (e.status = 'queued' and e.retry_count > k.retry_count) then 'done' \
                else 'lost' end as ending \
    from (select lease_key, job_id, min(at) as granted_at, min(seq) as first_seq, max(retry_count) as retry_count \
          from chaos_job_log where lease_key is not null group by lease_key, job_id) k \
    left join lateral (select e.seq, e.op, e.status, e.retry_count, e.at from chaos_job_log e \
                       where e.job_id = k.job_id and e.seq > k.first_seq \
                         and (e.op = 'delete' or e.lease_key is distinct from k.lease_key) \
                       order by e.seq limit 1) e on true)";

/// Only in the chaos database: the records the checks read.
const INSTRUMENTATION: &str = "
create table chaos_job_log (
  seq bigserial primary key, job_id uuid not null, op text not null, status text,
  lease_key uuid, leased_until timestamptz, retry_count int,
  at timestamptz not null default clock_timestamp());
create index on chaos_job_log (job_id, seq);
create function chaos_log_job() returns trigger language plpgsql security definer
set search_path = public, pg_temp as $$
begin
  if tg_op = 'DELETE' then
    insert into chaos_job_log (job_id, op) values (old.id, 'delete');
    return old;
  end if;
  if tg_op = 'INSERT' or (new.status, new.lease_key, new.leased_until, new.retry_count)
       is distinct from (old.status, old.lease_key, old.leased_until, old.retry_count) then
    insert into chaos_job_log (job_id, op, status, lease_key, leased_until, retry_count)
    values (new.id, lower(tg_op), new.status, new.lease_key, new.leased_until, new.retry_count);
  end if;
  return new;
end $$;
create trigger chaos_log_job after insert or update or delete on learning_submission_jobs
  for each row execute function chaos_log_job();
create table chaos_submission_log (
  seq bigserial primary key, submission_id uuid not null, status text not null,
  at timestamptz not null default clock_timestamp());
create function chaos_log_submission() returns trigger language plpgsql security definer
set search_path = public, pg_temp as $$
begin
  insert into chaos_submission_log (submission_id, status) values (new.id, new.analysis_status);
  return new;
end $$;
create trigger chaos_log_submission after update on learning_submissions for each row
  when (new.analysis_status is distinct from old.analysis_status)
  execute function chaos_log_submission();
create table chaos_expected (
  submission_id uuid primary key, kind text not null, initial_retry_count int not null,
  status text not null, error_code text, vision_calls int not null, feedback_calls int not null);
create table chaos_calls (
  instance int not null, at timestamptz not null, job_id uuid not null, submission_id uuid not null,
  lease_key uuid not null, retry_count int not null, phase text not null);
create index on chaos_calls (job_id);
create table chaos_faults (kind text not null, instance int, started_at timestamptz not null, ended_at timestamptz not null);
";

/// Enqueues `count` jobs across [`CLASSES`] by weight, each with its expected end.
fn seed(db: &Db<'_>, count: usize, failures: &[StubFailure]) -> anyhow::Result<()> {
    let total_weight: usize = CLASSES.iter().map(|class| class.weight).sum();
    let mut sql = String::new();
    for class in &CLASSES {
        let n = u32::try_from(count * class.weight / total_weight)?;
        let end = expected(class.kind, class.retry_count, failures, MAX_RETRIES);
        let submissions = seed::submissions(n)
            .kinds(Kinds::Only(class.kind))
            .students(97)
            .retry_count(class.retry_count);
        writeln!(
            sql,
            "{} insert into chaos_expected
             select submission_id, '{}', {}, '{}', {}, {}, {} from j;",
            submissions.cte(),
            class.kind,
            class.retry_count,
            end.status,
            end.error_code
                .map_or("null".to_owned(), |code| format!("'{code}'")),
            end.vision_calls,
            end.feedback_calls,
        )?;
    }
    db.stdin_sql(&sql)
}

/// Parses one row of `|`-separated numbers.
fn numbers<const N: usize>(row: &str) -> anyhow::Result<[u64; N]> {
    let values: Vec<u64> = row
        .trim()
        .split('|')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("expected {N} numbers, got {row:?}"))?;
    values
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected {N} numbers, got {row:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_classes_cover_every_ending_the_spec_describes() {
        let failures = parse_stub_failures(STUB_FAIL).unwrap();
        let ends: Vec<Expected> = CLASSES
            .iter()
            .map(|class| expected(class.kind, class.retry_count, &failures, MAX_RETRIES))
            .collect();
        let end = |status, error_code, vision_calls, feedback_calls| Expected {
            status,
            error_code,
            vision_calls,
            feedback_calls,
        };
        assert_eq!(
            ends,
            [
                end("completed", None, 0, 1),
                end("completed", None, 1, 1),
                // Two transient feedback failures, then success on the third try.
                end("completed", None, 0, 3),
                // A transient vision failure, retried, then retries exhausted.
                end("failed", Some("vision_failed"), 2, 0),
                end("failed", Some("feedback_failed"), 0, 1),
                end("failed", Some("vision_failed"), 1, 0),
                // Transient, but no retries left.
                end("failed", Some("vision_failed"), 1, 0),
            ]
        );
    }
}
