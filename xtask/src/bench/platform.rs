//! The whole backup job on data shaped like the platform's: the submissions-like
//! essays (about 5:1 with gzip), a small second database (Keycloak's), and a
//! storage directory of incompressible files (students' photos and PDFs). The same
//! job done by shell pipelines (`gzip -6`, `pigz -6`) and by a Python script of
//! the kind the service replaced (`python_backup.py`), each a whole process, at
//! the dataset's size and at twice it (peak memory must not grow with the data).

use std::path::Path;

use xshell::Shell;

use super::formats::{essays_sql, measure_case};
use super::{Psql, Settings, print_table, release_binary, run_dir};
use crate::project_root;

/// Storage files and their size: about 52 MB in all.
const STORAGE_FILES: usize = 52;
const STORAGE_FILE_BYTES: usize = 1_000_000;

pub(super) fn platform_cases(
    sh: &Shell,
    cluster: &fixtures::TestCluster,
    scratch: &Path,
    settings: &Settings,
) -> anyhow::Result<String> {
    let psql = Psql { sh, cluster };
    let pg_dump = cluster.bin_dir().join("pg_dump");
    let storage = scratch.join("platform-storage");
    write_storage(&storage)?;
    // Keycloak's database: about 5 MB of plain SQL.
    psql.run("postgres", "create database bench_keycloak")?;
    psql.run(
        "bench_keycloak",
        "create table user_entity as select md5(n::text) as id, 'user' || n || '@school.example' as email, \
         n % 40 as realm from generate_series(1, 60000) n",
    )?;
    let python = project_root().join("xtask/src/bench/python_backup.py");
    let backup_cron = release_binary("backup-cron");
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for (label, factor) in [("1x", 1u32), ("2x", 2)] {
        let db = format!("bench_platform_{label}");
        eprintln!(
            "xtask bench: platform dataset {label}: {} essays",
            settings.essay_rows * factor
        );
        psql.run("postgres", &format!("create database {db}"))?;
        psql.run(&db, &essays_sql(settings.essay_rows * factor))?;
        let (dsn, keycloak) = (psql.dsn(&db), psql.dsn("bench_keycloak"));
        let plain_bytes = super::plain_sql_bytes(sh, &pg_dump, &dsn)?;
        let out = scratch.join(format!("platform-{label}"));
        let shell_job = |compressor: &str| {
            let dir = out.join(compressor.replace(' ', ""));
            let dump = |source: &str, file: &str| {
                format!(
                    "{} --format=plain --no-owner -d '{source}' | {compressor} > {}/{file}",
                    pg_dump.display(),
                    dir.display()
                )
            };
            let script = format!(
                "rm -rf {dir} && mkdir -p {dir} && {} && {} && tar -C {} -cf - . | {compressor} > {dir}/storage_buckets.tar.gz",
                dump(&dsn, "supabase_db.sql.gz"),
                dump(&keycloak, "keycloak_db.sql.gz"),
                storage.display(),
                dir = dir.display()
            );
            (
                format!("pg_dump | {compressor}, tar | {compressor}"),
                script,
                vec![],
                dir,
            )
        };
        let job_env = |dir: &Path| {
            vec![
                ("BACKUP_DIR", dir.display().to_string()),
                ("DATABASE_URL", dsn.clone()),
                ("KC_DB_URL", keycloak.clone()),
                ("SUPABASE_STORAGE_ROOT", storage.display().to_string()),
                ("PG_DUMP", pg_dump.display().to_string()),
                ("RUST_LOG", "warn".to_owned()),
            ]
        };
        let python_dir = out.join("python");
        let ours_dir = out.join("backup-cron");
        let cases = [
            (
                "Python script (gzip module, default level 9)".to_owned(),
                format!(
                    "rm -rf {dir} && python3 {} {dir}",
                    python.display(),
                    dir = python_dir.display()
                ),
                job_env(&python_dir),
                python_dir.clone(),
            ),
            shell_job("gzip -6"),
            shell_job("pigz -6"),
            (
                "backup-cron once (gzip level 6, the default)".to_owned(),
                format!(
                    "rm -rf {dir} && {} once",
                    backup_cron.display(),
                    dir = ours_dir.display()
                ),
                job_env(&ours_dir),
                ours_dir.clone(),
            ),
        ];
        let mut results = Vec::new();
        for (name, script, env, dir) in &cases {
            let (median, min, max, rss) = measure_case(sh, script, env, settings.runs)?;
            let bytes = job_bytes(dir)?;
            json.push(format!(
                "{{\"dataset\":\"platform-{label}\",\"case\":\"{name}\",\"median_s\":{median:.4},\"min_s\":{min:.4},\"max_s\":{max:.4},\
                 \"output_bytes\":{bytes},\"peak_rss_kib\":{rss},\"plain_bytes\":{plain_bytes}}}"
            ));
            results.push((name.clone(), median, bytes, rss));
        }
        let (python_seconds, gzip_bytes) = (results[0].1, results[1].2 as f64);
        for (name, median, bytes, rss) in &results {
            rows.push(format!(
                "| {label} ({:.0} MB SQL) | {} | {median:.2} | {:.3}× | {:.1} | {:.3}× | {:.1} |",
                plain_bytes / 1e6,
                name.replace('|', "\\|"),
                median / python_seconds,
                *bytes as f64 / 1e6,
                *bytes as f64 / gzip_bytes,
                *rss as f64 / 1024.0
            ));
        }
    }
    print_table(
        "Whole backup job on platform-shaped data (essays about 5:1, a 5 MB second database, \
         52 MB of incompressible storage files; each a whole process; time ratio to the Python \
         script, size ratio to gzip -6)",
        "| dataset | case | median s | time ratio | output MB | size ratio | peak RSS MiB |\n|---|---|---|---|---|---|---|",
        &rows,
    );
    Ok(format!("[{}]\n", json.join(",\n")))
}

/// Incompressible files, like photos: the same bytes every run (a fixed-seed
/// xorshift), so runs compare.
fn write_storage(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("submissions"))?;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..STORAGE_FILES {
        let mut bytes = Vec::with_capacity(STORAGE_FILE_BYTES);
        while bytes.len() < STORAGE_FILE_BYTES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(root.join(format!("submissions/photo-{n:02}.jpg")), &bytes)?;
    }
    Ok(())
}

/// The compressed bytes a job wrote: its three artifacts, wherever it put them.
fn job_bytes(dir: &Path) -> anyhow::Result<u64> {
    let dir = if dir.join("manifest.json").exists() || dir.join("supabase_db.sql.gz").exists() {
        dir.to_path_buf()
    } else {
        run_dir(dir)?
    };
    [
        "supabase_db.sql.gz",
        "keycloak_db.sql.gz",
        "storage_buckets.tar.gz",
    ]
    .iter()
    .map(|file| Ok(std::fs::metadata(dir.join(file))?.len()))
    .sum()
}
