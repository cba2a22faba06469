//! `offsite.json`: what became of a backup's off-site copy, written into the
//! backup directory after each upload attempt. The same no-free-text rule as the
//! manifest: a closed set of codes, file names from the manifest, and nothing about
//! where the copy went (no URL, host, bucket, key or provider message).

use serde::{Deserialize, Serialize};

use crate::{Status, Timestamp, UtcTime};

/// The file name inside a backup directory.
pub const OFFSITE_FILE: &str = "offsite.json";
/// The `schema` value.
pub const OFFSITE_SCHEMA: &str = "backup-offsite/v1";

/// One upload attempt's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offsite {
    /// Always [`OFFSITE_SCHEMA`].
    pub schema: String,
    /// `ok` when every artifact and then the manifest were uploaded and checked.
    pub status: Status,
    /// When the attempt ended, RFC 3339 UTC.
    pub finished_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// The objects uploaded and checked, in upload order (the manifest last).
    pub objects: Vec<OffsiteObject>,
    /// Why it failed; `null` when ok.
    pub error: Option<OffsiteError>,
}

/// One uploaded object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteObject {
    /// Its file name in the backup directory (and last part of its key).
    pub file: String,
    /// Its size, as checked on the remote side.
    pub bytes: u64,
    /// The hex sha256 of what was sent.
    pub sha256: String,
}

/// A failed upload's code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteError {
    /// What went wrong.
    pub code: OffsiteCode,
}

/// Why an off-site copy failed. A closed set, as for [`crate::ErrorCode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsiteCode {
    /// The object store rejected the credentials or the signature (HTTP 401/403).
    S3AuthFailed,
    /// The bucket does not exist.
    S3BucketNotFound,
    /// The endpoint could not be reached (DNS, refused, reset before an answer).
    S3Unreachable,
    /// The upload did not finish within `BACKUP_S3_TIMEOUT_SECONDS`.
    S3Timeout,
    /// The object store answered with an error, or a transfer broke off.
    S3UploadFailed,
    /// What was sent does not match the manifest (a local file changed or rotted),
    /// or the remote size differs from what was sent.
    S3VerifyFailed,
    /// Stopped by SIGTERM or SIGINT.
    Interrupted,
}

impl OffsiteCode {
    /// Every code, in documentation order.
    pub const ALL: [OffsiteCode; 7] = [
        OffsiteCode::S3AuthFailed,
        OffsiteCode::S3BucketNotFound,
        OffsiteCode::S3Unreachable,
        OffsiteCode::S3Timeout,
        OffsiteCode::S3UploadFailed,
        OffsiteCode::S3VerifyFailed,
        OffsiteCode::Interrupted,
    ];

    /// The code as written, e.g. `s3_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsiteCode::S3AuthFailed => "s3_auth_failed",
            OffsiteCode::S3BucketNotFound => "s3_bucket_not_found",
            OffsiteCode::S3Unreachable => "s3_unreachable",
            OffsiteCode::S3Timeout => "s3_timeout",
            OffsiteCode::S3UploadFailed => "s3_upload_failed",
            OffsiteCode::S3VerifyFailed => "s3_verify_failed",
            OffsiteCode::Interrupted => "interrupted",
        }
    }

    /// True for failures of the store as a whole (credentials, bucket, network,
    /// time): trying the next backup in the same run would only fail the same way.
    pub fn is_store_wide(self) -> bool {
        !matches!(self, OffsiteCode::S3VerifyFailed)
    }
}

impl std::fmt::Display for OffsiteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Offsite {
    /// A record of an attempt that ended at `finished`: `ok` without an error.
    pub fn new(
        finished: UtcTime,
        duration: std::time::Duration,
        objects: Vec<OffsiteObject>,
        error: Option<OffsiteCode>,
    ) -> Offsite {
        Offsite {
            schema: OFFSITE_SCHEMA.to_owned(),
            status: if error.is_none() {
                Status::Ok
            } else {
                Status::Failed
            },
            finished_at: Timestamp(finished),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            objects,
            error: error.map(|code| OffsiteError { code }),
        }
    }

    /// Writes `dir/offsite.json` atomically (temporary file, fsync, rename).
    pub fn write_atomic(&self, dir: &std::path::Path) -> Result<(), crate::Error> {
        crate::write_record_atomic(&dir.join(OFFSITE_FILE), self)
    }

    /// Reads `dir/offsite.json`; `None` when there is none (never attempted).
    pub fn read(dir: &std::path::Path) -> Result<Option<Offsite>, crate::Error> {
        let path = dir.join(OFFSITE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        crate::read_record(&path).map(Some)
    }
}
