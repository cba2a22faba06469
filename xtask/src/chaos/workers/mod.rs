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
//! run follow from the spec's retry rules ([`model::expected`]). Calls beyond that are
//! duplicates; each must come from a lease that ended without a result while a
//! fault hit its holder.

mod checks;
mod faults;
mod model;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fixtures::seed;
use fixtures::{FaultProxy, ProxyMode};
use worker_core::stub::parse_stub_failures;
use xshell::Shell;

use crate::chaos::{Rng, signal, soak};
use crate::db::{Db, secret_file};

pub(crate) use checks::Report;
use faults::{EVERY_COMPOUND_FAULT, EVERY_FAULT, FaultRecord};
use model::{MAX_RETRIES, STUB_FAIL, seed};

const WORKERS: usize = 3;
/// The soak run's extra worker: never killed or stopped, so it lives the whole run.
const STEADY: usize = WORKERS;
const CONCURRENCY: &str = "64";
/// Its pool (`WORKER_CONCURRENCY` + 2) and its LISTEN connection.
const MAX_CONNECTIONS: u64 = 64 + 2 + 1;
const LEASE_SECONDS: &str = "2";
/// Longer than the lease: every job needs heartbeats to survive.
const STUB_DELAY_MS: &str = "2200";

pub(crate) struct Setup<'a> {
    pub(crate) sh: &'a Shell,
    pub(crate) cluster: &'a fixtures::TestCluster,
    pub(crate) bin: &'a Path,
    pub(crate) scratch: &'a Path,
    pub(crate) worker_password: &'a str,
    pub(crate) fault_period: Duration,
    pub(crate) quick: bool,
    /// Keep a steady worker and report its resources ([`crate::chaos::soak`]).
    pub(crate) soak: bool,
}

struct Worker {
    slot: usize,
    instance: usize,
    child: Child,
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
        "alter role gustav_worker login password '{}';\n{}{}",
        setup.worker_password,
        include_str!("instrumentation.sql"),
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
    let slots = if setup.soak { WORKERS + 1 } else { WORKERS };
    for slot in 0..slots {
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
    for slot in 0..slots {
        world.spawn(slot)?;
    }

    eprintln!(
        "xtask chaos: workers: injecting faults for {:.0} s",
        setup.fault_period.as_secs_f64()
    );
    let faults_started = Instant::now();
    let mut next_feed = Instant::now() + Duration::from_secs(10);
    let mut steady_start = None;
    let mut next_steady_fault = Instant::now() + soak::WARM_UP + Duration::from_secs(15);
    let mut steady_faults = 0usize;
    // Every kind of fault at least once and every pair of faults twice (once in a
    // quick run), in random order, then random single ones.
    let mut deck: Vec<usize> = EVERY_FAULT.to_vec();
    let pair_rounds = if setup.quick { 1 } else { 2 };
    for _ in 0..pair_rounds {
        deck.extend(EVERY_COMPOUND_FAULT);
    }
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
        if setup.soak && steady_start.is_none() && faults_started.elapsed() >= soak::WARM_UP {
            steady_start = world.sample_steady();
        }
        if setup.soak && Instant::now() >= next_steady_fault {
            world.fault_steady(steady_faults, rng);
            steady_faults += 1;
            next_steady_fault += Duration::from_secs(30);
        }
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
    if setup.soak {
        let steady_end = world.sample_steady();
        report.soak = soak::compare(
            "steady worker",
            steady_start,
            steady_end,
            MAX_CONNECTIONS,
            &mut report.violations,
        );
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

    /// The steady worker's resources and its sessions in the database.
    fn sample_steady(&self) -> Option<soak::Sample> {
        let pid = self.pid(STEADY)?;
        let connections = self
            .db
            .poll(&format!(
                "select count(*) from pg_stat_activity where application_name = 'chaos-slot-{STEADY}'"
            ))
            .ok()
            .and_then(|count| count.trim().parse().ok());
        soak::Sample::of(pid, connections)
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
    fn stop(&mut self, worker: Worker, report: &mut Report) {
        signal(worker.child.id(), libc::SIGTERM);
        self.wait_stopped(worker, report);
    }

    /// The exit after a SIGTERM already sent: 0, within 30 s.
    fn wait_stopped(&mut self, mut worker: Worker, report: &mut Report) {
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
}
