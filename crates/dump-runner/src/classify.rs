//! Mapping `pg_dump`'s stderr to a manifest error code.
//!
//! `pg_dump` reports failures only as text, so this is the one place where text is
//! matched. The child runs with `LC_MESSAGES=C`, so the messages are libpq's and
//! pg_dump's English originals; the patterns are those of PostgreSQL 12–17.

use manifest::ErrorCode;

/// Classifies a failed `pg_dump` by its stderr; the most specific match wins.
pub fn classify_stderr(stderr: &str) -> ErrorCode {
    // Each entry: every fragment must occur.
    const PATTERNS: &[(&[&str], ErrorCode)] = &[
        (
            &["server version mismatch"],
            ErrorCode::PgDumpVersionMismatch,
        ),
        (&["password authentication failed"], ErrorCode::DbAuthFailed),
        (&["no password supplied"], ErrorCode::DbAuthFailed),
        (&["authentication failed"], ErrorCode::DbAuthFailed),
        (&["no pg_hba.conf entry"], ErrorCode::DbAuthFailed),
        (&["SCRAM authentication requires"], ErrorCode::DbAuthFailed),
        (&["role \"", "does not exist"], ErrorCode::DbAuthFailed),
        (&["database \"", "does not exist"], ErrorCode::DbNotFound),
        (&["permission denied"], ErrorCode::DbPermissionDenied),
        // A role without BYPASSRLS would dump only the rows it may see: refused.
        (
            &["row-level security policy"],
            ErrorCode::DbPermissionDenied,
        ),
        (&["must be superuser"], ErrorCode::DbPermissionDenied),
        (&["Connection refused"], ErrorCode::DbUnreachable),
        (&["could not translate host name"], ErrorCode::DbUnreachable),
        (&["timeout expired"], ErrorCode::DbUnreachable),
        (&["Connection timed out"], ErrorCode::DbUnreachable),
        (&["No route to host"], ErrorCode::DbUnreachable),
        (&["Network is unreachable"], ErrorCode::DbUnreachable),
        (&["No such file or directory"], ErrorCode::DbUnreachable),
        (
            &["server closed the connection unexpectedly"],
            ErrorCode::DbUnreachable,
        ),
        (
            &["the database system is shutting down"],
            ErrorCode::DbUnreachable,
        ),
        (
            &["the database system is starting up"],
            ErrorCode::DbUnreachable,
        ),
        (
            &["terminating connection due to administrator command"],
            ErrorCode::DbUnreachable,
        ),
        (&["could not connect to server"], ErrorCode::DbUnreachable),
    ];
    PATTERNS
        .iter()
        .find(|(fragments, _)| fragments.iter().all(|fragment| stderr.contains(fragment)))
        .map_or(ErrorCode::PgDumpFailed, |(_, code)| *code)
}
