//! The closed set of error codes a manifest may carry.
//!
//! A manifest records *what kind* of failure happened, never the failure's text:
//! stderr and error messages name hosts, databases and users, and go to the logs
//! (redacted) instead.

use serde::{Deserialize, Serialize};

/// Why a step failed. Each code's documentation says what an operator should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The `pg_dump` binary (`PG_DUMP`, or `pg_dump` on `PATH`) does not exist.
    /// Install the PostgreSQL client matching the server's major version.
    PgDumpNotFound,
    /// `pg_dump` ran longer than `BACKUP_PG_TIMEOUT_SECONDS` and was killed with its
    /// whole process group. Check database load and network; raise the timeout if
    /// the database simply grew.
    PgDumpTimeout,
    /// `pg_dump` failed for a reason not covered by a more specific code. The log
    /// has its (redacted) stderr.
    PgDumpFailed,
    /// `pg_dump` is older than the server. Install the client of the server's major
    /// version (or newer).
    PgDumpVersionMismatch,
    /// The server rejected the credentials (wrong or missing password, no
    /// `pg_hba.conf` entry). Check the role's password and the secret file.
    DbAuthFailed,
    /// The server could not be reached (refused, unknown host, timeout). Check that
    /// it runs and that the host and port are right.
    DbUnreachable,
    /// The database named in the DSN does not exist.
    DbNotFound,
    /// The role may not read something it must dump. Grant it `pg_read_all_data`.
    DbPermissionDenied,
    /// `SUPABASE_STORAGE_ROOT` does not exist.
    StorageMissing,
    /// `SUPABASE_STORAGE_ROOT` is not a directory.
    StorageNotDir,
    /// A file under the storage root could not be read (permissions, I/O error).
    StorageReadFailed,
    /// `BACKUP_DIR` ran out of space (or quota). Free space or move backups; lower
    /// `RETENTION_DAYS` only if older backups are not needed.
    DiskFull,
    /// Another I/O error while writing the backup. The log names it.
    IoFailed,
    /// The run was stopped by SIGTERM or SIGINT. The next run starts afresh.
    Interrupted,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::PgDumpNotFound,
        ErrorCode::PgDumpTimeout,
        ErrorCode::PgDumpFailed,
        ErrorCode::PgDumpVersionMismatch,
        ErrorCode::DbAuthFailed,
        ErrorCode::DbUnreachable,
        ErrorCode::DbNotFound,
        ErrorCode::DbPermissionDenied,
        ErrorCode::StorageMissing,
        ErrorCode::StorageNotDir,
        ErrorCode::StorageReadFailed,
        ErrorCode::DiskFull,
        ErrorCode::IoFailed,
        ErrorCode::Interrupted,
    ];

    /// The code as written in `manifest.json`, e.g. `pg_dump_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PgDumpNotFound => "pg_dump_not_found",
            ErrorCode::PgDumpTimeout => "pg_dump_timeout",
            ErrorCode::PgDumpFailed => "pg_dump_failed",
            ErrorCode::PgDumpVersionMismatch => "pg_dump_version_mismatch",
            ErrorCode::DbAuthFailed => "db_auth_failed",
            ErrorCode::DbUnreachable => "db_unreachable",
            ErrorCode::DbNotFound => "db_not_found",
            ErrorCode::DbPermissionDenied => "db_permission_denied",
            ErrorCode::StorageMissing => "storage_missing",
            ErrorCode::StorageNotDir => "storage_not_dir",
            ErrorCode::StorageReadFailed => "storage_read_failed",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::IoFailed => "io_failed",
            ErrorCode::Interrupted => "interrupted",
        }
    }

    /// The code for an I/O error while writing into the backup directory.
    pub fn from_write_error(error: &std::io::Error) -> ErrorCode {
        match error.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => ErrorCode::DiskFull,
            _ => ErrorCode::IoFailed,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a restore or a drill failed (`backup-cron restore`'s one line on stderr,
/// `drill.json`'s `error`). A closed set, as for [`ErrorCode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreCode {
    /// The target database holds relations outside the system schemas, or the
    /// target directory is not empty. Nothing was touched. Restore into an empty one.
    RestoreTargetNotEmpty,
    /// `psql` failed applying the dump (the log has its redacted stderr); the
    /// transaction was rolled back, the target is as empty as before.
    RestoreFailed,
    /// The restore ran past `BACKUP_RESTORE_TIMEOUT_SECONDS` and was killed.
    RestoreTimeout,
    /// After the restore, a table's row count differs from the manifest's, or the
    /// manifest has no counts to compare with.
    RestoreMismatch,
    /// The artifact's size or sha256 differ from the manifest, or it does not
    /// decompress. Nothing was written.
    ArtifactCorrupt,
    /// The manifest names no such artifact, or its file is gone.
    ArtifactMissing,
    /// The storage archive holds an absolute path, `..`, an entry below a symlink,
    /// a hard link or a device. Nothing was written.
    ArchiveUnsafe,
    /// The artifact could not be decrypted with the given identity.
    DecryptFailed,
    /// The target server rejected the credentials.
    DbAuthFailed,
    /// The target server could not be reached.
    DbUnreachable,
    /// The target role may not do what the restore needs (`CREATEDB` for a drill).
    DbPermissionDenied,
    /// Stopped by SIGTERM or SIGINT; a drill still dropped its scratch database.
    Interrupted,
}

impl RestoreCode {
    /// Every code, in documentation order.
    pub const ALL: [RestoreCode; 12] = [
        RestoreCode::RestoreTargetNotEmpty,
        RestoreCode::RestoreFailed,
        RestoreCode::RestoreTimeout,
        RestoreCode::RestoreMismatch,
        RestoreCode::ArtifactCorrupt,
        RestoreCode::ArtifactMissing,
        RestoreCode::ArchiveUnsafe,
        RestoreCode::DecryptFailed,
        RestoreCode::DbAuthFailed,
        RestoreCode::DbUnreachable,
        RestoreCode::DbPermissionDenied,
        RestoreCode::Interrupted,
    ];

    /// The code as written, e.g. `restore_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreCode::RestoreTargetNotEmpty => "restore_target_not_empty",
            RestoreCode::RestoreFailed => "restore_failed",
            RestoreCode::RestoreTimeout => "restore_timeout",
            RestoreCode::RestoreMismatch => "restore_mismatch",
            RestoreCode::ArtifactCorrupt => "artifact_corrupt",
            RestoreCode::ArtifactMissing => "artifact_missing",
            RestoreCode::ArchiveUnsafe => "archive_unsafe",
            RestoreCode::DecryptFailed => "decrypt_failed",
            RestoreCode::DbAuthFailed => "db_auth_failed",
            RestoreCode::DbUnreachable => "db_unreachable",
            RestoreCode::DbPermissionDenied => "db_permission_denied",
            RestoreCode::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RestoreCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
