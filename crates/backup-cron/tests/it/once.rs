//! `backup-cron once`: a real backup, what it leaks (nothing), best effort,
//! retention, timeouts and a full disk.

use std::io::Read as _;
use std::time::Duration;

use fixtures::FakePgDump;

use crate::support::{PASSWORD, World, dirs_in, files_below, read_manifest, text};

#[tokio::test(flavor = "multi_thread")]
async fn once_backs_up_database_and_storage_and_verifies() {
    let world = World::new().await;

    let output = tokio::task::block_in_place(|| world.run(&["once"]));

    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let dirs = world.run_dirs();
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    let mut names = files_below(dir);
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "storage_buckets.tar.gz",
            "supabase_db.sql.gz"
        ]
    );
    let manifest = read_manifest(dir);
    insta::assert_json_snapshot!(manifest, {
        ".timestamp" => "[time]",
        ".started_at" => "[time]",
        ".finished_at" => "[time]",
        ".duration_ms" => "[ms]",
        ".artifacts[].bytes" => "[bytes]",
        ".artifacts[].uncompressed_bytes" => "[bytes]",
        ".artifacts[].sha256" => "[sha256]",
        ".artifacts[].duration_ms" => "[ms]",
    });
    let mut sql = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("supabase_db.sql.gz")).unwrap())
        .read_to_string(&mut sql)
        .unwrap();
    assert!(sql.contains("CREATE TABLE public.learning_submission_jobs"));
    assert!(sql.contains("Seeded course title"));
    let gzip_test = fixtures::command(std::path::Path::new("/bin/gzip"))
        .arg("-t")
        .arg(dir.join("supabase_db.sql.gz"))
        .arg(dir.join("storage_buckets.tar.gz"))
        .status()
        .unwrap();
    assert!(gzip_test.success(), "gzip -t accepts both artifacts");

    let verify = world.run(&["verify"]);
    let (stdout, _) = text(&verify);
    assert_eq!(verify.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok      supabase_db.sql.gz"), "{stdout}");
    assert!(
        stdout.contains("ok      storage_buckets.tar.gz"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_secret_or_internal_reaches_manifest_or_logs() {
    let mut world = World::new().await;
    let keycloak = fixtures::TestDb::new().await.unwrap();
    let cluster = keycloak.server().cluster().unwrap();
    // Keycloak's JDBC URL with credentials given separately, and a wrong password:
    // its failure text mentions host, database and user.
    let role = world.role.clone();
    world
        .set(
            "KC_DB_URL",
            &format!(
                "jdbc:postgresql://{}:{}/{}?ssl=false",
                fixtures::HOST,
                cluster.port(),
                keycloak.name()
            ),
        )
        .set("KC_DB_USERNAME", &role)
        .set("KC_DB_PASSWORD", "kc-wrong-password");

    let output = tokio::task::block_in_place(|| world.run(&["once"]));

    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let manifest = std::fs::read_to_string(world.run_dirs()[0].join("manifest.json")).unwrap();
    assert!(manifest.contains("\"db_auth_failed\""), "{manifest}");
    for secret in [PASSWORD, "p%3Aa%40s", "kc-wrong-password"] {
        for (what, text) in [
            ("manifest", &manifest),
            ("stdout", &stdout),
            ("logs", &stderr),
        ] {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
    for internal in [
        fixtures::HOST,
        keycloak.name(),
        world.db.name(),
        world.role.as_str(),
        "password authentication",
    ] {
        assert!(
            !manifest.contains(internal),
            "{internal} in manifest:\n{manifest}"
        );
    }
    assert!(
        stderr.contains("password authentication failed"),
        "the log has the (redacted) reason:\n{stderr}"
    );
    assert!(
        stderr.contains("SESSION_DATABASE_URL"),
        "the log names the variable used:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_does_not_stop_the_others_and_skips_retention() {
    let mut world = World::new().await;
    let old = world.backup_dir().join("2001-01-01_000000");
    std::fs::create_dir_all(&old).unwrap();
    world.set(
        "SUPABASE_STORAGE_ROOT",
        &world.storage.path().join("missing").display().to_string(),
    );
    world.set("RETENTION_DAYS", "1").set("BACKUP_KEEP_MIN", "0");

    let output = tokio::task::block_in_place(|| world.run(&["once"]));

    assert_eq!(output.status.code(), Some(1), "{}", text(&output).1);
    let manifest = world.newest_manifest();
    assert_eq!(manifest["status"], "failed");
    assert_eq!(
        manifest["error"],
        serde_json::json!({"code": "storage_missing", "step": "storage"})
    );
    assert_eq!(
        manifest["artifacts"][0]["status"], "ok",
        "the database dump still ran"
    );
    assert!(old.exists(), "no retention after a failed run");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_after_success_keeps_the_newest_ok_and_foreign_entries() {
    let mut world = World::new().await;
    let backups = world.backup_dir();
    std::fs::create_dir_all(&backups).unwrap();
    let expired_interrupted = backups.join("2001-01-01_000000");
    std::fs::create_dir(&expired_interrupted).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), backups.join("2001-01-02_000000")).unwrap();
    std::fs::create_dir(backups.join("notes")).unwrap();
    world.set("RETENTION_DAYS", "7");

    let output = tokio::task::block_in_place(|| world.run(&["once"]));

    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    assert!(
        !expired_interrupted.exists(),
        "an expired stamp directory is removed"
    );
    assert!(
        backups.join("2001-01-02_000000").symlink_metadata().is_ok(),
        "a symlink is never removed"
    );
    assert!(outside.path().exists());
    assert!(
        backups.join("notes").exists(),
        "a foreign directory is never removed"
    );
    assert_eq!(world.run_dirs().len(), 1, "the new backup stays");
}

#[test]
fn hanging_pg_dump_times_out_and_leaves_no_process() {
    let fake = FakePgDump::hanging_ignoring_sigterm().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let output = crate::support::backup_cron()
        .arg("once")
        .env("BACKUP_DIR", backups.path())
        .env("DATABASE_URL", "postgresql://u:secret@db.internal/app")
        .env("PG_DUMP", fake.path())
        .env("BACKUP_PG_TIMEOUT_SECONDS", "1")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1), "{}", text(&output).1);
    let survivors = fake.survivors(Duration::from_secs(10));
    assert!(survivors.is_empty(), "pids {survivors:?} survived");
    let dirs = dirs_in(backups.path());
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        files_below(&dirs[0]),
        ["manifest.json"],
        "no artifact, no .partial"
    );
    let manifest = read_manifest(&dirs[0]);
    assert_eq!(
        manifest["error"],
        serde_json::json!({"code": "pg_dump_timeout", "step": "supabase_db"})
    );
}

#[test]
fn full_disk_gives_disk_full_and_no_partial() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let fake = FakePgDump::writing_random(4 * 1024 * 1024).unwrap();
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = fixtures::command(std::path::Path::new("/bin/mount"))
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(mount_point.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 512 KiB tmpfs");
    let output = crate::support::backup_cron()
        .arg("once")
        .env("BACKUP_DIR", mount_point.path())
        .env("DATABASE_URL", "postgresql://u@db.internal/app")
        .env("PG_DUMP", fake.path())
        .output()
        .unwrap();
    let files = files_below(mount_point.path());
    let dirs = dirs_in(mount_point.path());
    let manifest = dirs.first().map(|dir| read_manifest(dir));
    let _ = fixtures::command(std::path::Path::new("/bin/umount"))
        .arg(mount_point.path())
        .status();

    assert_eq!(output.status.code(), Some(1), "{}", text(&output).1);
    assert!(
        !files.iter().any(|file| file.ends_with(".partial")),
        "{files:?}"
    );
    let manifest = manifest.expect("a manifest");
    assert_eq!(
        manifest["error"],
        serde_json::json!({"code": "disk_full", "step": "supabase_db"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_created_is_private_even_under_umask_000() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let world = World::new().await;
    let mut command = world.command(&["once"]);
    // SAFETY: umask is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }

    let output = tokio::task::block_in_place(|| command.output().unwrap());

    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let root = world.backup_dir();
    let mut modes = vec![(
        ".".to_owned(),
        root.metadata().unwrap().permissions().mode() & 0o777,
    )];
    for name in files_below(&root) {
        let mode = root.join(&name).metadata().unwrap().permissions().mode() & 0o777;
        modes.push((name, mode));
    }
    assert!(
        modes.len() >= 5,
        "the lock, a run directory, two artifacts and a manifest: {modes:?}"
    );
    for (name, mode) in modes {
        let expected = if root.join(&name).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, expected, "{name}: {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_tls_reaches_pg_dump_and_a_wrong_host_or_ca_fails_the_run() {
    let ca = fixtures::TestCa::new().unwrap();
    let stranger = fixtures::TestCa::new().unwrap();
    let server = fixtures::Server::private_with_tls(&ca).unwrap();
    let mut world = World::on(fixtures::TestDb::on(server).await.unwrap()).await;
    let on_host = |host: &str, ca: &fixtures::TestCa| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            world.db.url_as_on(host, &world.role, PASSWORD),
            ca.ca_cert().display()
        )
    };
    let (right, wrong_host, unknown_ca) = (
        on_host(fixtures::TLS_HOST, &ca),
        on_host(fixtures::HOST, &ca),
        on_host(fixtures::TLS_HOST, &stranger),
    );

    world.set("SESSION_DATABASE_URL", &right);
    let output = tokio::task::block_in_place(|| world.run(&["once"]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    for (dsn, cause) in [
        (wrong_host, "does not match host name"),
        (unknown_ca, "certificate verify failed"),
    ] {
        world.set("SESSION_DATABASE_URL", &dsn);
        let output = tokio::task::block_in_place(|| world.run(&["once"]));
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        let manifest = world.newest_manifest();
        assert_eq!(manifest["status"], "failed");
        // The manifest's closed code set has no TLS code: the log carries libpq's
        // precise reason.
        assert_eq!(manifest["error"]["code"], "pg_dump_failed", "{manifest}");
        assert_eq!(manifest["error"]["step"], "supabase_db", "{manifest}");
        assert!(stderr.contains(cause), "{cause}: {stderr}");
    }
}
