//! End-to-end tests of the `learning-worker` binary as a process against the
//! fixtures cluster.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod config;

use fixtures::{StubCalls, TestDb, eventually};

fn learning_worker() -> Command {
    fixtures::command(Path::new(env!("CARGO_BIN_EXE_learning-worker")))
}

/// The binary configured against a test database as `gustav_worker`.
struct World {
    db: TestDb,
    env: BTreeMap<String, String>,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        World::on(TestDb::new().await.unwrap())
    }

    fn on(db: TestDb) -> World {
        let scratch = tempfile::tempdir().unwrap();
        let log = scratch.path().join("calls.log");
        let mut env = BTreeMap::new();
        env.insert(
            "LEARNING_DATABASE_URL".to_owned(),
            db.url_as("gustav_worker", db.server().worker_password()),
        );
        env.insert("AI_STUB_CALL_LOG".to_owned(), log.display().to_string());
        env.insert("WORKER_CONCURRENCY".to_owned(), "4".to_owned());
        World {
            db,
            env,
            log,
            _scratch: scratch,
        }
    }

    fn set(&mut self, name: &str, value: &str) -> &mut World {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = learning_worker();
        command.args(args).envs(&self.env);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) };
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_completes_everything_and_exits_0_also_with_failures() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    let secret_text = "My very private answer about photosynthesis";
    for index in 0..6 {
        fixtures::submission()
            .student(&format!("student-secret-{index}"))
            .text(secret_text)
            .insert_with_job(&client)
            .await
            .unwrap();
    }
    fixtures::submission()
        .image()
        .student("student-secret-x")
        .insert_with_job(&client)
        .await
        .unwrap();
    world
        .set("AI_STUB_FAIL", "vision:permanent:1")
        .set("RUST_LOG", "trace");

    let output = tokio::task::block_in_place(|| world.run(&["drain"]));

    let logs = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{logs}");
    let counts: Vec<(String, i64)> = client
        .query(
            "select analysis_status, count(*) from learning_submissions group by 1 order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        counts,
        [("completed".to_owned(), 6), ("failed".to_owned(), 1)]
    );
    assert!(
        !logs.contains(secret_text),
        "no submission text in trace logs"
    );
    assert!(
        !logs.contains("student-secret"),
        "no student_sub in trace logs"
    );
    assert!(
        logs.contains("job ended"),
        "the logs do describe the work:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_errors_exit_2_with_one_line() {
    let world = World::new().await;
    let superuser = {
        let config = world.db.config();
        let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
        world.db.url_as("postgres", &password)
    };
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("LEARNING_DATABASE_URL", String::new())],
            "no database configured",
        ),
        (
            vec![(
                "LEARNING_DATABASE_URL",
                "postgres://u:hunter2@h:0/db".to_owned(),
            )],
            "LEARNING_DATABASE_URL is not a valid",
        ),
        (vec![("AI_BACKEND", "gpt".to_owned())], "AI_BACKEND"),
        (
            vec![("AI_STUB_FAIL", "ocr:sometimes:1".to_owned())],
            "AI_STUB_FAIL",
        ),
        (vec![("LOG_FORMAT", "xml".to_owned())], "LOG_FORMAT"),
        (
            vec![("WORKER_HEALTH_ADDR", "localhost".to_owned())],
            "WORKER_HEALTH_ADDR",
        ),
        (
            vec![("LEARNING_DATABASE_URL", superuser.clone())],
            "refusing to run as privileged role",
        ),
        (
            vec![
                ("AI_BACKEND", "local".to_owned()),
                ("OLLAMA_BASE_URL", "ollama:11434".to_owned()),
            ],
            "OLLAMA_BASE_URL: expected an http:// or https:// URL",
        ),
        (
            vec![(
                "LEARNING_DATABASE_URL",
                "postgres://u:hunter2@h/db?sslmode=verify-ca".to_owned(),
            )],
            "LEARNING_DATABASE_URL: sslmode=verify-ca needs sslrootcert",
        ),
        (
            vec![(
                "LEARNING_DATABASE_URL",
                "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
                    .to_owned(),
            )],
            "LEARNING_DATABASE_URL: sslrootcert: cannot read /nonexistent/ca.pem: No such file or directory",
        ),
        (
            vec![(
                "LEARNING_DATABASE_URL",
                "postgres://u:hunter2@h/db?sslmode=verify_full".to_owned(),
            )],
            "sslmode must be disable, allow, prefer, require, verify-ca or verify-full",
        ),
    ];
    for (env, expected) in cases {
        let mut command = world.command(&["drain"]);
        for (name, value) in &env {
            command.env(name, value);
        }
        let output = tokio::task::block_in_place(|| command.output().unwrap());
        let logs = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {logs}");
        let error_lines: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains("configuration error"))
            .collect();
        assert_eq!(error_lines.len(), 1, "{logs}");
        assert!(error_lines[0].contains(expected), "{env:?}: {logs}");
        assert!(!logs.contains("hunter2"));
    }
    let allowed = tokio::task::block_in_place(|| {
        world
            .command(&["drain"])
            .env("LEARNING_DATABASE_URL", &superuser)
            .env("ALLOW_SERVICE_DSN_FOR_TESTING", "true")
            .output()
            .unwrap()
    });
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_concurrency_falls_back_to_one_without_showing_it() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    fixtures::job().insert(&client).await.unwrap();
    world.set("WORKER_CONCURRENCY", "64");
    let capped = tokio::task::block_in_place(|| world.run(&["drain"]));
    let logs = stderr(&capped);
    assert_eq!(capped.status.code(), Some(0), "{logs}");
    assert!(
        logs.contains("WORKER_CONCURRENCY=64 is above WORKER_CONCURRENCY_CAP=4; using 4"),
        "{logs}"
    );

    fixtures::job().insert(&client).await.unwrap();
    world.set("WORKER_CONCURRENCY", "-7331");
    let invalid = tokio::task::block_in_place(|| world.run(&["drain"]));
    let logs = stderr(&invalid);
    assert_eq!(invalid.status.code(), Some(0), "{logs}");
    assert!(
        logs.contains("WORKER_CONCURRENCY: expected a whole number from 1 to")
            && logs.contains("the value is outside that range; using 1"),
        "{logs}"
    );
    assert!(!logs.contains("7331"), "the value is not shown: {logs}");
    assert_eq!(
        fixtures::completed_submissions(&client).await,
        2,
        "both runs did their job"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_for_gustav_worker_and_fails_for_a_superuser() {
    let world = World::new().await;
    let output = tokio::task::block_in_place(|| world.run(&["check"]));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    insta::assert_snapshot!(stdout);

    let config = world.db.config();
    let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
    let output = tokio::task::block_in_place(|| {
        world
            .command(&["check"])
            .env(
                "LEARNING_DATABASE_URL",
                world.db.url_as("postgres", &password),
            )
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("FAIL  role is not a superuser"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_s_job_is_finished_by_another_after_its_lease() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    let submissions = fixtures::submission()
        .image()
        .insert_many_with_jobs(&client, 3)
        .await
        .unwrap();
    world
        .set("AI_STUB_DELAY_MS", "1500")
        .set("WORKER_LEASE_SECONDS", "2")
        .set("WORKER_CONCURRENCY", "1");
    let mut victim = world.spawn(&["run"]);
    fixtures::one_job_leased(&client).await;
    signal(&victim, libc::SIGKILL);
    victim.wait().unwrap();

    world.set("WORKER_CONCURRENCY", "2");
    let (first, second) = tokio::task::block_in_place(|| {
        let first = world.spawn(&["drain"]);
        let second = world.spawn(&["drain"]);
        (
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        )
    });
    // The killed worker's job was leased when it died: a drain may end before the
    // lease expires, so finish with one more drain once it has.
    eventually(
        &client,
        "select count(*) = 0 or bool_and(leased_until < now()) from learning_submission_jobs",
        "lease expired",
    )
    .await;
    let last = tokio::task::block_in_place(|| world.run(&["drain"]));

    for output in [&first, &second, &last] {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    }
    let completed = fixtures::completed_submissions(&client).await;
    assert_eq!(completed, 3);
    let calls = StubCalls::read(&world.log);
    for submission in &submissions {
        assert_eq!(
            calls.count("feedback", submission.id),
            1,
            "each result computed and written once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_returns_unfinished_jobs_and_exits_0() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    let job = fixtures::job().insert(&client).await.unwrap();
    world
        .set("AI_STUB_DELAY_MS", "600000")
        .set("WORKER_SHUTDOWN_GRACE_SECONDS", "0.2");
    let worker = world.spawn(&["run"]);
    fixtures::one_job_leased(&client).await;

    signal(&worker, libc::SIGTERM);
    let output = tokio::task::block_in_place(|| worker.wait_with_output().unwrap());

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let row = client
        .query_one("select status, lease_key is null, retry_count from learning_submission_jobs where id = $1", &[&job.id])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, i32>(2), 0);
}

/// A loopback address with a port nobody listens on, for `WORKER_HEALTH_ADDR`.
fn free_loopback_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let response = http_exchange(
        addr,
        &[format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes()],
        false,
    );
    (response.status, String::from_utf8(response.body).unwrap())
}

/// Sends `pieces` one write each (then, with `half_close`, ends the sending side),
/// reads until the server closes, and parses the answer with `httparse` (a real
/// client's parser, not ours).
fn http_exchange(
    addr: &str,
    pieces: &[&[u8]],
    half_close: bool,
) -> fixtures::reference::HttpResponse {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in pieces {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
    }
    if half_close {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    fixtures::reference::parse_http_response(&response)
        .unwrap_or_else(|error| panic!("{error}: {:?}", String::from_utf8_lossy(&response)))
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_and_metrics_match_what_happened() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    for _ in 0..3 {
        fixtures::job().insert(&client).await.unwrap();
    }
    fixtures::submission()
        .image()
        .insert_with_job(&client)
        .await
        .unwrap();
    let addr = free_loopback_addr();
    world
        .set("WORKER_HEALTH_ADDR", &addr)
        .set("AI_STUB_FAIL", "vision:transient:1");
    let worker = world.spawn(&["run"]);
    eventually(
        &client,
        "select count(*) = 1 from learning_submission_jobs",
        "three done, one waiting for its retry",
    )
    .await;
    let metrics = || {
        let (status, body) = tokio::task::block_in_place(|| http_get(&addr, "/metrics"));
        assert_eq!(status, 200);
        body
    };
    fixtures::wait_until(
        "the retry in /metrics",
        Duration::from_secs(60),
        async || metrics().contains("ai_worker_retry_total{phase=\"vision\"} 1"),
    )
    .await;
    let metrics = metrics();

    assert!(
        metrics.contains("ai_worker_processed_total{status=\"completed\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ai_worker_processed_total{status=\"retried\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ai_worker_retry_total{phase=\"vision\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ai_worker_lease_lost_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ai_worker_job_duration_seconds_count 4"),
        "{metrics}"
    );
    assert_eq!(
        tokio::task::block_in_place(|| http_get(&addr, "/healthz")).0,
        200
    );
    assert_eq!(
        tokio::task::block_in_place(|| http_get(&addr, "/readyz")),
        (200, "ready\n".to_owned())
    );
    assert_eq!(
        tokio::task::block_in_place(|| http_get(&addr, "/nope")).0,
        404
    );
    fixtures::reference::promtool_check_metrics(&metrics).unwrap();
    tokio::task::block_in_place(|| {
        let metrics = http_exchange(
            &addr,
            &[b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n"],
            false,
        );
        assert_eq!(
            metrics.header("content-type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(metrics.header("connection"), Some("close"));
        let split = http_exchange(
            &addr,
            &[b"GE", b"T /heal", b"thz HTTP/1.1\r\nho", b"st: t\r\n\r\n"],
            false,
        );
        assert_eq!((split.status, split.body.as_slice()), (200, &b"ok\n"[..]));
        let posted = http_exchange(
            &addr,
            &[b"POST /healthz HTTP/1.1\r\ncontent-length: 0\r\n\r\n"],
            false,
        );
        assert_eq!(posted.status, 405);
        let garbage = http_exchange(&addr, &[&[0xff; 9000][..]], false);
        assert_eq!(garbage.status, 405);
        // A client that sends a request line and closes its side is answered.
        let closed_early = http_exchange(&addr, &[b"GET /readyz HTTP/1.1\r\n"], true);
        assert_eq!(closed_early.status, 200);
    });
    signal(&worker, libc::SIGTERM);
    assert!(
        tokio::task::block_in_place(|| worker.wait_with_output().unwrap())
            .status
            .success()
    );
}

#[test]
fn help_documents_commands_and_variables() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["drain", "--help"],
        &["check", "--help"],
    ] {
        let output = learning_worker().args(args).output().unwrap();
        assert!(output.status.success());
        insta::assert_snapshot!(
            format!("help_{}", args[0].trim_start_matches('-')),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let version = learning_worker().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        "learning-worker 0.1.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_with_jobs_longer_than_the_lease_process_each_once() {
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    let submissions = fixtures::submission()
        .image()
        .insert_many_with_jobs(&client, 4)
        .await
        .unwrap();
    // Vision and feedback take 1.2 s each against a 1 s lease: 2.4 × the lease.
    world
        .set("AI_STUB_DELAY_MS", "1200")
        .set("WORKER_LEASE_SECONDS", "1")
        .set("WORKER_CONCURRENCY", "2");

    let outputs = tokio::task::block_in_place(|| {
        let first = world.spawn(&["drain"]);
        let second = world.spawn(&["drain"]);
        [
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        ]
    });

    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    }
    let calls = StubCalls::read(&world.log);
    for submission in &submissions {
        assert_eq!(calls.count("vision", submission.id), 1, "vision once");
        assert_eq!(calls.count("feedback", submission.id), 1, "feedback once");
    }
    let completed = fixtures::completed_submissions(&client).await;
    assert_eq!(completed, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_backend_talks_to_ollama() {
    let ollama = fixtures::fake_ollama::FakeOllama::start().await;
    let mut world = World::new().await;
    let client = world.db.connect().await.unwrap();
    let storage = tempfile::tempdir().unwrap();
    let image = fixtures::submission()
        .image()
        .insert(&client)
        .await
        .unwrap();
    image.write_file(storage.path()).unwrap();
    fixtures::job()
        .submission(&image)
        .insert(&client)
        .await
        .unwrap();
    fixtures::job().insert(&client).await.unwrap();
    world
        .set("AI_BACKEND", "local")
        .set(
            "OLLAMA_BASE_URL",
            &ollama.base_url().replace("://", "://proxy:hunter2@"),
        )
        .set("RUST_LOG", "debug")
        .set(
            "LEARNING_STORAGE_ROOT",
            &storage.path().display().to_string(),
        );

    let output = tokio::task::block_in_place(|| world.run(&["drain"]));

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let completed = fixtures::completed_submissions(&client).await;
    assert_eq!(completed, 2);
    assert_eq!(
        ollama.requests(fixtures::fake_ollama::VISION_MODEL).len(),
        1
    );
    assert_eq!(
        ollama.requests(fixtures::fake_ollama::FEEDBACK_MODEL).len(),
        2
    );
    let logs = stderr(&output);
    assert!(logs.contains("AI backend: Ollama"), "{logs}");
    assert!(
        !logs.contains("hunter2"),
        "credentials in OLLAMA_BASE_URL stay out of the log: {logs}"
    );
}

/// Runs `args` to its end (at most a minute: a worker that waits forever on a
/// mistake fails here instead of hanging the suite); exit code, stdout, stderr.
/// `check` with `dsn` fails naming `code` and its `fix`, and `drain` gives up at once
/// saying the same; returns check's output and drain's log.
fn check_names_the_cause(world: &World, dsn: &str, code: &str, fix: &str) -> (String, String) {
    let mut check = world.command(&["check"]);
    check.env("LEARNING_DATABASE_URL", dsn);
    let (status, stdout, _) = tokio::task::block_in_place(|| run_to_end(check));
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.contains(&format!("({code})")), "{code}: {stdout}");
    assert!(
        stdout.contains(&format!("fix ({code}): ")) && stdout.contains(fix),
        "{code}: {stdout}"
    );

    let mut drain = world.command(&["drain"]);
    drain.env("LEARNING_DATABASE_URL", dsn);
    let (status, _, logs) = tokio::task::block_in_place(|| run_to_end(drain));
    assert_eq!(status, Some(1), "{code}: {logs}");
    assert!(logs.contains(code) && logs.contains(fix), "{code}: {logs}");
    (stdout, logs)
}

fn run_to_end(mut command: Command) -> (Option<i32>, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("still running after a minute: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_mistakes_are_named_with_their_fix_and_drain_gives_up_at_once() {
    let world = World::new().await;
    let admin = world.db.connect().await.unwrap();
    let empty = format!("empty_{}", fixtures::random_token(12).to_lowercase());
    admin
        .batch_execute(&format!("create database {empty}"))
        .await
        .unwrap();
    let wrong_password = world.db.url_as("gustav_worker", "not-the-password");
    let no_such_database = world
        .db
        .url_as("gustav_worker", world.db.server().worker_password())
        .replace(world.db.name(), "no_such_database");
    let without_schema = world
        .db
        .url_as("gustav_worker", world.db.server().worker_password())
        .replace(world.db.name(), &empty);
    let cases = [
        (
            wrong_password,
            "db_auth_failed",
            "check the user and password",
        ),
        (no_such_database, "db_not_found", "check the database name"),
        (
            without_schema,
            "db_schema_missing",
            "all of the platform's migrations applied",
        ),
    ];
    for (dsn, code, fix) in cases {
        let (_, logs) = check_names_the_cause(&world, &dsn, code, fix);
        assert!(!logs.contains("not-the-password"), "{logs}");
    }
    admin
        .batch_execute(&format!("drop database {empty}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_worker_with_a_wrong_password_stays_unready_and_says_why() {
    let mut world = World::new().await;
    let addr = free_loopback_addr();
    let wrong_password = world.db.url_as("gustav_worker", "not-the-password");
    world
        .set("WORKER_HEALTH_ADDR", &addr)
        .set("LEARNING_DATABASE_URL", &wrong_password);
    let mut worker = world.spawn(&["run"]);
    fixtures::wait_for("the health endpoint", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });

    let (status, body) = http_get(&addr, "/readyz");

    signal(&worker, libc::SIGTERM);
    let exit = worker.wait().unwrap();
    let mut logs = String::new();
    worker
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("db_auth_failed"), "{body}");
    assert_eq!(
        logs.matches("cannot use the database yet").count(),
        1,
        "logged once per cause: {logs}"
    );
    assert!(exit.code().is_some(), "{logs}");
}

/// A DSN for `db` as `gustav_worker` on `host` (`localhost`, the name the test
/// certificate carries, or `127.0.0.1`), with extra query parameters.
fn tls_dsn(db: &TestDb, host: &str, query: &str) -> String {
    let url = db.url_as_on(host, "gustav_worker", db.server().worker_password());
    format!("{url}?{query}")
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_tls_carries_every_connection_and_each_tls_mistake_is_named() {
    let ca = fixtures::TestCa::new().unwrap();
    let stranger = fixtures::TestCa::new().unwrap();
    let server = fixtures::Server::private_with_tls(&ca).unwrap();
    let mut world = World::on(TestDb::on(server).await.unwrap());
    let client = world.db.connect().await.unwrap();
    fixtures::submission()
        .insert_many_with_jobs(&client, 5)
        .await
        .unwrap();
    let root = |ca: &fixtures::TestCa| format!("sslrootcert={}", ca.ca_cert().display());
    let verified = tls_dsn(
        &world.db,
        fixtures::TLS_HOST,
        &format!("sslmode=verify-full&{}", root(&ca)),
    );

    let mut check = world.command(&["check"]);
    check.env("LEARNING_DATABASE_URL", &verified);
    let (status, stdout, logs) = tokio::task::block_in_place(|| run_to_end(check));
    assert_eq!(status, Some(0), "{stdout}{logs}");

    // A running worker: its pool and its LISTEN connection are both encrypted.
    world.set("LEARNING_DATABASE_URL", &verified);
    let mut worker = world.spawn(&["run"]);
    fixtures::eventually(
        &client,
        "select count(*) = 5 from learning_submissions where analysis_status = 'completed'",
        "the worker completes the jobs over TLS",
    )
    .await;
    fixtures::eventually(
        &client,
        "select count(*) > 0 from pg_stat_activity where usename = 'gustav_worker' and query ilike 'listen %'",
        "the worker listens for notifications",
    )
    .await;
    let plain: i64 = client
        .query_one(
            "select count(*) from pg_stat_activity join pg_stat_ssl using (pid) \
             where usename = 'gustav_worker' and not ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    signal(&worker, libc::SIGTERM);
    let exit = tokio::task::block_in_place(|| worker.wait().unwrap());
    assert_eq!(plain, 0, "every worker connection uses TLS");
    assert_eq!(exit.code(), Some(0));

    let refused = tls_dsn(
        &TestDb::new().await.unwrap(),
        fixtures::HOST,
        "sslmode=require",
    );
    let cases = [
        (
            tls_dsn(
                &world.db,
                fixtures::HOST,
                &format!("sslmode=verify-full&{}", root(&ca)),
            ),
            "db_tls_wrong_host",
            "connect by the host name the certificate names",
        ),
        (
            tls_dsn(
                &world.db,
                fixtures::TLS_HOST,
                &format!("sslmode=verify-full&{}", root(&stranger)),
            ),
            "db_tls_untrusted",
            "point sslrootcert in LEARNING_DATABASE_URL at the CA certificate",
        ),
        (refused, "db_tls_refused", "enable ssl on the server"),
    ];
    for (dsn, code, fix) in cases {
        let (stdout, _) = check_names_the_cause(&world, &dsn, code, fix);
        assert!(
            stdout.contains("FAIL  connect via LEARNING_DATABASE_URL: "),
            "the connection itself fails: {stdout}"
        );
    }
}
