//! `restore` and `drill`: a backup back into a database (or the storage archive
//! into a directory), checked against the row counts the manifest recorded when
//! the dump streamed.
//!
//! The order is what makes a restore safe to run on a bad day: read the manifest,
//! verify the artifact (size, sha256) before a byte is written, refuse a target
//! that is not empty, apply the dump in one transaction, then compare every table's
//! `count(*)` with the manifest. A drill does the same into a scratch database
//! (`backup_drill_<UTC stamp>_<random>`) that it always drops again — after
//! success, failure or SIGTERM — and first drops what a killed drill left behind:
//! scratch databases whose stamp is older than the restore timeout, which no live
//! drill can own (a drill's restore is killed at that timeout), so two drills on one
//! server never drop each other's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dsn::Dsn;
use dump_runner::{Cancellation, Psql, RestoreError};
use manifest::{ArtifactName, Drill, Manifest, Mismatch, RestoreCode, Status, UtcTime};

/// How restores reach the target.
#[derive(Debug)]
pub struct RestoreConfig {
    /// `RESTORE_DATABASE_URL`: the target database, or for a drill the server (and
    /// the database to connect to while creating the scratch one).
    pub target: Option<Dsn>,
    /// `PSQL`.
    pub psql: PathBuf,
    /// `BACKUP_RESTORE_TIMEOUT_SECONDS`.
    pub timeout: Duration,
    /// `BACKUP_AGE_IDENTITY_FILE`: opens encrypted artifacts.
    pub identities: Option<encryption::Identities>,
}

/// Scratch databases of drills start with this.
pub const DRILL_PREFIX: &str = "backup_drill_";

/// A failed restore: its code, and the detail for the log (never a secret).
#[derive(Debug)]
pub struct Failure {
    /// The restore error code.
    pub code: RestoreCode,
    /// What happened, for the log line.
    pub detail: String,
}

impl From<RestoreError> for Failure {
    fn from(error: RestoreError) -> Failure {
        let mut detail = error.to_string();
        if let RestoreError::Failed { stderr, .. } = &error
            && !stderr.is_empty()
        {
            detail.push_str(": ");
            detail.push_str(
                stderr
                    .lines()
                    .rev()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or(""),
            );
        }
        Failure {
            code: error.code(),
            detail,
        }
    }
}

fn failure(code: RestoreCode, detail: impl Into<String>) -> Failure {
    Failure {
        code,
        detail: detail.into(),
    }
}

/// What a database restore found.
#[derive(Debug)]
pub struct Restored {
    /// Tables compared with the manifest.
    pub tables: u64,
    /// Their rows.
    pub rows: u64,
    /// Differences (empty when it matched).
    pub mismatches: Vec<Mismatch>,
    /// Whether the manifest had counts to compare with.
    pub counted: bool,
}

/// The manifest of `dir` and the file of `artifact` in it, its size and sha256
/// checked against the manifest (not decoded: that happens while it is applied, and
/// a bad stream then fails the one transaction).
fn verified_artifact(dir: &Path, artifact: ArtifactName) -> Result<(Manifest, PathBuf), Failure> {
    let manifest = Manifest::read(dir)
        .map_err(|error| failure(RestoreCode::ArtifactMissing, error.to_string()))?;
    let entry = manifest
        .artifacts
        .iter()
        .find(|entry| entry.name == artifact && entry.status == Status::Ok)
        .ok_or_else(|| {
            failure(
                RestoreCode::ArtifactMissing,
                format!(
                    "the manifest of {} has no {artifact} artifact",
                    dir.display()
                ),
            )
        })?;
    let file = entry.file.clone().unwrap_or_default();
    match manifest::check_digest(dir, entry) {
        Ok(()) => {}
        Err(manifest::Problem::Missing) => {
            return Err(failure(
                RestoreCode::ArtifactMissing,
                format!("{file} is missing"),
            ));
        }
        Err(problem) => {
            return Err(failure(
                RestoreCode::ArtifactCorrupt,
                format!("{file}: {problem}"),
            ));
        }
    }
    Ok((manifest, dir.join(file)))
}

/// Restores the database artifact of `dir` into the (empty) target.
pub fn restore_database(
    dir: &Path,
    artifact: ArtifactName,
    target: &Dsn,
    config: &RestoreConfig,
    cancellation: &Cancellation,
) -> Result<Restored, Failure> {
    let (manifest, file) = verified_artifact(dir, artifact)?;
    let expected = manifest
        .artifacts
        .iter()
        .find(|entry| entry.name == artifact)
        .and_then(|entry| entry.row_counts.clone());
    let psql = psql(config, cancellation);
    let relations = psql.query(target, dump_runner::USER_RELATIONS_SQL)?;
    if relations
        .first()
        .and_then(|row| row.first())
        .map(String::as_str)
        != Some("0")
    {
        return Err(RestoreError::TargetNotEmpty {
            target: target.to_string(),
        }
        .into());
    }
    let applied = psql.apply_dump(target, &file, config.identities.as_ref())?;
    tracing::info!(artifact = %artifact, uncompressed_bytes = applied.bytes, "dump applied");
    for role in &applied.default_privileges_left_out {
        tracing::warn!(artifact = %artifact, role = %role, "left out the dump's ALTER DEFAULT PRIVILEGES FOR ROLE {role}: the restoring role is not a member of it; only tables created later miss that grant");
    }
    let actual = psql.table_counts(target)?;
    Ok(compare(expected.as_ref(), &actual))
}

fn psql<'a>(config: &'a RestoreConfig, cancellation: &'a Cancellation) -> Psql<'a> {
    Psql {
        program: &config.psql,
        timeout: config.timeout,
        cancellation,
        progress_interval: dump_runner::PROGRESS_INTERVAL,
    }
}

/// A restore's comparison as a result: `Ok` with a summary when every table
/// matched, `restore_mismatch` naming the tables when not. A manifest from before
/// row counts were recorded has nothing to compare: that restore is reported, with
/// a warning, as not checked.
pub fn checked(restored: &Restored) -> Result<String, Failure> {
    if !restored.counted {
        tracing::warn!(
            "the manifest has no row_counts (written before they were recorded); rows not compared"
        );
        return Ok("restored; the manifest has no row counts to compare".to_owned());
    }
    if restored.mismatches.is_empty() {
        return Ok(format!(
            "restored and checked: {} tables, {} rows as recorded",
            restored.tables, restored.rows
        ));
    }
    let tables: Vec<String> = restored
        .mismatches
        .iter()
        .map(|mismatch| {
            format!(
                "{} expected {:?} got {:?}",
                mismatch.table, mismatch.expected, mismatch.actual
            )
        })
        .collect();
    Err(failure(RestoreCode::RestoreMismatch, tables.join("; ")))
}

/// The manifest's counts against the restored tables'.
pub fn compare(
    expected: Option<&BTreeMap<String, u64>>,
    actual: &BTreeMap<String, u64>,
) -> Restored {
    let Some(expected) = expected else {
        return Restored {
            tables: 0,
            rows: 0,
            mismatches: Vec::new(),
            counted: false,
        };
    };
    let mut mismatches = Vec::new();
    for (table, &count) in expected {
        match actual.get(table) {
            Some(&found) if found == count => {}
            found => mismatches.push(Mismatch {
                table: table.clone(),
                expected: Some(count),
                actual: found.copied(),
            }),
        }
    }
    for (table, &found) in actual {
        if !expected.contains_key(table) {
            mismatches.push(Mismatch {
                table: table.clone(),
                expected: None,
                actual: Some(found),
            });
        }
    }
    Restored {
        tables: u64::try_from(expected.len()).unwrap_or(u64::MAX),
        rows: expected.values().sum(),
        mismatches,
        counted: true,
    }
}

/// Unpacks the storage archive of `dir` into `into` (absent or empty).
pub fn restore_storage(
    dir: &Path,
    into: &Path,
    config: &RestoreConfig,
) -> Result<dump_runner::Unpacked, Failure> {
    let (_, file) = verified_artifact(dir, ArtifactName::Storage)?;
    Ok(dump_runner::unpack(
        &file,
        into,
        config.identities.as_ref(),
    )?)
}

/// Drills the database artifact of `dir`: scratch database, restore, compare,
/// drop. Writes and returns `drill.json`.
pub fn drill(
    dir: &Path,
    server: &Dsn,
    config: &RestoreConfig,
    cancellation: &Cancellation,
) -> Drill {
    let started = Instant::now();
    let artifact = ArtifactName::SupabaseDb;
    // The drop must happen even after SIGTERM: it gets a cancellation of its own.
    let cleanup_cancellation = Cancellation::new();
    let cleanup = Psql {
        timeout: Duration::from_secs(60),
        ..psql(config, &cleanup_cancellation)
    };
    drop_leftovers(&cleanup, server, config.timeout + Duration::from_secs(60));
    let scratch = format!(
        "{DRILL_PREFIX}{}_{}",
        UtcTime::now().stamp().replace('-', ""),
        random_suffix()
    );
    let outcome = (|| {
        cleanup.query(server, &format!("create database {scratch}"))?;
        tracing::info!(database = %scratch, "drill: scratch database created");
        restore_database(
            dir,
            artifact,
            &server.with_dbname(&scratch),
            config,
            cancellation,
        )
    })();
    match cleanup.query(
        server,
        &format!("drop database if exists {scratch} with (force)"),
    ) {
        Ok(_) => tracing::info!(database = %scratch, "drill: scratch database dropped"),
        Err(error) => {
            tracing::error!(database = %scratch, error = %error, "drill: cannot drop the scratch database; the next drill drops it")
        }
    }
    let drill = match outcome {
        Ok(restored) if !restored.counted => Drill::new(
            artifact,
            UtcTime::now(),
            started.elapsed(),
            0,
            0,
            Vec::new(),
            Some(RestoreCode::RestoreMismatch),
        ),
        Ok(restored) => Drill::new(
            artifact,
            UtcTime::now(),
            started.elapsed(),
            restored.tables,
            restored.rows,
            restored.mismatches,
            None,
        ),
        Err(failure) => {
            tracing::error!(code = %failure.code, error = %failure.detail, "drill failed");
            Drill::new(
                artifact,
                UtcTime::now(),
                started.elapsed(),
                0,
                0,
                Vec::new(),
                Some(failure.code),
            )
        }
    };
    if let Err(error) = drill.write_atomic(dir) {
        tracing::error!(error = %error, "cannot write drill.json");
    }
    drill
}

/// Drops the scratch databases of drills that were killed before their drop: ours
/// by name, and older than `older_than`.
fn drop_leftovers(psql: &Psql<'_>, server: &Dsn, older_than: Duration) {
    let like = format!("{}%", DRILL_PREFIX.replace('_', "\\_"));
    let Ok(rows) = psql.query(
        server,
        &format!("select datname from pg_database where datname like '{like}'"),
    ) else {
        return;
    };
    for row in rows {
        let Some(name) = row.first() else { continue };
        let Some(created) = scratch_created(name) else {
            continue;
        };
        let age = UtcTime::now().unix_seconds() - created.unix_seconds();
        if u64::try_from(age).unwrap_or(0) < older_than.as_secs() {
            continue;
        }
        match psql.query(
            server,
            &format!("drop database if exists {name} with (force)"),
        ) {
            Ok(_) => {
                tracing::warn!(database = %name, "drill: dropped the scratch database of an earlier, killed drill")
            }
            Err(error) => {
                tracing::error!(database = %name, error = %error, "drill: cannot drop a leftover scratch database")
            }
        }
    }
}

/// When a scratch database this module made was created, from its name
/// (`backup_drill_YYYYMMDD_HHMMSS_xxxxxxxx`); `None` for any other name, which is
/// then never dropped (and, being only `[a-z0-9_]`, safe in SQL unquoted).
fn scratch_created(name: &str) -> Option<UtcTime> {
    let rest = name.strip_prefix(DRILL_PREFIX)?;
    let [date, time, suffix] = rest.split('_').collect::<Vec<_>>()[..] else {
        return None;
    };
    let digits =
        |text: &str, len| text.len() == len && text.bytes().all(|byte| byte.is_ascii_digit());
    let hex = suffix.len() == 8
        && suffix
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if !digits(date, 8) || !digits(time, 6) || !hex {
        return None;
    }
    let number = |text: &str| text.parse::<u32>().ok();
    UtcTime::from_civil(
        i64::from(number(&date[..4])?),
        number(&date[4..6])?,
        number(&date[6..])?,
        number(&time[..2])?,
        number(&time[2..4])?,
        number(&time[4..])?,
    )
}

/// Eight lowercase hex characters, unique enough to keep two drills apart.
fn random_suffix() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_ours_only() {
        assert_eq!(
            scratch_created("backup_drill_20261202_022911_0a1b2c3d"),
            UtcTime::parse_rfc3339("2026-12-02T02:29:11Z")
        );
        for other in [
            "backup_drill_",
            "backup_drill_leftover_1",
            "backup_drill_20261202_022911_0a1b2c3d; drop database platform",
            "backup_drill_20261302_022911_0a1b2c3d",
            "backup_drill_20261202_022911_0A1B2C3D",
            "platform",
        ] {
            assert_eq!(scratch_created(other), None, "{other}");
        }
    }

    #[test]
    fn counts_compare_both_ways() {
        let expected = BTreeMap::from([("public.a".to_owned(), 3), ("public.b".to_owned(), 0)]);
        let same = compare(Some(&expected), &expected);
        assert_eq!((same.tables, same.rows, same.mismatches.len()), (2, 3, 0));
        let actual = BTreeMap::from([("public.a".to_owned(), 2), ("public.c".to_owned(), 1)]);
        let different = compare(Some(&expected), &actual);
        assert_eq!(
            different.mismatches,
            vec![
                Mismatch {
                    table: "public.a".into(),
                    expected: Some(3),
                    actual: Some(2)
                },
                Mismatch {
                    table: "public.b".into(),
                    expected: Some(0),
                    actual: None
                },
                Mismatch {
                    table: "public.c".into(),
                    expected: None,
                    actual: Some(1)
                },
            ]
        );
        assert!(!compare(None, &actual).counted);
    }
}
