//! Unit tests: time formats, manifest format, atomic writes, verify, redaction and
//! the directory layout.

use std::io::Write as _;
use std::path::Path;

use proptest::prelude::*;

use crate::{
    Artifact, ArtifactName, BackupDir, ErrorCode, Manifest, Source, Status, UtcTime, Written,
    redact, verify,
};

mod time {
    use proptest::prelude::*;

    use crate::UtcTime;

    #[test]
    fn known_instants() {
        assert_eq!(
            UtcTime::from_unix_seconds(0).rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        let time = UtcTime::from_unix_seconds(1_795_917_607);
        assert_eq!(time.rfc3339(), "2026-11-29T02:00:07Z");
        assert_eq!(time.stamp(), "2026-11-29_020007");
        assert_eq!(
            UtcTime::from_unix_seconds(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn stamps_with_and_without_suffix() {
        let time = UtcTime::parse_rfc3339("2026-11-29T02:00:07Z").unwrap();
        assert_eq!(UtcTime::parse_stamp("2026-11-29_020007"), Some((time, 1)));
        assert_eq!(UtcTime::parse_stamp("2026-11-29_020007-2"), Some((time, 2)));
        assert_eq!(
            UtcTime::parse_stamp("2026-11-29_020007-12"),
            Some((time, 12))
        );
        for not_a_stamp in [
            "2026-11-29_020007-",
            "2026-11-29_020007-0",
            "2026-11-29_020007-02",
            "2026-11-29_020007x",
            "2026-11-29-020007",
            "2026-02-30_000000",
            "2026-11-29_240000",
            "2026-1-29_020007",
            "+026-11-29_020007",
            "backups",
            ".lock",
            "",
        ] {
            assert_eq!(UtcTime::parse_stamp(not_a_stamp), None, "{not_a_stamp}");
        }
    }

    proptest! {
        // chrono is the reference: from year -9999 to 9999, our civil date is its.
        #[test]
        fn civil_dates_agree_with_chrono(seconds in -377_705_116_800i64..253_402_300_799) {
            use chrono::{Datelike as _, Timelike as _};
            let reference = chrono::DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
            let ours = UtcTime::from_unix_seconds(seconds);
            prop_assert_eq!(
                ours.civil(),
                (
                    i64::from(reference.year()),
                    reference.month(),
                    reference.day(),
                    reference.hour(),
                    reference.minute(),
                    reference.second(),
                )
            );
            let (year, month, day, hour, minute, second) = ours.civil();
            prop_assert_eq!(UtcTime::from_civil(year, month, day, hour, minute, second), Some(ours));
        }

        #[test]
        fn impossible_dates_are_refused_as_chrono_refuses_them(
            year in -9999i64..9999, month in 0u32..14, day in 0u32..33,
        ) {
            let reference = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).unwrap(), month, day);
            prop_assert_eq!(UtcTime::from_civil(year, month, day, 0, 0, 0).is_some(), reference.is_some());
        }

        #[test]
        fn formats_round_trip(seconds in 0i64..253_402_300_799) {
            let time = UtcTime::from_unix_seconds(seconds);
            prop_assert_eq!(UtcTime::parse_rfc3339(&time.rfc3339()), Some(time));
            prop_assert_eq!(UtcTime::parse_stamp(&time.stamp()), Some((time, 1)));
        }
    }
}

fn written(bytes: u64, sha256: &str) -> Written {
    Written {
        bytes,
        uncompressed_bytes: Some(bytes * 8),
        sha256: sha256.to_owned(),
        duration: std::time::Duration::from_millis(6000),
        row_counts: Some(
            [
                ("public.courses".to_owned(), 3),
                ("public.empty".to_owned(), 0),
            ]
            .into(),
        ),
        codec: crate::Codec::Gzip,
        encryption: None,
    }
}

fn started() -> UtcTime {
    UtcTime::parse_rfc3339("2026-11-29T02:00:00Z").unwrap()
}

fn finished() -> UtcTime {
    UtcTime::parse_rfc3339("2026-11-29T02:00:07Z").unwrap()
}

#[test]
fn ok_manifest_format() {
    let mut storage = Artifact::ok(
        ArtifactName::Storage,
        Source::SupabaseStorageRoot,
        written(52, "bb"),
    );
    storage.uncompressed_bytes = None;
    storage.row_counts = None;
    let manifest = Manifest::new(
        "backup-cron 0.1.0",
        started(),
        finished(),
        vec![
            Artifact::ok(
                ArtifactName::SupabaseDb,
                Source::SessionDatabaseUrl,
                written(1_048_576, "aa"),
            ),
            storage,
        ],
    );
    assert_eq!(manifest.status, Status::Ok);
    insta::assert_json_snapshot!(manifest, {
        ".artifacts[].sha256" => "[sha256]",
    });
}

#[test]
fn failed_manifest_format() {
    let manifest = Manifest::new(
        "backup-cron 0.1.0",
        started(),
        finished(),
        vec![
            Artifact::ok(
                ArtifactName::SupabaseDb,
                Source::DatabaseUrl,
                written(10, "aa"),
            ),
            Artifact::failed(
                ArtifactName::KeycloakDb,
                Source::KcDbUrl,
                ErrorCode::PgDumpTimeout,
            ),
            Artifact::failed(
                ArtifactName::Storage,
                Source::SupabaseStorageRoot,
                ErrorCode::StorageMissing,
            ),
        ],
    )
    .with_duration(std::time::Duration::from_millis(7012));
    assert_eq!(manifest.status, Status::Failed);
    insta::assert_json_snapshot!(manifest, {
        ".artifacts[].sha256" => "[sha256]",
    });
}

#[test]
fn error_codes_serialise_as_documented() {
    let names: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{code}\""));
            code.to_string()
        })
        .collect();
    insta::assert_snapshot!(names.join(" "), @"pg_dump_not_found pg_dump_timeout pg_dump_failed pg_dump_version_mismatch db_auth_failed db_unreachable db_not_found db_permission_denied storage_missing storage_not_dir storage_read_failed disk_full io_failed interrupted");
}

#[test]
fn manifest_rejects_free_text_and_unknown_codes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::new("backup-cron 0.1.0", started(), finished(), vec![]);
    manifest.write_atomic(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    for tampered in [
        text.replace(
            "\"error\": null",
            "\"error\": {\"code\": \"io_failed\", \"step\": \"storage\", \"message\": \"x\"}",
        ),
        text.replace(
            "\"error\": null",
            "\"error\": {\"code\": \"host db1 down\", \"step\": \"storage\"}",
        ),
        text.replace(
            "\"status\": \"ok\"",
            "\"status\": \"ok\", \"detail\": \"db1.internal\"",
        ),
    ] {
        assert_ne!(tampered, text, "the tampering applies");
        std::fs::write(dir.path().join("manifest.json"), tampered).unwrap();
        assert!(matches!(
            Manifest::read(dir.path()),
            Err(crate::Error::Parse { .. })
        ));
    }
}

#[test]
fn write_atomic_leaves_only_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::new("backup-cron 0.1.0", started(), finished(), vec![]);
    manifest.write_atomic(dir.path()).unwrap();
    manifest.write_atomic(dir.path()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["manifest.json"]);
    assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);
}

/// A backup directory with one gzip artifact recorded correctly in its manifest.
fn backup_with_gzip(dir: &Path, payload: &[u8]) -> Manifest {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(payload).unwrap();
    let gz = encoder.finish().unwrap();
    std::fs::write(dir.join("supabase_db.sql.gz"), &gz).unwrap();
    use sha2::Digest as _;
    let sha256: String = sha2::Sha256::digest(&gz)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let written = Written {
        bytes: gz.len() as u64,
        uncompressed_bytes: Some(payload.len() as u64),
        sha256,
        duration: std::time::Duration::ZERO,
        row_counts: None,
        codec: crate::Codec::Gzip,
        encryption: None,
    };
    let manifest = Manifest::new(
        "backup-cron 0.1.0",
        started(),
        finished(),
        vec![Artifact::ok(
            ArtifactName::SupabaseDb,
            Source::DatabaseUrl,
            written,
        )],
    );
    manifest.write_atomic(dir).unwrap();
    manifest
}

#[track_caller]
fn check_verify(damage: impl FnOnce(&Path), expected_problem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
    backup_with_gzip(dir.path(), &payload);
    assert!(
        verify(dir.path()).unwrap().is_good(),
        "intact backup verifies"
    );
    damage(&dir.path().join("supabase_db.sql.gz"));
    let verification = verify(dir.path()).unwrap();
    assert!(!verification.is_good());
    let problem = verification.artifacts[0]
        .problem
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(problem.starts_with(expected_problem), "{problem}");
}

#[test]
fn verify_catches_a_flipped_byte() {
    check_verify(
        |path| {
            let mut bytes = std::fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(path, bytes).unwrap();
        },
        "compressed stream (gzip or zstd) is corrupt",
    );
}

#[test]
fn verify_catches_a_truncated_file() {
    check_verify(
        |path| {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() - 100]).unwrap();
        },
        "compressed stream (gzip or zstd) is corrupt",
    );
}

#[test]
fn verify_catches_a_missing_file_and_leftovers() {
    check_verify(|path| std::fs::remove_file(path).unwrap(), "missing");
    let dir = tempfile::tempdir().unwrap();
    backup_with_gzip(dir.path(), b"select 1;");
    std::fs::write(dir.path().join("keycloak_db.sql.gz.partial"), b"x").unwrap();
    let verification = verify(dir.path()).unwrap();
    assert_eq!(verification.leftovers, vec!["keycloak_db.sql.gz.partial"]);
    assert!(!verification.is_good());
}

#[test]
fn verify_reports_a_failed_manifest_as_not_good() {
    let dir = tempfile::tempdir().unwrap();
    Manifest::new(
        "backup-cron 0.1.0",
        started(),
        finished(),
        vec![Artifact::failed(
            ArtifactName::SupabaseDb,
            Source::DatabaseUrl,
            ErrorCode::DbUnreachable,
        )],
    )
    .write_atomic(dir.path())
    .unwrap();
    let verification = verify(dir.path()).unwrap();
    assert!(verification.artifacts.is_empty());
    assert!(!verification.is_good());
    assert!(
        verify(tempfile::tempdir().unwrap().path()).is_err(),
        "no manifest: interrupted run"
    );
}

#[test]
fn redact_known_shapes() {
    insta::assert_snapshot!(
        redact("pg_dump: error: connection to server at \"db\" failed for postgresql://app:hunter2@db:5432/app?sslmode=require"),
        @r#"pg_dump: error: connection to server at "db" failed for postgresql://app:***@db:5432/app?sslmode=require"#
    );
    insta::assert_snapshot!(redact(r"host=db password='it\'s' user=u"), @"host=db password=*** user=u");
    insta::assert_snapshot!(redact("jdbc:postgresql://kc/db?user=kc&password=s3cr3t&ssl=true"), @"jdbc:postgresql://kc/db?user=kc&password=***");
    insta::assert_snapshot!(redact("PGPASSWORD=abc pg_dump"), @"PGPASSWORD=*** pg_dump");
    insta::assert_snapshot!(redact("no secrets here: password is required"), @"no secrets here: password is required");
}

proptest! {
    #[test]
    fn no_generated_password_survives_redaction(
        password in "[!-~]{6,40}",
        prefix in "[ -~]{0,20}",
        suffix in "[ -~]{0,20}",
    ) {
        let encoded: String = password.bytes().map(|b| {
            if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }
        }).collect();
        let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
        let raw_url_safe = !password.contains(char::is_whitespace);
        let mut lines = vec![
            format!("{prefix}postgresql://user:{encoded}@host:5432/db{suffix}"),
            format!("{prefix}host=h password='{quoted}' dbname=d{suffix}"),
            format!("{prefix}jdbc:postgresql://h/db?user=u&password={encoded}{suffix}"),
            format!("{prefix}PGPASSWORD={encoded} {suffix}"),
        ];
        if raw_url_safe {
            lines.push(format!("{prefix} postgres://user:{password}@host/db {suffix}"));
            lines.push(format!("{prefix} password={password} {suffix}"));
        }
        for line in lines {
            let redacted = redact(&line);
            prop_assert!(!redacted.contains(&password), "{:?} -> {:?}", line, redacted);
            prop_assert!(!redacted.contains(&encoded), "{:?} -> {:?}", line, redacted);
        }
    }
}

#[test]
fn run_dirs_get_suffixes_and_the_lock_is_exclusive() {
    let root = tempfile::tempdir().unwrap();
    let backup_dir = BackupDir::new(root.path());
    let now = started();
    let first = backup_dir.create_run_dir(now).unwrap();
    let second = backup_dir.create_run_dir(now).unwrap();
    assert_eq!(first.file_name().unwrap(), "2026-11-29_020000");
    assert_eq!(second.file_name().unwrap(), "2026-11-29_020000-2");
    let lock = backup_dir.lock().unwrap();
    assert!(matches!(
        backup_dir.lock(),
        Err(crate::Error::Locked { .. })
    ));
    drop(lock);
    assert!(backup_dir.lock().is_ok());
}

#[test]
fn an_encrypted_artifact_says_so_and_is_named_dot_age() {
    let mut written = written(10, "ab");
    written.encryption = Some(crate::Encryption::Age);
    let artifact = Artifact::ok(ArtifactName::SupabaseDb, Source::DatabaseUrl, written);
    let json = serde_json::to_value(&artifact).unwrap();
    assert_eq!(json["file"], "supabase_db.sql.gz.age");
    assert_eq!(json["encryption"], "age");
    assert!(json.get("compression").is_none(), "gzip stays implicit");
    let plain = serde_json::to_value(Artifact::ok(
        ArtifactName::SupabaseDb,
        Source::DatabaseUrl,
        super::tests::written(10, "ab"),
    ))
    .unwrap();
    assert!(plain.get("encryption").is_none(), "absent unless encrypted");
    assert_eq!(
        ArtifactName::Storage.stored_file_name(crate::Codec::Zstd, Some(crate::Encryption::Age)),
        "storage_buckets.tar.zst.age"
    );
    assert_eq!(
        crate::Codec::of_file("storage_buckets.tar.zst.age"),
        Some(crate::Codec::Zstd)
    );
    assert_eq!(crate::Encryption::of_file("supabase_db.sql.gz"), None);
    let refused: Result<Artifact, _> = serde_json::from_value({
        let mut json = json.clone();
        json["encryption"] = "rot13".into();
        json
    });
    assert!(refused.is_err(), "only known encryptions are read");
}

#[test]
fn offsite_records_round_trip_and_refuse_what_they_do_not_know() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        crate::Offsite::read(dir.path()).unwrap(),
        None,
        "never attempted"
    );
    let record = crate::Offsite::new(
        finished(),
        std::time::Duration::from_millis(1234),
        vec![crate::OffsiteObject {
            file: "supabase_db.sql.gz".to_owned(),
            bytes: 123,
            sha256: "ab".repeat(32),
        }],
        Some(crate::OffsiteCode::S3Timeout),
    );
    assert_eq!(record.status, Status::Failed);
    record.write_atomic(dir.path()).unwrap();
    assert_eq!(
        crate::Offsite::read(dir.path()).unwrap(),
        Some(record.clone())
    );
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["error"]["code"], "s3_timeout");
    for code in crate::OffsiteCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
    for damaged in [
        r#"{"schema":"backup-offsite/v1","status":"ok","finished_at":"2026-12-02T02:00:07Z","duration_ms":1,"objects":[],"error":null,"bucket":"x"}"#,
        r#"{"schema":"backup-offsite/v1","status":"failed","finished_at":"2026-12-02T02:00:07Z","duration_ms":1,"objects":[],"error":{"code":"AccessDenied: bucket x"}}"#,
    ] {
        std::fs::write(dir.path().join(crate::OFFSITE_FILE), damaged).unwrap();
        assert!(crate::Offsite::read(dir.path()).is_err(), "{damaged}");
    }
}
