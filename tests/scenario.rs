//! The end-to-end scenario's checks, in one place for its two runners: the
//! in-process test of this package (`cargo test`: both services' libraries on a
//! throwaway cluster) and `cargo xtask e2e` (the release binaries as processes).
//!
//! Both read the database as text rows — one row a line, columns separated by a
//! space, as `psql -At` prints them — so the checks below are plain functions of
//! what either runner got back.

use std::path::Path;

use fixtures::StubCalls;

/// The tables a restore must reproduce exactly.
pub const TABLES: [&str; 4] = [
    "courses",
    "unit_tasks",
    "learning_submissions",
    "learning_submission_jobs",
];

/// One text row: `completed submissions`, `all submissions`, `jobs left`.
pub const SUMMARY_SQL: &str = "select count(*) filter (where analysis_status = 'completed') || ' ' || count(*) || ' ' || \
     (select count(*) from learning_submission_jobs) from learning_submissions";

/// One text row per submission: `id kind`.
pub const SUBMISSION_KINDS_SQL: &str = "select id || ' ' || kind from learning_submissions";

/// One text row per stored file: its storage key.
pub const STORAGE_KEYS_SQL: &str =
    "select storage_key from learning_submissions where storage_key is not null";

/// One text row for `table`: its row count and an md5 over all its rows, so two
/// databases agree only if every row does.
pub fn fingerprint_sql(table: &str) -> String {
    format!(
        "select count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' order by t::text)), '') from {table} t"
    )
}

/// Every submission completed, none left in the queue.
pub fn check_all_completed(summary: &str, total: usize) -> Result<(), String> {
    let expected = format!("{total} {total} 0");
    if summary.trim() == expected {
        Ok(())
    } else {
        Err(format!(
            "completed / submissions / jobs left = {}, expected {expected}",
            summary.trim()
        ))
    }
}

/// Each submission saw exactly one feedback call and, unless typed, exactly one
/// vision call: nothing was processed twice, however many workers ran.
pub fn check_exactly_once(kinds: &str, calls: &StubCalls) -> Result<(), String> {
    for line in kinds.lines() {
        let (id, kind) = line
            .split_once(' ')
            .ok_or_else(|| format!("not `id kind`: {line:?}"))?;
        let id = id.parse().map_err(|_| format!("not a uuid: {id:?}"))?;
        let expected_vision = usize::from(kind != "text");
        let (vision, feedback) = (calls.count("vision", id), calls.count("feedback", id));
        if vision != expected_vision || feedback != 1 {
            return Err(format!(
                "submission {id} ({kind}): {vision} vision and {feedback} feedback calls; expected {expected_vision} and 1"
            ));
        }
    }
    Ok(())
}

/// Writes the sample file each storage key names (`.png` or `.pdf`) below `storage`,
/// as the platform would have stored the student's upload.
pub fn write_stored_files(storage: &Path, keys: &str) -> std::io::Result<()> {
    for key in keys.lines() {
        let path = storage.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bytes = if key.ends_with(".png") {
            fixtures::SAMPLE_PNG
        } else {
            fixtures::SAMPLE_PDF
        };
        std::fs::write(path, bytes)?;
    }
    Ok(())
}
