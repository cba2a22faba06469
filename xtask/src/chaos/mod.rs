//! `cargo xtask chaos`: the whole system under real faults, with nothing lost and
//! nothing done twice. What it injects, what it checks and why the checks are
//! sound is written up in `docs/reliability.md`; in short:
//!
//! - **workers** ([`workers`]): three `learning-worker` processes, each behind its
//!   own fault proxy, drain a few thousand jobs with 2 s leases and stub calls
//!   longer than that, while SIGKILL, SIGTERM, SIGSTOP (a long pause),
//!   PostgreSQL restarts, `pg_terminate_backend` and network cuts hit them. Triggers installed only in
//!   the chaos database record every lease change and every submission status
//!   change; the workers' debug events record every adapter call's start and
//!   lease key. The checks are SQL over those records.
//! - **backups** ([`backups`]): repeated `backup-cron once` runs, each under one
//!   fault (restart mid-dump, black-holed connection, full disk, SIGTERM), each
//!   followed by checks of the manifest, `verify`, leftovers and retention.
//! - all along, [`procscan`] reads every process's argv and environment looking
//!   for the passwords.
//!
//! `--quick` (part of `cargo xtask ci`) injects a handful of each fault; the full
//! mode keeps injecting for `--minutes` (two thirds workers, one third backups),
//! every pair of faults at least twice; `--soak MINUTES` is the full mode with a
//! steady worker and the backup scheduler kept alive throughout and their
//! resources compared at start and end ([`soak`]).
//! Any violated invariant makes the task fail after the report is printed.

mod backups;
mod procscan;
mod soak;
mod workers;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use xshell::{Shell, cmd};

use crate::project_root;

/// How long and how hard.
pub(crate) struct Options {
    /// The CI smoke run.
    pub(crate) quick: bool,
    /// Fault-injection time of the full mode.
    pub(crate) minutes: f64,
    /// Seeds the fault schedule; printed, so a run can be repeated.
    pub(crate) seed: Option<u64>,
    /// `--soak`: long-lived processes sampled at start and end.
    pub(crate) soak: bool,
}

pub(crate) fn run(sh: &Shell, options: &Options) -> anyhow::Result<()> {
    let seed = options.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
    });
    let mut rng = Rng::new(seed);
    let (worker_period, backup_period) = if options.quick {
        (Duration::from_secs(20), None)
    } else {
        let total = Duration::from_secs_f64(options.minutes.max(0.1) * 60.0);
        (total.mul_f64(2.0 / 3.0), Some(total.mul_f64(1.0 / 3.0)))
    };
    eprintln!("xtask chaos: seed {seed} (repeat the schedule with --seed {seed})");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    cmd!(
        sh,
        "{cargo} build --release --locked -p backup-cron -p learning-worker"
    )
    .run()?;
    let bin = project_root().join("target/release");
    let cluster = fixtures::TestCluster::start().context("cannot start PostgreSQL")?;
    let scratch = tempfile::Builder::new().prefix("chaos-").tempdir()?;
    let passwords = vec![fixtures::random_token(24), fixtures::random_token(24)];
    let scan = procscan::ProcScan::start(passwords.clone());

    let setup = workers::Setup {
        sh,
        cluster: &cluster,
        bin: &bin,
        scratch: scratch.path(),
        worker_password: &passwords[0],
        fault_period: worker_period,
        quick: options.quick,
        soak: options.soak,
    };
    let worker_report = workers::run(&setup, &mut rng)?;
    let backup_setup = backups::Setup {
        sh,
        cluster: &cluster,
        bin: &bin,
        scratch: scratch.path(),
        backup_password: &passwords[1],
        period: backup_period,
        soak: options.soak,
    };
    let backup_report = backups::run(&backup_setup, &mut rng)?;
    let scan_report = scan.stop();

    let mut violations = worker_report.violations.clone();
    violations.extend(backup_report.violations.iter().cloned());
    violations.extend(scan_report.violations());
    print_report(&worker_report, &backup_report, &scan_report, &violations);
    if !violations.is_empty() {
        let kept = scratch.keep();
        eprintln!(
            "xtask chaos: worker logs, call logs and backups kept in {} for post-mortem",
            kept.display()
        );
        bail!(
            "{} invariant(s) violated (seed {seed}); see the report above",
            violations.len()
        );
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the report is xtask's output")]
fn print_report(
    workers: &workers::Report,
    backups: &backups::Report,
    scan: &procscan::Report,
    violations: &[String],
) {
    for (title, rows) in [
        ("workers", workers.rows()),
        ("backups", backups.rows()),
        ("process scan", scan.rows()),
    ] {
        println!("\n## chaos: {title}\n\n| measure | value |\n|---|---|");
        for (measure, value) in rows {
            println!("| {measure} | {value} |");
        }
    }
    if violations.is_empty() {
        println!("\nno invariant violated");
    } else {
        println!("\n## violations\n");
        for violation in violations {
            println!("- {violation}");
        }
    }
}

/// A small deterministic generator (xorshift64*) for the fault schedule.
pub(crate) struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `low..high` seconds.
    pub(crate) fn seconds(&mut self, low: f64, high: f64) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(low + (high - low) * unit)
    }
}

/// Seconds since the epoch, the form the chaos tables take timestamps in.
pub(crate) fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Sends `signal` to `pid`.
pub(crate) fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill has no memory-safety preconditions; a stale pid at worst
    // signals nothing (the harness owns these children and has not reaped them).
    unsafe {
        libc::kill(pid, signal);
    }
}
