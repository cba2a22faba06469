//! The artifact formats on text shaped like the platform's submissions (about 5:1
//! with gzip, where pgbench's tables compress 16:1 and flatter every compressor):
//! gzip against zstd, the cost of age encryption, and the off-site upload against a
//! plain `PUT` of the same file into the same S3 server.

use std::path::Path;

use xshell::{Shell, cmd};

use super::{Psql, Sample, Settings, measure, print_table, release_binary, run_dir, stats};

/// Builds the `essays` dataset: sentences drawn from a bank of 3,000 (as essays
/// on one task repeat each other's phrases), each essay 10 to 21 of them with a
/// number each; about 4.7:1 with gzip -6.
pub(super) fn essays_sql(rows: u32) -> String {
    format!(
        "select setseed(0.42); \
         create temp table words as select array['the','light','plant','water','energy','sugar','leaf','cell','green','sun',\
         'chlorophyll','carbon','dioxide','oxygen','process','because','therefore','however','students','explain',\
         'photosynthesis','roots','stem','glucose','absorb','release','reaction','chemical','food','growth','air','soil',\
         'minerals','we','observed','that','when','increases','decreases','experiment','result','temperature','measure',\
         'data','graph','shows','more','less','rate','during','night','day','and','of','in','is','to','a','it','this'] as w; \
         create temp table bank (s int primary key, sentence text); \
         insert into bank select s, initcap((select string_agg(w[1 + floor(random() * array_length(w, 1))::int], ' ') \
         from generate_series(1, 8 + s % 9) i, words where s >= 0)) from generate_series(0, 2999) s; \
         analyze bank; \
         create table essays as select n as id, 'student_' || (n % 900) as student, \
         (select string_agg(b.sentence || ' ' || p.mark || '.', ' ') \
         from (select floor(random() * 3000)::int as k, (random() * 100)::int as mark \
         from generate_series(1, 10 + (n % 12)) i) p join bank b on b.s = p.k) || E'\\n' as body \
         from generate_series(1, {rows}) n;"
    )
}

pub(super) fn format_cases(
    sh: &Shell,
    cluster: &fixtures::TestCluster,
    scratch: &Path,
    settings: &Settings,
) -> anyhow::Result<String> {
    let psql = Psql { sh, cluster };
    let pg_dump = cluster.bin_dir().join("pg_dump");
    let db = "bench_text";
    eprintln!("xtask bench: text dataset: {} essays", settings.essay_rows);
    psql.run("postgres", &format!("create database {db}"))?;
    psql.run(db, &essays_sql(settings.essay_rows))?;
    let dsn = psql.dsn(db);
    let plain_bytes = super::plain_sql_bytes(sh, &pg_dump, &dsn)?;
    let recipient = age_recipient(scratch)?;
    let backup_cron = release_binary("backup-cron");
    let out = scratch.join("formats");
    std::fs::create_dir_all(&out)?;
    let case = |name: &str, extra: &[(&'static str, String)]| {
        let dir_name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = out.join(dir_name);
        let mut env = vec![
            ("BACKUP_DIR", dir.display().to_string()),
            ("DATABASE_URL", dsn.clone()),
            ("PG_DUMP", pg_dump.display().to_string()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        (
            format!("backup-cron once, {name}"),
            format!(
                "rm -rf {dir} && {} once",
                backup_cron.display(),
                dir = dir.display()
            ),
            env,
            dir,
        )
    };
    let recipient = ("BACKUP_AGE_RECIPIENTS", recipient);
    let zstd = ("BACKUP_COMPRESSION", "zstd".to_owned());
    let cases = [
        case("gzip 6 (default)", &[]),
        case("zstd 3 (default)", std::slice::from_ref(&zstd)),
        case("gzip 6 + age", std::slice::from_ref(&recipient)),
        case("zstd 3 + age", &[zstd, recipient]),
    ];
    let pigz = format!(
        "{} --format=plain --no-owner -d '{dsn}' | pigz -6 > {}/pigz.sql.gz",
        pg_dump.display(),
        out.display()
    );
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut results = Vec::new();
    let peer = measure_case(sh, &pigz, &[], settings.runs)?;
    let pigz_bytes = std::fs::metadata(out.join("pigz.sql.gz"))?.len();
    for (name, script, env, dir) in &cases {
        let (median, min, max, rss) = measure_case(sh, script, env, settings.runs)?;
        let bytes = artifact_bytes(dir)?;
        results.push((name.clone(), median, bytes));
        json.push(format!(
            "{{\"case\":\"{name}\",\"median_s\":{median:.4},\"min_s\":{min:.4},\"max_s\":{max:.4},\"output_bytes\":{bytes},\"peak_rss_kib\":{rss},\"plain_bytes\":{plain_bytes}}}"
        ));
    }
    let (gzip_seconds, gzip_bytes) = (results[0].1, results[0].2 as f64);
    rows.push(format!(
        "| pg_dump \\| pigz -6 (peer) | {:.2} | {:.2}× | {:.1} | {:.2}:1 | {:.2}× | {:.1} |",
        peer.0,
        peer.0 / gzip_seconds,
        pigz_bytes as f64 / 1e6,
        plain_bytes / pigz_bytes as f64,
        pigz_bytes as f64 / gzip_bytes,
        peer.3 as f64 / 1024.0
    ));
    for (name, median, bytes) in &results {
        let rss = json_rss(&json, name);
        rows.push(format!(
            "| {name} | {median:.2} | {:.2}× | {:.1} | {:.2}:1 | {:.2}× | {:.1} |",
            median / gzip_seconds,
            *bytes as f64 / 1e6,
            plain_bytes / *bytes as f64,
            *bytes as f64 / gzip_bytes,
            rss / 1024.0
        ));
    }
    print_table(
        &format!(
            "Formats on the text dataset ({:.0} MB of plain SQL; each a whole process; ratios to backup-cron's gzip default)",
            plain_bytes / 1e6
        ),
        "| case | median s | time ratio | output MB | compression | size ratio | peak RSS MiB |\n|---|---|---|---|---|---|---|",
        &rows,
    );
    let upload = upload_cases(sh, &cases[0].3, settings.runs)?;
    json.extend(upload);
    Ok(format!("[{}]\n", json.join(",\n")))
}

pub(super) fn measure_case(
    sh: &Shell,
    script: &str,
    env: &[(&'static str, String)],
    runs: usize,
) -> anyhow::Result<(f64, f64, f64, u64)> {
    let samples: Vec<Sample> = (0..runs)
        .map(|_| measure(sh, script, env))
        .collect::<Result<_, _>>()?;
    Ok(stats(&samples))
}

fn json_rss(json: &[String], name: &str) -> f64 {
    json.iter()
        .find(|row| row.contains(&format!("\"case\":\"{name}\"")))
        .and_then(|row| {
            row.split("\"peak_rss_kib\":")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

/// The dump artifact's size in the one run directory below `dir`.
fn artifact_bytes(dir: &Path) -> anyhow::Result<u64> {
    let run = run_dir(dir)?;
    let manifest = manifest::Manifest::read(&run)?;
    manifest.artifacts[0]
        .bytes
        .ok_or_else(|| anyhow::anyhow!("no artifact size in {}", run.display()))
}

/// The awscli release the upload case compares with.
const AWSCLI_VERSION: &str = "1.46.3";

/// `aws` from a virtualenv in `target/bench`, created (from PyPI) on first use.
fn aws_cli(sh: &Shell) -> anyhow::Result<std::path::PathBuf> {
    let venv = crate::python::venv(sh, "awscli", &[&format!("awscli=={AWSCLI_VERSION}")])?;
    Ok(venv.join("bin/aws"))
}

/// The public key of a key pair made by `age-keygen`.
fn age_recipient(scratch: &Path) -> anyhow::Result<String> {
    let path = scratch.join("bench-age-key.txt");
    let sh = Shell::new()?;
    cmd!(sh, "age-keygen -o {path}")
        .quiet()
        .ignore_stderr()
        .run()?;
    let public = cmd!(sh, "age-keygen -y {path}").read()?;
    Ok(public.trim().to_owned())
}

/// `backup-cron sync` of the gzip backup into a local S3 server against one plain
/// `PUT` of its dump with curl (SigV4), into the same server: MB/s of each.
fn upload_cases(sh: &Shell, backups: &Path, runs: usize) -> anyhow::Result<Vec<String>> {
    let server = fixtures::S3Server::start()?;
    let run = run_dir(backups)?;
    let dump = run.join("supabase_db.sql.gz");
    let bytes = std::fs::metadata(&dump)?.len() as f64;
    let total: f64 = manifest::Manifest::read(&run)?
        .artifacts
        .iter()
        .filter_map(|artifact| artifact.bytes)
        .sum::<u64>() as f64
        + std::fs::metadata(run.join(manifest::MANIFEST_FILE))?.len() as f64;
    let put = format!(
        "curl -sS -f -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 --user {}:{} -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T {} {}/{}/plain/supabase_db.sql.gz",
        server.access_key(),
        server.secret_key(),
        dump.display(),
        server.endpoint(),
        fixtures::S3_BUCKET
    );
    let sync = format!(
        "rm -f {offsite} && {} sync > /dev/null",
        release_binary("backup-cron").display(),
        offsite = run.join(manifest::OFFSITE_FILE).display()
    );
    let env = vec![
        ("BACKUP_DIR", backups.display().to_string()),
        (
            "BACKUP_S3_URL",
            format!("s3://{}/bench", fixtures::S3_BUCKET),
        ),
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_ACCESS_KEY_ID", server.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key().to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let aws = aws_cli(sh)?;
    let aws_cp = format!(
        "{} --endpoint-url {} s3 cp --quiet {} s3://{}/aws/supabase_db.sql.gz",
        aws.display(),
        server.endpoint(),
        dump.display(),
        fixtures::S3_BUCKET
    );
    let aws_env = vec![
        ("AWS_ACCESS_KEY_ID", server.access_key().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key().to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
    ];
    let plain = measure_case(sh, &put, &[], runs)?;
    let peer = measure_case(sh, &aws_cp, &aws_env, runs)?;
    let ours = measure_case(sh, &sync, &env, runs)?;
    let (plain_rate, peer_rate, our_rate) = (
        bytes / plain.0 / 1e6,
        bytes / peer.0 / 1e6,
        total / ours.0 / 1e6,
    );
    print_table(
        &format!(
            "Off-site upload into a local S3 server (s3s-fs), the {:.1} MB gzip dump; MB/s of what each sent",
            bytes / 1e6
        ),
        "| case | median s | MB/s | rate ratio | peak RSS MiB |\n|---|---|---|---|---|",
        &[
            format!(
                "| one `PUT` with curl (SigV4) | {:.3} | {plain_rate:.0} | 1.00× | {:.1} |",
                plain.0,
                plain.3 as f64 / 1024.0
            ),
            format!(
                "| `aws s3 cp` (awscli {AWSCLI_VERSION}, multipart, 10 in flight; Python start included) | {:.3} | {peer_rate:.0} | {:.2}× | {:.1} |",
                peer.0,
                peer_rate / plain_rate,
                peer.3 as f64 / 1024.0
            ),
            format!(
                "| backup-cron sync (hashed, multipart, size checked, manifest last) | {:.3} | {our_rate:.0} | {:.2}× | {:.1} |",
                ours.0,
                our_rate / plain_rate,
                ours.3 as f64 / 1024.0
            ),
        ],
    );
    Ok(vec![
        format!(
            "{{\"case\":\"upload, aws s3 cp\",\"median_s\":{:.4},\"bytes\":{bytes},\"peak_rss_kib\":{}}}",
            peer.0, peer.3
        ),
        format!(
            "{{\"case\":\"upload, curl PUT\",\"median_s\":{:.4},\"bytes\":{bytes},\"peak_rss_kib\":{}}}",
            plain.0, plain.3
        ),
        format!(
            "{{\"case\":\"upload, backup-cron sync\",\"median_s\":{:.4},\"bytes\":{total},\"peak_rss_kib\":{}}}",
            ours.0, ours.3
        ),
    ])
}
