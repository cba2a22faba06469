//! Bad configuration: exit 2, one clear line naming the variable, nothing created;
//! a held lock: exit 3, nothing touched. And `--help`.

use std::path::Path;

use crate::support::{backup_cron, text};

/// Runs `once` with `env` (BACKUP_DIR below a fresh temp dir unless overridden)
/// and checks exit 2, a single stderr line mentioning `expected`, and that the
/// temp dir is still empty.
#[track_caller]
fn check(env: &[(&str, &str)], expected: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let backup_dir = scratch.path().join("backups");
    let mut command = backup_cron();
    command
        .arg("once")
        .env("BACKUP_DIR", &backup_dir)
        .env("DATABASE_URL", "postgresql://u:pw@db.internal/app");
    for (name, value) in env {
        match *value {
            "<unset>" => command.env_remove(name),
            value => command.env(
                name,
                value.replace("$SCRATCH", &scratch.path().display().to_string()),
            ),
        };
    }
    let output = command.output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{env:?}: {stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(expected), "{env:?}: {stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "no secret in the message: {stderr}"
    );
    let created: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let allowed = ["dsn-file", "file"];
    assert!(
        created
            .iter()
            .all(|name| allowed.contains(&name.to_str().unwrap())),
        "{env:?} created {created:?}"
    );
}

#[test]
fn missing_backup_dir() {
    check(&[("BACKUP_DIR", "<unset>")], "BACKUP_DIR is required");
    check(&[("BACKUP_DIR", "")], "BACKUP_DIR is required");
}

#[test]
fn missing_database() {
    check(
        &[("DATABASE_URL", "<unset>")],
        "SESSION_DATABASE_URL, BACKUP_DATABASE_URL, DATABASE_URL",
    );
    check(&[("DATABASE_URL", "")], "no database configured");
}

#[test]
fn unparsable_dsns_name_the_variable_not_the_value() {
    check(
        &[("DATABASE_URL", "postgres://u:hunter2@db:99999/app")],
        "DATABASE_URL is not a valid",
    );
    check(
        &[("SESSION_DATABASE_URL", "mysql://u:hunter2@db/app")],
        "SESSION_DATABASE_URL is not a valid",
    );
    check(
        &[(
            "KC_DB_URL",
            "jdbc:postgresql://kc/db?password=hunter2&password=x",
        )],
        "KC_DB_URL is not a valid",
    );
    check(
        &[("DATABASE_URL", "host=db password='hunter2")],
        "DATABASE_URL is not a valid",
    );
}

#[test]
fn both_name_and_file() {
    check(
        &[("DATABASE_URL_FILE", "/dev/null")],
        "both DATABASE_URL and DATABASE_URL_FILE are set",
    );
}

#[test]
fn unreadable_secret_file() {
    check(
        &[
            ("DATABASE_URL", "<unset>"),
            ("BACKUP_DATABASE_URL_FILE", "$SCRATCH/missing"),
        ],
        "BACKUP_DATABASE_URL_FILE: cannot read",
    );
}

#[test]
fn invalid_numbers() {
    check(&[("RETENTION_DAYS", "abc")], "RETENTION_DAYS");
    check(&[("RETENTION_DAYS", "-1")], "RETENTION_DAYS");
    check(&[("BACKUP_KEEP_MIN", "1.5")], "BACKUP_KEEP_MIN");
    check(
        &[("BACKUP_PG_TIMEOUT_SECONDS", "0")],
        "BACKUP_PG_TIMEOUT_SECONDS",
    );
    check(
        &[("BACKUP_PG_TIMEOUT_SECONDS", "99999999999999999999999")],
        "BACKUP_PG_TIMEOUT_SECONDS",
    );
    check(
        &[("BACKUP_COMPRESSION_LEVEL", "0")],
        "BACKUP_COMPRESSION_LEVEL: expected a whole number from 1 to 9",
    );
    check(
        &[("BACKUP_COMPRESSION_LEVEL", "10")],
        "BACKUP_COMPRESSION_LEVEL",
    );
    check(&[("LOG_FORMAT", "xml")], "LOG_FORMAT");
}

#[test]
fn unwritable_backup_dir() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("file"), b"").unwrap();
    check(
        &[(
            "BACKUP_DIR",
            &format!("{}/file/backups", scratch.path().display()),
        )],
        "BACKUP_DIR",
    );
}

#[test]
fn invalid_schedule_for_run() {
    for (schedule, expected) in [
        ("61 * * * *", "BACKUP_SCHEDULE"),
        ("0 0 31 2 *", "never matches"),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let output = backup_cron()
            .arg("run")
            .env("BACKUP_DIR", scratch.path().join("b"))
            .env("DATABASE_URL", "postgresql://u@h/db")
            .env("BACKUP_SCHEDULE", schedule)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{schedule}");
        assert!(
            text(&output).1.contains(expected),
            "{schedule}: {}",
            text(&output).1
        );
        assert!(!scratch.path().join("b").exists());
    }
}

#[test]
fn held_lock_exits_3_and_touches_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let backups = manifest::BackupDir::new(scratch.path());
    let _held = backups.lock().unwrap();
    let output = backup_cron()
        .arg("once")
        .env("BACKUP_DIR", scratch.path())
        .env("DATABASE_URL", "postgresql://u@h/db")
        .env("PG_DUMP", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output).1);
    let entries: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, [".lock"]);
}

#[test]
fn once_flag_is_an_alias() {
    let scratch = tempfile::tempdir().unwrap();
    let output = backup_cron()
        .arg("--once")
        .env("BACKUP_DIR", scratch.path())
        .env("DATABASE_URL", "postgresql://u@h/db")
        .env("PG_DUMP", "/nonexistent/pg_dump")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "a run happened and failed: {}",
        text(&output).1
    );
    assert!(
        Path::new(&scratch.path()).read_dir().unwrap().count() >= 2,
        "a stamp dir was created"
    );
}

#[test]
fn help_documents_commands_flags_and_variables() {
    let help = backup_cron().arg("--help").output().unwrap();
    assert!(help.status.success());
    insta::assert_snapshot!("help", text(&help).0);
    for command in ["once", "run", "verify", "sync", "status"] {
        let help = backup_cron().args([command, "--help"]).output().unwrap();
        insta::assert_snapshot!(format!("help_{command}"), text(&help).0);
        let backs_up = ["once", "run"].contains(&command);
        for flag in [
            "--compression-level",
            "--retention-days",
            "--pg-dump",
            "--storage-root",
        ] {
            // sync copies what is within retention, so it reads RETENTION_DAYS too.
            let expected = backs_up || (command == "sync" && flag == "--retention-days");
            assert_eq!(
                text(&help).0.contains(flag),
                expected,
                "{command} --help and {flag}"
            );
        }
        assert_eq!(
            text(&help).0.contains("--schedule"),
            command == "run",
            "{command} --help and --schedule"
        );
    }
    let version = backup_cron().arg("--version").output().unwrap();
    assert_eq!(text(&version).0.trim(), "backup-cron 0.1.0");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let scratch = tempfile::tempdir().unwrap();
    let output = backup_cron()
        .arg("once")
        .env("BACKUP_DIR", scratch.path())
        .env("DATABASE_URL", "postgresql://u:hunter2@db.internal/app")
        .env("PG_DUMP", "/nonexistent/pg_dump")
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        lines.iter().any(|line| line["code"] == "pg_dump_not_found"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

/// What a variable needs beside it to be read at all.
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// `BACKUP_S3_URL` and credentials: the off-site settings are read.
    Offsite,
    /// `BACKUP_DRILL=true` and a drill server: the restore settings are read.
    Drill,
    /// `KC_DB_URL`: the Keycloak credentials are read.
    Keycloak,
    /// The `run` command: the schedule is read.
    Schedule,
}

/// Every variable `backup-cron` reads, with the mistakes its kind invites: each is
/// refused with exit 2 and one line that names the variable and hides the value.
#[test]
fn every_variable_refuses_every_mistake_without_showing_it() {
    use fixtures::bad_config::{Kind, try_each};
    const ROWS: &[(&str, Kind, Needs)] = &[
        ("BACKUP_DIR", Kind::Text, Needs::Nothing),
        (
            "SESSION_DATABASE_URL",
            Kind::Word("postgres://u:pw@db/app"),
            Needs::Nothing,
        ),
        (
            "BACKUP_DATABASE_URL",
            Kind::Word("postgres://u:pw@db/app"),
            Needs::Nothing,
        ),
        (
            "DATABASE_URL",
            Kind::Word("postgres://u:pw@db/app"),
            Needs::Nothing,
        ),
        ("SESSION_DATABASE_URL_FILE", Kind::File, Needs::Nothing),
        ("BACKUP_DATABASE_URL_FILE", Kind::File, Needs::Nothing),
        (
            "KC_DB_URL",
            Kind::Word("postgres://kc@db/keycloak"),
            Needs::Nothing,
        ),
        ("KC_DB_URL_FILE", Kind::File, Needs::Nothing),
        ("KC_DB_USERNAME", Kind::Text, Needs::Keycloak),
        ("KC_DB_PASSWORD", Kind::Text, Needs::Keycloak),
        ("KC_DB_PASSWORD_FILE", Kind::File, Needs::Keycloak),
        ("SUPABASE_STORAGE_ROOT", Kind::Text, Needs::Nothing),
        ("RETENTION_DAYS", Kind::Number, Needs::Nothing),
        ("BACKUP_KEEP_MIN", Kind::Number, Needs::Nothing),
        ("BACKUP_PG_TIMEOUT_SECONDS", Kind::Number, Needs::Nothing),
        ("BACKUP_COMPRESSION", Kind::Word("gzip"), Needs::Nothing),
        ("BACKUP_COMPRESSION_LEVEL", Kind::Number, Needs::Nothing),
        ("PG_DUMP", Kind::Text, Needs::Nothing),
        ("BACKUP_METRICS_FILE", Kind::Text, Needs::Nothing),
        ("LOG_FORMAT", Kind::Word("json"), Needs::Nothing),
        ("BACKUP_AGE_RECIPIENTS", Kind::Text, Needs::Nothing),
        ("BACKUP_AGE_RECIPIENTS_FILE", Kind::ListFile, Needs::Nothing),
        ("BACKUP_DRILL", Kind::Word("true"), Needs::Nothing),
        (
            "RESTORE_DATABASE_URL",
            Kind::Word("postgres://drill@db/postgres"),
            Needs::Drill,
        ),
        ("RESTORE_DATABASE_URL_FILE", Kind::File, Needs::Drill),
        ("BACKUP_RESTORE_TIMEOUT_SECONDS", Kind::Number, Needs::Drill),
        ("BACKUP_AGE_IDENTITY_FILE", Kind::ListFile, Needs::Drill),
        ("PSQL", Kind::Text, Needs::Drill),
        (
            "BACKUP_S3_URL",
            Kind::Word("s3://school-backups"),
            Needs::Nothing,
        ),
        ("BACKUP_S3_TIMEOUT_SECONDS", Kind::Number, Needs::Offsite),
        ("BACKUP_S3_RETENTION_DAYS", Kind::Number, Needs::Offsite),
        ("AWS_ACCESS_KEY_ID_FILE", Kind::File, Needs::Offsite),
        ("AWS_SECRET_ACCESS_KEY_FILE", Kind::File, Needs::Offsite),
        ("AWS_SESSION_TOKEN_FILE", Kind::File, Needs::Offsite),
        (
            "AWS_ENDPOINT_URL",
            Kind::Word("http://minio:9000"),
            Needs::Offsite,
        ),
        ("AWS_REGION", Kind::Text, Needs::Offsite),
        ("BACKUP_SCHEDULE", Kind::Word("0 2 * * *"), Needs::Schedule),
    ];
    let mut matrix = String::new();
    for &(variable, kind, needs) in ROWS {
        try_each(&mut matrix, variable, kind, |scratch| {
            let mut command = backup_cron();
            command
                .arg(if matches!(needs, Needs::Schedule) {
                    "run"
                } else {
                    "once"
                })
                .env("BACKUP_DIR", scratch.join("backups"));
            // A valid platform DSN, unless the row is about one: a valid one beside
            // it would win (or be ignored) and hide the mistake.
            let platform = backup_cron::config::DATABASE_URLS;
            if !platform.contains(&variable.trim_end_matches("_FILE")) {
                command.env("DATABASE_URL", "postgresql://u:pw@db.internal/app");
            }
            match needs {
                Needs::Nothing | Needs::Schedule => {}
                Needs::Offsite => {
                    command
                        .env("BACKUP_S3_URL", "s3://school-backups")
                        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
                        .env("AWS_SECRET_ACCESS_KEY", "wJalrEXAMPLE");
                }
                Needs::Drill => {
                    command
                        .env("BACKUP_DRILL", "true")
                        .env("RESTORE_DATABASE_URL", "postgresql://drill:pw@db/postgres");
                }
                Needs::Keycloak => {
                    command.env("KC_DB_URL", "postgresql://db/keycloak");
                }
            }
            // A `NAME_FILE` row replaces `NAME`, which must not be set beside it.
            if let Some(base) = variable.strip_suffix("_FILE") {
                command.env_remove(base);
            }
            command
        });
    }
    insta::assert_snapshot!(matrix);
}
