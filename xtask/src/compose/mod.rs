//! `cargo xtask e2e --compose`: the e2e scenario against `compose.yaml`, on a real
//! Docker engine, with faults across containers; `cargo xtask images`: only the
//! offline images.
//!
//! Without a registry every image is built offline ([`images`]): a debootstrap base
//! per image, the release binaries from the host, PostgreSQL from
//! `deploy/postgres-offline.Dockerfile`. The stack is `compose.yaml` with
//! `deploy/compose.offline.yaml` and `deploy/compose.e2e.yaml` under a project of
//! its own ([`stack::PROJECT`]), secrets made for the run in a private directory.
//!
//! The scenario: two worker replicas drain text, image and PDF submissions (each
//! exactly once by the stub's call logs), `backup-cron once` + `verify`, a restore
//! compared table by table; then, each with a fresh batch of jobs in flight, a
//! worker killed with SIGKILL, a worker cut off the network for longer than the
//! lease and reconnected, a database restart, a database restart while a backup
//! runs, and `compose stop`. The checks read what the workers cannot fake: the
//! lease history and result writes that triggers record in the database
//! (`chaos`'s instrumentation) and each adapter call's lease from the worker logs
//! ([`checks`]). Then the images: non-root, healthy, no secret in a layer, an
//! inspect output or a log; sizes. The report is printed whatever happened, and
//! `compose down --volumes` runs also after a failure.
//!
//! It needs a Docker engine: without one it says so in one line and fails, so a
//! green run always means the scenario ran.

mod checks;
mod images;
mod stack;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e_tests::{
    STORAGE_KEYS_SQL, SUBMISSION_KINDS_SQL, SUMMARY_SQL, TABLES, check_all_completed,
    fingerprint_sql, write_stored_files,
};
use fixtures::seed::{self, Kinds};
use xshell::{Shell, cmd};

use stack::{PROJECT, Stack};

/// The platform database in the compose stack (the postgres image's default).
const DB: &str = "postgres";
/// Must match `WORKER_LEASE_SECONDS` in deploy/compose.e2e.yaml.
const LEASE: Duration = Duration::from_secs(5);
const WORKERS: usize = 2;
/// The images deploy/compose.offline.yaml names.
const IMAGES: [(&str, &str); 3] = [
    ("postgres", "learning-platform-offline/postgres:15"),
    (
        "learning-worker",
        "learning-platform-offline/learning-worker:local",
    ),
    ("backup-cron", "learning-platform-offline/backup-cron:local"),
];

/// Whether a Docker engine answers, and its version.
pub(crate) fn engine(sh: &Shell) -> Option<String> {
    let format = "{{.ServerVersion}}";
    cmd!(sh, "docker info --format {format}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
}

/// `cargo xtask images`: the offline bases and the stack's images, and the
/// variables deploy/compose.offline.yaml needs.
#[expect(clippy::print_stdout, reason = "the variables are the task's output")]
pub(crate) fn images_only(sh: &Shell) -> anyhow::Result<()> {
    let Some(version) = engine(sh) else {
        bail!("no Docker engine is reachable (`docker info` failed)");
    };
    eprintln!("xtask images: Docker engine {version}");
    build_release(sh)?;
    for base in images::bases()? {
        eprintln!("xtask images: {} ({})", base.tag, base.made);
        println!("export {}={}", base.role.variable, base.tag);
    }
    Ok(())
}

/// The base images alone, for `cargo xtask ci` to make while its Rust steps run:
/// debootstrap waits mostly on the mirror and the disk, so on a machine whose engine
/// is empty the compose step then finds them made.
pub(crate) fn bases_ahead() -> anyhow::Result<()> {
    images::bases().map(drop)
}

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(version) = engine(sh) else {
        bail!(
            "no Docker engine is reachable (`docker info` failed); `cargo xtask e2e --compose` needs one"
        );
    };
    phase(&format!("Docker engine {version}"));
    phase("build both binaries (release)");
    build_release(sh)?;
    phase("base images (debootstrap, cached by their inputs)");
    let bases_started = Instant::now();
    let bases = images::bases()?;
    let mut report = Report::default();
    report.row(
        "base images",
        format!(
            "{} in {:.0} s",
            bases
                .iter()
                .map(|base| format!("{} ({})", base.role.name, base.made))
                .collect::<Vec<_>>()
                .join(", "),
            bases_started.elapsed().as_secs_f64()
        ),
    );
    let scratch = tempfile::Builder::new().prefix("e2e-compose-").tempdir()?;
    let secrets = Secrets::create(&scratch.path().join("secrets"))?;
    let mut env = vec![("E2E_SECRETS", secrets.dir.display().to_string())];
    env.extend(
        bases
            .iter()
            .map(|base| (base.role.variable, base.tag.clone())),
    );
    let stack = Stack::new(sh, env)?;
    phase(&format!("{} build", stack.tool()));
    stack.down();
    let down = Down(&stack);
    let outcome = (|| {
        let build_started = Instant::now();
        stack.compose(&["build"]).run()?;
        report.row(
            "images built",
            format!("{:.0} s", build_started.elapsed().as_secs_f64()),
        );
        scenario(&stack, &secrets, scratch.path(), &mut report)
    })();
    if let Err(error) = &outcome {
        report.row("FAILED", format!("{error:#}"));
        for id in stack.all_ids().unwrap_or_default() {
            let logs = stack.logs(&id).unwrap_or_default();
            let tail: Vec<&str> = logs.lines().rev().take(20).collect();
            eprintln!("--- last lines of container {id}:");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    drop(down);
    report.row(
        "time",
        format!("{:.0} s in all", started.elapsed().as_secs_f64()),
    );
    report.print();
    outcome
}

fn build_release(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    cmd!(
        sh,
        "{cargo} build --release --locked -p backup-cron -p learning-worker"
    )
    .run()?;
    Ok(())
}

fn phase(name: &str) {
    eprintln!("xtask e2e --compose: {name}");
}

/// Runs `compose down --volumes` when dropped, so a failed step cleans up too.
struct Down<'a>(&'a Stack<'a>);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        phase("compose down --volumes");
        self.0.down();
    }
}

/// The secret files docs/operations.md "Deploying with compose" has an operator
/// create, made the same way for this run.
struct Secrets {
    dir: std::path::PathBuf,
    passwords: Vec<String>,
}

impl Secrets {
    fn create(dir: &Path) -> anyhow::Result<Secrets> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let (postgres, worker, backup) = (
            fixtures::random_token(24),
            fixtures::random_token(24),
            fixtures::random_token(24),
        );
        let url = |user: &str, password: &str, database: &str| {
            format!("postgresql://{user}:{password}@postgres:5432/{database}\n")
        };
        for (name, contents) in [
            ("postgres_password", format!("{postgres}\n")),
            ("worker_db_password", format!("{worker}\n")),
            ("backup_db_password", format!("{backup}\n")),
            (
                "worker_database_url",
                url("gustav_worker", &worker, "postgres"),
            ),
            (
                "backup_database_url",
                url("gustav_backup", &backup, "postgres"),
            ),
            // The restore target: an empty database the harness creates for it.
            (
                "restore_database_url",
                url("gustav_backup", &backup, "restored"),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            // Readable inside the containers, whose users are not the host's; the
            // 0700 directory keeps them private on the host.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(Secrets {
            dir: dir.to_owned(),
            passwords: vec![postgres, worker, backup],
        })
    }
}

/// The report: one row per step, printed as a table at the end.
#[derive(Default)]
struct Report {
    rows: Vec<(String, String)>,
}

impl Report {
    fn row(&mut self, step: &str, result: String) {
        eprintln!("xtask e2e --compose: {step}: {result}");
        self.rows.push((step.to_owned(), result));
    }

    #[expect(clippy::print_stdout, reason = "the report is xtask's output")]
    fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|(step, _)| step.len())
            .max()
            .unwrap_or(0);
        println!("e2e --compose report");
        for (step, result) in &self.rows {
            println!("  {step:width$}  {result}");
        }
    }
}

fn scenario(
    stack: &Stack<'_>,
    secrets: &Secrets,
    scratch: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    phase(&format!("up with {WORKERS} worker replicas"));
    let up_started = Instant::now();
    stack
        .compose(&[
            "up",
            "--detach",
            "--scale",
            &format!("learning-worker={WORKERS}"),
        ])
        .run()?;
    stack.wait_healthy(Duration::from_secs(180))?;
    report.row(
        "up, all healthy",
        format!(
            "{:.1} s ({} containers)",
            up_started.elapsed().as_secs_f64(),
            stack.all_ids()?.len()
        ),
    );
    stack.sql(DB, checks::INSTRUMENTATION)?;
    stack.sql(DB, &seed::tasks_sql(3, 2))?;

    phase("seed 100 text, image and PDF submissions; drain with both replicas");
    let world = World { stack, scratch };
    let drained = world.add_and_drain(
        100,
        Kinds::Blocks {
            image: 25,
            file: 15,
        },
    )?;
    let calls = world.stub_calls()?;
    e2e_tests::check_exactly_once(&stack.sql(DB, SUBMISSION_KINDS_SQL)?, &calls)
        .map_err(anyhow::Error::msg)?;
    report.row(
        "100 submissions",
        format!(
            "text 60, image 25, PDF 15: each completed exactly once, {:.1} s",
            drained.as_secs_f64()
        ),
    );

    phase("backup-cron once, verify, restore and compare");
    report.row("backup", world.backup_verify_restore()?);

    phase("docker kill -s KILL of a worker mid-job");
    report.row("kill a worker", world.kill_a_worker()?);
    phase("network partition of a worker, longer than the lease");
    report.row("partition a worker", world.partition_a_worker()?);
    phase("database restart");
    report.row("restart the database", world.restart_the_database()?);
    phase("database restart during a backup");
    report.row(
        "restart it during a backup",
        world.restart_the_database_during_a_backup()?,
    );
    phase("compose stop");
    report.row("compose stop", world.stop_the_workers()?);

    phase("checks over the lease and audit records");
    let found = checks::run(&world)?;
    for (step, result) in found.rows {
        report.row(step, result);
    }
    ensure!(
        found.violations.is_empty(),
        "the records show violations:\n  {}",
        found.violations.join("\n  ")
    );

    phase("images: users, secrets, sizes");
    report.row("images", world.check_images(secrets)?);
    Ok(())
}

/// The running stack and what the scenario does to it.
struct World<'a> {
    stack: &'a Stack<'a>,
    scratch: &'a Path,
}

impl World<'_> {
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        self.stack.sql(DB, sql)
    }

    fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let text = self.sql(sql)?;
        text.trim()
            .parse()
            .with_context(|| format!("not a count: {text:?}"))
    }

    /// Polls `condition` every 200 ms until it holds or `timeout` passes.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if condition()? {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Submissions of `kinds` (files stored in the storage volume), then their jobs.
    fn add(&self, count: u32, kinds: Kinds) -> anyhow::Result<()> {
        self.sql(&seed::submissions(count).kinds(kinds).without_jobs().sql())?;
        let storage = self.scratch.join("storage");
        write_stored_files(&storage, &self.sql(STORAGE_KEYS_SQL)?)?;
        let sh = self.stack.sh;
        let archive = cmd!(sh, "tar -C {storage} -c .").quiet().output()?.stdout;
        let volume = format!("{PROJECT}_storage:/storage");
        let image = IMAGES[1].1;
        cmd!(
            sh,
            "docker run --rm -i --network none --user 0 --entrypoint tar -v {volume} {image} -x -C /storage"
        )
        .stdin(archive)
        .quiet()
        .run()?;
        self.sql(&seed::enqueue_sql())?;
        Ok(())
    }

    fn add_and_drain(&self, count: u32, kinds: Kinds) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.add(count, kinds)?;
        self.drained()?;
        Ok(started.elapsed())
    }

    /// Waits until every submission is completed and no job is left.
    fn drained(&self) -> anyhow::Result<Duration> {
        self.wait(
            "every submission completed",
            Duration::from_secs(300),
            || {
                let total = self.count("select count(*) from learning_submissions")?;
                let total = usize::try_from(total)?;
                Ok(check_all_completed(&self.sql(SUMMARY_SQL)?, total).is_ok())
            },
        )
    }

    fn leased(&self) -> anyhow::Result<u64> {
        self.count("select count(*) from learning_submission_jobs where status = 'leased'")
    }

    /// Adds `count` text submissions and waits until at least four are leased.
    fn jobs_in_flight(&self, count: u32) -> anyhow::Result<()> {
        self.add(count, Kinds::Only(fixtures::SubmissionKind::Text))?;
        self.wait("jobs in flight", Duration::from_secs(60), || {
            Ok(self.leased()? >= 4)
        })?;
        Ok(())
    }

    /// The stub's call logs of every worker container, concatenated.
    fn stub_calls(&self) -> anyhow::Result<fixtures::StubCalls> {
        let sh = self.stack.sh;
        let mut text = String::new();
        for id in self.stack.ids("learning-worker")? {
            text.push_str(
                &cmd!(sh, "docker exec {id} cat /tmp/stub-calls.log")
                    .quiet()
                    .read()?,
            );
            text.push('\n');
        }
        Ok(fixtures::StubCalls::parse(text.trim()))
    }

    fn exec_backup(&self, args: &[&str]) -> xshell::Cmd<'_> {
        let mut full = vec!["exec", "-T", "backup-cron", "backup-cron"];
        full.extend_from_slice(args);
        self.stack.compose(&full)
    }

    /// The newest run directory's name in the backup volume.
    fn newest_backup(&self) -> anyhow::Result<String> {
        let listing = self
            .stack
            .compose(&["exec", "-T", "backup-cron", "ls", "-1", "/backups"])
            .quiet()
            .read()?;
        let mut stamps: Vec<(manifest::UtcTime, u32, &str)> = listing
            .lines()
            .filter_map(|name| {
                manifest::UtcTime::parse_stamp(name).map(|(time, sequence)| (time, sequence, name))
            })
            .collect();
        stamps.sort();
        let (_, _, name) = stamps.pop().context("no backup directory")?;
        Ok(name.to_owned())
    }

    fn backup_file(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .stack
            .compose(&["exec", "-T", "backup-cron", "cat", path])
            .quiet()
            .output()?
            .stdout)
    }

    fn backup_verify_restore(&self) -> anyhow::Result<String> {
        self.exec_backup(&["once"]).run()?;
        self.exec_backup(&["verify"]).run()?;
        let newest = self.newest_backup()?;
        let dump = self.backup_file(&format!("/backups/{newest}/supabase_db.sql.gz"))?;
        let storage = self.backup_file(&format!("/backups/{newest}/storage_buckets.tar.gz"))?;
        // The restoring role owns the empty target, as the docs have an operator do.
        self.stack
            .sql(DB, "create database restored owner gustav_backup")?;
        let restored = self.exec_backup(&["restore"]).quiet().read()?;
        let mut compared = Vec::new();
        for table in TABLES {
            let fingerprint = fingerprint_sql(table);
            let (source, copy) = (
                self.stack.sql(DB, &fingerprint)?,
                self.stack.sql("restored", &fingerprint)?,
            );
            ensure!(
                source == copy,
                "{table}: source {source} but restored {copy}"
            );
            compared.push(format!(
                "{table}={}",
                source.split(' ').next().unwrap_or("0")
            ));
        }
        Ok(format!(
            "once + verify ok, {} + {} bytes (dump + storage); backup-cron restore: {}; every row identical ({})",
            dump.len(),
            storage.len(),
            restored.rsplit(": ").next().unwrap_or_default(),
            compared.join(", ")
        ))
    }

    fn kill_a_worker(&self) -> anyhow::Result<String> {
        self.jobs_in_flight(40)?;
        let victim = self.stack.ids("learning-worker")?[0].clone();
        let sh = self.stack.sh;
        let killed_with = self.leased()?;
        cmd!(sh, "docker kill -s KILL {victim}")
            .quiet()
            .ignore_stdout()
            .run()?;
        let drained = self.drained()?;
        let format = "{{.State.Running}}";
        let state = cmd!(sh, "docker inspect --format {format} {victim}")
            .quiet()
            .read()?;
        if state.trim() != "true" {
            cmd!(sh, "docker start {victim}")
                .quiet()
                .ignore_stdout()
                .run()?;
        }
        self.stack.wait_healthy(Duration::from_secs(120))?;
        Ok(format!(
            "{killed_with} jobs leased at the kill; all drained {:.1} s later (lease {} s), restart policy: {}",
            drained.as_secs_f64(),
            LEASE.as_secs(),
            if state.trim() == "true" {
                "restarted it"
            } else {
                "left it stopped; started by hand"
            }
        ))
    }

    /// `/readyz` as seen inside the container (no network needed).
    fn readyz(&self, id: &str) -> anyhow::Result<String> {
        let sh = self.stack.sh;
        let probe = "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3";
        Ok(cmd!(sh, "docker exec {id} bash -c {probe}")
            .quiet()
            .ignore_status()
            .read()?)
    }

    fn started_at(&self, id: &str) -> anyhow::Result<String> {
        let sh = self.stack.sh;
        let format = "{{.State.StartedAt}} {{.RestartCount}}";
        Ok(cmd!(sh, "docker inspect --format {format} {id}")
            .quiet()
            .read()?)
    }

    fn partition_a_worker(&self) -> anyhow::Result<String> {
        self.jobs_in_flight(40)?;
        let victim = self.stack.ids("learning-worker")?[1].clone();
        let before = self.started_at(&victim)?;
        let network = self.stack.network();
        let sh = self.stack.sh;
        let cut = Instant::now();
        cmd!(sh, "docker network disconnect {network} {victim}")
            .quiet()
            .run()?;
        let unready = self.wait(
            "/readyz 503 on the cut-off worker",
            Duration::from_secs(60),
            || Ok(self.readyz(&victim)?.contains(" 503 ")),
        )?;
        // The fault itself: the cut lasts more than two leases, so its leases expire
        // and the other replica takes its jobs over.
        let hold = LEASE * 2 + Duration::from_secs(2);
        std::thread::sleep(hold.saturating_sub(cut.elapsed()));
        let healed = Instant::now();
        let healed_at = std::time::SystemTime::now();
        cmd!(sh, "docker network connect {network} {victim}")
            .quiet()
            .run()?;
        let ready = self.wait(
            "/readyz 200 after the heal",
            Duration::from_secs(60),
            || Ok(self.readyz(&victim)?.contains(" 200 ")),
        )?;
        self.add(30, Kinds::Only(fixtures::SubmissionKind::Text))?;
        self.drained()?;
        ensure!(
            self.started_at(&victim)? == before,
            "the cut-off worker was restarted; it should have resumed by itself"
        );
        let after_heal = checks::adapter_calls(&self.stack.logs(&victim)?)
            .iter()
            .filter(|call| call.at > healed_at)
            .count();
        ensure!(
            after_heal > 0,
            "the cut-off worker made no adapter call after the heal"
        );
        Ok(format!(
            "cut {:.0} s (lease {} s): not ready after {:.1} s, ready {:.1} s after the heal, {after_heal} calls after it, no restart; drained {:.1} s after the heal",
            healed.duration_since(cut).as_secs_f64(),
            LEASE.as_secs(),
            unready.as_secs_f64(),
            ready.as_secs_f64(),
            healed.elapsed().as_secs_f64()
        ))
    }

    fn listeners(&self) -> anyhow::Result<u64> {
        self.count(
            "select count(*) from pg_stat_activity where backend_type = 'client backend' \
             and usename = 'gustav_worker' and query ilike 'listen %'",
        )
    }

    fn restart_the_database(&self) -> anyhow::Result<String> {
        self.jobs_in_flight(40)?;
        let postgres = self.stack.id("postgres")?;
        let sh = self.stack.sh;
        let restarted = Instant::now();
        cmd!(sh, "docker restart {postgres}")
            .quiet()
            .ignore_stdout()
            .run()?;
        self.stack.wait_healthy(Duration::from_secs(120))?;
        let listening = self.wait("both workers LISTEN again", Duration::from_secs(60), || {
            Ok(self.listeners()? >= WORKERS as u64)
        })?;
        self.drained()?;
        Ok(format!(
            "workers LISTEN again {:.1} s after the restart returned; backlog drained {:.1} s after the restart",
            listening.as_secs_f64(),
            restarted.elapsed().as_secs_f64()
        ))
    }

    fn restart_the_database_during_a_backup(&self) -> anyhow::Result<String> {
        let postgres = self.stack.id("postgres")?;
        let lock =
            "begin; lock table public.courses in access exclusive mode; select pg_sleep(600);";
        let (held, backup) = std::thread::scope(|scope| -> anyhow::Result<(bool, bool)> {
            let spec = self.stack.spec.clone();
            let holder = scope.spawn(move || {
                let sh = Shell::new().expect("a shell");
                spec.on(&sh).sql(DB, lock).is_ok()
            });
            self.wait("the lock is held", Duration::from_secs(30), || {
                Ok(self.count(
                    "select count(*) from pg_locks where relation = 'public.courses'::regclass \
                     and mode = 'AccessExclusiveLock' and granted",
                )? == 1)
            })?;
            let spec = self.stack.spec.clone();
            let backup = scope.spawn(move || {
                let sh = Shell::new().expect("a shell");
                spec.on(&sh)
                    .compose(&["exec", "-T", "backup-cron", "backup-cron", "once"])
                    .quiet()
                    .ignore_stderr()
                    .run()
                    .is_ok()
            });
            self.wait(
                "pg_dump waits for the lock",
                Duration::from_secs(60),
                || {
                    Ok(self.count(
                        "select count(*) from pg_stat_activity where application_name = 'pg_dump' \
                     and wait_event_type = 'Lock'",
                    )? >= 1)
                },
            )?;
            let sh = self.stack.sh;
            cmd!(sh, "docker restart {postgres}")
                .quiet()
                .ignore_stdout()
                .run()?;
            Ok((
                holder.join().expect("no panic"),
                backup.join().expect("no panic"),
            ))
        })?;
        ensure!(!held, "the lock holder survived a database restart");
        ensure!(
            !backup,
            "a backup whose database restarted under it reported success"
        );
        let failed = self.newest_backup()?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&self.backup_file(&format!("/backups/{failed}/manifest.json"))?)
                .context("the failed run's manifest.json is not JSON")?;
        ensure!(
            manifest["status"] == "failed",
            "the interrupted run's manifest says {}",
            manifest["status"]
        );
        let partials = self
            .stack
            .compose(&[
                "exec",
                "-T",
                "backup-cron",
                "find",
                "/backups",
                "-name",
                "*.partial",
            ])
            .quiet()
            .read()?;
        ensure!(
            partials.trim().is_empty(),
            ".partial files left: {partials}"
        );
        self.stack.wait_healthy(Duration::from_secs(120))?;
        self.exec_backup(&["once"]).quiet().run()?;
        self.exec_backup(&["verify"]).quiet().run()?;
        Ok(format!(
            "the interrupted run failed with a manifest (status failed, {} in {}), no .partial left; the next run ok and verified",
            manifest["error"]["code"], manifest["error"]["step"]
        ))
    }

    fn stop_the_workers(&self) -> anyhow::Result<String> {
        self.jobs_in_flight(40)?;
        let in_flight = self.leased()?;
        let stopped = Instant::now();
        let since = self.sql("select clock_timestamp()")?;
        self.stack
            .compose(&["stop", "learning-worker"])
            .quiet()
            .run()?;
        let stop_seconds = stopped.elapsed().as_secs_f64();
        let still_leased = self.leased()?;
        ensure!(
            still_leased == 0,
            "{still_leased} jobs still leased after every worker stopped"
        );
        let released = self.count(&format!(
            "select count(*) from chaos_job_log where at >= '{}' and op = 'update' \
             and status = 'queued' and lease_key is null",
            since.trim()
        ))?;
        self.stack
            .compose(&["start", "learning-worker"])
            .quiet()
            .run()?;
        self.stack.wait_healthy(Duration::from_secs(120))?;
        let drained = self.drained()?;
        Ok(format!(
            "{in_flight} jobs leased at the stop; stopped in {stop_seconds:.1} s, {released} returned to the queue, none left leased; drained {:.1} s after the restart",
            drained.as_secs_f64()
        ))
    }

    fn check_images(&self, secrets: &Secrets) -> anyhow::Result<String> {
        let sh = self.stack.sh;
        let mut sizes = Vec::new();
        let mut haystack = String::new();
        for (service, image) in [
            ("postgres", "learning-platform-offline/postgres:15"),
            (
                "learning-worker",
                "learning-platform-offline/learning-worker:local",
            ),
            ("backup-cron", "learning-platform-offline/backup-cron:local"),
        ] {
            let facts = images::inspect(sh, image)?;
            ensure!(
                !facts.user.is_empty() && facts.user != "root" && facts.user != "0",
                "{image} runs as root (USER {:?})",
                facts.user
            );
            for id in self.stack.ids(service)? {
                let uid = cmd!(sh, "docker exec {id} id -u").quiet().read()?;
                ensure!(uid.trim() != "0", "{service} container {id} runs as root");
                haystack.push_str(&cmd!(sh, "docker inspect {id}").quiet().read()?);
                haystack.push_str(&self.stack.logs(&id)?);
            }
            haystack.push_str(&cmd!(sh, "docker image inspect {image}").quiet().read()?);
            haystack.push_str(
                &cmd!(sh, "docker history --no-trunc {image}")
                    .quiet()
                    .read()?,
            );
            let layers = cmd!(sh, "docker save {image}").quiet().output()?.stdout;
            haystack.push_str(&String::from_utf8_lossy(&layers));
            sizes.push(format!("{service} {} MB", facts.bytes / 1_000_000));
        }
        for (index, password) in secrets.passwords.iter().enumerate() {
            ensure!(
                !haystack.contains(password.as_str()),
                "secret {index} appears in an image layer, an inspect output or a log"
            );
        }
        Ok(format!(
            "non-root, healthy, no secret in layers, inspect or logs; sizes {}",
            sizes.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> String {
        std::fs::read_to_string(crate::project_root().join(path)).unwrap()
    }

    #[test]
    fn the_harness_and_the_override_files_agree() {
        let offline = read("deploy/compose.offline.yaml");
        for (service, image) in IMAGES {
            assert!(
                offline.contains(&format!("image: {image}")),
                "{service}: {image}"
            );
        }
        for role in &images::ROLES {
            assert!(
                offline.contains(&format!("${{{}:?", role.variable)),
                "{}",
                role.variable
            );
        }
        let e2e = read("deploy/compose.e2e.yaml");
        assert!(e2e.contains(&format!("WORKER_LEASE_SECONDS: \"{}\"", LEASE.as_secs())));
        assert!(e2e.contains("AI_STUB_CALL_LOG: /tmp/stub-calls.log"));
        assert!(
            e2e.contains("worker_core::pipeline=debug"),
            "the adapter-call events"
        );
    }

    #[test]
    fn the_offsite_override_passes_keys_as_secrets_only() {
        let offsite = read("deploy/compose.offsite.yaml");
        for variable in [
            "BACKUP_S3_URL",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID_FILE: /run/secrets/s3_access_key_id",
            "AWS_SECRET_ACCESS_KEY_FILE: /run/secrets/s3_secret_access_key",
            "BACKUP_S3_RETENTION_DAYS",
            "BACKUP_AGE_RECIPIENTS",
        ] {
            assert!(offsite.contains(variable), "{variable}");
        }
        for key in [
            "AWS_ACCESS_KEY_ID:",
            "AWS_SECRET_ACCESS_KEY:",
            "AWS_SESSION_TOKEN:",
        ] {
            assert!(!offsite.contains(key), "{key} must come from a secret file");
        }
        assert!(
            offsite
                .contains("secrets: [backup_database_url, s3_access_key_id, s3_secret_access_key]"),
            "the override keeps the base file's secret"
        );
        assert!(
            !offsite.contains("BACKUP_AGE_IDENTITY_FILE"),
            "no private key on the backup host"
        );
    }

    #[test]
    fn the_worker_stops_within_compose_s_grace_period() {
        let compose = read("compose.yaml");
        let grace: u64 = compose
            .split("stop_grace_period: ")
            .nth(1)
            .and_then(|rest| rest.split('s').next())
            .and_then(|seconds| seconds.parse().ok())
            .expect("compose.yaml sets the worker's stop_grace_period in seconds");
        assert!(
            grace > 30,
            "more than WORKER_SHUTDOWN_GRACE_SECONDS' default of 30 s"
        );
    }
}
