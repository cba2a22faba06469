//! Which backups to delete after a successful run.
//!
//! The rule: among stamp directories (see [`BackupDir::list`]), delete those older than
//! `RETENTION_DAYS` by the time in their name (never mtime), except the newest
//! `BACKUP_KEEP_MIN` successful ones and the run just written. Nothing else in
//! `BACKUP_DIR` is ever considered.

use manifest::{BackupDir, StampDir, Status, UtcTime};

use crate::Error;

/// `RETENTION_DAYS` and `BACKUP_KEEP_MIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Backups older than this many days may go.
    pub retention_days: u32,
    /// The newest this many successful backups stay, whatever their age.
    pub keep_min: u32,
}

/// The names of the directories to delete, oldest first. Pure: a function of the
/// listing, the clock and the policy.
pub fn plan(
    dirs: &[StampDir],
    now: UtcTime,
    policy: RetentionPolicy,
    current: &str,
) -> Vec<String> {
    let keep_min = usize::try_from(policy.keep_min).unwrap_or(usize::MAX);
    let mut newest_first: Vec<&StampDir> = dirs.iter().collect();
    newest_first.sort_by(|a, b| (b.time, b.sequence, &b.name).cmp(&(a.time, a.sequence, &a.name)));
    let protected: Vec<&str> = newest_first
        .iter()
        .filter(|dir| dir.status == Some(Status::Ok))
        .take(keep_min)
        .map(|dir| dir.name.as_str())
        .collect();
    let max_age_seconds = i64::from(policy.retention_days) * 86_400;
    let mut doomed: Vec<&StampDir> = dirs
        .iter()
        .filter(|dir| now.unix_seconds() - dir.time.unix_seconds() > max_age_seconds)
        .filter(|dir| dir.name != current && !protected.contains(&dir.name.as_str()))
        .collect();
    doomed.sort_by(|a, b| (a.time, a.sequence, &a.name).cmp(&(b.time, b.sequence, &b.name)));
    doomed.into_iter().map(|dir| dir.name.clone()).collect()
}

/// Applies the policy to `backups`; returns the names deleted.
pub fn apply(
    backups: &BackupDir,
    now: UtcTime,
    policy: RetentionPolicy,
    current: &str,
) -> Result<Vec<String>, Error> {
    let plan = plan(&backups.list()?, now, policy, current);
    for name in &plan {
        let path = backups.root().join(name);
        // Checked again right before deleting: only a real directory goes.
        let still_a_dir = std::fs::symlink_metadata(&path).is_ok_and(|metadata| metadata.is_dir());
        if still_a_dir {
            std::fs::remove_dir_all(&path).map_err(|source| Error::Delete { path, source })?;
        }
    }
    Ok(plan)
}
