//! Off-site copies in a run: which local backups to upload (the new one, and
//! earlier ones whose copy is missing or failed), recording each attempt in its
//! `offsite.json`, and remote retention with the local rules. The upload itself is
//! the `offsite` crate's.
//!
//! Catch-up is what makes an outage of the object store heal by itself: every run
//! uploads, oldest first, each local `ok` backup within `RETENTION_DAYS` whose
//! `offsite.json` is missing or `failed`, each under the upload limit. A failure of
//! the store as a whole (keys, bucket, network, time) ends the pass: the rest would
//! fail the same way and wait for the next run.

use std::time::Duration;

use dump_runner::Cancellation;
use manifest::{BackupDir, Offsite, OffsiteCode, StampDir, Status, UtcTime};

use crate::retention::RetentionPolicy;

/// `BACKUP_S3_*` and the client they configure.
#[derive(Debug)]
pub struct OffsiteConfig {
    /// The bucket and prefix, reachable.
    pub remote: offsite::Remote,
    /// `BACKUP_S3_TIMEOUT_SECONDS`: the limit for uploading one backup.
    pub timeout: Duration,
    /// `BACKUP_S3_RETENTION_DAYS` (default `RETENTION_DAYS`) and `BACKUP_KEEP_MIN`.
    pub retention: RetentionPolicy,
}

/// One attempted upload.
#[derive(Debug)]
pub struct Attempt {
    /// The backup directory's name.
    pub name: String,
    /// What `offsite.json` now says.
    pub record: Offsite,
}

impl Attempt {
    /// True when the copy is complete and checked.
    pub fn is_ok(&self) -> bool {
        self.record.status == Status::Ok
    }

    fn code(&self) -> Option<OffsiteCode> {
        self.record.error.as_ref().map(|error| error.code)
    }
}

/// Whether `dir`'s off-site copy is recorded as ok.
pub fn copied(backups: &BackupDir, name: &str) -> bool {
    matches!(
        Offsite::read(&backups.root().join(name)),
        Ok(Some(record)) if record.status == Status::Ok
    )
}

/// The local backups to upload, oldest first: `ok` manifests within
/// `retention_days` whose copy is missing or failed.
pub fn pending(
    dirs: &[StampDir],
    backups: &BackupDir,
    now: UtcTime,
    retention_days: u32,
) -> Vec<String> {
    let max_age = i64::from(retention_days) * 86_400;
    dirs.iter()
        .filter(|dir| dir.status == Some(Status::Ok))
        .filter(|dir| now.unix_seconds() - dir.time.unix_seconds() <= max_age)
        .filter(|dir| !copied(backups, &dir.name))
        .map(|dir| dir.name.clone())
        .collect()
}

/// Uploads every pending backup (see [`pending`]), writing each one's
/// `offsite.json`. Stops at the first failure of the store as a whole.
pub fn catch_up(
    backups: &BackupDir,
    config: &OffsiteConfig,
    local: RetentionPolicy,
    cancellation: &Cancellation,
) -> Result<Vec<Attempt>, manifest::Error> {
    let names = pending(
        &backups.list()?,
        backups,
        UtcTime::now(),
        local.retention_days,
    );
    let mut attempts = Vec::new();
    for name in names.iter().cloned() {
        if cancellation.is_cancelled() {
            record_not_attempted(backups, &names[attempts.len()..], OffsiteCode::Interrupted);
            break;
        }
        let dir = backups.root().join(&name);
        tracing::info!(backup = %name, "off-site copy started");
        let record = config.remote.upload(
            &dir,
            &name,
            offsite::Deadline::after(config.timeout),
            &|| cancellation.is_cancelled(),
        );
        if let Err(error) = record.write_atomic(&dir) {
            tracing::error!(backup = %name, error = %error, "cannot write offsite.json");
        }
        let attempt = Attempt { name, record };
        match attempt.code() {
            None => tracing::info!(
                backup = %attempt.name,
                objects = attempt.record.objects.len(),
                duration_ms = attempt.record.duration_ms,
                "off-site copy ok"
            ),
            Some(code) => {
                tracing::error!(backup = %attempt.name, code = %code, "off-site copy failed")
            }
        }
        let store_down = attempt.code().filter(|code| code.is_store_wide());
        attempts.push(attempt);
        if let Some(code) = store_down {
            record_not_attempted(backups, &names[attempts.len()..], code);
            break;
        }
    }
    Ok(attempts)
}

/// After the store failed as a whole, the backups left in the pass that have no
/// record yet (the run's own, at least) get one with the same code, so that each
/// says why it is not off-site.
fn record_not_attempted(backups: &BackupDir, names: &[String], code: OffsiteCode) {
    for name in names {
        let dir = backups.root().join(name);
        if matches!(Offsite::read(&dir), Ok(None)) {
            let record = Offsite::new(UtcTime::now(), Duration::ZERO, Vec::new(), Some(code));
            if let Err(error) = record.write_atomic(&dir) {
                tracing::error!(backup = %name, error = %error, "cannot write offsite.json");
            }
        }
    }
}

/// `backup-cron sync`: the catch-up pass alone, under the run lock. Prints one
/// line per backup tried; exit 0 when every one was copied (or none was
/// pending), 1 otherwise, 3 when a run holds the lock.
pub fn sync(
    backups: &BackupDir,
    config: &OffsiteConfig,
    local: RetentionPolicy,
    metrics_file: Option<&std::path::Path>,
    cancellation: &Cancellation,
) -> std::process::ExitCode {
    let _lock = match backups.lock() {
        Ok(lock) => lock,
        Err(manifest::Error::Locked { .. }) => {
            eprintln!("backup-cron: another run holds the lock; nothing was touched");
            return std::process::ExitCode::from(3);
        }
        Err(error) => {
            eprintln!("backup-cron: cannot take the run lock: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let attempts = match catch_up(backups, config, local, cancellation) {
        Ok(attempts) => attempts,
        Err(error) => {
            eprintln!("backup-cron: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    if let Some(path) = metrics_file {
        crate::metrics::record_offsite(path, &attempts);
    }
    let mut out = String::new();
    for attempt in &attempts {
        let line = match attempt.code() {
            None => format!(
                "ok      {} ({} objects)\n",
                attempt.name,
                attempt.record.objects.len()
            ),
            Some(code) => format!("FAILED  {}: {code}\n", attempt.name),
        };
        out.push_str(&line);
    }
    if attempts.is_empty() {
        out.push_str("nothing to copy: every ok backup within retention is off-site\n");
    }
    {
        use std::io::Write as _;
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
    if attempts.iter().all(Attempt::is_ok) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

/// Remote retention with the local rules: among remote stamp prefixes, those older
/// than the remote retention go, except the newest `BACKUP_KEEP_MIN` whose remote
/// manifest is `ok` and `current`. Returns the names deleted.
pub fn apply_remote_retention(
    config: &OffsiteConfig,
    current: &str,
    cancellation: &Cancellation,
) -> Result<Vec<String>, OffsiteCode> {
    let cancelled = || cancellation.is_cancelled();
    let listed = config
        .remote
        .list(offsite::Deadline::after(config.timeout), &cancelled)?;
    let dirs: Vec<StampDir> = listed
        .into_iter()
        .map(|backup| StampDir {
            name: backup.name,
            time: backup.time,
            sequence: backup.sequence,
            status: backup.status,
        })
        .collect();
    let doomed = crate::retention::plan(&dirs, UtcTime::now(), config.retention, current);
    for name in &doomed {
        config
            .remote
            .delete(name, offsite::Deadline::after(config.timeout), &cancelled)?;
    }
    Ok(doomed)
}
