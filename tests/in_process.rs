//! The end-to-end scenario in one test process: both services' libraries against a
//! throwaway cluster — two workers drain text, image and PDF submissions, each
//! exactly once; a backup with the real `pg_dump` verifies and restores into a
//! fresh database identical table by table. `cargo xtask e2e` runs the same checks
//! against the release binaries as processes.

use std::io::{Read as _, Write as _};
use std::process::Stdio;

use clap::Parser as _;
use e2e_tests::{
    STORAGE_KEYS_SQL, SUBMISSION_KINDS_SQL, SUMMARY_SQL, TABLES, check_all_completed,
    check_exactly_once, fingerprint_sql, write_stored_files,
};
use fixtures::seed::{self, Kinds};
use fixtures::{StubCalls, TestDb};

const SUBMISSIONS: u32 = 30;
const BACKUP_PASSWORD: &str = "e2e:backup@secret";

/// A query's text rows, one a line, as `psql -At` gives them.
async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.query(sql, &[]).await.unwrap();
    let lines: Vec<String> = rows.iter().map(|row| row.get::<_, String>(0)).collect();
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_complete_each_submission_once_and_the_backup_restores_identically() {
    let db = TestDb::new().await.unwrap();
    let client = db.connect().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let storage = scratch.path().join("storage");
    client
        .batch_execute(
            &(seed::tasks_sql(2, 2)
                + &seed::submissions(SUBMISSIONS)
                    .kinds(Kinds::Blocks { image: 6, file: 4 })
                    .sql()),
        )
        .await
        .unwrap();
    write_stored_files(&storage, &text_rows(&client, STORAGE_KEYS_SQL).await).unwrap();

    let calls = scratch.path().join("calls.log");
    let worker = || {
        let cli = learning_worker::cli::Cli::parse_from([
            "learning-worker",
            "drain",
            "--concurrency",
            "3",
            "--storage-root",
            storage.to_str().unwrap(),
        ]);
        let url = db.url_as("gustav_worker", db.server().worker_password());
        let env = dsn::Environment::from_pairs([
            ("LEARNING_DATABASE_URL", url.as_str()),
            ("AI_STUB_CALL_LOG", calls.to_str().unwrap()),
            ("AI_STUB_DELAY_MS", "5"),
        ]);
        let config = learning_worker::config::load(&cli.settings, &env).unwrap();
        learning_worker::run(learning_worker::cli::Command::Drain, config)
    };
    let (first, second) = tokio::join!(worker(), worker());
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    check_all_completed(&text_rows(&client, SUMMARY_SQL).await, SUBMISSIONS as usize).unwrap();
    check_exactly_once(
        &text_rows(&client, SUBMISSION_KINDS_SQL).await,
        &StubCalls::read(&calls),
    )
    .unwrap();

    let role = db.create_backup_role(BACKUP_PASSWORD).await.unwrap();
    let backups = scratch.path().join("backups");
    let cluster = db.server().require_cluster().unwrap();
    let common = backup_cron::cli::Common {
        backup_dir: Some(backups.display().to_string()),
        log_format: None,
        metrics_file: None,
    };
    let settings = backup_cron::cli::BackupSettings {
        storage_root: Some(storage.display().to_string()),
        retention: backup_cron::cli::RetentionSettings {
            retention_days: None,
            keep_min: None,
        },
        pg_timeout_seconds: None,
        compression: None,
        compression_level: None,
        pg_dump: Some(cluster.bin_dir().join("pg_dump").display().to_string()),
        age_recipients: None,
        age_recipients_file: None,
        drill: None,
    };
    let restore = backup_cron::cli::RestoreSettings {
        psql: None,
        restore_timeout_seconds: None,
        identity: backup_cron::cli::IdentitySettings {
            age_identity_file: None,
        },
    };
    let url = db.url_as(&role, BACKUP_PASSWORD);
    let env = dsn::Environment::from_pairs([("SESSION_DATABASE_URL", url.as_str())]);
    let offsite = backup_cron::cli::OffsiteSettings {
        s3_url: None,
        s3_timeout_seconds: None,
        s3_retention_days: None,
    };
    let config =
        backup_cron::config::run_config(&common, &settings, &restore, &offsite, &env).unwrap();
    let outcome = tokio::task::block_in_place(|| {
        backup_cron::run::run_once(
            &config,
            backup_cron::TOOL,
            &dump_runner::Cancellation::new(),
        )
    });
    assert!(matches!(outcome, backup_cron::run::RunOutcome::Ok));
    let verified = backup_cron::inspect::verify(&backups, None);
    assert!(verified.good, "{}", verified.text);

    let runs = manifest::BackupDir::new(&backups).list().unwrap();
    assert_eq!(runs.len(), 1, "one run directory: {runs:?}");
    let newest = backups.join(&runs[0].name);
    let mut dump = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(newest.join("supabase_db.sql.gz")).unwrap())
        .read_to_end(&mut dump)
        .unwrap();
    // Named like the fixtures' databases, so a failed run's copy is swept later.
    let restored = format!("fx_{}_restored", std::process::id());
    client
        .batch_execute(&format!("create database {restored}"))
        .await
        .unwrap();
    let mut psql = cluster
        .client_command("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            fixtures::SUPERUSER,
            "-d",
            &restored,
            "-h",
        ])
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    psql.stdin.take().unwrap().write_all(&dump).unwrap();
    assert!(
        psql.wait().unwrap().success(),
        "the dump restores without an error"
    );

    let mut copy_config = db.config();
    copy_config.dbname(&restored);
    let (copy, connection) = copy_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    for table in TABLES {
        let sql = fingerprint_sql(table);
        assert_eq!(
            text_rows(&client, &sql).await,
            text_rows(&copy, &sql).await,
            "{table}"
        );
    }
    drop(copy);
    client
        .batch_execute(&format!("drop database {restored}"))
        .await
        .unwrap();
}
