//! The layout of `BACKUP_DIR`: the run lock, stamp directories, and finding the
//! newest backup.
//!
//! Only direct children that are real directories (not symlinks) with a stamp name
//! count as backups; everything else in `BACKUP_DIR` is invisible to this module and
//! therefore never touched by retention.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::{Manifest, Status, UtcTime};

/// The lock file's name inside `BACKUP_DIR`.
pub const LOCK_FILE: &str = ".lock";

/// Where `backup-cron run` records when it started (one RFC 3339 line), so that
/// `status` can tell "the first scheduled run has not come yet" from "nobody
/// schedules backups here".
pub const SCHEDULER_FILE: &str = ".scheduler-started";

/// `BACKUP_DIR`.
#[derive(Clone, Debug)]
pub struct BackupDir {
    root: PathBuf,
}

/// An exclusive `flock` on `BACKUP_DIR/.lock`, released on drop (and by the kernel
/// if the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// One backup directory and what its name and manifest say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampDir {
    /// The directory name.
    pub name: String,
    /// The time in its name.
    pub time: UtcTime,
    /// The `-N` suffix (1 without one), ordering runs within one second.
    pub sequence: u32,
    /// The manifest's status; `None` without a readable manifest (interrupted run).
    pub status: Option<Status>,
}

impl BackupDir {
    /// Refers to `root`; nothing is created yet.
    pub fn new(root: &Path) -> BackupDir {
        BackupDir {
            root: root.to_owned(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (and parents) if missing.
    pub fn create(&self) -> Result<(), Error> {
        crate::private::create_dir_all(&self.root).map_err(|source| Error::Write {
            path: self.root.clone(),
            source,
        })
    }

    /// Takes the run lock without waiting: [`Error::Locked`] when another run has it.
    pub fn lock(&self) -> Result<RunLock, Error> {
        let path = self.root.join(LOCK_FILE);
        let file = crate::private::open_file(&path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            return Ok(RunLock { _file: file });
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Err(Error::Locked { path }),
            _ => Err(Error::Write {
                path,
                source: error,
            }),
        }
    }

    /// Whether a run holds the lock right now (a backup is in progress).
    pub fn is_locked(&self) -> Result<bool, Error> {
        if !self.root.join(LOCK_FILE).exists() {
            return Ok(false);
        }
        match self.lock() {
            Ok(_lock) => Ok(false),
            Err(Error::Locked { .. }) => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// Records that a scheduler started at `now` (atomically, 0600).
    pub fn record_scheduler_start(&self, now: UtcTime) -> Result<(), Error> {
        crate::write_file_atomic(
            &self.root.join(SCHEDULER_FILE),
            format!("{}\n", now.rfc3339()).as_bytes(),
        )
    }

    /// When a scheduler last recorded its start, if one did (an unreadable or
    /// garbled record counts as none).
    pub fn scheduler_started(&self) -> Option<UtcTime> {
        let text = std::fs::read_to_string(self.root.join(SCHEDULER_FILE)).ok()?;
        UtcTime::parse_rfc3339(text.trim())
    }

    /// Creates `BACKUP_DIR/<stamp>/` for a run starting at `started`, adding `-2`,
    /// `-3`… if the name is taken. Returns its path.
    pub fn create_run_dir(&self, started: UtcTime) -> Result<PathBuf, Error> {
        let stamp = started.stamp();
        for sequence in 1u32.. {
            let name = if sequence == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{sequence}")
            };
            let path = self.root.join(name);
            match crate::private::create_dir(&path) {
                Ok(()) => {
                    crate::sync_parent(&path).map_err(|source| Error::Write {
                        path: path.clone(),
                        source,
                    })?;
                    return Ok(path);
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::Write { path, source }),
            }
        }
        unreachable!("u32 sequences run out only after four billion runs in one second")
    }

    /// Every backup directory, oldest first.
    pub fn list(&self) -> Result<Vec<StampDir>, Error> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| Error::Read {
            path: self.root.clone(),
            source,
        })?;
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: self.root.clone(),
                source,
            })?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((time, sequence)) = UtcTime::parse_stamp(&name) else {
                continue;
            };
            // `file_type` does not follow symlinks: a symlink is never a backup.
            let is_real_dir = entry.file_type().is_ok_and(|file_type| file_type.is_dir());
            if !is_real_dir {
                continue;
            }
            let status = Manifest::read(&entry.path())
                .ok()
                .map(|manifest| manifest.status);
            dirs.push(StampDir {
                name,
                time,
                sequence,
                status,
            });
        }
        dirs.sort_by(|a, b| (a.time, a.sequence, &a.name).cmp(&(b.time, b.sequence, &b.name)));
        Ok(dirs)
    }

    /// The newest backup directory, whatever its status.
    pub fn newest(&self) -> Result<Option<StampDir>, Error> {
        Ok(self.list()?.pop())
    }

    /// The newest backup whose manifest says `ok`.
    pub fn newest_ok(&self) -> Result<Option<StampDir>, Error> {
        Ok(self
            .list()?
            .into_iter()
            .rev()
            .find(|dir| dir.status == Some(Status::Ok)))
    }
}
