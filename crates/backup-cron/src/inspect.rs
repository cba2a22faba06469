//! `verify` and `status`: read-only looks at backup directories, as a [`Report`]
//! of one line per item and a verdict, which the binary prints.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use manifest::{BackupDir, Status, UtcTime};

/// What `verify` or `status` found: the lines to print, and whether all is good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// One line per item, in order (with line breaks).
    pub text: String,
    /// Whether the verdict is good (exit 0).
    pub good: bool,
}

impl Report {
    fn failure(message: &str) -> Report {
        Report {
            text: format!("FAILED  {message}\n"),
            good: false,
        }
    }

    /// Prints the lines on stdout; the exit status of the verdict.
    pub fn print(&self) -> ExitCode {
        use std::io::Write as _;
        let _ = std::io::stdout().lock().write_all(self.text.as_bytes());
        if self.good {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// One line per artifact (and per leftover); good only when everything is.
/// Encrypted artifacts are decrypted with `identities` when given.
pub fn verify(dir: &Path, identities: Option<&encryption::Identities>) -> Report {
    let dir = match resolve_backup(dir) {
        Ok(dir) => dir,
        Err(message) => return Report::failure(&message),
    };
    let verification = match manifest::verify_with(&dir, identities) {
        Ok(verification) => verification,
        Err(error) => {
            return Report::failure(&format!("{error} (an interrupted run, or not a backup)"));
        }
    };
    let mut out = String::new();
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
    Report {
        text: out,
        good: verification.is_good(),
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

/// `verify --remote`: downloads the remote backup `stamp` (default: the newest
/// remote one whose manifest is `ok`) into a private temporary directory inside
/// `backup_dir` (the disk that holds backups has room for one) and verifies it as
/// [`verify`] does, against the remote manifest. The download is removed after.
pub fn verify_remote(
    copies: &crate::copies::OffsiteConfig,
    backup_dir: &Path,
    stamp: Option<&str>,
    identities: Option<&encryption::Identities>,
    cancellation: &dump_runner::Cancellation,
) -> Report {
    let cancelled = || cancellation.is_cancelled();
    let deadline = || offsite::Deadline::after(copies.timeout);
    let listed = match copies.remote.list(deadline(), &cancelled) {
        Ok(listed) => listed,
        Err(code) => return Report::failure(&format!("cannot list the remote backups: {code}")),
    };
    let chosen = match stamp {
        Some(stamp) => listed.iter().find(|backup| backup.name == stamp),
        None => listed
            .iter()
            .rev()
            .find(|backup| backup.status == Some(Status::Ok)),
    };
    let Some(chosen) = chosen else {
        return Report::failure(&match stamp {
            Some(stamp) => format!("no remote backup {stamp}"),
            None => "no remote backup with an ok manifest".to_owned(),
        });
    };
    if chosen.status.is_none() {
        return Report::failure(&format!(
            "remote {}: no manifest (an incomplete upload, not a backup)",
            chosen.name
        ));
    }
    let scratch = match tempfile::Builder::new()
        .prefix(".remote-verify-")
        .tempdir_in(backup_dir)
    {
        Ok(scratch) => scratch,
        Err(error) => {
            return Report::failure(&format!("cannot create a download directory: {error}"));
        }
    };
    if let Err(code) = copies
        .remote
        .download(&chosen.name, scratch.path(), deadline(), &cancelled)
    {
        return Report::failure(&format!("remote {}: download failed: {code}", chosen.name));
    }
    let mut report = verify(scratch.path(), identities);
    let local_path = scratch.path().display().to_string();
    report.text = format!("remote {}:\n", chosen.name)
        + &report
            .text
            .replace(&local_path, &format!("remote {}", chosen.name));
    report
}

/// The newest backup and the age of the newest successful one at `now`; healthy
/// when that is younger than `max_age`, or, before any run was attempted, when a
/// scheduler started less than `max_age` ago. With `offsite_required`, a backup is
/// successful only when its `offsite.json` is `ok` too.
pub fn status(
    backup_dir: &Path,
    max_age: Duration,
    now: UtcTime,
    offsite_required: bool,
) -> Report {
    let backups = BackupDir::new(backup_dir);
    let listed = backups
        .list()
        .and_then(|dirs| Ok((dirs, backups.is_locked()?)));
    let (mut dirs, running) = match listed {
        Ok(listed) => listed,
        Err(error) => return Report::failure(&error.to_string()),
    };
    let mut out = String::new();
    // The newest directory without a manifest, while the lock is held, is the run
    // in progress: not an attempt that ended yet.
    if running && dirs.last().is_some_and(|dir| dir.status.is_none()) {
        let _ = writeln!(
            out,
            "backup in progress: {}",
            dirs.pop().map(|dir| dir.name).unwrap_or_default()
        );
    }
    match dirs.last() {
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
    let age_of = |time: UtcTime| {
        Duration::from_secs(u64::try_from(now.unix_seconds() - time.unix_seconds()).unwrap_or(0))
    };
    let verdict = |age: Duration| {
        if age < max_age {
            "within"
        } else {
            "older than"
        }
    };
    let successful = |dir: &&manifest::StampDir| {
        dir.status == Some(Status::Ok)
            && (!offsite_required || crate::copies::copied(&backups, &dir.name))
    };
    if offsite_required {
        let newest_copy = dirs.iter().rev().find_map(|dir| {
            manifest::Offsite::read(&backup_dir.join(&dir.name))
                .ok()
                .flatten()
                .map(|record| (dir.name.clone(), record))
        });
        let _ = match newest_copy {
            Some((name, record)) => match &record.error {
                None => writeln!(out, "newest off-site copy: {name} ok"),
                Some(error) => {
                    writeln!(out, "newest off-site copy: {name} failed ({})", error.code)
                }
            },
            None => writeln!(out, "newest off-site copy: none"),
        };
    }
    let healthy = match dirs.iter().rev().find(successful) {
        Some(ok) => {
            let age = age_of(ok.time);
            let _ = writeln!(
                out,
                "newest successful backup: {} age {} ({} max age {})",
                ok.name,
                human(age),
                verdict(age),
                human(max_age)
            );
            age < max_age
        }
        None if !dirs.is_empty() => {
            let _ = writeln!(out, "newest successful backup: none, and a run has failed");
            false
        }
        None => match backups.scheduler_started() {
            Some(started) => {
                let age = age_of(started);
                let _ = writeln!(
                    out,
                    "newest successful backup: none yet; scheduler started {} ago ({} max age {})",
                    human(age),
                    verdict(age),
                    human(max_age)
                );
                age < max_age
            }
            None => {
                let _ = writeln!(
                    out,
                    "newest successful backup: none, and no scheduler has started here"
                );
                false
            }
        },
    };
    // The newest drill, for the operator; health stays the backups' (a failed
    // drill already made its run exit 1).
    let drilled = dirs.iter().rev().find_map(|dir| {
        let path = backup_dir.join(&dir.name).join(manifest::DRILL_FILE);
        path.exists()
            .then(|| (dir.name.clone(), manifest::Drill::read(&path)))
    });
    match drilled {
        Some((name, Ok(drill))) => {
            let age = human(age_of(drill.finished_at.0));
            let outcome = match &drill.error {
                None => format!(
                    "ok, {} tables, {} rows",
                    drill.tables_checked, drill.rows_checked
                ),
                Some(error) => format!("failed ({})", error.code),
            };
            let _ = writeln!(out, "newest drill: {name} {outcome}, age {age}");
        }
        Some((name, Err(error))) => {
            let _ = writeln!(out, "newest drill: {name} unreadable: {error}");
        }
        None => {
            let _ = writeln!(out, "newest drill: none");
        }
    }
    Report {
        text: out,
        good: healthy,
    }
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
