//! `drill.json`: the result of a restore drill, written into the backup directory
//! it drilled.

use serde::{Deserialize, Serialize};

use crate::{ArtifactName, RestoreCode, Status, Timestamp, UtcTime};

/// The file name inside a backup directory.
pub const DRILL_FILE: &str = "drill.json";
/// The `schema` value.
pub const DRILL_SCHEMA: &str = "backup-drill/v1";

/// One drill's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Always [`DRILL_SCHEMA`].
    pub schema: String,
    /// `ok` or `failed`.
    pub status: Status,
    /// When it ended, RFC 3339 UTC.
    pub finished_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// Which artifact was restored.
    pub artifact: ArtifactName,
    /// Tables compared.
    pub tables_checked: u64,
    /// Rows in those tables (the manifest's counts).
    pub rows_checked: u64,
    /// Tables whose count differs, or that are missing on one side.
    pub mismatches: Vec<Mismatch>,
    /// Why it failed; `null` when ok.
    pub error: Option<DrillError>,
}

/// A table whose restored row count is not the manifest's. A table missing after
/// the restore has `actual: null`; one the manifest does not list, `expected: null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mismatch {
    /// The table, as the dump names it.
    pub table: String,
    /// The manifest's count.
    pub expected: Option<u64>,
    /// The restored table's count.
    pub actual: Option<u64>,
}

/// A failed drill's code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillError {
    /// What went wrong.
    pub code: RestoreCode,
}

impl Drill {
    /// A drill's record from what it found; `ok` only when there is no error, no
    /// mismatch and at least one table was checked (a drill never passes hollow).
    pub fn new(
        artifact: ArtifactName,
        finished: UtcTime,
        duration: std::time::Duration,
        tables_checked: u64,
        rows_checked: u64,
        mismatches: Vec<Mismatch>,
        error: Option<RestoreCode>,
    ) -> Drill {
        let error = error.or_else(|| {
            (!mismatches.is_empty() || tables_checked == 0).then_some(RestoreCode::RestoreMismatch)
        });
        Drill {
            schema: DRILL_SCHEMA.to_owned(),
            status: if error.is_none() {
                Status::Ok
            } else {
                Status::Failed
            },
            finished_at: Timestamp(finished),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            artifact,
            tables_checked,
            rows_checked,
            mismatches,
            error: error.map(|code| DrillError { code }),
        }
    }

    /// Writes `dir/drill.json` atomically (temporary file, fsync, rename).
    pub fn write_atomic(&self, dir: &std::path::Path) -> Result<(), crate::Error> {
        crate::write_record_atomic(&dir.join(DRILL_FILE), self)
    }

    /// Reads a `drill.json`.
    pub fn read(path: &std::path::Path) -> Result<Drill, crate::Error> {
        crate::read_record(path)
    }
}
