//! Turning a database and a directory into verified backup artifacts, safely.
//!
//! - [`dump`] runs `pg_dump --format=plain --no-owner --no-password` as a child in its
//!   own process group, with an empty environment plus exactly the libpq variables
//!   of the DSN and `PGPASSFILE` (a private 0600 file, removed when the step ends).
//!   Its stdout streams into [`ParallelGzip`]; its stderr is drained on its own
//!   thread and only the last 64 KiB are kept; a control loop enforces a hard
//!   wall-clock timeout (SIGTERM to the group, SIGKILL 5 s later) that no blocking
//!   read can delay, reacts to [`Cancellation`], and logs progress every 30 s.
//!   [`CopyCounter`] counts each table's rows in the same pass (the `COPY`
//!   sections), for the manifest's `row_counts`.
//! - [`archive`] writes a tar.gz of a storage directory, storing symlinks as links.
//! - Both write `NAME.partial`, fsync and rename it into place; a failed step
//!   leaves no file. Every failure maps to one manifest [`ErrorCode`](manifest::ErrorCode)
//!   through [`Error::code`].
//!
//! - [`Psql`] is the way back through the same door: [`Psql::apply_dump`] streams a
//!   dump, decompressed, into `psql --single-transaction -v ON_ERROR_STOP=1`;
//!   [`Psql::query`] runs the checks around it; [`unpack`] checks every entry of a
//!   storage archive before writing any.
//!
//! This crate is the only place in the workspace that starts `pg_dump` or `psql`.
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let dsn = dsn::Dsn::parse("postgresql://backup:secret@db:5432/app")?;
//! let cancellation = dump_runner::Cancellation::new();
//! let dumped = dump_runner::dump(&dump_runner::DumpJob {
//!     program: Path::new("pg_dump"),
//!     dsn: &dsn,
//!     output: Path::new("/backups/2026-11-29_020000/supabase_db.sql.gz"),
//!     timeout: Duration::from_secs(300),
//!     compression: dump_runner::Compression::gzip(6),
//!     recipients: None,
//!     cancellation: &cancellation,
//!     progress_interval: dump_runner::PROGRESS_INTERVAL,
//! })?;
//! println!("{} bytes, sha256 {}", dumped.written.bytes, dumped.written.sha256);
//! # Ok(())
//! # }
//! ```

mod cancel;
mod child;
mod classify;
mod compress;
mod copy_count;
mod dump;
mod error;
mod gzip;
mod restore;
mod storage;

use std::path::{Path, PathBuf};

pub use cancel::{Cancellation, Subscription};
pub use classify::classify_stderr;
pub use compress::Compression;
pub use copy_count::{CopyCounter, HEADER_LINE_LIMIT};
pub use dump::{DumpJob, Dumped, KILL_GRACE, PROGRESS_INTERVAL, STDERR_TAIL, dump};
pub use error::Error;
pub use gzip::{BLOCK_SIZE, Finished, GZIP_HEADER, ParallelGzip};
pub use restore::{
    Applied, Psql, RestoreCode, RestoreError, TABLE_COUNTS_SQL, USER_RELATIONS_SQL, Unpacked,
    table_counts, unpack,
};
pub use storage::{ArchiveJob, archive};

/// `path` with [`manifest::PARTIAL_SUFFIX`] appended.
fn partial_path(path: &Path) -> PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(manifest::PARTIAL_SUFFIX);
    PathBuf::from(partial)
}
