//! Errors of reading and writing backup directories.

use std::path::PathBuf;

/// A failure reading or writing a backup directory. Paths are inside `BACKUP_DIR`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// What we read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// What we wrote.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` is not a v1 manifest.
    #[error("{} is not a valid backup manifest", path.display())]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// Another run holds `BACKUP_DIR/.lock`.
    #[error("another backup run holds {}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    /// The manifest code for this failure, when it happened while writing.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            Error::Write { source, .. } => crate::ErrorCode::from_write_error(source),
            _ => crate::ErrorCode::IoFailed,
        }
    }
}
