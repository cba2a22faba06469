//! `verify` and `status` as an operator or a health check runs them.

use manifest::{Artifact, ArtifactName, ErrorCode, Manifest, Source, UtcTime};

use crate::support::{World, backup_cron, text};

fn status(backup_dir: &std::path::Path, max_age: &str) -> (Option<i32>, String) {
    let output = backup_cron()
        .args(["status", "--max-age", max_age])
        .env("BACKUP_DIR", backup_dir)
        .output()
        .unwrap();
    (output.status.code(), text(&output).0)
}

fn fake_backup(root: &std::path::Path, days_ago: i64, artifacts: Vec<Artifact>) -> String {
    let time = UtcTime::from_unix_seconds(UtcTime::now().unix_seconds() - days_ago * 86_400);
    let dir = root.join(time.stamp());
    std::fs::create_dir_all(&dir).unwrap();
    Manifest::new("backup-cron 0.1.0", time, time, artifacts)
        .write_atomic(&dir)
        .unwrap();
    time.stamp()
}

#[test]
fn status_both_ways() {
    let root = tempfile::tempdir().unwrap();
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(code, Some(1), "no backup at all: {stdout}");
    assert!(stdout.contains("newest successful backup: none"));

    let ok = fake_backup(root.path(), 3, vec![]);
    let failed = fake_backup(
        root.path(),
        0,
        vec![Artifact::failed(
            ArtifactName::SupabaseDb,
            Source::DatabaseUrl,
            ErrorCode::DbUnreachable,
        )],
    );
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(code, Some(1), "3 days old is too old: {stdout}");
    assert!(
        stdout.contains(&format!("newest backup: {failed} failed")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("newest successful backup: {ok} age 3d0h")),
        "{stdout}"
    );
    let (code, _) = status(root.path(), "4d");
    assert_eq!(code, Some(0), "younger than 4 days");
}

#[test]
fn status_rejects_a_bad_duration() {
    let root = tempfile::tempdir().unwrap();
    let (code, _) = status(root.path(), "soon");
    assert_eq!(code, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_catches_a_flipped_byte_in_a_real_backup() {
    let world = World::new().await;
    let once = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(once.status.code(), Some(0), "{}", text(&once).1);
    let dir = world.run_dirs().pop().unwrap();
    let artifact = dir.join("supabase_db.sql.gz");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&artifact, bytes).unwrap();

    let verify = backup_cron().arg("verify").arg(&dir).output().unwrap();

    let (stdout, _) = text(&verify);
    assert_eq!(verify.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED  supabase_db.sql.gz"), "{stdout}");
    assert!(
        stdout.contains("ok      storage_buckets.tar.gz"),
        "{stdout}"
    );
}

#[test]
fn verify_of_an_interrupted_run_fails() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("2026-11-29_020000")).unwrap();
    let verify = backup_cron()
        .arg("verify")
        .env("BACKUP_DIR", root.path())
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        text(&verify).0.contains("interrupted run"),
        "{}",
        text(&verify).0
    );
}
