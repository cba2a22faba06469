//! `verify` and `status`: read-only looks at backup directories, printed one line
//! per item on stdout.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use manifest::{BackupDir, Status, UtcTime};

/// Prints one line per artifact (and per leftover); exit 0 only when all is good.
pub(crate) fn verify(dir: &Path) -> ExitCode {
    let dir = match resolve_backup(dir) {
        Ok(dir) => dir,
        Err(message) => return report_failure(&message),
    };
    let verification = match manifest::verify(&dir) {
        Ok(verification) => verification,
        Err(error) => {
            return report_failure(&format!("{error} (an interrupted run, or not a backup)"));
        }
    };
    let mut out = std::io::stdout().lock();
    let status = match verification.manifest.status {
        Status::Ok => "ok".to_owned(),
        Status::Failed => match &verification.manifest.error {
            Some(error) => format!("failed ({} in {})", error.code, error.step),
            None => "failed".to_owned(),
        },
    };
    let _ = writeln!(out, "{}: manifest status {status}", dir.display());
    for check in &verification.artifacts {
        let _ = match &check.problem {
            None => writeln!(out, "ok      {}", check.file),
            Some(problem) => writeln!(out, "FAILED  {}: {problem}", check.file),
        };
    }
    for leftover in &verification.leftovers {
        let _ = writeln!(out, "FAILED  {leftover}: leftover of an interrupted write");
    }
    if verification.is_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A backup directory given directly, or the newest one inside `BACKUP_DIR`.
fn resolve_backup(dir: &Path) -> Result<std::path::PathBuf, String> {
    if dir.join(manifest::MANIFEST_FILE).exists()
        || UtcTime::parse_stamp(&dir.file_name().unwrap_or_default().to_string_lossy()).is_some()
    {
        return Ok(dir.to_owned());
    }
    match BackupDir::new(dir).newest() {
        Ok(Some(newest)) => Ok(dir.join(newest.name)),
        Ok(None) => Err(format!("no backup in {}", dir.display())),
        Err(error) => Err(error.to_string()),
    }
}

/// Prints the newest backup and the age of the newest `ok` one.
pub(crate) fn status(backup_dir: &Path, max_age: Duration) -> ExitCode {
    let backups = BackupDir::new(backup_dir);
    let (newest, newest_ok) = match (backups.newest(), backups.newest_ok()) {
        (Ok(newest), Ok(newest_ok)) => (newest, newest_ok),
        (Err(error), _) | (_, Err(error)) => return report_failure(&error.to_string()),
    };
    let mut out = std::io::stdout().lock();
    match &newest {
        Some(dir) => {
            let status = match dir.status {
                Some(Status::Ok) => "ok",
                Some(Status::Failed) => "failed",
                None => "interrupted (no manifest)",
            };
            let _ = writeln!(out, "newest backup: {} {status}", dir.name);
        }
        None => {
            let _ = writeln!(out, "newest backup: none");
        }
    }
    let Some(ok) = newest_ok else {
        let _ = writeln!(out, "newest successful backup: none");
        return ExitCode::from(1);
    };
    let age = Duration::from_secs(
        u64::try_from(UtcTime::now().unix_seconds() - ok.time.unix_seconds()).unwrap_or(0),
    );
    let fresh = age < max_age;
    let verdict = if fresh { "within" } else { "older than" };
    let _ = writeln!(
        out,
        "newest successful backup: {} age {} ({verdict} max age {})",
        ok.name,
        human(age),
        human(max_age)
    );
    if fresh {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report_failure(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stdout().lock(), "FAILED  {message}");
    ExitCode::from(1)
}

fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (days, hours) {
        (0, 0) => format!("{minutes}m{}s", seconds % 60),
        (0, _) => format!("{hours}h{minutes}m"),
        _ => format!("{days}d{hours}h"),
    }
}
