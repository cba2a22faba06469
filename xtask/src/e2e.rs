//! `cargo xtask e2e`: the whole system, for real, in one command.
//!
//! Builds both binaries in release mode, starts a throwaway PostgreSQL, applies the
//! schema, creates the least-privilege roles with passwords (so the real pgpass and
//! `*_FILE` paths are exercised), seeds a mix of text, image and PDF submissions with
//! jobs, drains the queue with two `learning-worker` processes, checks that every
//! submission was completed exactly once, runs `backup-cron once` and `verify`,
//! `backup-cron restore` into a fresh database (every table then compared with the
//! source) and `backup-cron drill`.
//! Any mismatch is an error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use e2e_tests::{
    STORAGE_KEYS_SQL, SUBMISSION_KINDS_SQL, SUMMARY_SQL, TABLES, check_all_completed,
    fingerprint_sql, write_stored_files,
};
use fixtures::seed::{self, Kinds};
use xshell::{Shell, cmd};

use crate::db::{Db, secret_file};
use crate::project_root;

const TEXT_SUBMISSIONS: u32 = 60;
const IMAGE_SUBMISSIONS: u32 = 25;
const PDF_SUBMISSIONS: u32 = 15;

/// Environment variables of the caller that could override what e2e configures.
const INHERITED_CONFIGURATION: [&str; 10] = [
    "DATABASE_URL",
    "LEARNING_DATABASE_URL",
    "LEARNING_DB_URL",
    "SESSION_DATABASE_URL",
    "BACKUP_DATABASE_URL",
    "KC_DB_URL",
    "PG_DUMP",
    "AI_BACKEND",
    "AI_STUB_FAIL",
    "RUST_LOG",
];

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    phase("build both binaries (release)");
    cmd!(
        sh,
        "{cargo} build --release --locked -p backup-cron -p learning-worker"
    )
    .run()?;
    let built = Instant::now();
    let bin = project_root().join("target/release");

    phase("start a throwaway PostgreSQL");
    let cluster = fixtures::TestCluster::start().context("cannot start PostgreSQL")?;
    let scratch = tempfile::Builder::new().prefix("e2e-").tempdir()?;
    let db = Db {
        sh,
        cluster: &cluster,
        name: "platform",
    };
    db.admin("postgres", "create database platform")?;

    phase("apply the schema and create least-privilege roles");
    db.apply_schema()?;
    let worker_password = fixtures::random_token(24);
    let backup_password = fixtures::random_token(24);
    // Through stdin, not argv: passwords never appear in a process list.
    db.stdin_sql(&format!(
        "alter role gustav_worker login password '{worker_password}';
         create role gustav_backup login bypassrls password '{backup_password}' in role pg_read_all_data;"
    ))?;
    let secrets = scratch.path().join("secrets");
    std::fs::create_dir(&secrets)?;
    let dsn = |user: &str, password: &str| {
        format!(
            "postgresql://{user}:{password}@{}:{}/platform",
            fixtures::HOST,
            cluster.port()
        )
    };
    let worker_dsn = secret_file(
        &secrets,
        "worker_dsn",
        &dsn("gustav_worker", &worker_password),
    )?;
    let backup_dsn = secret_file(
        &secrets,
        "backup_dsn",
        &dsn("gustav_backup", &backup_password),
    )?;

    phase("seed courses, tasks, text/image/PDF submissions and jobs");
    let storage = scratch.path().join("storage");
    seed(&db, &storage)?;
    let total = usize::try_from(TEXT_SUBMISSIONS + IMAGE_SUBMISSIONS + PDF_SUBMISSIONS)?;

    phase("drain the queue with two learning-worker processes");
    let calls = scratch.path().join("stub-calls.log");
    let workers_started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (bin, worker_dsn, calls, storage) = (&bin, &worker_dsn, &calls, &storage);
                scope.spawn(move || -> anyhow::Result<()> {
                    let sh = Shell::new()?;
                    let mut command = cmd!(sh, "{bin}/learning-worker drain");
                    for name in INHERITED_CONFIGURATION {
                        command = command.env_remove(name);
                    }
                    command
                        .env("LEARNING_DATABASE_URL_FILE", worker_dsn)
                        .env("WORKER_CONCURRENCY", "4")
                        .env("AI_STUB_DELAY_MS", "5")
                        .env("AI_STUB_CALL_LOG", calls)
                        .env("LEARNING_STORAGE_ROOT", storage)
                        .env("LOG_FORMAT", "json")
                        .env("RUST_LOG", "warn")
                        .run()?;
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("the worker thread does not panic")?;
        }
        Ok(())
    })?;
    let worker_time = workers_started.elapsed();
    check_exactly_once(&db, &calls, total)?;

    phase("backup-cron once");
    let backups = scratch.path().join("backups");
    let pg_dump = cluster.bin_dir().join("pg_dump");
    let mut backup = cmd!(sh, "{bin}/backup-cron once");
    for name in INHERITED_CONFIGURATION {
        backup = backup.env_remove(name);
    }
    backup
        .env("SESSION_DATABASE_URL_FILE", &backup_dsn)
        .env("BACKUP_DIR", &backups)
        .env("SUPABASE_STORAGE_ROOT", &storage)
        .env("PG_DUMP", &pg_dump)
        .env("RUST_LOG", "warn")
        .run()?;

    phase("backup-cron verify");
    cmd!(sh, "{bin}/backup-cron verify")
        .env("BACKUP_DIR", &backups)
        .run()?;
    let run_dir = newest_backup(&backups)?;
    let dump = run_dir.join("supabase_db.sql.gz");
    let backup_bytes = std::fs::metadata(&dump)?.len()
        + std::fs::metadata(run_dir.join("storage_buckets.tar.gz"))?.len();

    phase("backup-cron restore into a fresh database, and compare");
    db.admin("postgres", "create database restored")?;
    // The superuser over the cluster's unix socket (trust): no password at all.
    let socket = cluster.socket_dir();
    let port = cluster.port().to_string();
    let target = |dbname: &str| {
        format!(
            "host={} port={port} user=postgres dbname={dbname}",
            socket.display()
        )
    };
    let psql = cluster.bin_dir().join("psql");
    fn restore_env<'a>(
        mut command: xshell::Cmd<'a>,
        backups: &Path,
        target: String,
        psql: &Path,
    ) -> xshell::Cmd<'a> {
        for name in INHERITED_CONFIGURATION {
            command = command.env_remove(name);
        }
        command
            .env("BACKUP_DIR", backups)
            .env("RESTORE_DATABASE_URL", target)
            .env("PSQL", psql)
            .env("RUST_LOG", "warn")
    }
    let restored_line = restore_env(
        cmd!(sh, "{bin}/backup-cron restore"),
        &backups,
        target("restored"),
        &psql,
    )
    .read()?;
    let restored = Db {
        sh,
        cluster: &cluster,
        name: "restored",
    };
    let mut compared = Vec::new();
    for table in TABLES {
        let fingerprint = fingerprint_sql(table);
        let (source, copy) = (db.query(&fingerprint)?, restored.query(&fingerprint)?);
        ensure!(
            source == copy,
            "{table}: source {source} but restored {copy}"
        );
        compared.push((table, source.split(' ').next().unwrap_or("0").to_owned()));
    }

    phase("backup-cron drill");
    let drill_line = restore_env(
        cmd!(sh, "{bin}/backup-cron drill"),
        &backups,
        target("postgres"),
        &psql,
    )
    .read()?;
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join(manifest::DRILL_FILE))?)?;
    ensure!(drill["status"] == "ok", "drill.json: {drill}");
    let leftovers =
        db.query("select count(*) from pg_database where datname like 'backup\\_drill\\_%'")?;
    ensure!(
        leftovers.trim() == "0",
        "scratch databases left: {leftovers}"
    );

    report(&Report {
        submissions: total,
        worker_seconds: worker_time.as_secs_f64(),
        backup_bytes,
        compared,
        restored: restored_line
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .to_owned(),
        drill: format!(
            "{} ({} ms)",
            drill_line.rsplit(": ").next().unwrap_or_default(),
            drill["duration_ms"]
        ),
        after_build_seconds: built.elapsed().as_secs_f64(),
        total_seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

fn phase(name: &str) {
    eprintln!("xtask e2e: {name}");
}

fn seed(db: &Db<'_>, storage: &Path) -> anyhow::Result<()> {
    let count = TEXT_SUBMISSIONS + IMAGE_SUBMISSIONS + PDF_SUBMISSIONS;
    db.stdin_sql(&format!(
        "{}{}",
        seed::tasks_sql(3, 2),
        seed::submissions(count)
            .kinds(Kinds::Blocks {
                image: IMAGE_SUBMISSIONS,
                file: PDF_SUBMISSIONS
            })
            .sql()
    ))?;
    write_stored_files(storage, &db.query(STORAGE_KEYS_SQL)?)?;
    Ok(())
}

/// The shared scenario checks (`e2e_tests`), on what psql reads back.
fn check_exactly_once(db: &Db<'_>, calls: &Path, total: usize) -> anyhow::Result<()> {
    check_all_completed(&db.query(SUMMARY_SQL)?, total).map_err(anyhow::Error::msg)?;
    e2e_tests::check_exactly_once(
        &db.query(SUBMISSION_KINDS_SQL)?,
        &fixtures::StubCalls::read(calls),
    )
    .map_err(anyhow::Error::msg)
}

fn newest_backup(backups: &Path) -> anyhow::Result<PathBuf> {
    let newest = manifest::BackupDir::new(backups)
        .newest()?
        .context("backup-cron created no backup directory")?;
    Ok(backups.join(newest.name))
}

struct Report {
    submissions: usize,
    worker_seconds: f64,
    backup_bytes: u64,
    compared: Vec<(&'static str, String)>,
    restored: String,
    drill: String,
    after_build_seconds: f64,
    total_seconds: f64,
}

#[expect(clippy::print_stdout, reason = "the report is xtask's output")]
fn report(report: &Report) {
    println!("e2e report");
    println!(
        "  submissions completed exactly once: {} (2 workers, {:.1} s, {:.0} jobs/s)",
        report.submissions,
        report.worker_seconds,
        report.submissions as f64 / report.worker_seconds.max(0.001)
    );
    println!(
        "  backup: ok, verified, {} bytes (dump + storage)",
        report.backup_bytes
    );
    let tables: Vec<String> = report
        .compared
        .iter()
        .map(|(table, rows)| format!("{table}={rows}"))
        .collect();
    println!(
        "  backup-cron restore: {}; rows and contents identical ({})",
        report.restored,
        tables.join(", ")
    );
    println!("  backup-cron drill: {}", report.drill);
    println!(
        "  time: {:.1} s after the build, {:.1} s in all",
        report.after_build_seconds, report.total_seconds
    );
}
