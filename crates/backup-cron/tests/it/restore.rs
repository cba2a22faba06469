//! `restore` and `drill` against the fixtures cluster: a real backup back into a
//! fresh database table by table, and every way it must refuse or fail cleanly.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::support::{World, text};

const TABLES: [&str; 4] = [
    "courses",
    "unit_tasks",
    "learning_submissions",
    "learning_submission_jobs",
];

/// An empty database owned by a role of its own (`CREATEDB`, so it can host
/// drills too), and the URL naming it.
pub(crate) async fn empty_target(world: &World) -> (String, String) {
    let client = world.db.connect().await.unwrap();
    let name = format!("restore_{}", fixtures::random_token(8).to_lowercase());
    for statement in [
        format!("create role {name} login createdb password 'restore-pw'"),
        format!("create database {name} owner {name}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    let url = world
        .db
        .url_as(&name, "restore-pw")
        .replace(&format!("/{}", world.db.name()), &format!("/{name}"));
    (url, name)
}

async fn query(world: &World, database: &str, sql: &str) -> Vec<String> {
    let mut config = world.db.config();
    config.dbname(database);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

pub(crate) async fn fingerprint(world: &World, database: &str, table: &str) -> String {
    query(
        world,
        database,
        &format!("select count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' order by t::text)), '') from {table} t"),
    )
    .await
    .remove(0)
}

pub(crate) async fn user_relations(world: &World, database: &str) -> String {
    query(world, database, dump_runner::USER_RELATIONS_SQL)
        .await
        .remove(0)
}

fn backed_up(world: &World) -> PathBuf {
    let output = world.run(&["once"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    world.run_dirs().pop().unwrap()
}

/// Rewrites the dump of `dir` through `change` and fixes the manifest's size and
/// sha256, so only what `change` did is wrong.
fn rewrite_dump(dir: &Path, change: impl FnOnce(&mut String)) {
    let path = dir.join("supabase_db.sql.gz");
    let mut sql = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut sql)
        .unwrap();
    change(&mut sql);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(sql.as_bytes()).unwrap();
    let bytes = encoder.finish().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    edit_manifest(dir, |manifest| {
        manifest["artifacts"][0]["bytes"] = bytes.len().into();
        manifest["artifacts"][0]["sha256"] = sha.into();
        manifest["artifacts"][0]["uncompressed_bytes"] = sql.len().into();
    });
}

fn edit_manifest(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_backup_restores_table_by_table_and_a_full_target_is_refused() {
    let mut world = World::new().await;
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    let manifest = crate::support::read_manifest(&dir);
    assert_eq!(
        manifest["artifacts"][0]["row_counts"]["public.learning_submissions"],
        2
    );
    assert_eq!(manifest["artifacts"][0]["row_counts"]["public.courses"], 1);
    let (url, target) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);

    let output = tokio::task::block_in_place(|| world.run(&["restore"]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("restored and checked: "), "{stdout}");
    for table in TABLES {
        assert_eq!(
            fingerprint(&world, &target, table).await,
            fingerprint(&world, world.db.name(), table).await,
            "{table}"
        );
    }
    let policies = query(&world, &target, "select count(*) from pg_policies").await;
    assert_ne!(
        policies,
        ["0"],
        "row-level security came back with the tables"
    );
    assert!(!stderr.contains("restore-pw") && !stdout.contains("restore-pw"));

    let again = tokio::task::block_in_place(|| world.run(&["restore"]));
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr.contains("restore_target_not_empty"), "{stderr}");
    assert_eq!(
        fingerprint(&world, &target, "learning_submissions").await,
        fingerprint(&world, world.db.name(), "learning_submissions").await,
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_artifact_or_a_failing_dump_leaves_the_target_empty() {
    let mut world = World::new().await;
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    let (url, target) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);
    let artifact = dir.join("supabase_db.sql.gz");
    let original = std::fs::read(&artifact).unwrap();

    let mut corrupt = original.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    std::fs::write(&artifact, &corrupt).unwrap();
    let output = tokio::task::block_in_place(|| world.run(&["restore", dir.to_str().unwrap()]));
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("artifact_corrupt"), "{stderr}");
    assert_eq!(user_relations(&world, &target).await, "0");

    std::fs::write(&artifact, &original).unwrap();
    rewrite_dump(&dir, |sql| sql.push_str("\nselect 1 / 0;\n"));
    let output = tokio::task::block_in_place(|| world.run(&["restore", dir.to_str().unwrap()]));
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("restore_failed"), "{stderr}");
    assert!(
        stderr.contains("division by zero"),
        "psql's reason: {stderr}"
    );
    assert_eq!(
        user_relations(&world, &target).await,
        "0",
        "one transaction: nothing stays"
    );

    let output = tokio::task::block_in_place(|| world.run(&["restore", "--artifact", "storage"]));
    assert_eq!(
        output.status.code(),
        Some(2),
        "--into is required for storage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drills_pass_on_a_real_backup_and_report_tampered_counts() {
    let mut world = World::new().await;
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    let (url, owner) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);

    let output = tokio::task::block_in_place(|| world.run(&["drill"]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("drill.json")).unwrap()).unwrap();
    assert_eq!(drill["schema"], "backup-drill/v1");
    assert_eq!(drill["status"], "ok");
    assert!(drill["tables_checked"].as_u64().unwrap() >= 4, "{drill}");
    assert_eq!(drill["mismatches"], serde_json::json!([]));
    let status = world.run(&["status"]);
    let (stdout, _) = text(&status);
    assert!(
        stdout.contains("newest drill: ") && stdout.contains(" ok, "),
        "{stdout}"
    );
    assert_eq!(
        scratch_databases(&world, &owner).await,
        Vec::<String>::new()
    );

    edit_manifest(&dir, |manifest| {
        manifest["artifacts"][0]["row_counts"]["public.courses"] = 5.into();
    });
    let output = tokio::task::block_in_place(|| world.run(&["drill"]));
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("restore_mismatch"), "{stderr}");
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("drill.json")).unwrap()).unwrap();
    assert_eq!(drill["status"], "failed");
    assert_eq!(drill["error"]["code"], "restore_mismatch");
    assert_eq!(
        drill["mismatches"],
        serde_json::json!([{"table": "public.courses", "expected": 5, "actual": 1}])
    );
    assert_eq!(
        scratch_databases(&world, &owner).await,
        Vec::<String>::new()
    );

    edit_manifest(&dir, |manifest| {
        manifest["artifacts"][0]
            .as_object_mut()
            .unwrap()
            .remove("row_counts");
    });
    let output = tokio::task::block_in_place(|| world.run(&["drill"]));
    assert_eq!(output.status.code(), Some(1), "a drill never passes hollow");
}

/// What a drill killed long ago left behind: its stamp is far older than any
/// restore timeout.
const LEFTOVER: &str = "backup_drill_20200101_000000_0badc0de";

/// The scratch databases `owner` owns (tests on the shared cluster drill at once).
async fn scratch_databases(world: &World, owner: &str) -> Vec<String> {
    query(
        world,
        "postgres",
        &format!(
            "select datname from pg_database d join pg_roles r on r.oid = d.datdba \
             where r.rolname = '{owner}' and datname like 'backup\\_drill\\_%'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_drill_leaves_no_scratch_database_and_leftovers_are_dropped() {
    let mut world = World::new().await;
    tokio::task::block_in_place(|| backed_up(&world));
    let (url, owner) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);
    let client = world.db.connect().await.unwrap();
    client
        .batch_execute(&format!("create database {LEFTOVER} owner {owner}"))
        .await
        .unwrap();
    // A psql that hangs while applying the dump (as on a huge one) and is the real
    // one otherwise.
    let real = world.db.server().cluster().unwrap().bin_dir().join("psql");
    let scripts = tempfile::tempdir().unwrap();
    let slow = scripts.path().join("psql");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\ncase \"$*\" in *--single-transaction*) cat >/dev/null; exec sleep 600;; esac\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &slow,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    world.set("PSQL", slow.to_str().unwrap());

    let child = world
        .command(&["drill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    fixtures::wait_until(
        "the leftover dropped and a scratch database made",
        Duration::from_secs(60),
        async || {
            let names = scratch_databases(&world, &owner).await;
            names.len() == 1 && names[0] != LEFTOVER
        },
    )
    .await;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let output = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        scratch_databases(&world, &owner).await,
        Vec::<String>::new(),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_follows_runs_and_drills_and_promtool_accepts_it() {
    let mut world = World::new().await;
    let metrics_dir = tempfile::tempdir().unwrap();
    let metrics = metrics_dir.path().join("backup.prom");
    world.set("BACKUP_METRICS_FILE", metrics.to_str().unwrap());
    tokio::task::block_in_place(|| backed_up(&world));
    let first = std::fs::read_to_string(&metrics).unwrap();
    fixtures::reference::promtool_check_metrics(&first).unwrap();
    assert!(first.contains("backup_last_run_success 1"), "{first}");
    assert!(
        first.contains("backup_runs_total{status=\"ok\"} 1"),
        "{first}"
    );
    assert!(
        first.contains("backup_artifact_bytes{artifact=\"supabase_db\"} "),
        "{first}"
    );
    let success = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("backup_last_success_timestamp_seconds "))
            .map(str::to_owned)
    };

    let fake = fixtures::FakePgDump::failing(1, "pg_dump: error: connection refused").unwrap();
    world.set("PG_DUMP", fake.path().to_str().unwrap());
    let output = tokio::task::block_in_place(|| world.run(&["once"]));
    assert_eq!(output.status.code(), Some(1));
    let second = std::fs::read_to_string(&metrics).unwrap();
    fixtures::reference::promtool_check_metrics(&second).unwrap();
    assert!(second.contains("backup_last_run_success 0"), "{second}");
    assert!(
        second.contains("backup_runs_total{status=\"ok\"} 1"),
        "carried on: {second}"
    );
    assert!(
        second.contains("backup_runs_total{status=\"failed\"} 1"),
        "{second}"
    );
    assert_eq!(success(&second), success(&first), "the last success stays");

    let (url, _) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);
    let ok_dir = world.run_dirs()[0].clone();
    let output = tokio::task::block_in_place(|| world.run(&["drill", ok_dir.to_str().unwrap()]));
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let third = std::fs::read_to_string(&metrics).unwrap();
    fixtures::reference::promtool_check_metrics(&third).unwrap();
    assert!(
        third.contains("backup_drill_last_success_timestamp_seconds "),
        "{third}"
    );
    assert!(
        third.contains("backup_runs_total{status=\"failed\"} 1"),
        "{third}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&metrics).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o644, "readable by the collector's user");
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_backups_are_standard_zstd_and_restore() {
    let mut world = World::new().await;
    world.set("BACKUP_COMPRESSION", "zstd");
    let dir = tokio::task::block_in_place(|| backed_up(&world));
    let mut names = crate::support::files_below(&dir);
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "storage_buckets.tar.zst",
            "supabase_db.sql.zst"
        ]
    );
    let manifest = crate::support::read_manifest(&dir);
    assert_eq!(manifest["artifacts"][0]["compression"], "zstd");
    assert_eq!(manifest["artifacts"][0]["file"], "supabase_db.sql.zst");
    let zstd = std::path::Path::new("/usr/bin/zstd");
    let tested = fixtures::command(zstd)
        .arg("-tq")
        .arg(dir.join("supabase_db.sql.zst"))
        .arg(dir.join("storage_buckets.tar.zst"))
        .status()
        .unwrap();
    assert!(
        tested.success(),
        "zstd -t accepts both (install the zstd package)"
    );
    let plain = fixtures::command(zstd)
        .arg("-dc")
        .arg(dir.join("supabase_db.sql.zst"))
        .output()
        .unwrap();
    let sql = String::from_utf8(plain.stdout).unwrap();
    assert!(sql.contains("Seeded course title"));
    assert_eq!(
        manifest["artifacts"][0]["uncompressed_bytes"],
        sql.len(),
        "zstd -dc gives exactly the dump"
    );
    let verify = world.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{:?}", text(&verify));

    let (url, target) = empty_target(&world).await;
    world.set("RESTORE_DATABASE_URL", &url);
    let output = tokio::task::block_in_place(|| world.run(&["restore"]));
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(
        fingerprint(&world, &target, "learning_submissions").await,
        fingerprint(&world, world.db.name(), "learning_submissions").await
    );
    let into = tempfile::tempdir().unwrap();
    let storage = into.path().join("storage");
    let output = tokio::task::block_in_place(|| {
        world.run(&[
            "restore",
            "--artifact",
            "storage",
            "--into",
            storage.to_str().unwrap(),
        ])
    });
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    assert_eq!(
        std::fs::read(storage.join("materials/x.png")).unwrap(),
        fixtures::SAMPLE_PNG
    );
}
