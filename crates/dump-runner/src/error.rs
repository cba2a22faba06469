//! Errors of a dump or archive step, each mapping to a manifest error code.

use std::path::PathBuf;
use std::time::Duration;

use manifest::ErrorCode;

/// Why a step failed. `Display` never includes a password; `pg_dump`'s stderr is
/// kept apart (and redacted) in [`Error::Failed`] for the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `pg_dump` program does not exist.
    #[error("pg_dump program {} not found", program.display())]
    NotFound {
        /// What was looked for.
        program: PathBuf,
    },
    /// `pg_dump` could not be started for another reason (permissions, …).
    #[error("cannot start pg_dump")]
    Spawn(#[source] std::io::Error),
    /// The private pgpass file could not be written.
    #[error("cannot prepare the password file")]
    Pgpass(#[source] dsn::Error),
    /// `pg_dump` ran past its time limit and was killed with its process group.
    #[error("pg_dump did not finish within {} s; its process group was killed", after.as_secs())]
    Timeout {
        /// The limit.
        after: Duration,
    },
    /// Cancelled (SIGTERM/SIGINT); the child process group was ended.
    #[error("interrupted")]
    Interrupted,
    /// `pg_dump` exited unsuccessfully.
    #[error("pg_dump exited with {status} ({code})")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The classification of its stderr.
        code: ErrorCode,
        /// The last 64 KiB of its stderr, passwords redacted. For the log only.
        stderr: String,
    },
    /// Reading `pg_dump`'s output failed.
    #[error("cannot read pg_dump's output")]
    Read(#[source] std::io::Error),
    /// Writing the artifact failed (disk full, I/O error).
    #[error("cannot write {}", path.display())]
    Write {
        /// The artifact being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process that escaped the process group kept the output pipe open.
    #[error("pg_dump's output stayed open after it exited; gave up waiting")]
    Abandoned,
    /// The storage root does not exist.
    #[error("storage root {} does not exist", path.display())]
    StorageMissing {
        /// The root.
        path: PathBuf,
    },
    /// The storage root is not a directory.
    #[error("storage root {} is not a directory", path.display())]
    StorageNotDir {
        /// The root.
        path: PathBuf,
    },
    /// A file or directory under the storage root could not be read.
    #[error("cannot read {}", path.display())]
    StorageRead {
        /// What could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The manifest error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound { .. } => ErrorCode::PgDumpNotFound,
            Error::Spawn(_) | Error::Read(_) | Error::Abandoned => ErrorCode::PgDumpFailed,
            Error::Pgpass(_) => ErrorCode::IoFailed,
            Error::Timeout { .. } => ErrorCode::PgDumpTimeout,
            Error::Interrupted => ErrorCode::Interrupted,
            Error::Failed { code, .. } => *code,
            Error::Write { source, .. } => ErrorCode::from_write_error(source),
            Error::StorageMissing { .. } => ErrorCode::StorageMissing,
            Error::StorageNotDir { .. } => ErrorCode::StorageNotDir,
            Error::StorageRead { .. } => ErrorCode::StorageReadFailed,
        }
    }
}
