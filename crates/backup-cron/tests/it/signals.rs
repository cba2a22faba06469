//! SIGTERM during `once` and during `run`: pg_dump's group ends, the manifest says
//! `interrupted`.

use std::process::Child;
use std::time::Duration;

use fixtures::FakePgDump;

use crate::support::{backup_cron, dirs_in, read_manifest};

/// Waits until the fake pg_dump and its child have started.
fn await_fake_running(fake: &FakePgDump, child: &mut Child) {
    fixtures::wait_for(
        "the fake pg_dump and its child",
        Duration::from_secs(60),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "backup-cron ended before pg_dump ran"
            );
            fake.recorded_pids().len() >= 2
        },
    );
}

fn terminate(child: &Child) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
}

#[track_caller]
fn check_interrupted(command: &str, schedule: &str, expected_exit: i32) {
    let fake = FakePgDump::hanging().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let mut child = backup_cron()
        .arg(command)
        .env("BACKUP_DIR", backups.path())
        .env("DATABASE_URL", "postgresql://u:secret@db.internal/app")
        .env("PG_DUMP", fake.path())
        .env("BACKUP_SCHEDULE", schedule)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    await_fake_running(&fake, &mut child);

    terminate(&child);
    let status = child.wait().unwrap();

    assert_eq!(status.code(), Some(expected_exit), "{command}");
    let survivors = fake.survivors(Duration::from_secs(10));
    assert!(survivors.is_empty(), "pids {survivors:?} survived");
    let dirs = dirs_in(backups.path());
    assert_eq!(dirs.len(), 1, "{command}");
    let manifest = read_manifest(&dirs[0]);
    assert_eq!(
        manifest["error"],
        serde_json::json!({"code": "interrupted", "step": "supabase_db"})
    );
    assert!(!dirs[0].join("supabase_db.sql.gz.partial").exists());
}

#[test]
fn sigterm_during_once_records_interrupted_and_exits_1() {
    check_interrupted("once", "0 2 * * *", 1);
}

#[test]
fn sigterm_during_run_records_interrupted_and_exits_0() {
    check_interrupted("run", "* * * * * *", 0);
}
