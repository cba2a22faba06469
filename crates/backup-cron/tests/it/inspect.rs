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
fn before_the_first_run_status_is_healthy_only_while_a_scheduler_waits_for_it() {
    let root = tempfile::tempdir().unwrap();
    let backups = manifest::BackupDir::new(root.path());
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(code, Some(1), "nobody schedules backups here: {stdout}");
    assert!(stdout.contains("no scheduler has started here"), "{stdout}");

    let two_days_ago = UtcTime::from_unix_seconds(UtcTime::now().unix_seconds() - 2 * 86_400);
    backups.record_scheduler_start(two_days_ago).unwrap();
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(
        code,
        Some(1),
        "a scheduler that never ran a backup in 2 days: {stdout}"
    );

    backups.record_scheduler_start(UtcTime::now()).unwrap();
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("none yet; scheduler started"), "{stdout}");

    let in_progress = UtcTime::now().stamp();
    std::fs::create_dir(root.path().join(&in_progress)).unwrap();
    let lock = backups.lock().unwrap();
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(code, Some(0), "the first run is still going: {stdout}");
    assert!(
        stdout.contains(&format!("backup in progress: {in_progress}")),
        "{stdout}"
    );
    drop(lock);
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(
        code,
        Some(1),
        "the first run died without a manifest: {stdout}"
    );

    std::fs::remove_dir(root.path().join(&in_progress)).unwrap();
    fake_backup(
        root.path(),
        0,
        vec![Artifact::failed(
            ArtifactName::SupabaseDb,
            Source::DatabaseUrl,
            ErrorCode::DbAuthFailed,
        )],
    );
    let (code, stdout) = status(root.path(), "26h");
    assert_eq!(
        code,
        Some(1),
        "a failed first run is unhealthy at once: {stdout}"
    );
    assert!(stdout.contains("a run has failed"), "{stdout}");
}

#[test]
fn the_scheduler_records_its_start_for_status() {
    let root = tempfile::tempdir().unwrap();
    let mut scheduler = backup_cron()
        .args(["run"])
        .env("BACKUP_DIR", root.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("BACKUP_SCHEDULE", "0 0 1 1 *")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = root.path().join(manifest::SCHEDULER_FILE);
    fixtures::wait_for(
        "the scheduler's start record",
        std::time::Duration::from_secs(30),
        || started.exists(),
    );

    let (code, stdout) = status(root.path(), "26h");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(scheduler.id()).unwrap(), libc::SIGTERM) };
    assert_eq!(scheduler.wait().unwrap().code(), Some(0));
    assert_eq!(code, Some(0), "{stdout}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        started.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
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
