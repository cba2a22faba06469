//! `cargo xtask bench [--quick]`: speed and memory, measured in one run on one
//! machine side by side with what users would otherwise run, so that ratios — not
//! absolute times on a shared machine — carry the result.
//!
//! Prints markdown tables and writes the raw numbers to `target/bench/*.json`.
//! BENCHMARKS.md records results, the machine and how to reproduce them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use fixtures::SubmissionKind;
use fixtures::seed::{self, Kinds};
use xshell::{Shell, cmd};

use crate::db::Db;
use crate::project_root;

mod formats;
mod platform;

struct Settings {
    runs: usize,
    scale: u32,
    notes_rows: u32,
    jobs: u32,
    pickups: u32,
    essay_rows: u32,
}

/// Runs every section, or only `only`.
pub(crate) fn run(sh: &Shell, quick: bool, only: Option<&str>) -> anyhow::Result<()> {
    let wanted = |section: &str| only.is_none_or(|only| only == section);
    let settings = if quick {
        Settings {
            runs: 1,
            scale: 2,
            notes_rows: 20_000,
            jobs: 2_000,
            pickups: 30,
            essay_rows: 20_000,
        }
    } else {
        Settings {
            runs: 3,
            scale: 20,
            notes_rows: 400_000,
            jobs: 20_000,
            pickups: 1_000,
            essay_rows: 400_000,
        }
    };
    ensure!(
        Path::new("/usr/bin/time").exists(),
        "GNU time is needed for peak RSS: apt-get install time"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask bench: build (release)");
    cmd!(
        sh,
        "{cargo} build --release --locked -p backup-cron -p learning-worker"
    )
    .run()?;
    cmd!(
        sh,
        "{cargo} build --release --locked -p pg-lease --example noop_drain"
    )
    .run()?;
    cmd!(
        sh,
        "{cargo} build --release --locked -p dump-runner --example count_rows"
    )
    .run()?;
    let out_dir = project_root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    // Production durability (fsync, synchronous_commit, full_page_writes on): the
    // test cluster's fast settings would flatter every commit.
    let cluster = fixtures::TestCluster::start_durable().context("cannot start PostgreSQL")?;
    let scratch = tempfile::Builder::new().prefix("bench-").tempdir()?;
    let fsync = fdatasync_rate(sh, &cluster)?;
    // The worker first, on a quiet cluster: the backup sections write gigabytes,
    // and the checkpoints and autovacuum that follow would slow every commit.
    if wanted("worker") {
        let worker = worker_cases(sh, &cluster, &settings, fsync)?;
        std::fs::write(out_dir.join("worker.json"), &worker)?;
    }
    if wanted("latency") {
        let latency = latency_cases(sh, &cluster, &settings)?;
        std::fs::write(out_dir.join("latency.json"), &latency)?;
    }
    if wanted("backup") {
        let backup = backup_cases(sh, &cluster, scratch.path(), &settings)?;
        std::fs::write(out_dir.join("backup.json"), &backup)?;
    }
    if wanted("formats") {
        let formats = formats::format_cases(sh, &cluster, scratch.path(), &settings)?;
        std::fs::write(out_dir.join("formats.json"), &formats)?;
    }
    if wanted("platform") {
        let platform = platform::platform_cases(sh, &cluster, scratch.path(), &settings)?;
        std::fs::write(out_dir.join("platform.json"), &platform)?;
    }
    eprintln!("xtask bench: raw numbers in {}", out_dir.display());
    Ok(())
}

/// A program of the release build the bench made (`backup-cron`, `examples/…`).
fn release_binary(relative: &str) -> PathBuf {
    project_root().join("target/release").join(relative)
}

/// One measured process run.
#[derive(Clone, Copy)]
struct Sample {
    seconds: f64,
    peak_rss_kib: u64,
}

/// Runs `script` with `sh -c` under GNU time. A shell is the honest harness here:
/// the baselines *are* shell pipelines (`pg_dump | gzip`).
fn measure(sh: &Shell, script: &str, env: &[(&str, String)]) -> anyhow::Result<Sample> {
    let rss_file = tempfile::NamedTempFile::new()?;
    let rss_path = rss_file.path().to_owned();
    let mut command = cmd!(sh, "/usr/bin/time -f %M -o {rss_path} sh -c {script}");
    for (name, value) in env {
        command = command.env(name, value);
    }
    let started = Instant::now();
    command.quiet().run()?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = std::fs::read_to_string(&rss_path)?
        .trim()
        .lines()
        .last()
        .unwrap_or("0")
        .parse()?;
    Ok(Sample {
        seconds,
        peak_rss_kib,
    })
}

fn stats(samples: &[Sample]) -> (f64, f64, f64, u64) {
    let mut seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let rss = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
    (median, seconds[0], seconds[seconds.len() - 1], rss)
}

/// One backup case: a shell script to time, its environment, and the file it
/// writes (for the output size).
type Case = (String, String, Vec<(&'static str, String)>, Option<PathBuf>);

struct Psql<'a> {
    sh: &'a Shell,
    cluster: &'a fixtures::TestCluster,
}

impl Psql<'_> {
    fn run(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        Db {
            sh: self.sh,
            cluster: self.cluster,
            name: db,
        }
        .script(sql)
    }

    /// The superuser over the unix socket (trust).
    fn dsn(&self, db: &str) -> String {
        self.dsn_as("postgres", db)
    }

    /// A new database `name` with the worker's schema, its role able to log in.
    fn fresh_worker_db(&self, name: &str) -> anyhow::Result<String> {
        self.run(
            "postgres",
            &format!("drop database if exists {name}; create database {name}"),
        )?;
        Db {
            sh: self.sh,
            cluster: self.cluster,
            name,
        }
        .apply_schema()?;
        // The worker's own role (RLS and all), over the socket: trust, no password.
        self.run(name, "alter role gustav_worker login")?;
        Ok(name.to_owned())
    }

    /// `user` over the unix socket (trust): no password involved in the measurement.
    fn dsn_as(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db}",
            self.cluster.socket_dir().display(),
            self.cluster.port()
        )
    }
}

fn backup_cases(
    sh: &Shell,
    cluster: &fixtures::TestCluster,
    scratch: &Path,
    settings: &Settings,
) -> anyhow::Result<String> {
    let psql = Psql { sh, cluster };
    let pgbench = cluster.bin_dir().join("pgbench");
    let pg_dump = cluster.bin_dir().join("pg_dump");
    let (socket, port) = (cluster.socket_dir(), cluster.port().to_string());
    let has_pigz = cmd!(sh, "sh -c 'command -v pigz'")
        .quiet()
        .ignore_status()
        .read()
        .is_ok_and(|path| !path.is_empty());
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut restore_rows = Vec::new();
    for (label, factor) in [("1x", 1u32), ("2x", 2)] {
        let db = format!("bench_{label}");
        eprintln!(
            "xtask bench: dataset {label}: pgbench scale {} + {} markdown rows",
            settings.scale * factor,
            settings.notes_rows * factor
        );
        psql.run("postgres", &format!("create database {db}"))?;
        let scale = (settings.scale * factor).to_string();
        cmd!(
            sh,
            "{pgbench} -i -q -s {scale} -h {socket} -p {port} -U postgres {db}"
        )
        .quiet()
        .ignore_stderr()
        .run()?;
        psql.run(
            &db,
            &format!(
                "create table notes as select n, '# Note ' || n || E'\\n\\nStudents explain **photosynthesis**: light, water and CO2 become sugar. ' \
                 || repeat(md5(n::text) || ' ', 3) || E'\\n- criterion ' || (n % 7) as body \
                 from generate_series(1, {}) n",
                settings.notes_rows * factor
            ),
        )?;
        let dsn = psql.dsn(&db);
        let floor_script = format!(
            "{} --format=plain --no-owner -d '{dsn}' > /dev/null",
            pg_dump.display()
        );
        let out = scratch.join(format!("out-{label}"));
        std::fs::create_dir_all(&out)?;
        let mut cases: Vec<Case> = vec![
            ("pg_dump > /dev/null".to_owned(), floor_script, vec![], None),
            (
                "pg_dump | gzip -6".to_owned(),
                format!(
                    "{} --format=plain --no-owner -d '{dsn}' | gzip -6 > {}/gzip.sql.gz",
                    pg_dump.display(),
                    out.display()
                ),
                vec![],
                Some(out.join("gzip.sql.gz")),
            ),
        ];
        if has_pigz {
            cases.push((
                "pg_dump | pigz -6".to_owned(),
                format!(
                    "{} --format=plain --no-owner -d '{dsn}' | pigz -6 > {}/pigz.sql.gz",
                    pg_dump.display(),
                    out.display()
                ),
                vec![],
                Some(out.join("pigz.sql.gz")),
            ));
        }
        let backup_cron = release_binary("backup-cron");
        for level in ["6", "1"] {
            let dir = out.join(format!("backup-cron-{level}"));
            cases.push((
                format!("backup-cron once (level {level})"),
                format!(
                    "rm -rf {dir} && {} once",
                    backup_cron.display(),
                    dir = dir.display()
                ),
                vec![
                    ("BACKUP_DIR", dir.display().to_string()),
                    ("DATABASE_URL", dsn.clone()),
                    ("PG_DUMP", pg_dump.display().to_string()),
                    ("BACKUP_COMPRESSION_LEVEL", level.to_owned()),
                    ("RUST_LOG", "warn".to_owned()),
                ],
                Some(dir),
            ));
        }
        // `BENCH_BACKUP_BASELINE=/path/to/backup-cron`: the same case with another
        // build (an earlier commit's), so "as fast as before" is a ratio of one run.
        if let Ok(baseline) = std::env::var("BENCH_BACKUP_BASELINE") {
            let dir = out.join("baseline-6");
            cases.push((
                "backup-cron once (level 6), baseline build".to_owned(),
                format!("rm -rf {dir} && {baseline} once", dir = dir.display()),
                vec![
                    ("BACKUP_DIR", dir.display().to_string()),
                    ("DATABASE_URL", dsn.clone()),
                    ("PG_DUMP", pg_dump.display().to_string()),
                    ("BACKUP_COMPRESSION_LEVEL", "6".to_owned()),
                    ("RUST_LOG", "warn".to_owned()),
                ],
                Some(dir),
            ));
        }
        let mut floor = None;
        let uncompressed = plain_sql_bytes(sh, &pg_dump, &dsn)?;
        for (name, script, env, output) in &cases {
            let samples: Vec<Sample> = (0..settings.runs)
                .map(|_| measure(sh, script, env))
                .collect::<Result<_, _>>()?;
            let (median, min, max, rss) = stats(&samples);
            let floor_median = *floor.get_or_insert(median);
            let size = output.as_deref().map(output_size).transpose()?;
            rows.push(format!(
                "| {label} | {} | {median:.2} | {min:.2} | {max:.2} | {:.2}× | {} | {:.1} |",
                name.replace('|', "\\|"),
                median / floor_median,
                size.map_or("–".to_owned(), |bytes| format!(
                    "{:.1}",
                    bytes as f64 / 1e6
                )),
                rss as f64 / 1024.0
            ));
            json.push(format!(
                "{{\"dataset\":\"{label}\",\"case\":\"{name}\",\"median_s\":{median:.4},\"min_s\":{min:.4},\"max_s\":{max:.4},\
                 \"output_bytes\":{},\"peak_rss_kib\":{rss},\"uncompressed_bytes\":{}}}",
                size.map_or("null".to_owned(), |bytes| bytes.to_string()),
                uncompressed
            ));
        }
        eprintln!(
            "xtask bench: dataset {label}: {:.0} MB of plain SQL",
            uncompressed / 1e6
        );
        let backup_seconds = rows_median(&json, label, "backup-cron once (level 6)");
        restore_rows.extend(restore_cases(
            sh,
            &psql,
            &out.join("backup-cron-6"),
            label,
            settings.runs,
            backup_seconds,
        )?);
    }
    print_table(
        "Restore (each a whole process, the target database dropped and created inside it; \
         ratio to `gunzip -c | psql --single-transaction`; CopyCounter: the row counter alone \
         over the same dump, in-process, as a share of `backup-cron once`)",
        "| dataset | case | median s | min s | max s | ratio |\n|---|---|---|---|---|---|",
        &restore_rows,
    );
    print_table(
        "Backup (each case a whole process; ratio to `pg_dump > /dev/null` of the same dataset)",
        "| dataset | case | median s | min s | max s | ratio | output MB | peak RSS MiB |\n|---|---|---|---|---|---|---|---|",
        &rows,
    );
    Ok(format!("[{}]\n", json.join(",\n")))
}

/// The size of the database's dump as plain SQL, in bytes: what every compression
/// ratio is of.
fn plain_sql_bytes(sh: &Shell, pg_dump: &Path, dsn: &str) -> anyhow::Result<f64> {
    let script = format!(
        "{} --format=plain --no-owner -d '{dsn}' | wc -c",
        pg_dump.display()
    );
    Ok(cmd!(sh, "sh -c {script}").read()?.trim().parse()?)
}

/// The median seconds recorded for `case` of `dataset` in the JSON rows so far.
fn rows_median(json: &[String], dataset: &str, case: &str) -> f64 {
    json.iter()
        .filter(|row| row.contains(&format!("\"dataset\":\"{dataset}\",\"case\":\"{case}\"")))
        .find_map(|row| {
            row.split("\"median_s\":")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

/// `backup-cron restore` of the backup in `backups` against the shell pipeline an
/// operator would type, each into a freshly created database; and the row counter's
/// own cost over the same dump.
fn restore_cases(
    sh: &Shell,
    psql: &Psql<'_>,
    backups: &Path,
    label: &str,
    runs: usize,
    backup_seconds: f64,
) -> anyhow::Result<Vec<String>> {
    let run = run_dir(backups)?;
    let dump = run.join("supabase_db.sql.gz");
    let client = psql.cluster.bin_dir().join("psql");
    let target = format!("restore_{label}");
    let recreate = format!(
        "{client} -X -q -d '{}' -c 'drop database if exists {target}' -c 'create database {target}'",
        psql.dsn("postgres"),
        client = client.display()
    );
    let backup_cron = release_binary("backup-cron");
    let cases = [
        (
            "gunzip -c \\| psql --single-transaction",
            format!(
                "{recreate} && gunzip -c {} | {} -X -q --single-transaction -v ON_ERROR_STOP=1 -d '{}' > /dev/null",
                dump.display(),
                client.display(),
                psql.dsn(&target)
            ),
            vec![],
        ),
        (
            "backup-cron restore (with the row-count check)",
            format!(
                "{recreate} && {} restore {}",
                backup_cron.display(),
                run.display()
            ),
            vec![
                ("RESTORE_DATABASE_URL", psql.dsn(&target)),
                ("PSQL", client.display().to_string()),
                ("RUST_LOG", "warn".to_owned()),
            ],
        ),
    ];
    let mut rows = Vec::new();
    let mut baseline = None;
    for (name, script, env) in &cases {
        let samples: Vec<Sample> = (0..runs)
            .map(|_| measure(sh, script, env))
            .collect::<Result<_, _>>()?;
        let (median, min, max, _) = stats(&samples);
        let base = *baseline.get_or_insert(median);
        rows.push(format!(
            "| {label} | {name} | {median:.2} | {min:.2} | {max:.2} | {:.2}× |",
            median / base
        ));
    }
    // The row counter alone, in the release build, over the same dump: an upper
    // bound of what it adds to a backup (it runs in the pump thread, beside the
    // compressor's threads).
    let plain = run.join("plain.sql");
    let mut sql = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&dump)?),
        &mut sql,
    )?;
    std::fs::write(&plain, &sql)?;
    let counter = release_binary("examples/count_rows");
    let output = cmd!(sh, "{counter} {plain}").quiet().read()?;
    std::fs::remove_file(&plain)?;
    let seconds: f64 = output
        .lines()
        .find_map(|line| line.strip_prefix("seconds "))
        .context("count_rows printed no time")?
        .parse()?;
    let tables = output.lines().count() - 1;
    rows.push(format!(
        "| {label} | CopyCounter over the {:.0} MB dump ({tables} tables), release | {seconds:.3} | – | – | {:.1} % of `backup-cron once` |",
        sql.len() as f64 / 1e6,
        100.0 * seconds / backup_seconds
    ));
    Ok(rows)
}

/// Size of the `.gz` a case wrote: a file, or the dump inside a backup directory.
fn output_size(path: &Path) -> anyhow::Result<u64> {
    if path.is_file() {
        return Ok(std::fs::metadata(path)?.len());
    }
    Ok(std::fs::metadata(run_dir(path)?.join("supabase_db.sql.gz"))?.len())
}

/// The one run directory `backup-cron once` wrote into a fresh `BACKUP_DIR`.
fn run_dir(backups: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_dir(backups)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.is_dir())
        .with_context(|| {
            format!(
                "backup-cron wrote no run directory in {}",
                backups.display()
            )
        })
}

/// What bounds every commit rate: `pg_test_fsync`'s fdatasync of one 8 kB write,
/// ops/s, on the file system the cluster's WAL is on.
fn fdatasync_rate(sh: &Shell, cluster: &fixtures::TestCluster) -> anyhow::Result<f64> {
    let program = cluster.bin_dir().join("pg_test_fsync");
    let file = cluster.root().join("pg_test_fsync.out");
    let output = cmd!(sh, "{program} -s 2 -f {file}").quiet().read()?;
    let _ = std::fs::remove_file(&file);
    let rate = output
        .lines()
        .skip_while(|line| !line.contains("one 8kB write"))
        .find(|line| line.trim_start().starts_with("fdatasync"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|rate| rate.parse().ok())
        .context("pg_test_fsync printed no fdatasync rate")?;
    eprintln!("xtask bench: fdatasync {rate:.0} ops/s (pg_test_fsync, one 8 kB write)");
    Ok(rate)
}

/// The database's committed transactions and the cluster's WAL flushes so far.
/// Statistics reach the views when a backend reports them (at the latest when it
/// exits): read until two reads agree, after the measured process has ended.
fn commit_counters(psql: &Psql<'_>, db: &str) -> anyhow::Result<(u64, u64)> {
    let read = || -> anyhow::Result<(u64, u64)> {
        let row = psql.run(
            db,
            "select (select xact_commit from pg_stat_database where datname = current_database()) \
             || ' ' || (select wal_sync from pg_stat_wal)",
        )?;
        let (commits, flushes) = row.trim().split_once(' ').context("two counters")?;
        Ok((commits.parse()?, flushes.parse()?))
    };
    let mut last = read()?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = read()?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn worker_cases(
    sh: &Shell,
    cluster: &fixtures::TestCluster,
    settings: &Settings,
    fsync: f64,
) -> anyhow::Result<String> {
    let psql = Psql { sh, cluster };
    let mut rows = vec![format!(
        "| the machine's fdatasync (pg_test_fsync, one 8 kB write) | – | {fsync:.0} ops/s | bounds every commit rate below |"
    )];
    let mut json = vec![format!(
        "{{\"case\":\"fdatasync\",\"ops_per_s\":{fsync:.1}}}"
    )];
    let per_job = |before: (u64, u64), after: (u64, u64), jobs: u32| {
        (
            (after.0 - before.0) as f64 / f64::from(jobs),
            (after.1 - before.1) as f64 / f64::from(jobs),
        )
    };
    // Every `image_every`-th submission an image (0: none), so its job also runs
    // vision and writes the OCR cache into the job's payload.
    let seed_mix = |db: &str, jobs: u32, image_every: u32| -> anyhow::Result<()> {
        let kinds = match image_every {
            0 => Kinds::Only(SubmissionKind::Text),
            every => Kinds::EveryNthImage(every),
        };
        let sql = seed::tasks_sql(1, 1) + &seed::submissions(jobs).kinds(kinds).students(50).sql();
        psql.run(db, &sql)?;
        Ok(())
    };
    let seed_text = |db: &str, jobs: u32| seed_mix(db, jobs, 0);
    // The index the platform's database has, (status, visible_at), and not the
    // worker's own (status, visible_at, created_at): what a database looks like
    // before schema.sql ran, or where it could not.
    let contract_index_only = |db: &str| {
        psql.run(
            db,
            "drop index learning_submission_jobs_lease_idx; \
             create index learning_submission_jobs_status_visible_at_idx \
             on learning_submission_jobs (status, visible_at)",
        )
        .map(drop)
    };
    // The peer queue first, on the same cluster, so every row below has its
    // figure from the same minute beside it.
    let peer_python = pgqueuer_python(sh)?;
    let peer_script = project_root().join("xtask/src/bench/pgqueuer_drain.py");
    let mut peer_rates = Vec::new();
    for batch in ["4", "16", "64"] {
        let db = psql.fresh_worker_db("bench_peer")?;
        let libpq = [
            ("PGHOST", cluster.socket_dir().display().to_string()),
            ("PGPORT", cluster.port().to_string()),
            ("PGUSER", "postgres".to_owned()),
            ("PGDATABASE", db.clone()),
        ];
        cmd!(sh, "{peer_python} -m pgqueuer install")
            .envs(libpq.clone())
            .quiet()
            .ignore_stdout()
            .run()?;
        let jobs = settings.jobs.to_string();
        let before = commit_counters(&psql, &db)?;
        let line = cmd!(sh, "{peer_python} {peer_script} {jobs} {batch}")
            .envs(libpq)
            .read()?;
        let (commits, flushes) = per_job(before, commit_counters(&psql, &db)?, settings.jobs);
        let (jobs, seconds) = line.split_once(' ').context("jobs and seconds")?;
        let rate = jobs.parse::<f64>()? / seconds.parse::<f64>()?;
        peer_rates.push((batch, rate));
        rows.push(format!("| peer: pgqueuer {PGQUEUER_VERSION} drain, no-op jobs (enqueue not timed; from the first dequeue) | batch {batch} | {rate:.0} jobs/s | {jobs} jobs in {seconds} s; {commits:.2} commits and {flushes:.2} WAL flushes per job |"));
        json.push(format!(
            "{{\"case\":\"peer_pgqueuer\",\"batch\":{batch},\"jobs_per_s\":{rate:.1},\"commits_per_job\":{commits:.3},\"wal_flushes_per_job\":{flushes:.3}}}"
        ));
    }
    let versus_peer = |slots: &str, rate: f64| {
        peer_rates
            .iter()
            .find(|(batch, _)| *batch == slots)
            .map_or_else(String::new, |(_, peer)| {
                format!(" = {:.2}× pgqueuer", rate / peer)
            })
    };
    let noop = release_binary("examples/noop_drain");
    for (slots, index) in [
        ("4", "ours"),
        ("16", "ours"),
        ("64", "ours"),
        ("16", "contract only"),
    ] {
        let db = psql.fresh_worker_db("bench_queue")?;
        if index == "contract only" {
            contract_index_only(&db)?;
        }
        seed_text(&db, settings.jobs)?;
        let before = commit_counters(&psql, &db)?;
        let line = cmd!(sh, "{noop} {slots}")
            .env("BENCH_DATABASE_URL", psql.dsn_as("gustav_worker", &db))
            .read()?;
        let (commits, flushes) = per_job(before, commit_counters(&psql, &db)?, settings.jobs);
        let (jobs, seconds) = line.split_once(' ').context("jobs and seconds")?;
        let rate = jobs.parse::<f64>()? / seconds.parse::<f64>()?;
        let peer = versus_peer(slots, rate);
        rows.push(format!("| lease alone, no-op jobs, index: {index} | {slots} slots | {rate:.0} jobs/s{peer} | {jobs} jobs in {seconds} s; {commits:.2} commits and {flushes:.2} WAL flushes per job |"));
        json.push(format!(
            "{{\"case\":\"lease_noop\",\"index\":\"{index}\",\"slots\":{slots},\"jobs_per_s\":{rate:.1},\"commits_per_job\":{commits:.3},\"wal_flushes_per_job\":{flushes:.3}}}"
        ));
    }
    let worker = release_binary("learning-worker");
    for (concurrency, image_every, mix, index) in [
        ("4", 0, "text", "ours"),
        ("16", 0, "text", "ours"),
        ("64", 0, "text", "ours"),
        ("16", 0, "text", "contract only"),
        ("16", 2, "half images", "ours"),
        ("64", 2, "half images", "ours"),
    ] {
        let db = psql.fresh_worker_db("bench_worker")?;
        if index == "contract only" {
            contract_index_only(&db)?;
        }
        seed_mix(&db, settings.jobs, image_every)?;
        let dsn = psql.dsn_as("gustav_worker", &db);
        let before = commit_counters(&psql, &db)?;
        let started = Instant::now();
        cmd!(sh, "{worker} drain")
            .env("LEARNING_DATABASE_URL", &dsn)
            .env("WORKER_CONCURRENCY", concurrency)
            .env("WORKER_CONCURRENCY_CAP", "64")
            .env("RUST_LOG", "warn")
            .run()?;
        let seconds = started.elapsed().as_secs_f64();
        let (commits, flushes) = per_job(before, commit_counters(&psql, &db)?, settings.jobs);
        let rate = f64::from(settings.jobs) / seconds;
        let peer = versus_peer(concurrency, rate);
        rows.push(format!("| learning-worker drain, stub, {mix}, index: {index} | concurrency {concurrency} | {rate:.0} jobs/s{peer} | {} jobs in {seconds:.2} s (process start included); {commits:.2} commits and {flushes:.2} WAL flushes per job |", settings.jobs));
        json.push(format!("{{\"case\":\"worker_pipeline\",\"index\":\"{index}\",\"submissions\":\"{mix}\",\"concurrency\":{concurrency},\"jobs_per_s\":{rate:.1},\"commits_per_job\":{commits:.3},\"wal_flushes_per_job\":{flushes:.3}}}"));
    }
    print_table(
        "Worker and queue",
        "| case | setting | result | detail |\n|---|---|---|---|",
        &rows,
    );
    Ok(format!("[{}]\n", json.join(",\n")))
}

/// An idle worker's pickup latency and a busy one's heartbeat statements: how long a
/// student waits for a job to start, and what keeping leases alive costs the database.
fn latency_cases(
    sh: &Shell,
    cluster: &fixtures::TestCluster,
    settings: &Settings,
) -> anyhow::Result<String> {
    let psql = Psql { sh, cluster };
    let worker = release_binary("learning-worker");
    let (mut rows, mut json): (Vec<String>, Vec<String>) = pickup_latency(
        &psql,
        &psql.fresh_worker_db("bench_pickup")?,
        &worker,
        settings.pickups,
    )?
    .into_iter()
    .unzip();
    let (heartbeat_row, heartbeat_json) =
        heartbeat_cost(&psql, &psql.fresh_worker_db("bench_heartbeat")?, &worker)?;
    rows.push(heartbeat_row);
    json.push(heartbeat_json);
    print_table(
        "Worker latency and heartbeats",
        "| case | setting | result | detail |\n|---|---|---|---|",
        &rows,
    );
    Ok(format!("[{}]\n", json.join(",\n")))
}

/// The peer queue's version, pinned so that runs compare.
const PGQUEUER_VERSION: &str = "1.6.0";

/// A Python with pgqueuer, from a virtualenv in `target/bench`.
fn pgqueuer_python(sh: &Shell) -> anyhow::Result<PathBuf> {
    let venv = crate::python::venv(
        sh,
        "pgqueuer",
        &[&format!("pgqueuer=={PGQUEUER_VERSION}"), "asyncpg==0.32.0"],
    )?;
    Ok(venv.join("bin/python"))
}

/// An idle worker, jobs inserted one at a time: insert → lease, by the database's
/// own clock (a trigger records the moment each job becomes leased). Two rounds:
/// the enqueuer's commit durable, as the platform's are, and then not waiting for
/// its WAL flush, which leaves the worker's part alone (the job is visible and its
/// notification sent before the disk has the commit).
fn pickup_latency(
    psql: &Psql<'_>,
    db: &str,
    worker: &Path,
    pickups: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    psql.run(
        db,
        "create table pickup_log (job_id uuid, created_at timestamptz, leased_at timestamptz);
         create function log_pickup() returns trigger language plpgsql security definer as $$
         begin insert into pickup_log values (new.id, new.created_at, clock_timestamp()); return new; end $$;
         create trigger log_pickup after update of status on learning_submission_jobs
           for each row when (new.status = 'leased' and old.status = 'queued') execute function log_pickup();",
    )?;
    let rounds = [
        ("durable enqueuer", "durable", ""),
        (
            "enqueuer's commit not waiting for its flush: the worker's part",
            "visible",
            "set synchronous_commit = off;\n",
        ),
    ];
    let submissions = pickups * u32::try_from(rounds.len())?;
    psql.run(
        db,
        &(seed::tasks_sql(1, 1)
            + &seed::submissions(submissions)
                .students(1)
                .without_jobs()
                .sql()),
    )?;
    let dsn = psql.dsn_as("gustav_worker", db);
    let child = spawn_worker(worker, &dsn, &[])?;
    // Let it start and go idle (its LISTEN in place) before the first insert.
    wait_for(|| {
        psql.run(
            db,
            "select count(*) from pg_stat_activity where query like 'listen %'",
        )
        .is_ok_and(|n| n == "1")
    })?;
    let mut measured = Vec::new();
    for (label, case, setting) in rounds {
        let mut statements = format!("truncate pickup_log;\n{setting}");
        for _ in 0..pickups {
            // clock_timestamp() for created_at: each insert is its own statement,
            // spaced by psql's round trips.
            statements.push_str(&seed::enqueue_one_sql());
            statements.push_str("select pg_sleep(0.01);\n");
        }
        psql.run(db, &statements)?;
        wait_for(|| {
            psql.run(db, &format!("select count(*) >= {pickups} from pickup_log"))
                .is_ok_and(|done| done == "t")
        })?;
        let percentiles = psql.run(
            db,
            "select array_to_string(array(select round(p::numeric, 2) from unnest( \
                    (select percentile_cont(array[0.5, 0.95, 0.99]) within group \
                       (order by extract(epoch from leased_at - created_at) * 1000) from pickup_log)) p), ',')",
        )?;
        let values: Vec<&str> = percentiles.split(',').collect();
        ensure!(values.len() == 3, "unexpected percentiles {percentiles}");
        measured.push((
            format!(
                "| pickup latency, idle worker, {label} | {pickups} single inserts | p50 {} ms, p95 {} ms, p99 {} ms | insert → leased, database clock |",
                values[0], values[1], values[2]
            ),
            format!(
                "{{\"case\":\"pickup_latency_ms\",\"enqueuer\":\"{case}\",\"p50\":{},\"p95\":{},\"p99\":{}}}",
                values[0], values[1], values[2]
            ),
        ));
    }
    drop(child);
    Ok(measured)
}

/// 16 jobs in flight for several heartbeat intervals: how many heartbeat
/// statements reach the server per interval.
fn heartbeat_cost(psql: &Psql<'_>, db: &str, worker: &Path) -> anyhow::Result<(String, String)> {
    psql.run(
        db,
        "create table heartbeat_log (at timestamptz);
         create function log_heartbeat() returns trigger language plpgsql security definer as $$
         begin insert into heartbeat_log values (clock_timestamp()); return null; end $$;
         create trigger log_heartbeat after update of leased_until on learning_submission_jobs
           for each statement execute function log_heartbeat();",
    )?;
    psql.run(
        db,
        &(seed::tasks_sql(1, 1) + &seed::submissions(16).without_jobs().sql()),
    )?;
    psql.run(db, &seed::enqueue_sql())?;
    let dsn = psql.dsn_as("gustav_worker", db);
    let child = spawn_worker(
        worker,
        &dsn,
        &[
            ("AI_STUB_DELAY_MS", "600000"),
            ("WORKER_LEASE_SECONDS", "3"),
        ],
    )?;
    wait_for(|| {
        psql.run(
            db,
            "select count(*) = 16 from learning_submission_jobs where status = 'leased'",
        )
        .is_ok_and(|done| done == "t")
    })?;
    // The lease statement itself updates leased_until once; count what follows.
    psql.run(db, "delete from heartbeat_log")?;
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let statements: f64 = psql
        .run(db, "select count(*) from heartbeat_log")?
        .parse()?;
    drop(child);
    let intervals = window.as_secs_f64() / 1.0;
    let per_interval = statements / intervals;
    Ok((
        format!(
            "| heartbeat cost | 16 jobs in flight, lease 3 s | {per_interval:.2} statements per interval | {statements} statements in {intervals:.0} intervals |"
        ),
        format!("{{\"case\":\"heartbeat_statements_per_interval\",\"value\":{per_interval:.3}}}"),
    ))
}

/// A `learning-worker run` next to the benchmark, killed when dropped (also when
/// the benchmark fails half-way).
struct RunningWorker(std::process::Child);

impl Drop for RunningWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "a long-running worker next to the benchmark; xshell cannot spawn"
)]
fn spawn_worker(worker: &Path, dsn: &str, extra: &[(&str, &str)]) -> anyhow::Result<RunningWorker> {
    let mut command = std::process::Command::new(worker);
    command
        .arg("run")
        .env("LEARNING_DATABASE_URL", dsn)
        .env("WORKER_CONCURRENCY", "16")
        .env("WORKER_CONCURRENCY_CAP", "16")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    Ok(RunningWorker(command.spawn()?))
}

fn wait_for(mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !condition() {
        ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the tables are xtask's output")]
fn print_table(title: &str, header: &str, rows: &[String]) {
    println!("\n### {title}\n\n{header}");
    for row in rows {
        println!("{row}");
    }
}
