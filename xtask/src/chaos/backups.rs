//! The backup scenario: `backup-cron once`, again and again, each run under one
//! fault — PostgreSQL restarted mid-dump, the connection black-holed mid-dump
//! (only the timeout can end it), `BACKUP_DIR` full (a small tmpfs, filled by a
//! ballast file), SIGTERM mid-dump, and one pair at once: `BACKUP_DIR` full while
//! the database is unreachable — with clean runs between them. `pg_dump`
//! connects through a [`FaultProxy`] that slows it down, so "mid-dump" is a real
//! moment: the harness waits until the dump's `.partial` file has grown.
//!
//! After every run: the exit code and the manifest agree, the error code fits
//! the fault, every artifact the manifest calls ok is there with its size and
//! every failed one left nothing, `verify` agrees, no `.partial` is left
//! anywhere, no `pg_dump` survives, the run ended within its timeout, the
//! manifest names no host, user or password, and the last good backup —
//! retention runs with `RETENTION_DAYS=0` — is still there and verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fixtures::{FaultProxy, ProxyMode};
use serde_json::Value;
use xshell::Shell;

use super::{Rng, signal};
use crate::db::{Db, secret_file};

const TIMEOUT_SECONDS: u64 = 6;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    RestartMidDump,
    BlackholeMidDump,
    DiskFull,
    SigtermMidDump,
    /// Two at once: `BACKUP_DIR` full while the database is unreachable.
    DiskFullUnreachable,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::RestartMidDump => "pg_restart mid-dump",
            Fault::BlackholeMidDump => "network blackhole mid-dump",
            Fault::DiskFull => "BACKUP_DIR full",
            Fault::SigtermMidDump => "SIGTERM mid-dump",
            Fault::DiskFullUnreachable => "BACKUP_DIR full + database unreachable",
        }
    }

    /// The manifest error codes that tell the truth about this fault. `ok` is
    /// truthful too when the dump finished before the fault landed; it is
    /// counted, not failed.
    fn codes(self) -> &'static [&'static str] {
        match self {
            Fault::None => &[],
            Fault::RestartMidDump => &["pg_dump_failed", "db_unreachable"],
            Fault::BlackholeMidDump => &["pg_dump_timeout"],
            Fault::DiskFull => &["disk_full"],
            Fault::SigtermMidDump => &["interrupted"],
            // Whichever the run meets first.
            Fault::DiskFullUnreachable => &["disk_full", "pg_dump_timeout", "db_unreachable"],
        }
    }

    fn mid_dump(self) -> bool {
        matches!(
            self,
            Fault::RestartMidDump | Fault::BlackholeMidDump | Fault::SigtermMidDump
        )
    }
}

pub(crate) struct Setup<'a> {
    pub(crate) sh: &'a Shell,
    pub(crate) cluster: &'a fixtures::TestCluster,
    pub(crate) bin: &'a Path,
    pub(crate) scratch: &'a Path,
    pub(crate) backup_password: &'a str,
    /// Full mode: keep going this long. Quick: each fault once.
    pub(crate) period: Option<Duration>,
    /// Run the scheduler (`backup-cron run`) beside the faulted runs and report its
    /// resources ([`crate::chaos::soak`]).
    pub(crate) soak: bool,
}

/// The scenario's numbers and what went wrong.
#[derive(Default)]
pub(crate) struct Report {
    seconds: f64,
    runs: BTreeMap<&'static str, usize>,
    outcomes: BTreeMap<String, usize>,
    faults_that_missed: usize,
    longest_run: f64,
    skipped: Vec<String>,
    /// `--soak`: the scheduler's resources, start and end, and its runs.
    soak: Vec<(String, String)>,
    pub(crate) violations: Vec<String>,
}

impl Report {
    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let join = |map: Vec<String>| map.join(", ");
        let mut rows = vec![
            (
                "runs by fault".to_owned(),
                format!(
                    "{} ({})",
                    self.runs.values().sum::<usize>(),
                    join(self.runs.iter().map(|(k, n)| format!("{k} {n}")).collect())
                ),
            ),
            (
                "outcomes (manifest status / error code)".to_owned(),
                join(
                    self.outcomes
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect(),
                ),
            ),
            (
                "faults that landed after the dump had finished".to_owned(),
                self.faults_that_missed.to_string(),
            ),
            (
                "longest run".to_owned(),
                format!(
                    "{:.1} s (pg_dump timeout {TIMEOUT_SECONDS} s)",
                    self.longest_run
                ),
            ),
            ("scenario time".to_owned(), format!("{:.1} s", self.seconds)),
        ];
        for skipped in &self.skipped {
            rows.push(("skipped".to_owned(), skipped.clone()));
        }
        rows.extend(self.soak.iter().cloned());
        rows
    }
}

/// A small tmpfs as `BACKUP_DIR`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = fixtures::command(Path::new("/bin/umount"))
            .arg(&self.0)
            .status();
    }
}

struct Bench<'a> {
    setup: &'a Setup<'a>,
    proxy: FaultProxy,
    dsn_file: PathBuf,
    backup_dir: PathBuf,
    storage: PathBuf,
    last_good: Option<PathBuf>,
    report: Report,
}

pub(crate) fn run(setup: &Setup<'_>, rng: &mut Rng) -> anyhow::Result<Report> {
    let started = Instant::now();
    eprintln!("xtask chaos: backups: set up");
    let db = Db {
        sh: setup.sh,
        cluster: setup.cluster,
        name: "chaos_backup",
    };
    db.admin("postgres", "create database chaos_backup")?;
    // About 17 MB of SQL, whatever the worker scenario left in its own database:
    // long enough, through the slowed proxy, for a fault to land mid-dump, short
    // enough for a clean dump to stay well inside the timeout.
    db.stdin_sql(&format!(
        "create table chaos_notes (id int primary key, body text not null);
         insert into chaos_notes select n, repeat(md5(n::text) || ' ', 25) from generate_series(1, 20000) n;
         create role gustav_backup login bypassrls password '{}' in role pg_read_all_data;",
        setup.backup_password
    ))?;
    let proxy = FaultProxy::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        setup.cluster.port(),
    )))?;
    let dsn_file = secret_file(
        setup.scratch,
        "backup.dsn",
        &format!(
            "postgresql://gustav_backup:{}@127.0.0.1:{}/chaos_backup",
            setup.backup_password,
            proxy.addr().port()
        ),
    )?;
    let storage = setup.scratch.join("storage");
    std::fs::create_dir_all(storage.join("materials"))?;
    std::fs::write(
        storage.join("materials/notes.md"),
        "# Notes\n".repeat(2_000),
    )?;
    std::fs::write(
        storage.join("materials/scan.bin"),
        fixtures::random_token(65_536),
    )?;
    let backup_dir = setup.scratch.join("backups");
    std::fs::create_dir_all(&backup_dir)?;
    let mut report = Report::default();
    let tmpfs = match mount_tmpfs(&backup_dir) {
        Ok(tmpfs) => Some(tmpfs),
        Err(why) => {
            report.skipped.push(format!("BACKUP_DIR full: {why}"));
            None
        }
    };
    let scheduler = if setup.soak {
        Some(Scheduler::start(setup, &storage)?)
    } else {
        None
    };
    let mut bench = Bench {
        setup,
        proxy,
        dsn_file,
        backup_dir,
        storage,
        last_good: None,
        report,
    };
    let mut faults = vec![
        Fault::RestartMidDump,
        Fault::BlackholeMidDump,
        Fault::SigtermMidDump,
    ];
    if tmpfs.is_some() {
        faults.push(Fault::DiskFull);
        faults.push(Fault::DiskFullUnreachable);
    }
    bench.one_run(Fault::None)?;
    match setup.period {
        None => {
            while !faults.is_empty() {
                let fault = faults.swap_remove(rng.below(faults.len()));
                bench.one_run(fault)?;
            }
        }
        Some(period) => {
            // Each pair of faults at least twice, then random ones.
            if tmpfs.is_some() {
                bench.one_run(Fault::DiskFullUnreachable)?;
                bench.one_run(Fault::DiskFullUnreachable)?;
            }
            while started.elapsed() < period {
                let fault = if rng.below(4) == 0 {
                    Fault::None
                } else {
                    faults[rng.below(faults.len())]
                };
                bench.one_run(fault)?;
            }
        }
    }
    bench.one_run(Fault::None)?;
    if let Some(scheduler) = scheduler {
        let rows = scheduler.finish(&mut bench.report.violations)?;
        bench.report.soak = rows;
    }
    bench.report.seconds = started.elapsed().as_secs_f64();
    Ok(bench.report)
}

/// `backup-cron run` every 30 s into a directory of its own, straight to the
/// database (the restarts still hit it, the proxy's faults do not), for the whole
/// backup scenario.
struct Scheduler {
    child: std::process::Child,
    dir: PathBuf,
    log: PathBuf,
    start: Option<super::soak::Sample>,
}

impl Scheduler {
    fn start(setup: &Setup<'_>, storage: &Path) -> anyhow::Result<Scheduler> {
        let dsn_file = secret_file(
            setup.scratch,
            "scheduler.dsn",
            &format!(
                "postgresql://gustav_backup:{}@127.0.0.1:{}/chaos_backup",
                setup.backup_password,
                setup.cluster.port()
            ),
        )?;
        let dir = setup.scratch.join("scheduled-backups");
        let log = setup.scratch.join("backup-cron-run.log");
        let child = fixtures::command(&setup.bin.join("backup-cron"))
            .arg("run")
            .env("SESSION_DATABASE_URL_FILE", &dsn_file)
            .env("BACKUP_DIR", &dir)
            .env("SUPABASE_STORAGE_ROOT", storage)
            .env("PG_DUMP", setup.cluster.bin_dir().join("pg_dump"))
            .env("BACKUP_SCHEDULE", "*/30 * * * * *")
            .env("BACKUP_PG_TIMEOUT_SECONDS", "60")
            .env("RETENTION_DAYS", "0")
            .env("BACKUP_KEEP_MIN", "2")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start backup-cron run")?;
        let pid = child.id();
        std::thread::sleep(super::soak::WARM_UP);
        Ok(Scheduler {
            child,
            dir,
            log,
            start: super::soak::Sample::of(pid, None),
        })
    }

    fn finish(mut self, violations: &mut Vec<String>) -> anyhow::Result<Vec<(String, String)>> {
        let end = super::soak::Sample::of(self.child.id(), None);
        signal(self.child.id(), libc::SIGTERM);
        let status = self.child.wait()?;
        if !status.success() {
            violations.push(format!(
                "soak: backup-cron run exited with {status} after SIGTERM"
            ));
        }
        let log = std::fs::read_to_string(&self.log)?;
        let runs = log
            .lines()
            .filter(|line| line.contains("\"backup started\""))
            .count();
        let ok = log
            .lines()
            .filter(|line| line.contains("\"backup ok\""))
            .count();
        let kept = stamp_dirs(&self.dir)?.len();
        let mut rows = super::soak::compare("backup scheduler", self.start, end, 0, violations);
        rows.push((
            "soak: backup scheduler runs".to_owned(),
            format!("{runs} started, {ok} ok, {kept} kept by retention"),
        ));
        Ok(rows)
    }
}

fn mount_tmpfs(dir: &Path) -> Result<Tmpfs, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting a tmpfs needs root (CI runs as root)".to_owned());
    }
    let mounted = fixtures::command(Path::new("/bin/mount"))
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(dir)
        .status()
        .map_err(|error| format!("cannot run mount: {error}"))?;
    if !mounted.success() {
        return Err(format!("mount -t tmpfs failed ({mounted})"));
    }
    Ok(Tmpfs(dir.to_owned()))
}

impl Bench<'_> {
    fn violation(&mut self, fault: Fault, text: String) {
        self.report
            .violations
            .push(format!("backup under {}: {text}", fault.name()));
    }

    fn one_run(&mut self, fault: Fault) -> anyhow::Result<()> {
        eprintln!("xtask chaos: backups: run under {}", fault.name());
        *self.report.runs.entry(fault.name()).or_default() += 1;
        let before = stamp_dirs(&self.backup_dir)?;
        let ballast = if matches!(fault, Fault::DiskFull | Fault::DiskFullUnreachable) {
            Some(fill(&self.backup_dir)?)
        } else {
            None
        };
        self.proxy.set(if fault == Fault::DiskFullUnreachable {
            ProxyMode::Blackhole
        } else {
            ProxyMode::Delay(Duration::from_millis(1))
        });
        let log = std::fs::File::create(self.setup.scratch.join("backup-cron.log"))?;
        let mut child = fixtures::command(&self.setup.bin.join("backup-cron"))
            .arg("once")
            .env("SESSION_DATABASE_URL_FILE", &self.dsn_file)
            .env("BACKUP_DIR", &self.backup_dir)
            .env("SUPABASE_STORAGE_ROOT", &self.storage)
            .env("PG_DUMP", self.setup.cluster.bin_dir().join("pg_dump"))
            .env("BACKUP_PG_TIMEOUT_SECONDS", TIMEOUT_SECONDS.to_string())
            .env("RETENTION_DAYS", "0")
            .env("BACKUP_KEEP_MIN", "1")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start backup-cron")?;
        let started = Instant::now();
        let hard_limit = Duration::from_secs(TIMEOUT_SECONDS + 5 + 20);
        if fault.mid_dump() {
            let growing = wait_for_partial(&self.backup_dir, &before, &mut child, hard_limit);
            if growing {
                match fault {
                    Fault::RestartMidDump => self
                        .setup
                        .cluster
                        .restart()
                        .context("cannot restart PostgreSQL")?,
                    Fault::BlackholeMidDump => self.proxy.set(ProxyMode::Blackhole),
                    _ => signal(child.id(), libc::SIGTERM),
                }
            }
        }
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if started.elapsed() > hard_limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let seconds = started.elapsed().as_secs_f64();
        self.report.longest_run = self.report.longest_run.max(seconds);
        self.proxy.set(ProxyMode::Pass);
        if let Some(ballast) = ballast {
            std::fs::remove_file(ballast)?;
        }
        let Some(status) = status else {
            self.violation(
                fault,
                format!("backup-cron still ran after {seconds:.0} s: killed"),
            );
            return Ok(());
        };
        self.check_run(fault, status.code(), &before)
    }

    fn check_run(
        &mut self,
        fault: Fault,
        exit: Option<i32>,
        before: &BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let survivors = surviving_pg_dumps();
        if !survivors.is_empty() {
            self.violation(
                fault,
                format!("pg_dump processes survived the run: {survivors:?}"),
            );
        }
        let partials = partial_files(&self.backup_dir);
        if !partials.is_empty() {
            self.violation(fault, format!(".partial files left: {partials:?}"));
        }
        let new: Vec<String> = stamp_dirs(&self.backup_dir)?
            .difference(before)
            .cloned()
            .collect();
        let [name] = new.as_slice() else {
            self.violation(
                fault,
                format!("expected one new backup directory, found {new:?} (exit {exit:?})"),
            );
            return Ok(());
        };
        let dir = self.backup_dir.join(name);
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap_or_default();
        let Ok(manifest) = serde_json::from_str::<Value>(&text) else {
            self.violation(
                fault,
                format!("{name}: no readable manifest.json (exit {exit:?})"),
            );
            return Ok(());
        };
        let status = manifest["status"].as_str().unwrap_or("?").to_owned();
        let code = manifest["error"]["code"].as_str().map(str::to_owned);
        let outcome = code
            .clone()
            .map_or_else(|| status.clone(), |code| format!("{status} / {code}"));
        *self.report.outcomes.entry(outcome).or_default() += 1;

        let expected_exit = if status == "ok" { 0 } else { 1 };
        if exit != Some(expected_exit) {
            self.violation(
                fault,
                format!("exit {exit:?} but the manifest says {status}"),
            );
        }
        match (fault, status.as_str(), code.as_deref()) {
            (Fault::None, "ok", None) => {}
            (Fault::None, _, _) => {
                self.violation(fault, format!("a clean run ended {status} {code:?}"))
            }
            (_, "ok", None) => self.report.faults_that_missed += 1,
            (_, "failed", Some(code)) if fault.codes().contains(&code) => {}
            (_, _, _) => self.violation(
                fault,
                format!(
                    "the manifest says {status} {code:?}, expected one of {:?}",
                    fault.codes()
                ),
            ),
        }
        self.check_artifacts(fault, &dir, &manifest);
        // Table names belong in `row_counts` keys (catalog names, as the dump writes
        // them) and nowhere else; no key may carry anything but a table name.
        let mut without_counts = manifest.clone();
        let mut count_keys = Vec::new();
        for artifact in without_counts["artifacts"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(Value::Object(counts)) = artifact
                .as_object_mut()
                .and_then(|a| a.remove("row_counts"))
            {
                count_keys.extend(counts.keys().cloned());
            }
        }
        if status == "ok" && manifest["artifacts"][0]["row_counts"]["public.chaos_notes"] != 20_000
        {
            self.violation(
                fault,
                "the manifest's row_counts miss public.chaos_notes = 20000".to_owned(),
            );
        }
        let stripped = without_counts.to_string();
        let keys = count_keys.join("\n");
        for (secret, allowed_in_counts) in [
            (self.setup.backup_password, false),
            ("gustav_backup", false),
            ("127.0.0.1", false),
            ("chaos_notes", true),
        ] {
            if stripped.contains(secret) || (!allowed_in_counts && keys.contains(secret)) {
                self.violation(
                    fault,
                    "the manifest names a host, user, table or password".to_owned(),
                );
            }
        }
        let verified = self.verify(&dir)?;
        if verified != (status == "ok") {
            self.violation(
                fault,
                format!("verify says {verified} for a manifest with status {status}"),
            );
        }
        if status == "ok" {
            self.last_good = Some(dir);
        }
        if let Some(good) = self.last_good.clone()
            && (!good.is_dir() || !self.verify(&good)?)
        {
            self.violation(
                fault,
                format!("the last good backup {} is gone or broken", good.display()),
            );
        }
        Ok(())
    }

    /// Every artifact the manifest calls ok is there with its size; a failed
    /// one left no file; nothing else is in the directory.
    fn check_artifacts(&mut self, fault: Fault, dir: &Path, manifest: &Value) {
        let mut expected: BTreeSet<String> = BTreeSet::from(["manifest.json".to_owned()]);
        for artifact in manifest["artifacts"].as_array().into_iter().flatten() {
            let file = artifact["file"].as_str();
            match (artifact["status"].as_str(), file) {
                (Some("ok"), Some(file)) => {
                    expected.insert(file.to_owned());
                    let size = std::fs::metadata(dir.join(file)).map(|m| m.len()).ok();
                    if size != artifact["bytes"].as_u64() {
                        self.violation(
                            fault,
                            format!(
                                "{file}: manifest says {} bytes, disk has {size:?}",
                                artifact["bytes"]
                            ),
                        );
                    }
                }
                (Some("failed"), None) => {}
                (status, file) => self.violation(
                    fault,
                    format!("artifact with status {status:?} and file {file:?}"),
                ),
            }
        }
        let present: BTreeSet<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        if present != expected {
            self.violation(
                fault,
                format!("directory holds {present:?}, the manifest accounts for {expected:?}"),
            );
        }
    }

    fn verify(&self, dir: &Path) -> anyhow::Result<bool> {
        Ok(fixtures::command(&self.setup.bin.join("backup-cron"))
            .arg("verify")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success())
    }
}

/// Waits until the new run's dump `.partial` has grown past 256 KiB: the dump
/// is under way. False if the run ended first.
fn wait_for_partial(
    backup_dir: &Path,
    before: &BTreeSet<String>,
    child: &mut std::process::Child,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let growing = stamp_dirs(backup_dir)
            .unwrap_or_default()
            .difference(before)
            .any(|name| {
                std::fs::metadata(backup_dir.join(name).join("supabase_db.sql.gz.partial"))
                    .is_ok_and(|meta| meta.len() > 0)
            });
        if growing {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn stamp_dirs(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect())
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "partial") {
                found.push(path);
            }
        }
    }
    found
}

/// Live `pg_dump` processes (a zombie counts as gone), after a grace of 5 s for
/// the kernel to finish tearing a killed one down.
/// This scenario's `pg_dump`s still running: those dumping its database (their
/// environment names it), not a test's or another run's on the same machine.
fn surviving_pg_dumps() -> Vec<i32> {
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|byte| *byte == 0)
                .any(|variable| variable == b"PGDATABASE=chaos_backup")
        })
    };
    let pg_dumps: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "pg_dump")
                && ours(*pid)
        })
        .collect();
    pg_dumps
        .into_iter()
        .filter(|pid| !fixtures::wait_until_gone(*pid, Duration::from_secs(5)))
        .collect()
}

/// Fills the file system of `dir` but for 64 KiB with a file whose name is not
/// a stamp (retention must never touch it); returns its path.
fn fill(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 1 << 20];
    while let Ok(1..) = file.write(&chunk) {}
    let length = file.metadata()?.len();
    file.set_len(length.saturating_sub(64 * 1024))?;
    Ok(path)
}
