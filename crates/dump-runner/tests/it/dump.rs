//! `dump`: real dumps, secrets, timeouts, cancellation, classification, floods, disk full.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dsn::Dsn;
use dump_runner::{Cancellation, DumpJob, Error, dump};
use fixtures::{FakePgDump, TestDb};
use manifest::ErrorCode;
use sha2::{Digest as _, Sha256};

/// A password with every character that needs escaping somewhere.
const HOSTILE_PASSWORD: &str = "p:a@s%s\\ word";

struct Setup {
    db: TestDb,
    role: String,
    out: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let db = TestDb::new().await.unwrap();
        let role = db.create_backup_role(HOSTILE_PASSWORD).await.unwrap();
        let client = db.connect().await.unwrap();
        let course = fixtures::course()
            .title("Seeded course title")
            .insert(&client)
            .await
            .unwrap();
        let task = fixtures::task()
            .course(&course)
            .insert(&client)
            .await
            .unwrap();
        fixtures::job()
            .submission(
                &fixtures::submission()
                    .task(&task)
                    .insert(&client)
                    .await
                    .unwrap(),
            )
            .insert(&client)
            .await
            .unwrap();
        Setup {
            db,
            role,
            out: tempfile::tempdir().unwrap(),
        }
    }

    fn url_with_password(&self, password: &str) -> String {
        self.db.url_as(&self.role, password)
    }

    fn dsn(&self) -> Dsn {
        Dsn::parse(&self.url_with_password(HOSTILE_PASSWORD)).unwrap()
    }

    fn real_pg_dump(&self) -> PathBuf {
        self.db
            .server()
            .cluster()
            .unwrap()
            .bin_dir()
            .join("pg_dump")
    }

    fn output(&self) -> PathBuf {
        self.out.path().join("supabase_db.sql.gz")
    }

    fn run(
        &self,
        program: &Path,
        dsn: &Dsn,
        timeout: Duration,
    ) -> Result<dump_runner::Dumped, Error> {
        let cancellation = Cancellation::new();
        let output = self.output();
        dump(&DumpJob {
            program,
            dsn,
            output: &output,
            timeout,
            compression: dump_runner::Compression::gzip(6),
            recipients: None,
            cancellation: &cancellation,
            progress_interval: dump_runner::PROGRESS_INTERVAL,
        })
    }

    #[track_caller]
    fn assert_no_files(&self) {
        let names: Vec<_> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }
}

/// Runs a fake pg_dump with the production progress interval.
fn run_fake(
    fake: &FakePgDump,
    dsn: &Dsn,
    output: &Path,
    timeout: Duration,
    cancellation: &Cancellation,
) -> Result<dump_runner::Dumped, Error> {
    dump(&DumpJob {
        program: fake.path(),
        dsn,
        output,
        timeout,
        compression: dump_runner::Compression::gzip(6),
        recipients: None,
        cancellation,
        progress_interval: dump_runner::PROGRESS_INTERVAL,
    })
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn real_dump_over_tcp_with_a_hostile_password() {
    let setup = Setup::new().await;

    let dumped = tokio::task::block_in_place(|| {
        setup.run(
            &setup.real_pg_dump(),
            &setup.dsn(),
            Duration::from_secs(120),
        )
    })
    .unwrap();

    let bytes = std::fs::read(setup.output()).unwrap();
    assert_eq!(dumped.written.bytes, bytes.len() as u64);
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(dumped.written.sha256, digest);
    let sql = gunzip(&setup.output());
    assert_eq!(dumped.written.uncompressed_bytes, Some(sql.len() as u64));
    assert!(
        sql.contains("CREATE TABLE public.learning_submissions"),
        "{sql}"
    );
    assert!(sql.contains("Seeded course title"));
    assert!(!sql.contains("OWNER TO"), "--no-owner");
    assert!(!setup.out.path().join("supabase_db.sql.gz.partial").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn password_reaches_pg_dump_only_through_a_pgpass_file_that_is_removed() {
    let setup = Setup::new().await;
    let wrapper = FakePgDump::wrapping(&setup.real_pg_dump()).unwrap();

    tokio::task::block_in_place(|| {
        setup.run(wrapper.path(), &setup.dsn(), Duration::from_secs(120))
    })
    .unwrap();

    let (argv, env) = (wrapper.recorded("argv"), wrapper.recorded("env"));
    for seen in [&argv, &env] {
        assert!(!seen.contains(HOSTILE_PASSWORD), "password leaked: {seen}");
        assert!(!seen.contains("p%3Aa"), "encoded password leaked: {seen}");
        assert!(!seen.contains("://"), "a URL reached the child: {seen}");
    }
    assert!(!env.contains("PGPASSWORD"), "{env}");
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        ["--format=plain", "--no-owner", "--no-password"]
    );
    assert!(
        env.lines()
            .any(|line| line == format!("PGUSER={}", setup.role)),
        "{env}"
    );
    let pgpass = wrapper.recorded("pgpassfile");
    let pgpass = Path::new(pgpass.trim());
    assert!(pgpass.is_absolute(), "PGPASSFILE was set: {env}");
    assert!(
        !pgpass.exists(),
        "the pgpass file is removed after the step"
    );
    assert!(
        !pgpass.parent().unwrap().exists(),
        "and so is its private directory"
    );
}

#[test]
fn hanging_pg_dump_with_a_child_is_killed_at_the_timeout() {
    let fake = FakePgDump::hanging_ignoring_sigterm().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("keycloak_db.sql.gz");
    let dsn = Dsn::parse("postgresql://u:secret@127.0.0.1:9/db").unwrap();
    let cancellation = Cancellation::new();

    let error = run_fake(&fake, &dsn, &output, Duration::from_secs(1), &cancellation).unwrap_err();

    assert_eq!(error.code(), ErrorCode::PgDumpTimeout, "{error}");
    assert_eq!(
        fake.recorded_pids().len(),
        2,
        "the fake and its child were started"
    );
    let survivors = fake.survivors(Duration::from_secs(10));
    assert!(
        survivors.is_empty(),
        "pids {survivors:?} survived the timeout"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no artifact, no .partial"
    );
}

#[test]
fn cancellation_ends_the_dump_and_its_group() {
    let fake = FakePgDump::hanging().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("supabase_db.sql.gz");
    let dsn = Dsn::parse("postgresql://u@127.0.0.1:9/db").unwrap();
    let cancellation = Cancellation::new();

    let error = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            run_fake(
                &fake,
                &dsn,
                &output,
                Duration::from_secs(600),
                &cancellation,
            )
        });
        // Cancel once the fake and its child are running (a condition, not a sleep).
        let deadline = Instant::now() + Duration::from_secs(30);
        while fake.recorded_pids().len() < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        cancellation.cancel();
        running.join().unwrap().unwrap_err()
    });

    assert_eq!(error.code(), ErrorCode::Interrupted, "{error}");
    let survivors = fake.survivors(Duration::from_secs(10));
    assert!(survivors.is_empty(), "pids {survivors:?} survived");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[track_caller]
fn check_classification(setup: &Setup, program: &Path, dsn: &Dsn, expected: ErrorCode) {
    let error = setup
        .run(program, dsn, Duration::from_secs(120))
        .unwrap_err();
    assert_eq!(error.code(), expected, "{error}");
    setup.assert_no_files();
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_of_the_real_pg_dump_get_their_codes() {
    let setup = Setup::new().await;
    let pg_dump = setup.real_pg_dump();
    let cluster = setup.db.server().cluster().unwrap();
    let client = setup.db.connect().await.unwrap();
    client
        .batch_execute(
            "create table teachers_only (secret text); revoke all on teachers_only from public",
        )
        .await
        .unwrap();
    let outsider = format!("outsider_{}", fixtures::random_token(8).to_lowercase());
    client
        .batch_execute(&format!("create role {outsider} login password 'pw'"))
        .await
        .unwrap();
    let reader_without_bypassrls = format!("reader_{}", fixtures::random_token(8).to_lowercase());
    client
        .batch_execute(&format!(
            "create role {reader_without_bypassrls} login password 'pw' in role pg_read_all_data"
        ))
        .await
        .unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    tokio::task::block_in_place(|| {
        let wrong_password = Dsn::parse(&setup.url_with_password("not-the-password")).unwrap();
        check_classification(&setup, &pg_dump, &wrong_password, ErrorCode::DbAuthFailed);
        let refused = Dsn::parse(&format!("postgresql://u:pw@127.0.0.1:{closed_port}/db")).unwrap();
        check_classification(&setup, &pg_dump, &refused, ErrorCode::DbUnreachable);
        let unknown_db = Dsn::parse(&format!(
            "postgresql://{}:{}@{}:{}/no_such_database",
            setup.role,
            "p%3Aa%40s%25s%5C%20word",
            fixtures::HOST,
            cluster.port()
        ))
        .unwrap();
        check_classification(&setup, &pg_dump, &unknown_db, ErrorCode::DbNotFound);
        let unprivileged = Dsn::parse(&format!(
            "postgresql://{outsider}:pw@{}:{}/{}",
            fixtures::HOST,
            cluster.port(),
            setup.db.name()
        ))
        .unwrap();
        check_classification(
            &setup,
            &pg_dump,
            &unprivileged,
            ErrorCode::DbPermissionDenied,
        );
        // Without BYPASSRLS, pg_dump would silently miss rows of RLS tables; it refuses.
        let rls_bound = Dsn::parse(&format!(
            "postgresql://{reader_without_bypassrls}:pw@{}:{}/{}",
            fixtures::HOST,
            cluster.port(),
            setup.db.name()
        ))
        .unwrap();
        check_classification(&setup, &pg_dump, &rls_bound, ErrorCode::DbPermissionDenied);
        check_classification(
            &setup,
            Path::new("/nonexistent/pg_dump"),
            &setup.dsn(),
            ErrorCode::PgDumpNotFound,
        );
        check_classification(
            &setup,
            Path::new("no-such-pg_dump-on-path"),
            &setup.dsn(),
            ErrorCode::PgDumpNotFound,
        );
    });
}

#[test]
fn fake_failures_get_their_codes_and_keep_stderr_for_the_log() {
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("supabase_db.sql.gz");
    let dsn = Dsn::parse("postgresql://u:pw@db.internal/app").unwrap();
    let cancellation = Cancellation::new();
    let cases = [
        (
            "pg_dump: error: aborting because of server version mismatch\n",
            ErrorCode::PgDumpVersionMismatch,
        ),
        (
            "pg_dump: error: something nobody has seen before\n",
            ErrorCode::PgDumpFailed,
        ),
        (
            "pg_dump: error: connection to server at \"db.internal\" (10.1.2.3), port 5432 failed: timeout expired\n",
            ErrorCode::DbUnreachable,
        ),
    ];
    for (stderr, expected) in cases {
        let fake = FakePgDump::failing(
            1,
            &format!("{stderr}postgresql://u:hunter2@db.internal/app\n"),
        )
        .unwrap();
        let error =
            run_fake(&fake, &dsn, &output, Duration::from_secs(60), &cancellation).unwrap_err();
        assert_eq!(error.code(), expected, "{stderr}");
        let Error::Failed { stderr: kept, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(kept.contains(stderr.trim()), "{kept}");
        assert!(!kept.contains("hunter2"), "stderr is redacted: {kept}");
        assert!(
            !error.to_string().contains("db.internal"),
            "Display has no stderr: {error}"
        );
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }
}

#[test]
fn a_stderr_flood_cannot_block_the_dump() {
    let fake = FakePgDump::flooding_stderr(40 * 1024 * 1024).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("supabase_db.sql.gz");
    let dsn = Dsn::parse("postgresql://u@h/db").unwrap();
    let cancellation = Cancellation::new();

    let dumped = run_fake(
        &fake,
        &dsn,
        &output,
        Duration::from_secs(300),
        &cancellation,
    )
    .unwrap();

    assert_eq!(gunzip(&output), "select 1;\n");
    assert!(
        dumped.stderr.len() <= dump_runner::STDERR_TAIL,
        "stderr kept bounded: {}",
        dumped.stderr.len()
    );
    assert!(
        dumped.stderr.len() > dump_runner::STDERR_TAIL / 2,
        "the end is kept"
    );
    assert!(dumped.stderr.contains("a very chatty message"));
}

#[test]
fn disk_full_gives_disk_full_and_no_partial() {
    let fake = FakePgDump::writing(4 * 1024 * 1024).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("supabase_db.sql.gz");
    // /dev/full fails every write with ENOSPC, like a full file system.
    std::os::unix::fs::symlink("/dev/full", out.path().join("supabase_db.sql.gz.partial")).unwrap();
    let dsn = Dsn::parse("postgresql://u@h/db").unwrap();
    let cancellation = Cancellation::new();

    let error = run_fake(
        &fake,
        &dsn,
        &output,
        Duration::from_secs(300),
        &cancellation,
    )
    .unwrap_err();

    assert_eq!(error.code(), ErrorCode::DiskFull, "{error}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no .partial left"
    );
    let survivors = fake.survivors(Duration::from_secs(10));
    assert!(survivors.is_empty(), "pids {survivors:?} survived");
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_long_dump_logs_its_progress() {
    let fake = FakePgDump::writing_slowly(6, Duration::from_millis(200)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("supabase_db.sql.gz");
    let dsn = Dsn::parse("postgresql://u@h/db").unwrap();
    let cancellation = Cancellation::new();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();

    tracing::subscriber::with_default(subscriber, || {
        dump(&DumpJob {
            program: fake.path(),
            dsn: &dsn,
            output: &output,
            timeout: Duration::from_secs(60),
            compression: dump_runner::Compression::gzip(6),
            recipients: None,
            cancellation: &cancellation,
            progress_interval: Duration::from_millis(100),
        })
        .unwrap();
    });

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let progress_lines = logs
        .lines()
        .filter(|line| line.contains("pg_dump in progress"))
        .count();
    assert!(
        progress_lines >= 2,
        "progress is logged while the dump runs:\n{logs}"
    );
    assert!(logs.contains("mib_per_s"), "{logs}");
}
